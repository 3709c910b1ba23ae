"""FADE and FADE-Lite: Fusing the Assets of Decoder and Encoder for task-agnostic upsampling.

Lu et al., "FADE: Fusing the Assets of Decoder and Encoder for Task-Agnostic Upsampling", ECCV 2022
(https://arxiv.org/abs/2207.10392), and its IJCV 2024 extension. Spec: ../shared/spec/fade.md.

State-dict compatible with the official ``poppinace/fade`` ``FADE_L2H.py`` modules (``gate_generator.conv``,
``ker_generator.compressor_en`` / ``compressor_de`` / ``content_encoder``) and with the gate-optional copies in
``tiny-smart/detection-with-upsamplers`` / ``segmentation-with-upsamplers`` (``gating=False`` drops
``gate_generator``; that is also the state dict of the official ``SemiShiftUp``). The math is the spec's L2H
form; the H2L form of ``FADE_H2L.py`` computes the same kernels (spec "H2L form and equivalence", checked in
tests/test_fade.py).

Calling convention: ``forward(x, guide)`` with ``x`` the low-resolution decoder feature (``de`` in the paper and
the official code) and ``guide`` the high-resolution encoder feature (``en``). The official modules take them
the other way round, ``forward(en, de)``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import carafe
from ..ops._checks import check_int, check_odd_kernel, compute_dtype, resolve_scale_alias
from ..registry import register_upsampler
from .base import Upsampler

#: Width of the compressed features of FADE's kernel generator (hard-coded in the official code, no argument).
EMBEDDING_DIM = 64
#: Kernel size of the shared content encoder (hard-coded 3x3 in the official code).
ENCODER_KERNEL = 3


def _xavier_uniform_(module: nn.Module) -> None:
    """The official init of every FADE conv: Xavier-uniform (gain 1) weights, zero biases (spec quirk 8)."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.xavier_uniform_(conv.weight, gain=1)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)


def _nearest_up(x: torch.Tensor, scale: int) -> torch.Tensor:
    # Nearest with an integer factor copies low-res pixel (y, x) to its s x s block: index p -> p // s.
    return F.interpolate(x, scale_factor=scale, mode='nearest')


