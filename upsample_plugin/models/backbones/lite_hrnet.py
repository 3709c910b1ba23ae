"""Lite-HRNet: A Lightweight High-Resolution Network (Yu et al., CVPR 2021, https://arxiv.org/abs/2104.06403).

Spec: ../shared/spec/lite_hrnet.md. Module and parameter names follow the official implementation
(``HRNet/Lite-HRNet`` ``models/backbones/litehrnet.py``; the same backbone is in mmpose), so its released
checkpoints load into :class:`LiteHRNet` with the default ``upsample_cfg=dict(type='nearest')``.

Building blocks:

* :class:`ConditionalChannelWeighting` (CCW), the Lite-HRNet block: each branch's channels are split in halves;
  one half is reweighted by :class:`CrossResolutionWeighting` (weights computed from *all* branches pooled to the
  smallest resolution, then broadcast back to each branch by nearest interpolation), a depthwise 3x3 conv and
  :class:`SpatialWeighting` (an SE unit, despite the name); the halves are concatenated and channel-shuffled.
* :class:`ShuffleUnit`, the ShuffleNetV2 block of the Naive Lite-HRNet (``module_type='NAIVE'``).
* :class:`LiteHRModule`: the blocks of every branch, then the HRNet fuse layers (1x1 conv + BN + upsampling
  from coarser branches, strided depthwise/pointwise convs from finer ones).
* :class:`LiteHRNet`: stem, per-stage transitions and modules, optional :class:`IterativeHead`; it returns
  the tuple of branch features (finest first), as mmseg's ``HRNet``.

What differs from the official code, and what is kept (spec table "Official-code quirks"):

* Fuse layers, quirk 1 (kept by default): the official loop adds branch 0 twice to every fused output and, for
  output 0, accumulates in place into branch 0's tensor, so outputs 1.. are computed from the already-summed
  branch 0. ``fuse_mode='official'`` (default) reproduces exactly that, so published checkpoints behave as
  trained (the values are those of the in-place code; the sums are written out of place). ``fuse_mode='sum'``
  adds each branch once, as HRNet does; use it for new training only and report it.
* Quirk 2 (kept): single-scale output (``multiscale_output=False``) only trims the list when ``with_fuse`` is
  off; with fuse layers the module already builds a single fused output.
* Fuse-layer upsampling is configurable: ``upsample_cfg=dict(type='nearest')`` (default) is exactly the
  official ``nn.Upsample(scale_factor=2**(j - i), mode='nearest')`` with the official state-dict keys;
  any plugin upsampler (``dict(type='dysample')``, ``dict(type='dlu')``, ...) is built with
  :func:`upsample_plugin.build_upsampler` at the target branch's width (after the 1x1 conv + BN) either as one
  module for the whole ratio ``2**(j - i)`` (default; DySample, DLU and CARAFE take any integer ratio) or, with
  ``upsample_chain=True``, as ``j - i`` chained x2 modules (for upsamplers that only do x2). Guided upsamplers
  (FADE, SAPA) are refused: a fuse path has no high-resolution guide of its own.
* Any input size works: an upsampled map is cropped (top-left) to its target branch, which the official code
  does not do (it fails unless H and W are multiples of 4 * 2**(branches - 1)); for such sizes the crop is a
  no-op, so the official numerics are unchanged.
* Bad input raises ``ValueError`` naming the argument and the expected shape (the official code asserts or
  fails inside a convolution); ``num_branches=1`` modules run every block (the official ``LITE`` path would
  apply a single block to a tensor instead of a list).
"""
from __future__ import annotations

import copy
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as checkpoint
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule, build_conv_layer, build_norm_layer
from mmengine.model import BaseModule, constant_init, normal_init
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from ...ops._checks import check_4d, check_int
from ...registry import build_upsampler
from ..utils import fit_to_size, is_guided

__all__ = ['SpatialWeighting', 'CrossResolutionWeighting', 'ConditionalChannelWeighting', 'Stem', 'ShuffleUnit',
           'IterativeHead', 'LiteHRModule', 'LiteHRNet', 'channel_shuffle', 'halved_size',
           'LITE_HRNET_18', 'LITE_HRNET_30', 'NAIVE_LITE_HRNET_18', 'WIDER_NAIVE_LITE_HRNET_18', 'ARCHS']

# ------------------------------------------------------------------------------------------ architecture presets
# The ``extra`` dicts of the official COCO configs (configs/top_down/{lite_hrnet,naive_litehrnet}/coco/*.py).
_LITE_STAGES = dict(num_branches=(2, 3, 4), num_blocks=(2, 2, 2), module_type=('LITE',) * 3,
                    with_fuse=(True,) * 3, reduce_ratios=(8, 8, 8),
                    num_channels=((40, 80), (40, 80, 160), (40, 80, 160, 320)))
_STEM = dict(stem_channels=32, out_channels=32, expand_ratio=1)
LITE_HRNET_18 = dict(stem=_STEM, num_stages=3, stages_spec=dict(num_modules=(2, 4, 2), **_LITE_STAGES),
                     with_head=False)
