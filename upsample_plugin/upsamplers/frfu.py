"""FRFU: Flexible (formerly "Relaxed") Receptive Field for feature Upsampling (2025).

Official code: ``yisi-xj/Relaxed-Receptive-Field-for-Adaptive-Upsampling`` ``frfu.py`` (HEAD c2f0d6a, class
``FRFU``; the integration copies call it ``RRFU``). Spec: ../shared/spec/frfu.md, numbers in
../shared/spec/numbers.md section 13.

Two stages, both at the output resolution:

1. offset reconstruction: ``delta = offset(x) * sigmoid(offset_mask(x))`` gives, per channel group, ``s**2``
   displacements (in high-res pixels, x/y component fastest: channel ``((g*s + i)*s + j)*2 + d``) of the
   bilinear sample points; ``x_r = grid_sample(x, centre + delta)`` (border padding, ``align_corners=False``).
   Zero displacement is exactly bilinear upsampling;
2. dynamic filtering: ``K = softmax(sample_kernel(x_r) * sigmoid(kernel_mask(x_r)))`` over the ``k*k`` taps, and
   ``out = CARAFE(x_r, K, k, group=1, scale=1)``, a spatially variant k x k filter (zero padding) shared by all
   channels. The official code unfolds ``x_r`` (``k*k`` copies of the high-res map); here it runs on the plugin's
   CARAFE op (compiled CPU/CUDA kernels, or the reference), which computes the same sum.

State-dict compatible with the official module (``offset``, ``offset_mask``, ``sample_kernel``, ``kernel_mask``;
the cached ``coord_base`` is a non-persistent buffer there and is not kept here: the grid is built per call,
spec quirk 3). Differences from the official code, none of which changes float32/float64 outputs:

* ``in_channels % groups`` and an odd ``sample_k`` are checked (ValueError; the official code fails in a reshape,
  spec quirk 4);
* the sampling grid is built in float32 at least (float64 for float64 inputs) and half-precision inputs are
  sampled in float32; the kernels are normalised in float32 under half precision;
* a NaN/Inf displacement gives NaN samples and the backward finishes (the official border padding clamps the
  point onto the map and returns a finite border pixel; CPU ``grid_sample`` backward crashes on a NaN point,
  pytorch/pytorch#24823): see :meth:`FRFU.sample`;
* ``init='xavier'`` reproduces the init the official detection necks leave (``FPN_CARAFE_Upsample.init_weights``
  Xavier-initialises every conv of the neck, FRFU's included, spec quirk 1); the default is ``frfu.py``'s.

Parameters: ``2 * (C + 1) * (2 * G * s**2 + k**2)``: 21,074 at C=256 (G 4, s 2, k 3), 10,578 at C=128.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import carafe
from ..ops._checks import check_int, check_odd_kernel, compute_dtype
from ..ops.sampling import grid_sample
from ..registry import register_upsampler
from .base import Upsampler

#: Initialisations: the official module's (``frfu.py``) and the one the official detection necks leave.
INITS = ('frfu', 'xavier')


@register_upsampler('frfu')
class FRFU(Upsampler):
    """FRFU upsampler: gated bilinear offset resampling, then a gated, softmax-normalised k x k dynamic filter.

    Args:
        in_channels: channels C of the input (and output).
        scale_factor: integer upsampling ratio s (any s >= 1).
        groups: channel groups G with their own displacements; must divide C.
        sample_k: size k of the dynamic filter (odd).
        init: ``'frfu'`` (default, ``frfu.py``: offsets N(0, 0.001^2), kernel logits N(0, 0.005^2), gates 0) or
            ``'xavier'`` (Xavier-uniform weights, zero biases: what the official detection necks train from).

    Unguided: ``forward(x, guide=None)`` ignores ``guide`` (spec quirk 5).
    """

    def __init__(self, in_channels: int, scale_factor: int = 2, groups: int = 4, sample_k: int = 3,
                 init: str = 'frfu'):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        self.scale_factor = check_int('scale_factor', scale_factor)
        self.groups = check_int('groups', groups)
        if in_channels % groups:
            raise ValueError(f'groups={groups} must divide in_channels={in_channels}')
        self.sample_k = check_odd_kernel('sample_k', sample_k)
        if init not in INITS:
            raise ValueError(f'init must be one of {INITS}, got {init!r}')
        self.init = init
        points = 2 * groups * scale_factor * scale_factor
        self.offset = nn.Conv2d(in_channels, points, kernel_size=1)
        self.offset_mask = nn.Conv2d(in_channels, points, kernel_size=1)
        self.sample_kernel = nn.Conv2d(in_channels, sample_k * sample_k, kernel_size=1)
        self.kernel_mask = nn.Conv2d(in_channels, sample_k * sample_k, kernel_size=1)
        self.init_weights()

    def init_weights(self) -> None:
        """``init='frfu'``: the official ``frfu.py`` init; ``'xavier'``: the official detection necks' (quirk 1)."""
        convs = (self.offset, self.offset_mask, self.sample_kernel, self.kernel_mask)
        for conv in convs:
            nn.init.zeros_(conv.bias)
        if self.init == 'xavier':
            for conv in convs:
                nn.init.xavier_uniform_(conv.weight, gain=1)
            return
        nn.init.normal_(self.offset.weight, std=0.001)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.normal_(self.sample_kernel.weight, std=0.005)
        nn.init.zeros_(self.kernel_mask.weight)

    def displacements(self, x: torch.Tensor) -> torch.Tensor:
        """Gated displacements (N, 2*G*s^2, H, W) in high-res pixels, channel ``((g*s + i)*s + j)*2 + d``."""
        return self.offset(x) * self.offset_mask(x).sigmoid()

    def sample(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Offset reconstruction: output pixel (s*y + i, s*x + j) of group g bilinearly samples ``x`` at its own
        centre plus its displacement (border padding, ``align_corners=False``).

        Sampling goes through :func:`upsample_plugin.ops.sampling.grid_sample`: a NaN/Inf displacement gives NaN
        samples and the backward finishes.
        """
        n, _, height, width = x.shape
        s, groups = self.scale_factor, self.groups
        out_h, out_w = s * height, s * width
        dtype = torch.promote_types(x.dtype, torch.float32)  # fp16 coordinates lose sub-pixel accuracy
        # (N*G, s, s, 2, H, W) -> (N*G, H, s, W, s, 2): entry [n*G + g, y, i, x, j, d].
        delta = delta.to(dtype).reshape(n * groups, s, s, 2, height, width).permute(0, 4, 1, 5, 2, 3)
        delta = delta.reshape(n * groups, out_h, out_w, 2)
        rows = torch.arange(out_h, device=x.device, dtype=dtype) + 0.5
        cols = torch.arange(out_w, device=x.device, dtype=dtype) + 0.5
        # x and y normalised one at a time by the size itself (a stacked size tensor would be frozen into an
        # exported ONNX graph); the official order of operations: 2 * ((centre + delta) / size) - 1.
        grid_x = 2.0 * ((cols + delta[..., 0]) / out_w) - 1
        grid_y = 2.0 * ((rows.unsqueeze(1) + delta[..., 1]) / out_h) - 1
        grid = torch.stack([grid_x, grid_y], dim=-1)
        features = x.to(dtype).reshape(n * groups, self.in_channels // groups, height, width)
        out = grid_sample(features, grid, mode='bilinear', padding_mode='border', align_corners=False)
        return out.view(n, self.in_channels, out_h, out_w).to(x.dtype)

    def kernels(self, x_r: torch.Tensor) -> torch.Tensor:
        """Dynamic-filter kernels (N, k*k, sH, sW), softmax over the taps (float32 under half precision)."""
        logits = self.sample_kernel(x_r) * self.kernel_mask(x_r).sigmoid()
        return F.softmax(logits, dim=1, dtype=compute_dtype(logits.dtype))

    def forward(self, x: torch.Tensor, guide: torch.Tensor = None) -> torch.Tensor:
        self.check_input(x, self.in_channels)
        x_r = self.sample(x, self.displacements(x))
        # Under autocast the convs return reduced precision; the op wants one dtype (the feature's).
        return carafe(x_r, self.kernels(x_r).to(x_r.dtype), self.sample_k, 1, 1)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, scale_factor={self.scale_factor}, groups={self.groups}, '
                f'sample_k={self.sample_k}, init={self.init!r}')
