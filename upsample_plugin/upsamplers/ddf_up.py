"""DDF and DDF-Up: Decoupled Dynamic Filter Networks (Zhou et al., CVPR 2021, https://arxiv.org/abs/2104.14107).

Spec: ../shared/spec/ddf.md. Same constructor arguments, parameter names and (PyTorch-default) init as the
official ``theFoxofSky/ddfnet`` ``ddf/ddf.py`` (HEAD 4e21b4a), so its state dicts load with ``strict=True``.
The official op is CUDA-only; here every layer calls :func:`upsample_plugin.ops.ddf.ddf`, which runs anywhere.

Contents: :class:`FilterNorm`, :func:`build_spatial_branch`, :func:`build_channel_branch`, :class:`DDFPack`
(the plain DDF layer, a drop-in for a depthwise k x k conv) and :class:`DDFUpPack` (the upsampler, registered
as ``ddf_up``).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.init import calculate_gain

from ..ops._checks import check_4d, check_all_finite, check_int, check_odd_kernel, check_same_device_dtype
from ..ops.ddf import COMBINES, ddf
from ..registry import register_upsampler
from ._shuffle import pixel_shuffle
from .base import Upsampler

#: ``F.interpolate`` modes accepted by ``DDFUpPack(joint_resize=...)``.
JOINT_RESIZE_MODES = ('nearest', 'bilinear', 'bicubic', 'area')


def _check_combine(kernel_combine) -> str:
    if kernel_combine not in COMBINES:
        raise ValueError(f"kernel_combine must be 'mul' or 'add', got {kernel_combine!r}")
    return kernel_combine


def _check_filter_kernel(kernel_size) -> int:
    """DDF layers need an odd k >= 3: FilterNorm divides by the unbiased std of the k*k taps, 0/0 for k = 1."""
    check_odd_kernel('kernel_size', kernel_size)
    if kernel_size < 3:
        raise ValueError(f'kernel_size must be >= 3: FilterNorm standardises the k*k taps of each filter, '
                         f'which is 0/0 for a single tap; got {kernel_size}')
    return kernel_size


def _check_any_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'{name} must be an integer, got {value!r}')
    return value


def _gain(nonlinearity) -> float:
    try:
        return calculate_gain(nonlinearity)
    except ValueError as error:
        raise ValueError(f'nonlinearity {nonlinearity!r} is not supported by torch.nn.init.calculate_gain '
                         f'(e.g. "linear", "relu"): {error}') from None


class FilterNorm(nn.Module):
    """Standardise each dynamic filter over its k*k taps, then rescale (spec/ddf.md, "FilterNorm").

    ``filter_type='spatial'``: input (N, in_channels * k*k, H, W), ``in_channels`` = heads, one filter per head
    and position. ``'channel'``: input (N, in_channels * k*k, ...) (the SE branch output), one filter per channel.
    Each filter gets zero mean and unit unbiased std (+1e-10), then is multiplied by ``gain(nonlinearity) / k``
    or, with ``running_std``, by the learnable per-tap vector ``std`` initialised as ``randn * gain / k``
    (random sign and scale, kept from the official code: spec quirk 5). Despite the names there are no running
    statistics. ``running_mean`` adds a learnable ``randn`` offset (never enabled by the official modules).
    """

    def __init__(self, in_channels: int, kernel_size: int, filter_type: str, nonlinearity: str = 'linear',
                 running_std: bool = False, running_mean: bool = False):
        super().__init__()
        if filter_type not in ('spatial', 'channel'):
            raise ValueError(f"filter_type must be 'spatial' or 'channel', got {filter_type!r}")
        self.in_channels = check_int('in_channels', in_channels)
        self.kernel_size = check_int('kernel_size', kernel_size, minimum=2)
        self.filter_type = filter_type
        self.running_std = bool(running_std)
        self.running_mean = bool(running_mean)
        self.std0 = _gain(nonlinearity) / kernel_size
        taps = in_channels * kernel_size ** 2
        if running_std:
            self.std = nn.Parameter(torch.randn(taps) * self.std0)
        if running_mean:
            self.mean = nn.Parameter(torch.randn(taps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, taps = x.shape[0], self.kernel_size ** 2
        # Explicit sizes, not -1: reshape cannot infer a dimension of an empty batch.
        if self.filter_type == 'spatial':
            height, width = x.shape[-2:]
            filters = x.reshape(n, self.in_channels, taps, height, width)
        else:
            filters = x.reshape(n, self.in_channels, taps)
        if filters.numel() > 0:  # an empty batch has nothing to standardise (and std() would warn)
            filters = filters - filters.mean(dim=2, keepdim=True)
            filters = filters / (filters.std(dim=2, keepdim=True) + 1e-10)
        if self.filter_type == 'spatial':
            filters = filters.reshape(n, self.in_channels * taps, height, width)
            scale = self.std.view(1, -1, 1, 1) if self.running_std else self.std0
            shift = self.mean.view(1, -1, 1, 1) if self.running_mean else None
        else:
            filters = filters.reshape(n, self.in_channels * taps)
            scale = self.std.view(1, -1) if self.running_std else self.std0
            shift = self.mean.view(1, -1) if self.running_mean else None
        filters = filters * scale
        return filters if shift is None else filters + shift

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, kernel_size={self.kernel_size}, '
                f'filter_type={self.filter_type!r}, running_std={self.running_std}')


def build_spatial_branch(in_channels: int, kernel_size: int, head: int = 1, nonlinearity: str = 'relu',
                         stride: int = 1) -> nn.Sequential:
    """1x1 conv (stride ``stride``) to ``head * k*k`` taps per position, then the spatial FilterNorm.

    (N, in_channels, H, W) -> (N, head * k*k, ceil(H / stride), ceil(W / stride)).
    """
    check_int('in_channels', in_channels)
    check_int('head', head)
    check_int('stride', stride)
    return nn.Sequential(
        nn.Conv2d(in_channels, head * kernel_size ** 2, 1, stride=stride),
        FilterNorm(head, kernel_size, 'spatial', nonlinearity))


def build_channel_branch(in_channels: int, kernel_size: int, nonlinearity: str = 'relu',
                         se_ratio: float = 0.2) -> nn.Sequential:
    """SE-style branch: global average, 1x1 conv to ``int(C * se_ratio)``, ReLU, 1x1 conv to ``C * k*k``,
    channel FilterNorm with the learnable ``std``. (N, C, H, W) -> (N, C * k*k)."""
    check_int('in_channels', in_channels)
    if isinstance(se_ratio, bool) or not isinstance(se_ratio, (int, float)) or se_ratio <= 0:
        raise ValueError(f'se_ratio must be a positive number, got {se_ratio!r}')
    mid_channels = int(in_channels * se_ratio)
    if mid_channels < 1:
        raise ValueError(f'se_ratio={se_ratio} leaves int(in_channels * se_ratio) = {mid_channels} hidden '
                         f'channels for in_channels={in_channels}; it must give at least 1')
    return nn.Sequential(
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Conv2d(in_channels, mid_channels, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid_channels, in_channels * kernel_size ** 2, 1),
        FilterNorm(in_channels, kernel_size, 'channel', nonlinearity, running_std=True))


class DDFPack(nn.Module):
    """The DDF layer: a per-sample, per-position depthwise k x k filter = spatial filter (x) channel filter.

    Args:
        in_channels: channels C (kept by the output).
        kernel_size: odd filter size k >= 3.
        stride: output stride s; output (N, C, H // s, W // s).
        dilation: tap spacing.
        head: spatial filters per position; channel block h of C/head channels uses filter h. Must divide C.
        se_ratio: hidden width of the channel branch, ``int(C * se_ratio)``.
        nonlinearity: gain of the FilterNorm scale (``calculate_gain``).
        kernel_combine: ``'mul'`` or ``'add'``.

    Parameters at k=3, se_ratio=0.2: 9,429 / 35,490 / 137,532 / 536,175 for C = 64 / 128 / 256 / 512
    (spec/ddf.md). Differences from the official module: ValueErrors instead of asserts; with stride > 1 and a
    size not divisible by it, the official reshape fails (its 1x1 strided conv yields ceil(H/s) rows, the op
    wants H // s); here the spatial filter is cropped to H // s rows (row y of the conv is centred on input row
    y*s, exactly the op's filter centre), so any size with H, W >= stride works.
    """

    def __init__(self, in_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1, head: int = 1,
                 se_ratio: float = 0.2, nonlinearity: str = 'relu', kernel_combine: str = 'mul'):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        self.kernel_size = _check_filter_kernel(kernel_size)
        self.stride = check_int('stride', stride)
        self.dilation = check_int('dilation', dilation)
        self.head = check_int('head', head)
        if in_channels % head:
            raise ValueError(f'head={head} must divide in_channels={in_channels}')
        self.kernel_combine = _check_combine(kernel_combine)
        self.spatial_branch = build_spatial_branch(in_channels, kernel_size, head, nonlinearity, stride)
        self.channel_branch = build_channel_branch(in_channels, kernel_size, nonlinearity, se_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_4d('x', x)
        n, c, height, width = x.shape
        if c != self.in_channels:
            raise ValueError(f'DDFPack was built for {self.in_channels} channels; x must have shape '
                             f'(N, {self.in_channels}, H, W), got {tuple(x.shape)}')
        g, k, s = self.head, self.kernel_size, self.stride
        if height < s or width < s:
            raise ValueError(f'x must be at least stride={s} pixels high and wide, got {tuple(x.shape)}')
        out_h, out_w = height // s, width // s
        channel_filter = self.channel_branch(x).reshape(n * g, c // g, k, k)
        spatial_filter = self.spatial_branch(x)[..., :out_h, :out_w].reshape(n * g, k * k, out_h, out_w)
        # Autocast may run the convs in reduced precision; the op wants the feature's dtype throughout.
        out = ddf(x.reshape(n * g, c // g, height, width), channel_filter.to(x.dtype), spatial_filter.to(x.dtype),
                  k, self.dilation, s, self.kernel_combine)
        return out.reshape(n, c, out_h, out_w)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, kernel_size={self.kernel_size}, stride={self.stride}, '
                f'dilation={self.dilation}, head={self.head}, kernel_combine={self.kernel_combine!r}')


@register_upsampler('ddf_up')
class DDFUpPack(Upsampler):
    """DDF-Up: s^2 (spatial, channel) DDF branch pairs, each giving one sub-pixel phase, interleaved by
    ``pixel_shuffle`` (spec/ddf.md, "DDFUpPack"). Registered as ``ddf_up``.

    Branch b = i*s + j filters x with its own decoupled filters and fills output pixels (s*y + i, s*x + j).
    Channel filters always come from ``x``; spatial filters come from the optional guidance ``joint_x`` (the
    official joint-upsampling input, at x's low resolution), else from ``x``. Note that FilterNorm gives every
    filter zero mean, so DDF-Up is not an interpolator at initialisation (spec/ddf.md).

    Args:
        in_channels: channels C of x (and of the output).
        kernel_size: odd filter size k >= 3.
        scale_factor: integer upsampling ratio s.
        dilation: tap spacing of the filters.
        head: spatial filters per position; must divide C.
        se_ratio: hidden width of each channel branch, ``int(C * se_ratio)``.
        nonlinearity: gain of the FilterNorm scale (``calculate_gain``), ``'linear'`` by default.
        dw_kernel_size: kernel of the depthwise conv that precedes each spatial branch when there is no
            dedicated guidance (``joint_channels < 1``); raised to at least 3, must be odd.
        joint_channels: ``< 1`` (default): no dedicated guidance branch; each spatial branch is depthwise conv ->
            1x1 conv, fed by ``joint_x`` with C channels if given, else by x. ``>= 1``: each spatial branch is a
            1x1 conv over ``joint_x`` with ``joint_channels`` channels (optional only when it equals C).
        kernel_combine: ``'mul'`` or ``'add'``.
        joint_resize: ``None`` (default): ``joint_x`` must have x's H x W. Else an ``F.interpolate`` mode
            (``'nearest'``, ``'bilinear'``, ``'bicubic'``, ``'area'``) resizing ``joint_x`` to x's size first.

    Forward: ``forward(x, guide=None, joint_x=None)``; ``guide`` (the plugin's high-resolution guide) is ignored
    as by every unguided upsampler, the guidance is the keyword ``joint_x``.

    Parameters at C=256, k=3, s=2: 560,368 (550,128 with ``joint_channels=256``): spec/numbers.md.

    Differences from the official module (spec/ddf.md, "Official-code quirks"):

    * quirk 1 (fixed): the official ``forward`` passes ``self.head`` into the op's ``kernel_combine`` slot, so
      it cannot run at HEAD; here ``kernel_combine`` is passed by keyword and ``head`` is handled by the
      reshapes only (the fix the official fixture ``ddfup_mul_s2.pt`` was made with);
    * quirk 2 (fixed): the depthwise conv is padded by ``dw_kernel_size // 2`` (official: ``kernel_size // 2``,
      shape-correct only when both are equal, as with the defaults);
    * quirk 3 (fixed): with ``joint_channels >= 1`` the spatial branches take ``joint_channels`` input
      channels (official: ``in_channels`` whatever ``joint_channels`` says); same parameters when equal;
    * quirk 9 (handled): a guidance of the wrong size raises ValueError, or is resized when ``joint_resize``
      is set (the official reshape fails instead);
    * quirks 7/8: the op runs on any device (compiled CPU/CUDA kernels, pure-PyTorch reference elsewhere);
      float16/bfloat16 accumulate in float32 (as the official wrapper computes in float32);
    * ValueErrors naming the argument instead of asserts; ``kernel_size`` must be >= 3 (k = 1 makes FilterNorm
      divide 0 by 0).

    Kept (quirks 4, 5): channel filters from x only; the FilterNorm ``std`` of the channel branches is a
    learnable vector initialised with ``randn`` (random sign). No custom init: PyTorch defaults everywhere.
    """

    channel_args = ('in_channels',)
    scale_arg = 'scale_factor'
    scale_aliases = ('scale_factor',)

    def __init__(self, in_channels: int, kernel_size: int = 3, scale_factor: int = 2, dilation: int = 1,
                 head: int = 1, se_ratio: float = 0.2, nonlinearity: str = 'linear', dw_kernel_size: int = 3,
                 joint_channels: int = -1, kernel_combine: str = 'mul', joint_resize: Optional[str] = None):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        self.kernel_size = _check_filter_kernel(kernel_size)
        self.scale_factor = check_int('scale_factor', scale_factor)
        self.dilation = check_int('dilation', dilation)
        self.head = check_int('head', head)
        if in_channels % head:
            raise ValueError(f'head={head} must divide in_channels={in_channels}')
        self.kernel_combine = _check_combine(kernel_combine)
        _check_any_int('joint_channels', joint_channels)  # any integer: < 1 means "no guidance branch"
        self.joint_channels = joint_channels
        if joint_resize is not None and joint_resize not in JOINT_RESIZE_MODES:
            raise ValueError(f'joint_resize must be None or one of {JOINT_RESIZE_MODES}, got {joint_resize!r}')
        self.joint_resize = joint_resize
        # The guidance width the spatial branches read (quirk 3: official always in_channels).
        self.guide_channels = joint_channels if joint_channels >= 1 else in_channels
        _check_any_int('dw_kernel_size', dw_kernel_size)
        self.dw_kernel_size = max(dw_kernel_size, 3)  # as official: at least 3
        if joint_channels < 1 and self.dw_kernel_size % 2 == 0:
            raise ValueError(f'dw_kernel_size must be odd (a same-size depthwise conv), got {dw_kernel_size}')

        self.spatial_branch = nn.ModuleList()
        self.channel_branch = nn.ModuleList()
        for _ in range(scale_factor ** 2):
            spatial = build_spatial_branch(self.guide_channels, kernel_size, head, nonlinearity, 1)
            if joint_channels < 1:
                # Quirk 2: pad by the depthwise kernel's own half width (official: kernel_size // 2).
                depthwise = nn.Conv2d(in_channels, in_channels, self.dw_kernel_size,
                                      padding=self.dw_kernel_size // 2, groups=in_channels)
                spatial = nn.Sequential(depthwise, spatial)
            self.spatial_branch.append(spatial)
            self.channel_branch.append(build_channel_branch(in_channels, kernel_size, nonlinearity, se_ratio))

    def init_weights(self) -> None:
        """The official init: PyTorch's default for every conv (e.g. to undo a neck's Xavier re-init).

        FilterNorm's ``std`` is left as it is (necks' conv inits do not touch it).
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()

    def _guidance(self, x: torch.Tensor, joint_x: Optional[torch.Tensor]) -> torch.Tensor:
        """The map the spatial branches read: ``joint_x`` (checked, optionally resized) or x itself."""
        name = type(self).__name__
        if joint_x is None:
            if self.guide_channels != self.in_channels:
                raise ValueError(f'{name} was built with joint_channels={self.joint_channels}: call it as '
                                 f'forward(x, joint_x=...) with joint_x of shape (N, {self.guide_channels}, H, W)')
            return x
        check_4d('joint_x', joint_x)
        check_same_device_dtype('x', x, 'joint_x', joint_x)
        check_all_finite('joint_x', joint_x)
        n, _, height, width = x.shape
        if joint_x.shape[0] != n or joint_x.shape[1] != self.guide_channels:
            raise ValueError(f'{name}: joint_x must have shape (N, {self.guide_channels}, H, W) with N = '
                             f'{n} as x {tuple(x.shape)}, got {tuple(joint_x.shape)}')
        if tuple(joint_x.shape[2:]) != (height, width):
            if self.joint_resize is None:
                raise ValueError(f'{name}: joint_x must have the low-resolution size of x, (N, '
                                 f'{self.guide_channels}, {height}, {width}), got {tuple(joint_x.shape)}; '
                                 f'resize it or build the module with joint_resize="bilinear" (or "area")')
            if joint_x.shape[2] == 0 or joint_x.shape[3] == 0:
                raise ValueError(f'joint_x must have a non-empty spatial size, got {tuple(joint_x.shape)}')
            align = dict(align_corners=False) if self.joint_resize in ('bilinear', 'bicubic') else {}
            joint_x = F.interpolate(joint_x, size=(height, width), mode=self.joint_resize, **align)
        return joint_x

    def forward(self, x: torch.Tensor, guide: Optional[torch.Tensor] = None,
                joint_x: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.check_input(x, self.in_channels)
        joint_x = self._guidance(x, joint_x)
        n, c, height, width = x.shape
        g, k, s = self.head, self.kernel_size, self.scale_factor
        grouped = x.reshape(n * g, c // g, height, width)
        phases = []
        for spatial_branch, channel_branch in zip(self.spatial_branch, self.channel_branch):
            channel_filter = channel_branch(x).reshape(n * g, c // g, k, k)
            spatial_filter = spatial_branch(joint_x).reshape(n * g, k * k, height, width)
            # Autocast may run the convs in reduced precision; the op wants the feature's dtype throughout.
            phase = ddf(grouped, channel_filter.to(x.dtype), spatial_filter.to(x.dtype), k, self.dilation, 1,
                        combine=self.kernel_combine)
            phases.append(phase.reshape(n, c, height, width))
        # Phase b = i*s + j of channel c becomes pixel (s*y + i, s*x + j).
        return pixel_shuffle(torch.stack(phases, dim=2).reshape(n, c * s * s, height, width), s)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, kernel_size={self.kernel_size}, '
                f'scale_factor={self.scale_factor}, dilation={self.dilation}, head={self.head}, '
                f'joint_channels={self.joint_channels}, kernel_combine={self.kernel_combine!r}')