class GateGenerator(nn.Module):
    """``g = sigmoid(nearest_up(conv1x1(de)))``: one mixing weight per high-res pixel, from the decoder."""

    def __init__(self, in_channels: int, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=1)
        _xavier_uniform_(self)

    def forward(self, de: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(_nearest_up(self.conv(de), self.scale))


class Aligner(nn.Module):
    """1x1 conv mapping the encoder feature to the decoder's channels, so the gate can mix them.

    Unused (commented out) in the official modules; the maintainers' answer to C_en != C_de
    (``poppinace/fade`` issue #1, spec quirk 2). Built only when gating with C_en != C_de.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        _xavier_uniform_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SemiShift(nn.Module):
    """Semi-shift kernel generator, L2H form (spec "Forward", steps 1-2).

    ``logits = content_encoder(compressor_en(en)) + nearest_up(content_encoder(compressor_de(de)))``: one 3x3
    content encoder is shared by the high-res encoder path and the low-res decoder path, so its bias is added
    twice (spec quirk 4, kept for compatibility).

    Args:
        in_channels_en / in_channels_de: channels of the encoder / decoder feature.
        out_channels: kernel channels, ``up_group * up_kernel_size**2``.
        embedding_dim: compressed width (FADE: 64). ``None`` = FADE-Lite's depthwise generator: the compressors
            output ``out_channels`` and the content encoder is depthwise (official ``SemiShiftDepthWise``).
        scale: upsampling ratio of the decoder path.
    """

    def __init__(self, in_channels_en: int, in_channels_de: int, out_channels: int,
                 embedding_dim: Optional[int] = EMBEDDING_DIM, scale: int = 2):
        super().__init__()
        self.scale = scale
        depthwise = embedding_dim is None
        width = out_channels if depthwise else embedding_dim
        self.compressor_en = nn.Conv2d(in_channels_en, width, kernel_size=1)
        self.compressor_de = nn.Conv2d(in_channels_de, width, kernel_size=1, bias=False)
        self.content_encoder = nn.Conv2d(width, out_channels, kernel_size=ENCODER_KERNEL,
                                         padding=ENCODER_KERNEL // 2, groups=out_channels if depthwise else 1)
        _xavier_uniform_(self)

    def forward(self, en: torch.Tensor, de: torch.Tensor) -> torch.Tensor:
        high = self.content_encoder(self.compressor_en(en))
        low = self.content_encoder(self.compressor_de(de))
        return high + _nearest_up(low, self.scale)


class _FADEBase(Upsampler):
    """Shared constructor and forward of :class:`FADE` and :class:`FADELite` (they differ in the generator)."""

    needs_guide = True
    channel_args = ('in_channels_en', 'in_channels_de')
    scale_arg = 'scale'
    scale_aliases = ('scale', 'scale_factor')
    #: Compressed width of the kernel generator; ``None`` = depthwise (FADE-Lite).
    _embedding_dim: Optional[int] = EMBEDDING_DIM

    def __init__(self, in_channels_en: int, in_channels_de: Optional[int] = None, scale: int = 2,
                 up_kernel_size: int = 5, gating: bool = True, up_group: int = 1,
                 scale_factor: Optional[int] = None):
        super().__init__()
        scale = resolve_scale_alias('scale', scale, scale_factor)
        self.in_channels_en = check_int('in_channels_en', in_channels_en)
        in_channels_de = in_channels_en if in_channels_de is None else in_channels_de
        self.in_channels_de = check_int('in_channels_de', in_channels_de)
        self.scale = check_int('scale', scale)
        if scale != 2:
            # FADE is defined for x2 only: the official gate and decoder-kernel path interpolate by a
            # hard-coded 2 while `scale` only reaches CARAFE, so other ratios crash there (spec quirk 3).
            raise ValueError(f'{type(self).__name__} only supports scale=2 (spec/fade.md: "Only x2 works"), '
                             f'got scale={scale}')
        self.up_kernel_size = check_odd_kernel('up_kernel_size', up_kernel_size)
        self.up_group = check_int('up_group', up_group)
        if self.in_channels_de % up_group:
            raise ValueError(f'up_group={up_group} must divide in_channels_de={self.in_channels_de}')
        if not isinstance(gating, bool):
            raise ValueError(f'gating must be True or False, got {gating!r}')
        self.gating = gating

        if gating:
            self.gate_generator = GateGenerator(self.in_channels_de, scale)
            if self.in_channels_en != self.in_channels_de:
                # g*en + (1-g)*CARAFE(de) needs equal widths (spec quirk 2).
                self.aligner = Aligner(self.in_channels_en, self.in_channels_de)
        self.ker_generator = SemiShift(self.in_channels_en, self.in_channels_de,
                                       up_group * up_kernel_size * up_kernel_size, self._embedding_dim, scale)

    @property
    def scale_factor(self) -> int:
        return self.scale

    def init_weights(self) -> None:
        """The official init (Xavier-uniform, zero bias); the constructor already applies it."""
        _xavier_uniform_(self)

    def kernel_normalizer(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over the k*k taps of each group's kernel at each high-res pixel (spec "Forward", step 3)."""
        n, channels, height, width = logits.shape
        taps = self.up_kernel_size * self.up_kernel_size
        # Half precision normalises in float32: 25 exponentials in fp16 lose the small weights.
        kernels = F.softmax(logits.view(n, self.up_group, taps, height, width), dim=2,
                            dtype=compute_dtype(logits.dtype))
        return kernels.view(n, channels, height, width)

    def generate_kernels(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Normalised reassembly kernels (N, up_group * k_up**2, s*H, s*W); channel ``g*k*k + a*k + b``."""
        return self.kernel_normalizer(self.ker_generator(guide, x))

    def forward(self, x: torch.Tensor, guide: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.check_input(x, self.in_channels_de)
        self.check_guide(x, guide, self.in_channels_en, self.scale)
        kernels = self.generate_kernels(x, guide)
        # Under autocast the convs return reduced precision; the op wants one dtype (the feature's).
        up = carafe(x, kernels.to(x.dtype), self.up_kernel_size, self.up_group, self.scale)
        if not self.gating:
            return up
        gate = self.gate_generator(x).to(x.dtype)
        en = self.aligner(guide).to(x.dtype) if hasattr(self, 'aligner') else guide
        return gate * en + (1 - gate) * up

    def extra_repr(self) -> str:
        return (f'in_channels_en={self.in_channels_en}, in_channels_de={self.in_channels_de}, '
                f'scale={self.scale}, up_kernel_size={self.up_kernel_size}, up_group={self.up_group}, '
                f'gating={self.gating}')


@register_upsampler('fade')
class FADE(_FADEBase):
    """FADE: semi-shift kernel generator (64-wide), CARAFE reassembly of the decoder, optional gate.

    ``out = g * en + (1 - g) * CARAFE(de, W, k_up, G, 2)`` with ``W = softmax(semi-shift logits)`` and
    ``g = sigmoid(nearest_up(conv1x1(de)))``; without the gate ``out = CARAFE(de, W, k_up, G, 2)``.

    Args:
        in_channels_en: channels of the high-res encoder feature (the guide).
        in_channels_de: channels of the low-res decoder feature ``x`` (and of the output); default
            ``in_channels_en``.
        scale: upsampling ratio; must be 2 (alias ``scale_factor``), see below.
        up_kernel_size: reassembly kernel size k_up (any odd size; the official pure-PyTorch CARAFE works only
            for 5).
        gating: mix the result with the encoder feature through the learned gate. Default ``True`` as in
            ``poppinace/fade`` (the paper's FADE); the ``tiny-smart`` integration copies default to ``False``,
            which is also the right choice inside additive necks (FPN, UPerNet; spec/necks.md).
        up_group: channel groups with their own kernels (must divide ``in_channels_de``); the official code
            fixes 1. ``up_group=G`` makes the generator predict ``G * k_up**2`` kernel channels.
        scale_factor: alias of ``scale`` (the name used by the tiny-smart copies).

    Deliberate differences from the official code (none changes the outputs of the official configurations):

    * only x2 exists (the official gate and decoder path hard-code it): any other ``scale`` raises ValueError
      instead of failing inside CARAFE (spec quirk 3);
    * gated with ``in_channels_en != in_channels_de``: a 1x1 ``aligner`` (the official, commented-out
      ``Aligner``) maps the encoder feature to the decoder's width, ``g * aligner(en) + (1 - g) * ...``, where
      the official module fails to broadcast (spec quirk 2, ``poppinace/fade`` issue #1);
    * any odd ``up_kernel_size`` and any ``up_group`` (spec quirk 6: the official pure-PyTorch CARAFE
      hard-codes padding 2 and one group);
    * plain ``nn.init.xavier_uniform_`` + zero bias instead of mmcv's ``xavier_init`` (same distribution,
      spec quirk 8); half precision normalises the kernels in float32.

    Parameters (C_en = C_de = C, k_up = 5): 47,514 at C=256 (47,257 without gate), 80,538 at C=512 (80,025);
    spec/numbers.md.
    """


@register_upsampler('fade_lite')
class FADELite(_FADEBase):
    """FADE-Lite: FADE with a depthwise kernel generator (official ``SemiShiftDepthWise``).

    The compressors map straight to the ``G * k_up**2`` kernel channels and the shared 3x3 content encoder is
    depthwise; everything else (gate, normalisation, reassembly, arguments, deliberate differences) is as in
    :class:`FADE`. Parameters (k_up = 5): 13,332 at C=256 (13,075 without gate), 26,388 at C=512 (25,875).
    """

    _embedding_dim = None
