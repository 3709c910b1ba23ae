"""FreqFusion: Frequency-aware Feature Fusion for Dense Image Prediction (Chen et al., TPAMI 2024,
https://arxiv.org/abs/2408.12879).

Official code: ``Linwei-Chen/FreqFusion`` ``FreqFusion.py`` (HEAD 3fb0c70; classes ``FreqFusion`` and
``LocalSimGuidedSampler``). Spec: ../shared/spec/freqfusion.md, numbers in ../shared/spec/numbers.md section 13.

A guided x2 fusion of a high-resolution map ``hr`` (C_hr, 2H, 2W) and a low-resolution map ``lr`` (C_lr, H, W):
softmax-normalised, Hamming-windowed kernels predicted at high resolution give an adaptive low-pass filter
(ALPF, k_l x k_l) that upsamples ``lr`` with CARAFE (s = 2) and an adaptive high-pass filter (AHPF) that
sharpens ``hr``: ``hr' = hr + (hr - CARAFE(hr, K_high, k_h, s=1))``; an optional offset generator
(``feature_resample``) resamples the upsampled map. The official ``forward(hr_feat, lr_feat)`` returns the tuple
``(mask_lr, hr_feat', lr_feat')`` and the FPN adds ``hr_feat' + lr_feat'``.

All five CARAFE calls (three at s = 2, two at s = 1 as a same-size spatially variant filter) run on the
plugin's ``carafe`` op (compiled CPU/CUDA kernels, or the pure-PyTorch reference), with mmcv's zero padding and
channel groups; the sampler goes through the plugin's NaN-safe ``grid_sample``.

Calling conventions:

* :meth:`FreqFusion.official_forward` ``(hr_feat, lr_feat)`` returns exactly the official tuple (the fixtures
  check it);
* :meth:`FreqFusion.forward` ``(x, guide)`` is the plugin's contract (``x = lr_feat``, ``guide = hr_feat``): it
  returns what FreqFusion adds to the lateral, ``(hr' - hr) + lr'`` (the AHPF residual plus the upsampled map),
  so any additive host (``lateral + up(x, guide)``) computes FreqFusion's fused map, equal to the official
  ``hr' + lr'`` up to floating-point reassociation (spec "Plugin call contract"). Returning only ``lr'`` would
  drop the AHPF, which is what happens, by necessity, when ``hr_channels != lr_channels`` (the output has
  ``x``'s width); in a host that uses the result as the upsampled map itself (the chains of the SegFormer heads)
  it is ``lr'`` plus the guide's high-pass residual: the published integrations are additive (FPN, the "Add"
  recipe; UPerHead's top-down path is additive too) or concatenate ``official_forward``'s outputs (SegNeXt);
* :meth:`FreqFusion.fuse` ``(x, guide)`` returns the official FPN sum ``hr' + lr'`` itself, operation for
  operation; ``UpsampleFPN`` calls it for upsamplers that replace the lateral (``replaces_lateral = True``), so
  the FreqFusion FPN reproduces ``FreqFusionCARAFEFPN`` exactly.

Fixed or changed relative to the official code (spec "Official-code quirks"):

* quirk 1: ``up_group > 1`` works (the official ``kernel_normalizer`` uses ``.view`` after a ``permute`` and
  crashes); each group's kernels reassemble its own channels. There is no official reference for G > 1 (the
  tests check that G groups with equal kernel weights reproduce G = 1);
* quirks 1-2: ``scale_factor`` is not the upsampling ratio (it multiplies the kernel encoders' width, and every
  value but 1 crashes the official module): any other value raises ValueError. The module always upsamples x2;
  its attribute ``scale_factor`` is that ratio (2), which the necks read;
* quirk 4: the official ``ImportError`` fallback ``carafe`` (reflect padding, groups ignored) is not
  reproduced: mmcv's zero-padded op, which the published checkpoints were trained with, is;
* quirk 5: ``direction_feat`` (``'sim_concat'``, the default of ``FreqFusion.py``; ``'sim'``, the SegNeXt copy)
  is a constructor argument;
* quirk 7: the ALPF kernels are computed once (the official code normalises them twice); the identity nearest
  resizes after the s = 2 CARAFE calls are dropped; no numeric change;
* quirk 9: ``use_low_pass=False``, ``sim_type`` other than ``'cos'`` and ``comp_feat_upsample=True`` with
  ``use_high_pass=False`` raise ValueError instead of being ignored or failing later; unknown keyword arguments
  raise TypeError (the official ``**kwargs`` swallows them);
* quirk 13: the sampler's ``GroupNorm(C_m // 8, C_m)`` needs ``C_m >= 8`` divisible by ``C_m // 8``: checked;
* the sampling grid is built in float32 at least; half precision normalises the kernels in float32; a NaN/Inf
  offset gives NaN samples and the backward finishes (pytorch/pytorch#24823).

Kept: quirk 3, ``init_weights`` Xavier-initialises the sampler's convs too (training starts with offsets of
about 0.66 low-res pixels), because the published models were trained so; ``sampler_init='dysample'`` gives the
sampler its own init instead (offsets N(0, 0.001^2), zero direct scale). Quirk 6 (the AHPF pre-pass enhances the
compressed hr map that the ALPF and the sampler see) and quirk 10 (float32-rounded, persistent Hamming buffers)
are kept.

Parameters at C_hr = C_lr = 256, C_m = 64: 104,690 with the sampler (G_r = 4, GroupNorm), 104,434 without the
GroupNorm, 156,610 with G_r = 8, 52,514 without the sampler (spec/numbers.md 13.1).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from ..ops import carafe
from ..ops._checks import check_int, check_odd_kernel, compute_dtype
from ..ops.sampling import grid_sample
from ..registry import register_upsampler
from ._shuffle import pixel_unshuffle
from .base import Upsampler

#: The fusion is always x2 (the official CARAFE calls and the sampler hard-code it, spec quirk 2).
SCALE = 2
DIRECTION_FEATS = ('sim_concat', 'sim')
SAMPLER_INITS = ('xavier', 'dysample')


def hamming2d(rows: int, cols: int) -> torch.Tensor:
    """The official Hamming window ``np.outer(np.hamming(rows), np.hamming(cols))`` rounded to float32 (the
    official ``torch.FloatTensor``), shape (1, 1, rows, cols)."""
    return torch.tensor(np.outer(np.hamming(rows), np.hamming(cols)), dtype=torch.float32)[None, None]


def _normal_(conv: nn.Conv2d, std: float) -> None:
    nn.init.normal_(conv.weight, mean=0, std=std)
    nn.init.zeros_(conv.bias)


def local_cosine_similarity(x: torch.Tensor, window: int = 3, dilation: int = 2) -> torch.Tensor:
    """Cosine similarity over channels between each pixel and its ``window x window`` neighbours at ``dilation``
    (the official ``compute_similarity``), centre dropped: (N, window**2 - 1, H, W), neighbours row-major, zero
    outside the map (an out-of-map neighbour is a zero vector: similarity 0).

    ``x . y / (max(|x|, eps) * max(|y|, eps))`` with ``eps = 1e-8`` (the official ``F.cosine_similarity`` call,
    to rounding): each pixel is normalised once and the neighbours are shifted slices of the normalised map, where
    the official code unfolds the map and recomputes both norms for every neighbour (half of the module's CPU time
    at the FPN setting). Shifted slices instead of ``F.unfold`` also let an empty batch through. Half precision
    is computed in float32: the eps is 0 in float16, and an out-of-map neighbour would give 0/0.
    """
    dtype = x.dtype
    x = x.to(compute_dtype(dtype))
    height, width = x.shape[-2:]
    unit = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-8)
    pad = (window // 2) * dilation
    padded = F.pad(unit, (pad, pad, pad, pad))
    centre = window * window // 2
    sims = []
    for tap in range(window * window):
        if tap == centre:
            continue
        dy, dx = (tap // window) * dilation, (tap % window) * dilation
        sims.append((unit * padded[:, :, dy:dy + height, dx:dx + width]).sum(1))
    return torch.stack(sims, dim=1).to(dtype)


class LocalSimGuidedSampler(nn.Module):
    """FreqFusion's offset generator (official ``LocalSimGuidedSampler``, DySample-lp style, x2).

    Offsets at low resolution, (N, 8*G, H, W), channel ``d*4G + g*4 + i*2 + j`` (d = 0: x, 1: y):
    ``O = (offset(F_l) + unshuffle(hr_offset(F_h))) * sigmoid(direct_scale(F_l') + unshuffle(hr_direct_scale(F_h')))
    + init_pos``, where with ``direction_feat='sim_concat'`` every conv sees ``[n, S(n)]`` (the GroupNorm-ed
    compressed map and its 8 local cosine similarities) and with ``'sim'`` the offset convs see ``S(n)`` and the
    direct-scale convs ``n``. The upsampled map is then bilinearly resampled at (low-res centre + O), border
    padding: with the learned part 0 this is the identity.

    Only what FreqFusion builds is accepted: ``scale=2``, ``style='lp'``, ``use_direct_scale=True``,
    ``sim_type='cos'`` (the official class asserts the first two).
    """

    def __init__(self, in_channels: int, scale: int = 2, style: str = 'lp', groups: int = 4,
                 use_direct_scale: bool = True, kernel_size: int = 1, local_window: int = 3, sim_type: str = 'cos',
                 norm: bool = True, direction_feat: str = 'sim_concat'):
        super().__init__()
        if scale != SCALE or style != 'lp' or use_direct_scale is not True:
            raise ValueError(f"LocalSimGuidedSampler supports scale=2, style='lp', use_direct_scale=True only (as "
                             f"FreqFusion builds it), got scale={scale!r}, style={style!r}, "
                             f"use_direct_scale={use_direct_scale!r}")
        if sim_type != 'cos':
            raise ValueError(f"sim_type must be 'cos' (the official code computes cosine similarity), got "
                             f"{sim_type!r}")
        if direction_feat not in DIRECTION_FEATS:
            raise ValueError(f'direction_feat must be one of {DIRECTION_FEATS}, got {direction_feat!r}')
        self.in_channels = check_int('compressed_channels', in_channels)
        self.groups = check_int('feature_resample_group', groups)
        if in_channels % groups:
            raise ValueError(f'feature_resample_group={groups} must divide compressed_channels={in_channels}')
        self.kernel_size = check_int('encoder_kernel', kernel_size)
        self.local_window = check_odd_kernel('local_window', local_window)
        self.direction_feat = direction_feat
        self.scale = scale
        sims = local_window * local_window - 1
        offset_in = sims if direction_feat == 'sim' else in_channels + sims
        scale_in = in_channels if direction_feat == 'sim' else in_channels + sims

        def conv(in_ch, out_ch):
            return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)

        points = 2 * groups * scale * scale
        self.offset = conv(offset_in, points)
        self.direct_scale = conv(scale_in, points)
        self.hr_offset = conv(offset_in, 2 * groups)
        self.hr_direct_scale = conv(scale_in, 2 * groups)
        self.norm = norm
        if norm:
            if in_channels < 8 or in_channels % (in_channels // 8):
                raise ValueError(f'feature_resample_norm=True builds GroupNorm(C_m // 8, C_m): compressed_channels '
                                 f'must be >= 8 and divisible by compressed_channels // 8, got {in_channels}')
            self.norm_hr = nn.GroupNorm(in_channels // 8, in_channels)
            self.norm_lr = nn.GroupNorm(in_channels // 8, in_channels)
        else:
            self.norm_hr = nn.Identity()
            self.norm_lr = nn.Identity()
        self.register_buffer('init_pos', self._init_pos())
        self.init_weights()

    def _init_pos(self) -> torch.Tensor:
        """(1, 8*G, 1, 1): +-0.25 sub-pixel base grid, x following the column j, y the row i (spec "Init")."""
        h = (torch.arange(self.scale, dtype=torch.float32) - (self.scale - 1) / 2) / self.scale
        rows, cols = torch.meshgrid(h, h, indexing='ij')
        xy = torch.stack([cols, rows]).reshape(2, 1, self.scale * self.scale)
        return xy.repeat(1, self.groups, 1).reshape(1, -1, 1, 1)

    def init_weights(self) -> None:
        """The sampler's own init: offsets N(0, 0.001^2), direct scale 0 (FreqFusion's init overrides it)."""
        for conv in (self.offset, self.hr_offset):
            _normal_(conv, 0.001)
        for conv in (self.direct_scale, self.hr_direct_scale):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def offsets(self, hr_x: torch.Tensor, lr_x: torch.Tensor) -> torch.Tensor:
        hr_x, lr_x = self.norm_hr(hr_x), self.norm_lr(lr_x)
        hr_sim = local_cosine_similarity(hr_x, self.local_window)
        lr_sim = local_cosine_similarity(lr_x, self.local_window)
        if self.direction_feat == 'sim_concat':
            hr_sim = hr_x = torch.cat([hr_x, hr_sim], dim=1)
            lr_sim = lr_x = torch.cat([lr_x, lr_sim], dim=1)
        offset = self.offset(lr_sim) + pixel_unshuffle(self.hr_offset(hr_sim), self.scale)
        gate = self.direct_scale(lr_x) + pixel_unshuffle(self.hr_direct_scale(hr_x), self.scale)
        return offset * gate.sigmoid() + self.init_pos

    def sample(self, feature: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Resample the upsampled ``feature`` (N, C, 2H, 2W): output pixel (2y + i, 2x + j) of group g reads
        the normalised point ``2 * (low-res centre + O) / (W, H) - 1``, i.e. high-res ``2 * (x + 0.5 + O_x) - 0.5``.

        Through :func:`upsample_plugin.ops.sampling.grid_sample`: NaN/Inf points give NaN, the backward finishes.
        """
        n, _, height, width = offset.shape
        s, groups, channels = self.scale, self.groups, feature.shape[1]
        dtype = torch.promote_types(feature.dtype, torch.float32)
        offset = offset.to(dtype).view(n, 2, groups * s * s, height, width)
        rows = torch.arange(height, device=feature.device, dtype=dtype) + 0.5
        cols = torch.arange(width, device=feature.device, dtype=dtype) + 0.5
        grid_x = 2 * (cols + offset[:, 0]) / width - 1
        grid_y = 2 * (rows.unsqueeze(1) + offset[:, 1]) / height - 1
        grid = torch.stack([grid_x, grid_y], dim=1)
        # (N, 2, G, i, j, H, W) -> (N, G, H, i, W, j, 2): the official pixel_shuffle of the coordinates.
        grid = grid.view(n, 2, groups, s, s, height, width).permute(0, 2, 5, 3, 6, 4, 1)
        grid = grid.reshape(n * groups, s * height, s * width, 2)
        features = feature.to(dtype).reshape(n * groups, channels // groups, s * height, s * width)
        out = grid_sample(features, grid, mode='bilinear', padding_mode='border', align_corners=False)
        return out.view(n, channels, s * height, s * width).to(feature.dtype)

    def forward(self, hr_x: torch.Tensor, lr_x: torch.Tensor, feat2sample: torch.Tensor) -> torch.Tensor:
        return self.sample(feat2sample, self.offsets(hr_x, lr_x))


@register_upsampler('freqfusion')
class FreqFusion(Upsampler):
    """FreqFusion: adaptive low-pass upsampling of ``lr``, adaptive high-pass sharpening of ``hr``, optional
    similarity-guided resampling (official argument names and state-dict keys).

    Args:
        hr_channels: channels of the high-resolution map (the guide).
        lr_channels: channels of the low-resolution map ``x`` (and of the upsampled output).
        scale_factor: must be 1 (the official width multiplier of the kernel encoders, not the ratio; see the
            module docstring). The upsampling ratio is always 2.
        lowpass_kernel / highpass_kernel: odd sizes k_l of the ALPF and k_h of the AHPF kernels.
        up_group: channel groups G sharing one kernel (must divide C_hr, C_lr and ``compressed_channels``).
        encoder_kernel, encoder_dilation: the 3x3 kernel encoders (and the sampler's convs: ``encoder_kernel``).
        compressed_channels: width C_m of the 1x1 compressors (FPN: ``(C_hr + C_lr) // compress_ratio``).
        align_corners, upsample_mode: the interpolation of ``lr`` when ``semi_conv=False``.
        feature_resample: build the offset generator ``dysampler``.
        feature_resample_group: its groups G_r (must divide C_m and C_lr).
        comp_feat_upsample: cascade the kernels through CARAFE (default) instead of a nearest semi-shift.
        use_high_pass: build the AHPF (``content_encoder2``); ``hr_residual``: return ``2 hr - LP(hr)`` (default)
            instead of the high-pass ``hr - LP(hr)``.
        use_low_pass: must be True (ignored by the official code).
        semi_conv: predict the kernels from the two maps separately (default) or from their nearest-upsampled sum.
        hamming_window: window the kernels with the (float32-rounded) Hamming window.
        feature_resample_norm: GroupNorm the sampler's inputs.
        direction_feat: the sampler's conv inputs, ``'sim_concat'`` (``FreqFusion.py``) or ``'sim'`` (SegNeXt).
        sampler_init: ``'xavier'`` (official, quirk 3) or ``'dysample'`` (the sampler's own small init).
    """

    needs_guide = True
    #: The neck replaces the finer lateral by :meth:`fuse` (the official FPN sum) instead of adding forward().
    replaces_lateral = True
    channel_args = ('hr_channels', 'lr_channels')
    scale_arg = None  # the official `scale_factor` is not the ratio; the builder must not fill it
    scale_aliases = ()

    def __init__(self, hr_channels: int, lr_channels: int, scale_factor: int = 1, lowpass_kernel: int = 5,
                 highpass_kernel: int = 3, up_group: int = 1, encoder_kernel: int = 3, encoder_dilation: int = 1,
                 compressed_channels: int = 64, align_corners: bool = False, upsample_mode: str = 'nearest',
                 feature_resample: bool = False, feature_resample_group: int = 4, comp_feat_upsample: bool = True,
                 use_high_pass: bool = True, use_low_pass: bool = True, hr_residual: bool = True,
                 semi_conv: bool = True, hamming_window: bool = True, feature_resample_norm: bool = True,
                 direction_feat: str = 'sim_concat', sampler_init: str = 'xavier'):
        super().__init__()
        self.hr_channels = check_int('hr_channels', hr_channels)
        self.lr_channels = check_int('lr_channels', lr_channels)
        if scale_factor != 1:
            raise ValueError(f'scale_factor must be 1: in FreqFusion it multiplies the kernel encoders\' width and '
                             f'the official module crashes for any other value (spec/freqfusion.md quirks 1-2); the '
                             f'upsampling ratio is always 2. Got scale_factor={scale_factor!r}')
        self.lowpass_kernel = check_odd_kernel('lowpass_kernel', lowpass_kernel)
        self.highpass_kernel = check_odd_kernel('highpass_kernel', highpass_kernel)
        self.up_group = check_int('up_group', up_group)
        self.encoder_kernel = check_int('encoder_kernel', encoder_kernel)
        self.encoder_dilation = check_int('encoder_dilation', encoder_dilation)
        self.compressed_channels = check_int('compressed_channels', compressed_channels)
        for name, value in (('hr_channels', hr_channels), ('lr_channels', lr_channels),
                            ('compressed_channels', compressed_channels)):
            if value % up_group:
                raise ValueError(f'up_group={up_group} must divide {name}={value}')
        flags = dict(align_corners=align_corners, feature_resample=feature_resample,
                     comp_feat_upsample=comp_feat_upsample, use_high_pass=use_high_pass, hr_residual=hr_residual,
                     semi_conv=semi_conv, hamming_window=hamming_window,
                     feature_resample_norm=feature_resample_norm)
        for name, value in flags.items():
            if not isinstance(value, bool):
                raise ValueError(f'{name} must be True or False, got {value!r}')
        if use_low_pass is not True:
            raise ValueError(f'use_low_pass must be True: the official module ignores it (the ALPF always runs, '
                             f'spec quirk 9), got {use_low_pass!r}')
        if comp_feat_upsample and semi_conv and not use_high_pass:
            raise ValueError('comp_feat_upsample=True needs use_high_pass=True (the cascade upsamples the AHPF '
                             'logits; the official module raises NotImplementedError)')
        if upsample_mode not in ('nearest', 'bilinear', 'bicubic'):
            raise ValueError(f"upsample_mode must be 'nearest', 'bilinear' or 'bicubic', got {upsample_mode!r}")
        if sampler_init not in SAMPLER_INITS:
            raise ValueError(f'sampler_init must be one of {SAMPLER_INITS}, got {sampler_init!r}')
        self.align_corners = align_corners
        self.upsample_mode = upsample_mode
        self.feature_resample = feature_resample
        self.comp_feat_upsample = comp_feat_upsample
        self.use_high_pass = use_high_pass
        self.use_low_pass = use_low_pass
        self.hr_residual = hr_residual
        self.semi_conv = semi_conv
        self.hamming_window = hamming_window
        self.sampler_init = sampler_init

        def encoder(taps):
            return nn.Conv2d(compressed_channels, taps * up_group, encoder_kernel,
                             padding=int((encoder_kernel - 1) * encoder_dilation / 2), dilation=encoder_dilation)

        self.hr_channel_compressor = nn.Conv2d(hr_channels, compressed_channels, 1)
        self.lr_channel_compressor = nn.Conv2d(lr_channels, compressed_channels, 1)
        self.content_encoder = encoder(lowpass_kernel * lowpass_kernel)  # ALPF generator
        if feature_resample:
            check_int('feature_resample_group', feature_resample_group)
            if lr_channels % feature_resample_group:
                raise ValueError(f'feature_resample_group={feature_resample_group} must divide '
                                 f'lr_channels={lr_channels}')
            self.dysampler = LocalSimGuidedSampler(compressed_channels, scale=SCALE, style='lp',
                                                   groups=feature_resample_group, use_direct_scale=True,
                                                   kernel_size=encoder_kernel, norm=feature_resample_norm,
                                                   direction_feat=direction_feat)
        elif direction_feat not in DIRECTION_FEATS:
            raise ValueError(f'direction_feat must be one of {DIRECTION_FEATS}, got {direction_feat!r}')
        if use_high_pass:
            self.content_encoder2 = encoder(highpass_kernel * highpass_kernel)  # AHPF generator
        if hamming_window:
            self.register_buffer('hamming_lowpass', hamming2d(lowpass_kernel, lowpass_kernel))
            self.register_buffer('hamming_highpass', hamming2d(highpass_kernel, highpass_kernel))
        else:
            self.register_buffer('hamming_lowpass', torch.ones(1))
            self.register_buffer('hamming_highpass', torch.ones(1))
        self.init_weights()

    @property
    def scale_factor(self) -> int:
        """The upsampling ratio, always 2 (not the official constructor argument of the same name)."""
        return SCALE

    def init_weights(self) -> None:
        """Official init: Xavier-uniform (gain 1, zero bias) on every conv, the sampler's included (quirk 3,
        unless ``sampler_init='dysample'``), then the kernel encoders N(0, 0.001^2): kernels start as the
        normalised Hamming window."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight, gain=1)
                nn.init.zeros_(module.bias)
        _normal_(self.content_encoder, 0.001)
        if self.use_high_pass:
            _normal_(self.content_encoder2, 0.001)
        if self.feature_resample and self.sampler_init == 'dysample':
            self.dysampler.init_weights()

    # ------------------------------------------------------------------------------------------------ math

    def kernel_normalizer(self, logits: torch.Tensor, kernel: int, hamming: torch.Tensor) -> torch.Tensor:
        """KN_k: softmax over each group's k*k taps, times the Hamming window, renormalised to sum 1
        (spec "Building blocks"); (N, G*k*k, h, w), channel ``g*k*k + a*k + b``. Float32 under half precision."""
        n, channels, height, width = logits.shape
        dtype = compute_dtype(logits.dtype)
        kernels = F.softmax(logits.view(n, self.up_group, kernel * kernel, height, width), dim=2, dtype=dtype)
        kernels = kernels * hamming.to(dtype).reshape(1, 1, -1, 1, 1)
        kernels = kernels / kernels.sum(dim=2, keepdim=True)
        return kernels.view(n, channels, height, width)

    def _lowpass(self, logits: torch.Tensor) -> torch.Tensor:
        return self.kernel_normalizer(logits, self.lowpass_kernel, self.hamming_lowpass)

    def _highpass(self, logits: torch.Tensor) -> torch.Tensor:
        return self.kernel_normalizer(logits, self.highpass_kernel, self.hamming_highpass)

    def _carafe(self, features: torch.Tensor, kernels: torch.Tensor, kernel: int, scale: int) -> torch.Tensor:
        # Under autocast the convs return reduced precision; the op wants one dtype (the feature's).
        return carafe(features, kernels.to(features.dtype), kernel, self.up_group, scale)

    def _nearest_up(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode='nearest')

    def _parts(self, hr: torch.Tensor, lr: torch.Tensor, sharpen_hr: bool = True
               ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """``(K_low, LP(hr) or None, lr')``: the ALPF kernels, the AHPF low-pass of ``hr`` (None without the
        AHPF or with ``sharpen_hr=False``) and the upsampled (and resampled) ``lr`` (spec "Forward", steps 1-11)."""
        e_h = self.hr_channel_compressor(hr)
        e_l = self.lr_channel_compressor(lr)
        kl, kh = self.lowpass_kernel, self.highpass_kernel
        logits_high = None
        if self.semi_conv and self.comp_feat_upsample:
            logits_high = self.content_encoder2(e_h)
            # AHPF pre-pass on the compressed hr map (quirk 6): e_h' = 2 e_h - LP(e_h).
            e_h = e_h + e_h - self._carafe(e_h, self._highpass(logits_high), kh, 1)
            logits_hr = self.content_encoder(e_h)
            logits_low = logits_hr + self._carafe(self.content_encoder(e_l), self._lowpass(logits_hr), kl, SCALE)
            logits_high = logits_high + self._carafe(self.content_encoder2(e_l), self._lowpass(logits_low), kl,
                                                     SCALE)
        elif self.semi_conv:
            logits_low = self.content_encoder(e_h) + self._nearest_up(self.content_encoder(e_l), e_h)
            if self.use_high_pass:
                logits_high = self.content_encoder2(e_h) + self._nearest_up(self.content_encoder2(e_l), e_h)
        else:
            joint = self._nearest_up(e_l, e_h) + e_h
            logits_low = self.content_encoder(joint)
            if self.use_high_pass:
                logits_high = self.content_encoder2(joint)
        kernels_low = self._lowpass(logits_low)
        if self.semi_conv:
            lr_up = self._carafe(lr, kernels_low, kl, SCALE)
        else:
            align = None if self.upsample_mode == 'nearest' else self.align_corners
            lr_up = F.interpolate(lr, size=hr.shape[-2:], mode=self.upsample_mode, align_corners=align)
            lr_up = self._carafe(lr_up, kernels_low, kl, 1)
        lowpass_hr = None
        if self.use_high_pass and sharpen_hr:
            lowpass_hr = self._carafe(hr, self._highpass(logits_high), kh, 1)
        if self.feature_resample:
            lr_up = self.dysampler(hr_x=e_h, lr_x=e_l, feat2sample=lr_up)
        return kernels_low, lowpass_hr, lr_up

    def _enhanced_hr(self, hr: torch.Tensor, lowpass_hr: Optional[torch.Tensor]) -> torch.Tensor:
        """The official returned ``hr_feat``: ``(hr - LP) + hr`` with ``hr_residual``, else ``hr - LP``."""
        if lowpass_hr is None:
            return hr
        high = hr - lowpass_hr
        return high + hr if self.hr_residual else high

    # ------------------------------------------------------------------------------------- entry points

    def _check(self, x: torch.Tensor, guide: Optional[torch.Tensor]) -> None:
        self.check_input(x, self.lr_channels)
        self.check_guide(x, guide, self.hr_channels, SCALE)

    def official_forward(self, hr_feat: torch.Tensor, lr_feat: torch.Tensor, use_checkpoint: bool = False
                         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The official ``forward(hr_feat, lr_feat)``: ``(mask_lr, hr_feat', lr_feat')``. ``hr_feat`` is
        checked as the guide and ``lr_feat`` as ``x`` (exactly 2x). ``use_checkpoint`` recomputes the forward in
        the backward (``torch.utils.checkpoint``), as the official option."""
        self._check(lr_feat, hr_feat)
        if use_checkpoint:
            return torch.utils.checkpoint.checkpoint(self._official, hr_feat, lr_feat, use_reentrant=False)
        return self._official(hr_feat, lr_feat)

    def _official(self, hr: torch.Tensor, lr: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kernels_low, lowpass_hr, lr_up = self._parts(hr, lr)
        return kernels_low, self._enhanced_hr(hr, lowpass_hr), lr_up

    def fuse(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """The official FPN step ``hr_feat' + lr_feat'`` (``FreqFusionCARAFEFPN``): the map that replaces the
        finer lateral. ``x`` is the low-res map, ``guide`` the finer lateral (exactly 2x); needs
        ``hr_channels == lr_channels``."""
        self._check(x, guide)
        if self.hr_channels != self.lr_channels:
            raise ValueError(f'fuse adds hr_feat\' and lr_feat\' (the official FPN sum): it needs hr_channels == '
                             f'lr_channels, got {self.hr_channels} and {self.lr_channels}; use official_forward')
        _, lowpass_hr, lr_up = self._parts(guide, x)
        return self._enhanced_hr(guide, lowpass_hr) + lr_up

    def forward(self, x: torch.Tensor, guide: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The plugin contract: what FreqFusion adds to the lateral ``guide``, ``(hr' - hr) + lr'``, so that
        ``guide + forward(x, guide)`` is the fused map (:meth:`fuse` up to reassociation). With
        ``hr_channels != lr_channels`` the AHPF part cannot join the output (x's width): ``lr'`` alone (the
        official hosts of that case, SegNeXt, concatenate ``hr'`` and ``lr'`` from :meth:`official_forward`)."""
        self._check(x, guide)
        _, lowpass_hr, lr_up = self._parts(guide, x, sharpen_hr=self.hr_channels == self.lr_channels)
        if lowpass_hr is None:
            return lr_up
        high = guide - lowpass_hr
        return (high if self.hr_residual else high - guide) + lr_up

    def extra_repr(self) -> str:
        return (f'hr_channels={self.hr_channels}, lr_channels={self.lr_channels}, '
                f'lowpass_kernel={self.lowpass_kernel}, highpass_kernel={self.highpass_kernel}, '
                f'up_group={self.up_group}, compressed_channels={self.compressed_channels}, '
                f'feature_resample={self.feature_resample}, comp_feat_upsample={self.comp_feat_upsample}')