LITE_HRNET_30 = dict(stem=_STEM, num_stages=3, stages_spec=dict(num_modules=(3, 8, 3), **_LITE_STAGES),
                     with_head=False)
_NAIVE_STAGES = dict(_LITE_STAGES, module_type=('NAIVE',) * 3, reduce_ratios=(1, 1, 1))  # ratios unused
NAIVE_LITE_HRNET_18 = dict(
    stem=_STEM, num_stages=3, with_head=False,
    stages_spec=dict(_NAIVE_STAGES, num_modules=(2, 4, 2), num_channels=((30, 60), (30, 60, 120),
                                                                         (30, 60, 120, 240))))
WIDER_NAIVE_LITE_HRNET_18 = dict(stem=_STEM, num_stages=3, with_head=False,
                                 stages_spec=dict(_NAIVE_STAGES, num_modules=(2, 4, 2)))
#: ``LiteHRNet(arch=...)`` names (the paper's model names) for the presets above.
ARCHS = {'18': LITE_HRNET_18, '30': LITE_HRNET_30, 'naive-18': NAIVE_LITE_HRNET_18,
         'wider-naive-18': WIDER_NAIVE_LITE_HRNET_18}

_RELU = dict(type='ReLU')
_SIGMOID = dict(type='Sigmoid')


