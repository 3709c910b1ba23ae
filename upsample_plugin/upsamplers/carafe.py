"""CARAFE: Content-Aware ReAssembly of FEatures (Wang et al., ICCV 2019, https://arxiv.org/abs/1905.02188).

Spec: ../shared/spec/carafe.md. Same constructor, parameter names and init as mmcv's ``CARAFEPack``, so mmcv
and mmdet checkpoints load unchanged; unlike mmcv's it runs on CPU (and on CUDA it uses mmcv's kernel when
mmcv was built with CUDA, see :func:`upsample_plugin.ops.carafe`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..ops import carafe
from ..ops._checks import check_int, check_odd_kernel
from ..registry import register_upsampler
from ._shuffle import pixel_shuffle
from .base import Upsampler


@register_upsampler('portable_carafe')
class CARAFEPack(Upsampler):
    """CARAFE upsampler: compress, encode kernels, softmax-normalise, reassemble.

    Registered as ``portable_carafe`` (mmcv keeps ``carafe`` for its CUDA-only module);
    :func:`upsample_plugin.build_upsampler` maps ``type='carafe'`` to this class.

    Args:
        channels: input (and output) channels C.
        scale_factor: integer upsampling ratio s.
        up_kernel: reassembly kernel size k_up (odd).
        up_group: channel groups sharing one kernel; must divide ``channels``.
        encoder_kernel: content-encoder kernel size k_enc.
        encoder_dilation: content-encoder dilation.
        compressed_channels: channels C_m of the compressor.

    Parameters at C=256, s=2, defaults: 74,148 (spec/numbers.md).
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
        self.channel_compressor = nn.Conv2d(channels, compressed_channels, 1)
        self.content_encoder = nn.Conv2d(
            compressed_channels, up_kernel * up_kernel * up_group * scale_factor * scale_factor, encoder_kernel,
            padding=int((encoder_kernel - 1) * encoder_dilation / 2), dilation=encoder_dilation, groups=1)
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv's init: Xavier-uniform convs, then the encoder at N(0, 0.001^2) so kernels start ~uniform."""
        for conv in (self.channel_compressor, self.content_encoder):
            nn.init.xavier_uniform_(conv.weight, gain=1)
            nn.init.zeros_(conv.bias)
        nn.init.normal_(self.content_encoder.weight, mean=0, std=0.001)
        nn.init.zeros_(self.content_encoder.bias)

    def kernel_normalizer(self, mask: torch.Tensor) -> torch.Tensor:
        """Pixel-shuffle the low-res kernels to high resolution and softmax each k_up x k_up kernel."""
        mask = pixel_shuffle(mask, self.scale_factor)
        n, mask_channels, height, width = mask.shape
        taps = self.up_kernel * self.up_kernel
        kernels = mask.view(n, mask_channels // taps, taps, height, width)
        kernels = kernels.softmax(dim=2, dtype=mask.dtype)
        return kernels.view(n, mask_channels, height, width)

    def feature_reassemble(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Under autocast the convs return reduced precision; the op wants one dtype (the feature's).
        return carafe(x, mask.to(x.dtype), self.up_kernel, self.up_group, self.scale_factor)

    def forward(self, x: torch.Tensor, guide: torch.Tensor = None) -> torch.Tensor:
        self.check_input(x, self.channels)
        mask = self.content_encoder(self.channel_compressor(x))
        return self.feature_reassemble(x, self.kernel_normalizer(mask))

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, scale_factor={self.scale_factor}, up_kernel={self.up_kernel}, '
                f'up_group={self.up_group}')
