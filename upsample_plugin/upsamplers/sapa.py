"""SAPA-B and SAPA-D: Similarity-Aware Point Affiliation (Lu et al., "SAPA: Similarity-Aware Point Affiliation
for Feature Upsampling", NeurIPS 2022, https://arxiv.org/abs/2209.12866, and its extension "On Point
Affiliation in Feature Upsampling").

Spec: ../shared/spec/sapa.md. This is the extension's SAPA-B (``tiny-smart/sapa`` ``sapa_base.py``, HEAD a5acd52;
also the form in ``tiny-smart/detection-with-upsamplers`` / ``segmentation-with-upsamplers``): GroupNorm + 1x1
conv projections, embedding width 32. Same constructor argument names, parameter names and init, so the
official checkpoints load with ``strict=True``. The NeurIPS form (LayerNorm + Linear, width 64) is not
implemented (spec quirk 8: the detection/segmentation upsampler repositories use the extension form).
:class:`SAPADeform` is the extension's SAPA-D (``sapa_deform.py``).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import carafe
from ..ops._checks import check_int, check_odd_kernel, compute_dtype, resolve_scale_alias
from ..ops.sapa import sapa_deform_aggregation, sapa_deform_similarity, sapa_similarity
from ..registry import register_upsampler
from ._shuffle import pixel_shuffle
from .base import Upsampler

#: GroupNorm groups of the official module (``nn.GroupNorm(32, dim)``).
_NORM_GROUPS = 32


def _group_norm(layer: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``, except when every group holds a single value (N = 1, one channel per group, 1x1 map).

    ``nn.GroupNorm`` refuses that case in Python ("Expected more than 1 value per channel"), although the
    formula is defined: each value minus its own mean is 0, so the output is the bias. The ATen op computes
    exactly that, so a 1x1 low-res map works at any width. Other cases go through the module (hooks see it).
    """
    n, channels = x.shape[:2]
    # One comparison per size, batch and channels first: under torch.export/ONNX export with dynamic H, W the
    # product ``n * c/G * H * W == 1`` made the exporter pin H and W to the example's sizes.
    if n * (channels // layer.num_groups) == 1 and x.shape[2] == 1 and x.shape[3] == 1:
        return torch.group_norm(x, layer.num_groups, layer.weight, layer.bias, layer.eps,
                                torch.backends.cudnn.enabled)
    return layer(x)


@register_upsampler('sapa')
class SAPA(Upsampler):
    """SAPA-B: each high-res pixel attends over the k x k low-res neighbourhood of its parent pixel.

    ``q = conv_q(GN(guide))`` (high res), ``k = conv_k(GN(x))`` (low res); the similarities
    ``sim[t] = <q(p), k(parent(p) + offset_t)>`` are softmax-normalised over the k*k taps and reassemble the
    **raw** ``x`` (values are not projected) with the CARAFE op, group 1 (spec/sapa.md, "Forward / SAPA-B").

    Calling convention: ``forward(x, guide)`` with ``x`` the low-res (N, dim_x, H, W) feature and ``guide`` the
    high-res (N, dim_y, s*H, s*W) feature ``y``; the official module is called ``forward(y, x)``.

    Args:
        dim_y: channels of the guide ``y``.
        dim_x: channels of ``x`` (and of the output); defaults to ``dim_y``.
        up_factor: integer upsampling ratio s (alias ``scale_factor``, the name used by the
            detection/segmentation integration copies).
        up_kernel_size: odd neighbourhood size k.
        embedding_dim: query/key width E.
        qkv_bias: give the q/k convs a bias.
        norm: GroupNorm(32, .) on the guide and on x before the projections (not on the values).

    Relation to the official code (spec/sapa.md, "Official-code quirks"):

    * kept, to reproduce the official numbers: out-of-range neighbours get similarity 0, not -inf, so they take
      softmax mass and contribute zero values (border attenuation, quirk 1); no ``1/sqrt(E)`` temperature
      (quirk 2);
    * fixed: the official ``qk``/``av`` ops are CUDA-only, need a PyTorch < 1.11 header and have an atomic-add
      (non-deterministic) backward without bf16 (quirks 3, 4). Here ``qk`` is
      :func:`upsample_plugin.ops.sapa.sapa_similarity` and ``av`` is :func:`upsample_plugin.ops.carafe`
      (mmcv's CARAFE kernel on CUDA when available, else the pure-PyTorch reference): any device,
      deterministic reference, float16/bfloat16 accumulate in float32, softmax in float32 for reduced precision;
    * checked instead of failing late: ``norm=True`` needs ``dim_y`` and ``dim_x`` divisible by 32 (quirk 7),
      ``norm`` must be a bool (the NeurIPS module takes a norm *class* there, which this one would silently
      treat as True), bad inputs raise ``ValueError`` instead of the ops' asserts;
    * extended: a 1x1 low-res map at batch 1 with ``dim_x = 32`` (one value per GroupNorm group), which
      ``nn.GroupNorm`` refuses, is normalised by the GroupNorm formula (to the bias), see ``_group_norm``;
    * hosts whose init re-draws every conv (mmdet ``FPN``/``FPN_UPSAMPLE`` Xavier init, quirk 9, spec/necks.md
      "Init pitfalls") should call :meth:`init_weights` afterwards to restore the N(0, 0.02^2) projections.

    Parameters at dim_y = dim_x = 256, defaults: 17,472; at 512: 34,880 (spec/numbers.md).
    """

    needs_guide = True
    channel_args = ('dim_y', 'dim_x')
    scale_arg = 'up_factor'
    scale_aliases = ('up_factor', 'scale_factor')

    def __init__(self, dim_y: int, dim_x: Optional[int] = None, up_factor: int = 2, up_kernel_size: int = 5,
                 embedding_dim: int = 32, qkv_bias: bool = True, norm: bool = True,
                 scale_factor: Optional[int] = None):
        super().__init__()
        up_factor = resolve_scale_alias('up_factor', up_factor, scale_factor)
        dim_x = dim_y if dim_x is None else dim_x
        self.dim_y = check_int('dim_y', dim_y)
        self.dim_x = check_int('dim_x', dim_x)
        self.up_factor = check_int('up_factor', up_factor)
        self.up_kernel_size = check_odd_kernel('up_kernel_size', up_kernel_size)
        self.embedding_dim = check_int('embedding_dim', embedding_dim)
        if not isinstance(qkv_bias, bool):
            raise ValueError(f'qkv_bias must be a bool, got {qkv_bias!r}')
        if not isinstance(norm, bool):
            raise ValueError(f'norm must be a bool (GroupNorm(32, .) on the guide and on x, or none), got {norm!r}')
        self.norm = norm
        if norm:
            for name, dim in (('dim_y', dim_y), ('dim_x', dim_x)):
                if dim % _NORM_GROUPS:
                    raise ValueError(f'norm=True uses GroupNorm({_NORM_GROUPS}, {name}): {name} must be divisible '
                                     f'by {_NORM_GROUPS}, got {name}={dim} (or pass norm=False)')
            self.norm_y = nn.GroupNorm(_NORM_GROUPS, dim_y)
            self.norm_x = nn.GroupNorm(_NORM_GROUPS, dim_x)
        self.q = nn.Conv2d(dim_y, embedding_dim, kernel_size=1, bias=qkv_bias)
        self.k = nn.Conv2d(dim_x, embedding_dim, kernel_size=1, bias=qkv_bias)
        self.init_weights()

    @property
    def scale_factor(self) -> int:
        return self.up_factor

    def init_weights(self) -> None:
        """The official init: q/k weights N(0, 0.02^2), biases 0; GroupNorms at PyTorch's default (1, 0)."""
        for conv in (self.q, self.k):
            nn.init.normal_(conv.weight, std=0.02)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        if self.norm:
            for layer in (self.norm_y, self.norm_x):
                nn.init.ones_(layer.weight)
                nn.init.zeros_(layer.bias)

    def attention_weights(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Softmax-normalised similarities (N, k*k, s*H, s*W); channel ``a*k + b`` weighs tap (a, b)."""
        if self.norm:
            x = _group_norm(self.norm_x, x)
            guide = _group_norm(self.norm_y, guide)
        sim = sapa_similarity(self.q(guide), self.k(x), self.up_kernel_size, self.up_factor)
        # Reduced precision: normalise in float32 (the ops accumulate in float32 too).
        return F.softmax(sim, dim=1, dtype=compute_dtype(sim.dtype))

    def reassemble(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Op ``av``: the CARAFE reassembly with one group, on the raw (not normalised, not projected) x."""
        # Under autocast the projections return reduced precision; the op wants one dtype (the feature's).
        return carafe(x, attn.to(x.dtype), self.up_kernel_size, 1, self.up_factor)

    def forward(self, x: torch.Tensor, guide: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.check_input(x, self.dim_x)
        self.check_guide(x, guide, self.dim_y, self.up_factor)
        return self.reassemble(x, self.attention_weights(x, guide))

    def extra_repr(self) -> str:
        return (f'dim_y={self.dim_y}, dim_x={self.dim_x}, up_factor={self.up_factor}, '
                f'up_kernel_size={self.up_kernel_size}, embedding_dim={self.embedding_dim}, norm={self.norm}')


@register_upsampler('sapadeform')
class SAPADeform(Upsampler):
    """SAPA-D: SAPA with P deformable points per channel group instead of the fixed k x k window.

    Extension of SAPA ("On Point Affiliation in Feature Upsampling"; ``tiny-smart/sapa`` ``sapa_deform.py``,
    HEAD a5acd52); spec/sapa.md, "Forward / SAPA-D". Registered as ``sapadeform``, the name of the official
    detection/segmentation builders. Same constructor argument names, parameter names and init as the
    official module; no official fixture exists, so the tests pin it to a direct loop of the CUDA kernels'
    formulas instead.

    ``q = conv_q(guide)`` (G*E channels), ``k = conv_k(x)``, offsets from ``conv_offset(x)`` (pixel-shuffled
    when ``high_offset``, else nearest-upsampled); for each output pixel and group, the query is compared
    with the key sampled bilinearly at P points ``parent + offset``, softmax over the P points, and the raw
    ``x`` sampled at the same points is reassembled (:func:`upsample_plugin.ops.sapa.sapa_deform_similarity`,
    :func:`upsample_plugin.ops.sapa.sapa_deform_aggregation`).

    Calling convention: ``forward(x, guide)`` (the official module is ``forward(y, x)``).

    Args:
        dim_y: channels of the guide; dim_x: channels of x and of the output (default ``dim_y``).
        up_factor: integer ratio s (alias ``scale_factor``).
        num_point: points P per group; groups: channel groups G (must divide ``dim_x``).
        embedding_dim: query/key width E per group.
        qkv_bias: bias of the q, k and offset convs.
        high_offset: predict s^2 offset sets per low-res pixel (pixel shuffle) instead of one set, repeated.
        norm: GroupNorm(32, .) on the guide and on x (not on the values).

    Relation to the official code: kept: no base grid, every point starts at the parent pixel (quirk 5);
    out-of-range points get similarity 0 and a 0 value. Fixed: pure PyTorch on any device, deterministic,
    bf16 (quirks 3, 4); ``groups`` must divide ``dim_x`` (the official value kernel reads past the attention
    otherwise); ``norm=True`` checks divisibility by 32 (quirk 7). A point exactly on the border of
    (-1, H) x (-1, W) gets the official zero offset gradient; :meth:`init_weights` re-applies the official
    init after a neck's Xavier init (quirk 9).

    Parameters at dim_y = dim_x = 256, s = 2, defaults: 139,808; at 512: 279,072 (spec/numbers.md).
    """

    needs_guide = True
    channel_args = ('dim_y', 'dim_x')
    scale_arg = 'up_factor'
    scale_aliases = ('up_factor', 'scale_factor')

    def __init__(self, dim_y: int, dim_x: Optional[int] = None, up_factor: int = 2, num_point: int = 9,
                 groups: int = 4, embedding_dim: int = 32, qkv_bias: bool = True, high_offset: bool = True,
                 norm: bool = False, scale_factor: Optional[int] = None):
        super().__init__()
        up_factor = resolve_scale_alias('up_factor', up_factor, scale_factor)
        dim_x = dim_y if dim_x is None else dim_x
        self.dim_y = check_int('dim_y', dim_y)
        self.dim_x = check_int('dim_x', dim_x)
        self.up_factor = check_int('up_factor', up_factor)
        self.num_point = check_int('num_point', num_point)
        self.groups = check_int('groups', groups)
        self.embedding_dim = check_int('embedding_dim', embedding_dim)
        if dim_x % groups:
            raise ValueError(f'groups={groups} must divide dim_x={dim_x} (each group of x channels shares one '
                             f'set of points)')
        for name, flag in (('qkv_bias', qkv_bias), ('high_offset', high_offset)):
            if not isinstance(flag, bool):
                raise ValueError(f'{name} must be a bool, got {flag!r}')
        if not isinstance(norm, bool):
            raise ValueError(f'norm must be a bool (GroupNorm(32, .) on the guide and on x, or none), got {norm!r}')
        self.high_offset = high_offset
        self.norm = norm
        if norm:
            for name, dim in (('dim_y', dim_y), ('dim_x', dim_x)):
                if dim % _NORM_GROUPS:
                    raise ValueError(f'norm=True uses GroupNorm({_NORM_GROUPS}, {name}): {name} must be divisible '
                                     f'by {_NORM_GROUPS}, got {name}={dim} (or pass norm=False)')
            self.norm_y = nn.GroupNorm(_NORM_GROUPS, dim_y)
            self.norm_x = nn.GroupNorm(_NORM_GROUPS, dim_x)
        self.q = nn.Conv2d(dim_y, groups * embedding_dim, kernel_size=1, bias=qkv_bias)
        self.k = nn.Conv2d(dim_x, groups * embedding_dim, kernel_size=1, bias=qkv_bias)
        offset_dim = groups * num_point * 2 * (up_factor ** 2 if high_offset else 1)
        self.offset = nn.Conv2d(dim_x, offset_dim, kernel_size=1, bias=qkv_bias)
        self.init_weights()

    @property
    def scale_factor(self) -> int:
        return self.up_factor

    def init_weights(self) -> None:
        """The official init: every conv N(0, 0.02^2) with zero bias (no base grid: offsets start near 0)."""
        for conv in (self.q, self.k, self.offset):
            nn.init.normal_(conv.weight, std=0.02)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        if self.norm:
            for layer in (self.norm_y, self.norm_x):
                nn.init.ones_(layer.weight)
                nn.init.zeros_(layer.bias)

    def sampling_offsets(self, x_normed: torch.Tensor) -> torch.Tensor:
        """(N, G*P*2, s*H, s*W) offsets in low-res pixels; channel 2m = width, 2m + 1 = height of point m."""
        offset = self.offset(x_normed)
        if self.high_offset:
            # The plugin's view/permute shuffle: F.pixel_shuffle's backward fails on an empty batch.
            return pixel_shuffle(offset, self.up_factor)
        return F.interpolate(offset, scale_factor=self.up_factor, mode='nearest')

    def forward(self, x: torch.Tensor, guide: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.check_input(x, self.dim_x)
        self.check_guide(x, guide, self.dim_y, self.up_factor)
        x_normed = x
        if self.norm:
            x_normed = _group_norm(self.norm_x, x)
            guide = _group_norm(self.norm_y, guide)
        offset = self.sampling_offsets(x_normed)
        sim = sapa_deform_similarity(self.q(guide), self.k(x_normed), offset, self.num_point, self.up_factor,
                                     self.groups)
        attn = F.softmax(sim, dim=2, dtype=compute_dtype(sim.dtype))
        # Under autocast the convs return reduced precision; the op wants one dtype (the feature's).
        return sapa_deform_aggregation(attn.to(x.dtype), x, offset.to(x.dtype), self.num_point, self.up_factor,
                                       self.groups)

    def extra_repr(self) -> str:
        return (f'dim_y={self.dim_y}, dim_x={self.dim_x}, up_factor={self.up_factor}, num_point={self.num_point}, '
                f'groups={self.groups}, embedding_dim={self.embedding_dim}, high_offset={self.high_offset}, '
                f'norm={self.norm}')
