"""DySample: Learning to Upsample by Learning to Sample (Liu et al., ICCV 2023, https://arxiv.org/abs/2308.15085).

Spec: ../shared/spec/dysample.md. State-dict compatible with the official ``tiny-smart/dysample`` module
(HEAD 81a1de5: ``offset``, ``scope``, ``init_pos``). Deliberate differences from the official code, none of
which changes float32/float64 outputs:

* the sampling grid is built in float32 (float64 for float64 inputs) and half-precision inputs are sampled in
  float32: the official code builds it in ``x.dtype``, so fp16 coordinates lose sub-pixel accuracy
  (spec quirk 9);
* ``torch.meshgrid`` gets ``indexing='ij'`` (spec quirk 3); pixel (un)shuffles are views and permutes, which
  ONNX exports and whose backward works on an empty batch;
* both argument names for the ratio are accepted: ``scale`` (official) and ``scale_factor`` (the
  mmdet/mmseg integration copies), spec quirk 2;
* ``scope_bias=True`` rebuilds the integration copies' biased ``scope`` conv, so their checkpoints load too
  (spec quirk 1; HEAD has no bias);
* a NaN/Inf sampling position gives a NaN sample and the backward finishes: the official
  ``grid_sample(padding_mode='border')`` clamps the point onto the map and returns a finite border pixel, and
  its CPU backward segfaults on a NaN point (pytorch/pytorch#24823). Sampling goes through
  :func:`upsample_plugin.ops.sampling.grid_sample` (NaN policy, docs/input_validation.md).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..ops._checks import check_int, resolve_scale_alias
from ..ops.sampling import grid_sample
from ..registry import register_upsampler
from ._shuffle import pixel_shuffle, pixel_unshuffle
from .base import Upsampler


@register_upsampler('dysample')
class DySample(Upsampler):
    """Point-sampling upsampler with learned sub-pixel offsets and ``grid_sample``.

    Args:
        in_channels: channels C of the input (and output).
        scale: integer upsampling ratio s (alias ``scale_factor``).
        style: ``'lp'`` (offsets from the low-res map, then pixel-shuffled) or ``'pl'`` (pixel-shuffle first,
            offsets from C/s^2 high-res channels).
        groups: channel groups, each with its own offsets; must divide C (and C/s^2 for ``'pl'``).
        dyscope: learn a per-point scope in (0, 0.5) (DySample+) instead of the static factor 0.25.
        scope_bias: give ``scope`` a bias, as the mmdet/mmseg integration copies do.

    With ``offset`` (and ``scope``) zeroed the module equals bilinear upsampling with
    ``align_corners=False`` exactly. Parameters at C=256, s=2: lp 8,224, lp+dyscope 16,416, pl 520,
    pl+dyscope 1,032, pl G8 1,040, pl G8+dyscope 2,064 (spec/numbers.md).
    """

    scale_arg = 'scale'
    scale_aliases = ('scale', 'scale_factor')

    def __init__(self, in_channels: int, scale: int = 2, style: str = 'lp', groups: int = 4,
                 dyscope: bool = False, scale_factor: Optional[int] = None, scope_bias: bool = False):
        super().__init__()
        scale = resolve_scale_alias('scale', scale, scale_factor)
        self.in_channels = check_int('in_channels', in_channels)
        self.scale = check_int('scale', scale)
        self.groups = check_int('groups', groups)
        if style not in ('lp', 'pl'):
            raise ValueError(f"style must be 'lp' or 'pl', got {style!r}")
        self.style = style
        if in_channels % groups:
            raise ValueError(f'groups={groups} must divide in_channels={in_channels}')
        if style == 'pl':
            if in_channels % (scale * scale):
                raise ValueError(f"style='pl' needs in_channels divisible by scale**2={scale * scale}, "
                                 f'got in_channels={in_channels}')
            conv_in, conv_out = in_channels // (scale * scale), 2 * groups
        else:
            conv_in, conv_out = in_channels, 2 * groups * scale * scale
        self.offset = nn.Conv2d(conv_in, conv_out, 1)
        if dyscope:
            self.scope = nn.Conv2d(conv_in, conv_out, 1, bias=scope_bias)
        self.dyscope = dyscope
        self.register_buffer('init_pos', self._init_pos())
        self.init_weights()

    @property
    def scale_factor(self) -> int:
        return self.scale

    def init_weights(self) -> None:
        """Offsets ~N(0, 0.001^2) and a zero scope: the module starts as (almost exactly) bilinear."""
        nn.init.normal_(self.offset.weight, mean=0, std=0.001)
        nn.init.zeros_(self.offset.bias)
        if self.dyscope:
            nn.init.zeros_(self.scope.weight)
            if self.scope.bias is not None:
                nn.init.zeros_(self.scope.bias)

    def _init_pos(self) -> torch.Tensor:
        """Sub-pixel base grid, (1, 2*G*s^2, 1, 1), channel ``xy*G*s^2 + g*s^2 + i*s + j``: x follows j, y i."""
        s = self.scale
        h = (torch.arange(s, dtype=torch.float32) - (s - 1) / 2) / s
        rows, cols = torch.meshgrid(h, h, indexing='ij')
        xy = torch.stack([cols, rows]).reshape(2, 1, s * s)
        return xy.repeat(1, self.groups, 1).reshape(1, -1, 1, 1)

    def _offsets(self, x: torch.Tensor) -> torch.Tensor:
        """Offsets in input pixels, (N, 2*G*s^2, H, W), base grid included."""
        if self.style == 'lp':
            if self.dyscope:
                return self.offset(x) * self.scope(x).sigmoid() * 0.5 + self.init_pos
            return self.offset(x) * 0.25 + self.init_pos
        x_high = pixel_shuffle(x, self.scale)
        if self.dyscope:
            return pixel_unshuffle(self.offset(x_high) * self.scope(x_high).sigmoid(), self.scale) * 0.5 \
                + self.init_pos
        return pixel_unshuffle(self.offset(x_high), self.scale) * 0.25 + self.init_pos

    def sample(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Bilinearly sample ``x`` at (pixel centre + offset); ``align_corners=False``, border padding.

        A NaN/Inf offset gives NaN samples at its points, and the backward finishes
        (:func:`upsample_plugin.ops.sampling.grid_sample`, pytorch/pytorch#24823).
        """
        n, _, height, width = offset.shape
        s, groups = self.scale, self.groups
        # Coordinates need float32 at least: fp16 has ~0.06-pixel steps at x=128.
        dtype = torch.promote_types(x.dtype, torch.float32)
        points = groups * s * s  # sampling points per low-res pixel
        offset = offset.to(dtype).view(n, 2, points, height, width)
        rows = torch.arange(height, device=x.device, dtype=dtype) + 0.5
        cols = torch.arange(width, device=x.device, dtype=dtype) + 0.5
        # x and y normalised one at a time by the size itself: the TorchScript ONNX exporter would freeze a
        # torch.tensor([width, height]) into a constant, fixing H and W of the exported graph.
        grid_x = 2 * (cols + offset[:, 0]) / width - 1
        grid_y = 2 * (rows.unsqueeze(1) + offset[:, 1]) / height - 1
        grid = torch.stack([grid_x, grid_y], dim=1)
        # Channel (xy, g, i, j) at low-res (h, w) is the (x, y) of group g's point at (s*h + i, s*w + j).
        grid = grid.view(n, 2, groups, s, s, height, width).permute(0, 2, 5, 3, 6, 4, 1)
        grid = grid.reshape(n * groups, s * height, s * width, 2)
        features = x.to(dtype).reshape(n * groups, self.in_channels // groups, height, width)
        out = grid_sample(features, grid, mode='bilinear', padding_mode='border', align_corners=False)
        return out.view(n, self.in_channels, s * height, s * width).to(x.dtype)

    def forward(self, x: torch.Tensor, guide: torch.Tensor = None) -> torch.Tensor:
        self.check_input(x, self.in_channels)
        return self.sample(x, self._offsets(x))

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, scale={self.scale}, style={self.style!r}, '
                f'groups={self.groups}, dyscope={self.dyscope}')