# ------------------------------------------------------------------------------------------------------- helpers
def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: channel ``g * (C / groups) + k`` moves to ``k * groups + g``."""
    n, channels, height, width = x.shape
    return x.view(n, groups, channels // groups, height, width).transpose(1, 2).reshape(n, channels, height, width)


def halved_size(size: int, times: int) -> int:
    """A side after ``times`` stride-2, padding-1, 3x3 convs: ``ceil(size / 2)`` each time."""
    for _ in range(times):
        size = (size + 1) // 2
    return size


def _check_branches(name: str, x: Any, channels: Sequence[int], pyramid: bool) -> None:
    """``x`` must be a list of (N, C_i, H_i, W_i) floating tensors, one per branch, with one batch size;
    ``pyramid``: branch i must be branch 0 halved i times (rounding up), what the fuse layers need."""
    if not isinstance(x, (list, tuple)) or len(x) != len(channels):
        raise ValueError(f'{name} must be a list of {len(channels)} branch tensors (N, C_i, H_i, W_i) with '
                         f'C_i = {list(channels)}, got {type(x).__name__}'
                         f'{f" of length {len(x)}" if isinstance(x, (list, tuple)) else ""}')
    check_4d(f'{name}[0]', x[0])
    n, height0, width0 = x[0].shape[0], x[0].shape[2], x[0].shape[3]
    for index, (tensor, width) in enumerate(zip(x, channels)):
        check_4d(f'{name}[{index}]', tensor)
        expected_hw = (halved_size(height0, index), halved_size(width0, index)) if pyramid else tensor.shape[2:]
        expected = (n, width, *expected_hw)
        if tensor.shape[1] != width or tensor.shape[0] != n or tuple(tensor.shape[2:]) != tuple(expected_hw):
            rule = (f' (branch 0\'s {height0}x{width0} halved {index} times, rounding up)'
                    if pyramid and index else '')
            raise ValueError(f'{name}[{index}] must have shape (N, C, H, W) = {expected}{rule}, '
                             f'got {tuple(tensor.shape)}')


def _run(function, with_cp: bool, *inputs: torch.Tensor):
    """``function(*inputs)``, under activation checkpointing when asked and some input needs a gradient."""
    if with_cp and any(t.requires_grad for t in inputs):
        return checkpoint.checkpoint(function, *inputs, use_reentrant=False)
    return function(*inputs)


def _act_pair(act_cfg) -> Tuple[dict, dict]:
    if isinstance(act_cfg, Mapping):
        return dict(act_cfg), dict(act_cfg)
    if not (isinstance(act_cfg, (list, tuple)) and len(act_cfg) == 2 and all(isinstance(a, Mapping)
                                                                             for a in act_cfg)):
        raise ValueError(f'act_cfg must be one activation dict or a pair (first conv, second conv), got {act_cfg!r}')
    return dict(act_cfg[0]), dict(act_cfg[1])


# ------------------------------------------------------------------------------------------------------ weighting
class SpatialWeighting(nn.Module):
    """The "spatial weighting" F of the paper (Sec. 3.2): global average pool -> 1x1 conv (C -> C/ratio) + ReLU
    -> 1x1 conv (-> C) + sigmoid, multiplied into ``x``. Per-channel weights: an SE unit (spec quirk 3)."""

    def __init__(self, channels: int, ratio: int = 16, conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None, act_cfg=(_RELU, _SIGMOID)):
        super().__init__()
        self.channels = check_int('channels', channels)
        check_int('ratio', ratio)
        first_act, second_act = _act_pair(act_cfg)
        hidden = int(channels / ratio)
        if hidden < 1:
            raise ValueError(f'SpatialWeighting: channels / ratio = {channels} / {ratio} leaves no hidden channel')
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = ConvModule(channels, hidden, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=first_act)
        self.conv2 = ConvModule(hidden, channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=second_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_4d('x', x)
        if x.shape[1] != self.channels:
            raise ValueError(f'SpatialWeighting: x must have shape (N, {self.channels}, H, W), got {tuple(x.shape)}')
        return x * self.conv2(self.conv1(self.global_avgpool(x)))


class CrossResolutionWeighting(nn.Module):
    """The cross-resolution weighting H of the paper (Sec. 3.2, Eq. 4-5).

    Every branch but the last is average-pooled to the last (smallest) branch's size, all are concatenated, a
    1x1 conv (sum C -> sum C / ratio) + norm + ReLU and a 1x1 conv (-> sum C) + norm + sigmoid give one weight
    map per branch at that small size, and each branch is multiplied by its weights nearest-upsampled to its own
    size: the weights are computed at low resolution and broadcast upward.
    """

    def __init__(self, channels: Sequence[int], ratio: int = 16, conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None, act_cfg=(_RELU, _SIGMOID)):
        super().__init__()
        if not channels:
            raise ValueError('CrossResolutionWeighting: channels must list the width of every branch')
        self.channels = [check_int(f'channels[{i}]', c) for i, c in enumerate(channels)]
        check_int('ratio', ratio)
        first_act, second_act = _act_pair(act_cfg)
        total = sum(self.channels)
        hidden = int(total / ratio)
        if hidden < 1:
            raise ValueError(f'CrossResolutionWeighting: sum(channels) / ratio = {total} / {ratio} leaves no '
                             f'hidden channel')
        self.conv1 = ConvModule(total, hidden, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=first_act)
        self.conv2 = ConvModule(hidden, total, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=second_act)

    def forward(self, x: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        _check_branches('x', x, self.channels, pyramid=False)
        smallest = x[-1].shape[-2:]
        pooled = [F.adaptive_avg_pool2d(branch, smallest) for branch in x[:-1]] + [x[-1]]
        weights = self.conv2(self.conv1(torch.cat(pooled, dim=1)))
        return [branch * F.interpolate(weight, size=branch.shape[-2:], mode='nearest')
                for branch, weight in zip(x, torch.split(weights, self.channels, dim=1))]


class ConditionalChannelWeighting(nn.Module):
    """The conditional channel weighting block (paper Fig. 2b, spec "Forward"): per branch, channel halves
    ``[a, b]``; ``b`` -> cross-resolution weighting (all branches) -> depthwise 3x3 conv + norm -> spatial
    weighting (ratio 4); output ``channel_shuffle(cat(a, b), 2)``. Input and output: one tensor per branch.

    Args:
        in_channels: the width of every branch (each even).
        stride: 1. (The official signature also takes 2, which cannot work: the untouched half ``a`` keeps
            its resolution while ``b`` is strided, so they cannot be concatenated.)
        reduce_ratio: reduction of the cross-resolution weighting's hidden width.
        with_cp: activation checkpointing (saves memory, costs a second forward in backward).
    """

    def __init__(self, in_channels: Sequence[int], stride: int, reduce_ratio: int, conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'), with_cp: bool = False):
        super().__init__()
        if stride != 1:
            raise ValueError(f'ConditionalChannelWeighting: stride must be 1, got {stride!r} (a strided depthwise '
                             f'conv on one channel half cannot be concatenated with the unstrided other half)')
        self.in_channels = [check_int(f'in_channels[{i}]', c) for i, c in enumerate(in_channels)]
        odd = [c for c in self.in_channels if c % 2]
        if odd:
            raise ValueError(f'ConditionalChannelWeighting: every branch width must be even (split in halves), '
                             f'got in_channels={self.in_channels}')
        self.stride = stride
        self.with_cp = with_cp
        half_channels = [c // 2 for c in self.in_channels]
        self.cross_resolution_weighting = CrossResolutionWeighting(half_channels, ratio=reduce_ratio,
                                                                   conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.depthwise_convs = nn.ModuleList([
            ConvModule(c, c, 3, stride=stride, padding=1, groups=c, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                       act_cfg=None) for c in half_channels])
        self.spatial_weighting = nn.ModuleList([SpatialWeighting(c, ratio=4) for c in half_channels])

    def _weight(self, *x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        halves = [branch.chunk(2, dim=1) for branch in x]
        kept, weighted = [h[0] for h in halves], [h[1] for h in halves]
        weighted = self.cross_resolution_weighting(weighted)
        weighted = [sw(dw(b)) for b, dw, sw in zip(weighted, self.depthwise_convs, self.spatial_weighting)]
        return tuple(channel_shuffle(torch.cat([a, b], dim=1), 2) for a, b in zip(kept, weighted))

    def forward(self, x: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        _check_branches('x', x, self.in_channels, pyramid=False)
        return list(_run(self._weight, self.with_cp, *x))


# -------------------------------------------------------------------------------------------------- stem, blocks
class Stem(nn.Module):
    """3x3 stride-2 conv + norm + ReLU, then a stride-2 ShuffleNetV2-style block: input / 4, ``out_channels``.

    One half goes through a depthwise stride-2 conv + 1x1 conv (``branch1``), the other through 1x1 expand,
    depthwise stride-2 and 1x1 linear convs; the two are concatenated and channel-shuffled.
    """

    def __init__(self, in_channels: int, stem_channels: int, out_channels: int, expand_ratio: float,
                 conv_cfg: Optional[dict] = None, norm_cfg: Optional[dict] = dict(type='BN'), with_cp: bool = False):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        check_int('stem_channels', stem_channels, minimum=2)
        self.out_channels = check_int('out_channels', out_channels)
        self.with_cp = with_cp
        self.conv1 = ConvModule(in_channels, stem_channels, 3, stride=2, padding=1, conv_cfg=conv_cfg,
                                norm_cfg=norm_cfg, act_cfg=_RELU)
        mid_channels = int(round(stem_channels * expand_ratio))
        branch_channels = stem_channels // 2
        if stem_channels == out_channels:
            increase, linear_out = out_channels - branch_channels, branch_channels
        else:
            increase, linear_out = out_channels - stem_channels, stem_channels
        if increase < 1 or mid_channels < 1:
            raise ValueError(f'Stem: stem_channels={stem_channels}, out_channels={out_channels}, expand_ratio='
                             f'{expand_ratio} leave a branch without channels')
        self.branch1 = nn.Sequential(
            ConvModule(branch_channels, branch_channels, 3, stride=2, padding=1, groups=branch_channels,
                       conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None),
            ConvModule(branch_channels, increase, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=_RELU))
        self.expand_conv = ConvModule(branch_channels, mid_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                                      act_cfg=_RELU)
        self.depthwise_conv = ConvModule(mid_channels, mid_channels, 3, stride=2, padding=1, groups=mid_channels,
                                         conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None)
        self.linear_conv = ConvModule(mid_channels, linear_out, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                                      act_cfg=_RELU)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        kept, expanded = x.chunk(2, dim=1)
        expanded = self.linear_conv(self.depthwise_conv(self.expand_conv(expanded)))
        return channel_shuffle(torch.cat((self.branch1(kept), expanded), dim=1), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self._stem, self.with_cp, x)


class ShuffleUnit(nn.Module):
    """The ShuffleNetV2 block of the Naive Lite-HRNet (paper Fig. 2a): stride 1 splits the channels, keeps one
    half and sends the other through 1x1 conv + ReLU, depthwise 3x3, 1x1 conv + ReLU; stride > 1 sends the whole
    input through both ``branch1`` (depthwise + 1x1) and ``branch2``. Concatenation, then channel shuffle."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'), act_cfg: Optional[dict] = _RELU, with_cp: bool = False):
        super().__init__()
        check_int('in_channels', in_channels)
        check_int('out_channels', out_channels, minimum=2)
        self.stride = check_int('stride', stride)
        self.with_cp = with_cp
        branch_features = out_channels // 2
        if stride == 1 and in_channels != 2 * branch_features:
            raise ValueError(f'ShuffleUnit: with stride 1, in_channels ({in_channels}) must equal out_channels '
                             f'rounded down to even ({2 * branch_features})')
        self.in_channels, self.out_channels = in_channels, 2 * branch_features
        if stride > 1:
            self.branch1 = nn.Sequential(
                ConvModule(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels,
                           conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None),
                ConvModule(in_channels, branch_features, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg))
        self.branch2 = nn.Sequential(
            ConvModule(in_channels if stride > 1 else branch_features, branch_features, 1, conv_cfg=conv_cfg,
                       norm_cfg=norm_cfg, act_cfg=act_cfg),
            ConvModule(branch_features, branch_features, 3, stride=stride, padding=1, groups=branch_features,
                       conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None),
            ConvModule(branch_features, branch_features, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg))

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        else:
            kept, transformed = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(transformed)), dim=1)
        return channel_shuffle(out, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_4d('x', x)
        if x.shape[1] != self.in_channels:
            raise ValueError(f'ShuffleUnit: x must have shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}')
        return _run(self._unit, self.with_cp, x)


class IterativeHead(nn.Module):
    """The official ``with_head`` head: from the coarsest branch to the finest, add the previous (projected)
    output resized bilinearly (``align_corners=True``), then a depthwise-separable 3x3 conv projecting to the
    next finer branch's width (the finest keeps its own). Returns the outputs finest first."""

    def __init__(self, in_channels: Sequence[int], norm_cfg: Optional[dict] = dict(type='BN')):
        super().__init__()
        coarse_to_fine = list(in_channels)[::-1]
        self.in_channels = coarse_to_fine
        widths_out = coarse_to_fine[1:] + coarse_to_fine[-1:]
        self.projects = nn.ModuleList([
            DepthwiseSeparableConvModule(c_in, c_out, 3, stride=1, padding=1, norm_cfg=norm_cfg, act_cfg=_RELU,
                                         dw_act_cfg=None, pw_act_cfg=_RELU)
            for c_in, c_out in zip(coarse_to_fine, widths_out)])

    def forward(self, x: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        outputs, previous = [], None
        for branch, project in zip(list(x)[::-1], self.projects):
            if previous is not None:
                branch = branch + F.interpolate(previous, size=branch.shape[-2:], mode='bilinear',
                                                align_corners=True)
            previous = project(branch)
            outputs.append(previous)
        return outputs[::-1]


# ---------------------------------------------------------------------------------------------------- the module
FUSE_MODES = ('official', 'sum')


class LiteHRModule(nn.Module):
    """One high-resolution module: the blocks of every branch, then the fuse layers.

    Args:
        num_branches: branches (resolutions) of the module.
        num_blocks: CCW blocks (``'LITE'``) or shuffle units per branch (``'NAIVE'``).
        in_channels: the width of every branch.
        reduce_ratio: the cross-resolution weighting's reduction (``'LITE'`` only).
        module_type: ``'LITE'`` (Lite-HRNet) or ``'NAIVE'`` (Naive Lite-HRNet).
        multiscale_output: fuse into every branch (True) or into branch 0 only.
        with_fuse: build the fuse layers.
        upsample_cfg: upsampling of the fuse paths from coarser branches (module docstring); default nearest.
        upsample_chain: build a ratio ``2**k`` as ``k`` chained x2 upsamplers instead of one.
        fuse_mode: ``'official'`` (branch 0 counted twice, outputs 1.. fed by the summed branch 0: the published
            checkpoints' behaviour, spec quirk 1) or ``'sum'`` (each branch added once, as in HRNet).
    """

    def __init__(self, num_branches: int, num_blocks: int, in_channels: Sequence[int], reduce_ratio: int,
                 module_type: str, multiscale_output: bool = False, with_fuse: bool = True,
                 conv_cfg: Optional[dict] = None, norm_cfg: Optional[dict] = dict(type='BN'), with_cp: bool = False,
                 upsample_cfg: Optional[dict] = dict(type='nearest'), upsample_chain: bool = False,
                 fuse_mode: str = 'official'):
        super().__init__()
        check_int('num_branches', num_branches)
        check_int('num_blocks', num_blocks)
        if len(in_channels) != num_branches:
            raise ValueError(f'LiteHRModule: num_branches={num_branches} but in_channels lists {len(in_channels)} '
                             f'widths ({list(in_channels)})')
        if module_type not in ('LITE', 'NAIVE'):
            raise ValueError(f"module_type must be 'LITE' or 'NAIVE', got {module_type!r}")
        if fuse_mode not in FUSE_MODES:
            raise ValueError(f'fuse_mode must be one of {FUSE_MODES}, got {fuse_mode!r}')
        self.in_channels = list(in_channels)
        self.num_branches = num_branches
        self.module_type = module_type
        self.multiscale_output = multiscale_output
        self.with_fuse = with_fuse
        self.conv_cfg, self.norm_cfg, self.with_cp = conv_cfg, norm_cfg, with_cp
        self.upsample_cfg = copy.deepcopy(upsample_cfg) if upsample_cfg is not None else dict(type='nearest')
        self.upsample_chain = upsample_chain
        self.fuse_mode = fuse_mode
        if module_type == 'LITE':
            self.layers = nn.Sequential(*[
                ConditionalChannelWeighting(self.in_channels, stride=1, reduce_ratio=reduce_ratio, conv_cfg=conv_cfg,
                                            norm_cfg=norm_cfg, with_cp=with_cp) for _ in range(num_blocks)])
        else:
            self.layers = nn.ModuleList([
                nn.Sequential(*[ShuffleUnit(c, c, stride=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=_RELU,
                                            with_cp=with_cp) for _ in range(num_blocks)])
                for c in self.in_channels])
        if with_fuse:
            self.fuse_layers = self._make_fuse_layers()
            self.relu = nn.ReLU()

    def _upsampler(self, channels: int, ratio_log2: int) -> nn.Module:
        if self.upsample_cfg.get('type') == 'nearest' and not self.upsample_chain:
            return nn.Upsample(scale_factor=2 ** ratio_log2, mode='nearest')  # the official module
        steps = [2] * ratio_log2 if self.upsample_chain else [2 ** ratio_log2]
        modules = []
        for scale in steps:
            module = build_upsampler(self.upsample_cfg, in_channels=channels, scale_factor=scale)
            if is_guided(module):
                raise ValueError(f'upsample_cfg type {self.upsample_cfg["type"]!r} is a guided upsampler; the '
                                 f'fuse layers of Lite-HRNet have no high-resolution guide: use an unguided one '
                                 f'(nearest, bilinear, dysample, dlu, carafe, ...)')
            modules.append(module)
        return modules[0] if len(modules) == 1 else nn.Sequential(*modules)

    def _make_fuse_layers(self) -> Optional[nn.ModuleList]:
        if self.num_branches == 1:
            return None
        widths = self.in_channels
        fuse_layers = []
        for i in range(self.num_branches if self.multiscale_output else 1):
            paths: List[Optional[nn.Module]] = []
            for j in range(self.num_branches):
                if j > i:  # coarser branch: 1x1 conv to branch i's width + norm, then upsample x 2**(j - i)
                    paths.append(nn.Sequential(
                        build_conv_layer(self.conv_cfg, widths[j], widths[i], kernel_size=1, bias=False),
                        build_norm_layer(self.norm_cfg, widths[i])[1],
                        self._upsampler(widths[i], j - i)))
                elif j == i:
                    paths.append(None)
                else:  # finer branch: (i - j) x [depthwise 3x3 stride 2 + norm + 1x1 + norm (+ ReLU if not last)]
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        width_out = widths[i] if last else widths[j]
                        step = [build_conv_layer(self.conv_cfg, widths[j], widths[j], kernel_size=3, stride=2,
                                                 padding=1, groups=widths[j], bias=False),
                                build_norm_layer(self.norm_cfg, widths[j])[1],
                                build_conv_layer(self.conv_cfg, widths[j], width_out, kernel_size=1, bias=False),
                                build_norm_layer(self.norm_cfg, width_out)[1]]
                        if not last:
                            step.append(nn.ReLU(inplace=True))
                        steps.append(nn.Sequential(*step))
                    paths.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(paths))
        return nn.ModuleList(fuse_layers)

    def fuse_upsamplers(self) -> List[nn.Module]:
        """The upsampling modules of the fuse layers (index 2 of every path from a coarser branch)."""
        if not self.with_fuse or self.fuse_layers is None:
            return []
        return [self.fuse_layers[i][j][2] for i in range(len(self.fuse_layers))
                for j in range(i + 1, self.num_branches)]

    def _path(self, i: int, j: int, branch: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Branch ``j`` brought to branch ``i``'s width and size (an upsampled map cropped to the target)."""
        if i == j:
            return branch
        out = self.fuse_layers[i][j](branch)
        return fit_to_size(out, target.shape[-2], target.shape[-1]) if j > i else out

    def _fuse(self, out: List[torch.Tensor]) -> List[torch.Tensor]:
        num_outputs = len(self.fuse_layers)
        fused = []
        if self.fuse_mode == 'sum':
            for i in range(num_outputs):
                total = self._path(i, 0, out[0], out[i])
                for j in range(1, self.num_branches):
                    total = total + self._path(i, j, out[j], out[i])
                fused.append(self.relu(total))
            return fused
        # 'official': the in-place loop of the official code, written out of place with the same values and the
        # same order of additions. Output 0 starts from branch 0 and adds branch 0 again (the j = i term); that
        # running sum *is* branch 0's tensor there, so every later output reads the pre-ReLU sum in place of
        # branch 0, through its path from branch 0 called twice (start value, then the j = 0 term).
        summed_branch0 = out[0] + out[0]
        for j in range(1, self.num_branches):
            summed_branch0 = summed_branch0 + self._path(0, j, out[j], out[0])
        fused.append(self.relu(summed_branch0))
        for i in range(1, num_outputs):
            total = self._path(i, 0, summed_branch0, out[i])
            total = total + self._path(i, 0, summed_branch0, out[i])
            for j in range(1, self.num_branches):
                total = total + self._path(i, j, out[j], out[i])
            fused.append(self.relu(total))
        return fused

    def forward(self, x: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """``x``: one (N, C_i, H_i, W_i) tensor per branch, branch i being branch 0 halved i times (rounding up)."""
        _check_branches('x', x, self.in_channels, pyramid=True)
        if self.module_type == 'LITE':
            out = self.layers(list(x))
        else:
            out = [branch_layers(branch) for branch_layers, branch in zip(self.layers, x)]
        if self.num_branches == 1:
            return out
        if self.with_fuse:
            out = self._fuse(out)
        elif not self.multiscale_output:  # spec quirk 2, kept: only without fuse layers
            out = [out[0]]
        return out


# -------------------------------------------------------------------------------------------------- the backbone
def _check_extra(extra: Mapping) -> None:
    for key in ('stem', 'num_stages', 'stages_spec'):
        if key not in extra:
            raise ValueError(f'extra must have the key {key!r} (see LITE_HRNET_18 for a complete example)')
    for key in ('stem_channels', 'out_channels', 'expand_ratio'):
        if key not in extra['stem']:
            raise ValueError(f'extra["stem"] must have the key {key!r}')
    num_stages = check_int('extra["num_stages"]', extra['num_stages'])
    for key in ('num_modules', 'num_branches', 'num_blocks', 'module_type', 'with_fuse', 'reduce_ratios',
                'num_channels'):
        value = extra['stages_spec'].get(key)
        if value is None or len(value) != num_stages:
            raise ValueError(f'extra["stages_spec"][{key!r}] must have one entry per stage ({num_stages}), '
                             f'got {value!r}')
    for stage, (branches, widths) in enumerate(zip(extra['stages_spec']['num_branches'],
                                                   extra['stages_spec']['num_channels'])):
        if len(widths) != branches:
            raise ValueError(f'extra["stages_spec"]["num_channels"][{stage}] must list {branches} widths '
                             f'(num_branches[{stage}]), got {widths!r}')


@MODELS.register_module()
class LiteHRNet(BaseModule):
    """Lite-HRNet backbone (Yu et al., CVPR 2021); returns the branch features, finest (input / 4) first.

    Args:
        extra: the architecture, as in the official configs (or give ``arch``): ``stem`` (``stem_channels``,
            ``out_channels``, ``expand_ratio``), ``num_stages``, ``stages_spec`` (per stage: ``num_modules``,
            ``num_branches``, ``num_blocks``, ``module_type``, ``with_fuse``, ``reduce_ratios``, ``num_channels``)
            and ``with_head`` (the iterative head; outputs then have widths ``[C0, C0, C1, C2]``). Presets:
            :data:`LITE_HRNET_18`, :data:`LITE_HRNET_30`, :data:`NAIVE_LITE_HRNET_18`,
            :data:`WIDER_NAIVE_LITE_HRNET_18`.
        arch: instead of ``extra``, a preset by name: ``'18'``, ``'30'``, ``'naive-18'``, ``'wider-naive-18'``
            (``with_head=False``); ``with_head`` switches the iterative head on for a preset.
        with_head: overrides ``extra['with_head']`` when given.
        in_channels: image channels.
        conv_cfg, norm_cfg: layer configs (mmcv); configs for several GPUs use ``dict(type='SyncBN')``.
        norm_eval: keep the norm layers in eval mode (frozen statistics) while training.
        with_cp: activation checkpointing in the blocks.
        zero_init_residual: accepted for config compatibility; Lite-HRNet has no residual block whose last norm
            it would zero (the official code looks for ResNet blocks and finds none).
        frozen_stages: -1 (none), 0 (the stem) or k (the stem, then transitions and stages 0..k-1): parameters
            frozen and norm layers kept in eval mode.
        upsample_cfg: the fuse layers' upsampling, ``dict(type='nearest')`` by default (the official module and
            state-dict keys); any unguided plugin upsampler config (``dict(type='dysample', groups=4)``,
            ``dict(type='dlu')``, ...) is built per path for the ratio ``2**(j - i)`` at branch i's width.
        upsample_chain: build a ratio ``2**k`` as ``k`` chained x2 upsamplers (for x2-only upsamplers).
        fuse_mode: ``'official'`` (default, spec quirk 1 kept: loads and reproduces published checkpoints) or
            ``'sum'`` (each branch added once, for new training).
        pretrained: checkpoint path or URL (loaded non-strictly), mmseg-style; or use ``init_cfg``.
        init_cfg: mmengine init config; without one, :meth:`init_weights` applies the official init.
    """

    def __init__(self, extra: Optional[Mapping] = None, in_channels: int = 3, conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'), norm_eval: bool = False, with_cp: bool = False,
                 zero_init_residual: bool = False, frozen_stages: int = -1,
                 upsample_cfg: Optional[dict] = dict(type='nearest'), upsample_chain: bool = False,
                 fuse_mode: str = 'official', arch: Optional[str] = None, with_head: Optional[bool] = None,
                 pretrained: Optional[str] = None, init_cfg=None):
        if (extra is None) == (arch is None):
            raise ValueError(f'LiteHRNet: give exactly one of extra (an architecture dict) and arch (one of '
                             f'{sorted(ARCHS)}), got extra={extra!r}, arch={arch!r}')
        if arch is not None:
            if arch not in ARCHS:
                raise ValueError(f'LiteHRNet: arch must be one of {sorted(ARCHS)}, got {arch!r}')
            extra = ARCHS[arch]
        if with_head is not None:
            extra = dict(extra, with_head=bool(with_head))
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('LiteHRNet: give either pretrained or init_cfg, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        _check_extra(extra)
        self.extra = copy.deepcopy(dict(extra))
        self.arch = arch
        self.in_channels = check_int('in_channels', in_channels)
        self.conv_cfg, self.norm_cfg = conv_cfg, norm_cfg
        self.norm_eval, self.with_cp = norm_eval, with_cp
        self.zero_init_residual = zero_init_residual
        self.num_stages = self.extra['num_stages']
        self.stages_spec = self.extra['stages_spec']
        if not (isinstance(frozen_stages, int) and -1 <= frozen_stages <= self.num_stages):
            raise ValueError(f'frozen_stages must be an integer in [-1, {self.num_stages}], got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        if fuse_mode not in FUSE_MODES:
            raise ValueError(f'fuse_mode must be one of {FUSE_MODES}, got {fuse_mode!r}')
        self.upsample_cfg = copy.deepcopy(upsample_cfg) if upsample_cfg is not None else dict(type='nearest')
        self.upsample_chain, self.fuse_mode = upsample_chain, fuse_mode

        stem = self.extra['stem']
        self.stem = Stem(in_channels, stem_channels=stem['stem_channels'], out_channels=stem['out_channels'],
                         expand_ratio=stem['expand_ratio'], conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        widths_before = [self.stem.out_channels]
        for index in range(self.num_stages):
            widths = list(self.stages_spec['num_channels'][index])
            setattr(self, f'transition{index}', self._make_transition_layer(widths_before, widths))
            stage, widths_before = self._make_stage(index, widths)
            setattr(self, f'stage{index}', stage)
        self.out_channels = widths_before
        self.with_head = bool(self.extra.get('with_head', False))
        if self.with_head:
            self.head_layer = IterativeHead(widths_before, norm_cfg=norm_cfg)
            self.out_channels = widths_before[:1] + widths_before[:-1]
        #: The width of every output, finest first (the decode head's ``in_channels``).
        self.out_channels = list(self.out_channels)

    def _make_transition_layer(self, widths_before: List[int], widths: List[int]) -> nn.ModuleList:
        """Existing branches: depthwise 3x3 + norm + 1x1 + norm + ReLU where the width changes, else ``None``;
        a new branch: stride-2 steps from the last existing one (depthwise 3x3 + norm + 1x1 + norm + ReLU)."""
        layers: List[Optional[nn.Module]] = []
        for i, width in enumerate(widths):
            if i < len(widths_before):
                before = widths_before[i]
                layers.append(None if width == before else nn.Sequential(
                    build_conv_layer(self.conv_cfg, before, before, kernel_size=3, stride=1, padding=1,
                                     groups=before, bias=False),
                    build_norm_layer(self.norm_cfg, before)[1],
                    build_conv_layer(self.conv_cfg, before, width, kernel_size=1, bias=False),
                    build_norm_layer(self.norm_cfg, width)[1],
                    nn.ReLU()))
                continue
            source = widths_before[-1]
            steps = []
            for k in range(i + 1 - len(widths_before)):
                width_out = width if k == i - len(widths_before) else source
                steps.append(nn.Sequential(
                    build_conv_layer(self.conv_cfg, source, source, kernel_size=3, stride=2, padding=1,
                                     groups=source, bias=False),
                    build_norm_layer(self.norm_cfg, source)[1],
                    build_conv_layer(self.conv_cfg, source, width_out, kernel_size=1, bias=False),
                    build_norm_layer(self.norm_cfg, width_out)[1],
                    nn.ReLU()))
            layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def _make_stage(self, index: int, widths: List[int]) -> Tuple[nn.Sequential, List[int]]:
        spec = self.stages_spec
        modules = [LiteHRModule(spec['num_branches'][index], spec['num_blocks'][index], widths,
                                spec['reduce_ratios'][index], spec['module_type'][index], multiscale_output=True,
                                with_fuse=spec['with_fuse'][index], conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                                with_cp=self.with_cp, upsample_cfg=self.upsample_cfg,
                                upsample_chain=self.upsample_chain, fuse_mode=self.fuse_mode)
                   for _ in range(spec['num_modules'][index])]
        return nn.Sequential(*modules), modules[-1].in_channels

    def fuse_upsamplers(self) -> List[nn.Module]:
        """Every upsampling module of the fuse layers (``nn.Upsample`` for nearest)."""
        return [up for module in self.modules() if isinstance(module, LiteHRModule)
                for up in module.fuse_upsamplers()]

    def init_weights(self) -> None:
        """Official init (spec "Layers and init"): every Conv2d ~ N(0, 0.001^2) with zero bias, every norm weight 1
        and bias 0; learned fuse upsamplers keep their own init. With ``init_cfg``/``pretrained``, mmengine's
        initialisation (e.g. a non-strict checkpoint load) runs instead."""
        if self.init_cfg is not None:
            super().init_weights()
            return
        upsampler_parts = {id(m) for up in self.fuse_upsamplers() for m in up.modules()}
        for module in self.modules():
            if id(module) in upsampler_parts:
                continue
            if isinstance(module, nn.Conv2d):
                normal_init(module, std=0.001)
            elif isinstance(module, (_BatchNorm, nn.GroupNorm)):
                constant_init(module, 1)
        for upsampler in self.fuse_upsamplers():
            steps = upsampler if isinstance(upsampler, nn.Sequential) else [upsampler]  # a x2 chain, or one
            for step in steps:
                if hasattr(step, 'init_weights'):
                    step.init_weights()
        self._is_init = True

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """``x``: (N, in_channels, H, W) images, any H, W >= 1; returns one map per branch (finest first)."""
        check_4d('x', x)
        if x.shape[1] != self.in_channels:
            raise ValueError(f'LiteHRNet: x must have shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}')
        branches = [self.stem(x)]
        for index in range(self.num_stages):
            transition = getattr(self, f'transition{index}')
            inputs = []
            for j in range(self.stages_spec['num_branches'][index]):
                if transition[j] is None:
                    inputs.append(branches[j])
                else:  # a new branch grows from the coarsest existing one
                    inputs.append(transition[j](branches[min(j, len(branches) - 1)]))
            branches = getattr(self, f'stage{index}')(inputs)
        if self.with_head:
            branches = self.head_layer(branches)
        return tuple(branches)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.stem]
        for index in range(self.frozen_stages):
            frozen += [getattr(self, f'transition{index}'), getattr(self, f'stage{index}')]
        for part in frozen:
            part.eval()
            for parameter in part.parameters():
                parameter.requires_grad = False

    def train(self, mode: bool = True) -> 'LiteHRNet':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
