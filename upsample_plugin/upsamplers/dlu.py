"""DLU: Dynamic Lightweight Upsampling ("Lighten CARAFE", Fu et al., ICPR 2024, https://arxiv.org/abs/2410.22139).

Spec: ../shared/spec/dlu.md. Same constructor, parameter names and init as the official ``DLUPack``
(``Fu0511/Dynamic-Lightweight-Upsampling`` ``custom/ops/dlu.py``), so its checkpoints load with ``strict=True``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops._checks import check_int, check_odd_kernel, compute_dtype
from ..ops.dlu import dlu_expand_kernels, dlu_reassemble
from ..registry import register_upsampler
from .base import Upsampler


@register_upsampler('dlu')
class DLUPack(Upsampler):
    """DLU upsampler: compress, predict a low-res kernel space and sub-pixel offsets, sample, reassemble.

    Each low-res pixel gets one softmax-normalised ``up_kernel x up_kernel`` kernel per group (the kernel
    space) and one 2-D offset per sub-pixel and group; the kernel of output pixel (p, q) is the kernel space
    bilinearly sampled at its parent pixel (p // s, q // s) plus that offset, clamped to the map, and the input
    is reassembled with it as in CARAFE (:func:`upsample_plugin.ops.dlu.dlu_reassemble`). With zero offsets
    (the initial state) it equals CARAFE with one kernel shared by the s x s sub-pixels of a cell.

    Args:
        channels: input (and output) channels C.
        scale_factor: integer upsampling ratio s.
        up_kernel: reassembly kernel size k_up (odd).
        up_group: channel groups G, each with its own kernel space and offsets; must divide ``channels``.
        encoder_kernel: kernel size of the kernel-space generator and the offset conv.
        encoder_dilation: their dilation.
        compressed_channels: channels C_m of the compressor.

    Differences from the official code (outputs are unchanged wherever the official code runs):

    * ``up_group > 1`` works (quirk 1): ``conv_offset`` channel ``(g*2 + xy)*s*s + i*s + j`` is the x (xy=0) or
      y (xy=1) offset of sub-pixel (i, j) of group g, and kernel-space channel ``g*k*k + t`` tap t of group g;
      each group samples its own kernel space with its own offsets. For G = 1 this is the official layout.
    * H = 1 or W = 1 works (quirk 2): positions are computed in index coordinates and a 1-pixel axis
      maps to its only pixel, instead of dividing the offsets by ``size - 1 = 0`` (inf/NaN officially).
    * The sampling grid is built on ``x.device`` in the computation dtype (quirk 3): float64 stays float64,
      so the official float64 fixtures are reproduced whatever the default dtype (the official float32
      ``linspace`` grid differs by ~1e-7); half precision is sampled in float32.
    * The softmax runs in float32 for half-precision kernels (quirk 4); no in-place writes (quirk 5).
    * CPU and any CUDA device (the official module needs mmcv's CUDA CARAFE on the current device).

    Kept: the floor mapping of output pixels to parent pixel centres (quirk 6). Parameters at C=256,
    defaults: 35,489 (s=2), 49,337 (s=4), 104,729 (s=8), 326,297 (s=16) (spec/numbers.md).
    """

    channel_args = ('channels',)

    def __init__(self, channels: int, scale_factor: int, up_kernel: int = 5, up_group: int = 1,
                 encoder_kernel: int = 3, encoder_dilation: int = 1, compressed_channels: int = 64):
        super().__init__()
        self.channels = check_int('channels', channels)
        self.scale_factor = check_int('scale_factor', scale_factor)
        self.up_kernel = check_odd_kernel('up_kernel', up_kernel)
        self.up_group = check_int('up_group', up_group)
        if channels % up_group:
            raise ValueError(f'up_group={up_group} must divide channels={channels}')
        self.encoder_kernel = check_int('encoder_kernel', encoder_kernel)
        self.encoder_dilation = check_int('encoder_dilation', encoder_dilation)
        self.compressed_channels = check_int('compressed_channels', compressed_channels)
        padding = int((encoder_kernel - 1) * encoder_dilation / 2)
        self.channel_compressor = nn.Conv2d(channels, compressed_channels, 1)
        self.kernel_space_generator = nn.Conv2d(compressed_channels, up_kernel * up_kernel * up_group,
                                                encoder_kernel, padding=padding, dilation=encoder_dilation,
                                                groups=1)
        self.conv_offset = nn.Conv2d(compressed_channels, up_group * 2 * scale_factor * scale_factor,
                                     encoder_kernel, padding=padding, dilation=encoder_dilation, bias=True)
        self.init_weights()

    def init_weights(self) -> None:
        """Official init: Xavier-uniform convs, kernel space N(0, 0.001^2) (near-uniform kernels), zero offsets
        (so training starts from CARAFE with a kernel shared per s x s cell)."""
        for conv in (self.channel_compressor, self.kernel_space_generator, self.conv_offset):
            nn.init.xavier_uniform_(conv.weight, gain=1)
            nn.init.zeros_(conv.bias)
        nn.init.normal_(self.kernel_space_generator.weight, mean=0, std=0.001)
        nn.init.zeros_(self.kernel_space_generator.bias)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def kernel_space_normalizer(self, mask: torch.Tensor) -> torch.Tensor:
        """Softmax each low-res k_up x k_up kernel of each group (no pixel shuffle, unlike CARAFE)."""
        n, mask_channels, height, width = mask.shape
        taps = self.up_kernel * self.up_kernel
        kernels = mask.view(n, mask_channels // taps, taps, height, width)
        # Half-precision logits: exponentiate and sum in float32 (spec quirk 4).
        kernels = F.softmax(kernels, dim=2, dtype=compute_dtype(mask.dtype))
        return kernels.view(n, mask_channels, height, width)

    def kernel_space_expander(self, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The per-output-pixel kernels (N, k*k*G, sH, sW); for inspection, ``forward`` never builds them here
        (:func:`upsample_plugin.ops.dlu.dlu_reassemble` does, or a fused kernel samples them on the fly)."""
        return dlu_expand_kernels(mask, offset, self.scale_factor, self.up_group)

    def feature_reassemble(self, x: torch.Tensor, mask: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        # Under autocast the convs return reduced precision; the op wants one dtype (the feature's).
        return dlu_reassemble(x, mask.to(x.dtype), offset.to(x.dtype), self.up_kernel, self.up_group,
                              self.scale_factor)

    def forward(self, x: torch.Tensor, guide: torch.Tensor = None) -> torch.Tensor:
        self.check_input(x, self.channels)
        compressed = self.channel_compressor(x)
        offset = self.conv_offset(compressed)
        mask = self.kernel_space_normalizer(self.kernel_space_generator(compressed))
        return self.feature_reassemble(x, mask, offset)

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, scale_factor={self.scale_factor}, up_kernel={self.up_kernel}, '
                f'up_group={self.up_group}')
