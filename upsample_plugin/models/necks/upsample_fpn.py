"""An mmdet FPN whose top-down upsampling is any upsampler config (spec/necks.md, sections (A) and (B)).

``UpsampleFPN`` builds either of the two FPN topologies the papers used:

* ``topology='fpn'`` (A): mmdet's ``FPN`` layout: one upsampler per top-down step (3 for 4 inputs), extra levels
  exactly as mmdet's ``FPN`` (max-pooled P6, or ``add_extra_convs``);
* ``topology='fpn_carafe'`` (B): mmdet's ``FPN_CARAFE`` layout: every extra level is a 3x3 stride-2 *lateral*
  (the first one on the raw last backbone map) that joins the top-down path through its own upsampler and has
  its own 3x3 output conv (4 upsamplers for Faster/Mask R-CNN).

Parameter names are mmdet's (``lateral_convs``, ``fpn_convs``, and ``upsample_modules`` as in ``FPN_CARAFE`` and
the ``FPN_UPSAMPLE`` copy of ``tiny-smart/detection-with-upsamplers``), so stock ``FPN`` / ``FPN_CARAFE``
checkpoints load with ``strict=True``.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmengine.model import BaseModule

from ...registry import build_upsampler
from ..utils import check_feature_levels, fit_to_size, fuse_to, is_guided, replaces_lateral, upsample_to

#: Types that are plain interpolation (no parameters, no module in topology A).
INTERPOLATION_TYPES = ('nearest', 'bilinear')
TOPOLOGIES = ('fpn', 'fpn_carafe')
ORDERS = (('conv', 'norm', 'act'), ('act', 'conv', 'norm'))
#: Types of the FADE family: inside an additive neck the spec uses them without the gate.
_FADE_TYPES = ('fade', 'fade_lite')


class UpsamplerList(nn.ModuleList):
    """``nn.ModuleList`` of upsamplers whose ``init_weights`` restores each member's own initialisation.

    Why a list with an ``init_weights`` rather than an ``init_weights`` override on the host: mmengine's
    ``BaseModule.init_weights`` first applies the host's non-pretrained ``init_cfg`` (e.g. mmdet FPN's Xavier on
    every ``Conv2d``, upsampler convs included: spec/necks.md "Init pitfalls"), then calls ``init_weights`` of
    each direct child, and applies a ``Pretrained`` ``init_cfg`` last. Holding the upsamplers in this list puts
    their re-initialisation exactly in the middle: after the Xavier that would overwrite them, before a
    pretrained checkpoint that must win.
    """

    def init_weights(self) -> None:
        for upsampler in self:
            if hasattr(upsampler, 'init_weights'):
                upsampler.init_weights()


def normalize_upsample_cfg(upsample_cfg: Optional[Mapping[str, Any]], arg_name: str = 'upsample_cfg'
                           ) -> Dict[str, Any]:
    """A plain-dict copy of an upsampler config with a ``type`` key.

    Accepts ``None`` (nearest), mmdet ``FPN``'s ``dict(mode='nearest')`` form (``mode`` stands for ``type``) and
    ``ConfigDict``s (spec quirk 6: ``FPN_LAU`` needed attribute access; a plain mapping works here).
    """
    if upsample_cfg is None:
        return dict(type='nearest')
    if not isinstance(upsample_cfg, Mapping):
        raise ValueError(f'{arg_name} must be a dict such as dict(type="dysample"), got {upsample_cfg!r}')
    cfg = copy.deepcopy(dict(upsample_cfg))
    if 'type' not in cfg:
        if 'mode' not in cfg:
            raise ValueError(f'{arg_name} needs a "type" key (or mmdet FPN\'s "mode"), got {upsample_cfg!r}')
        cfg['type'] = cfg['mode']
    if cfg['type'] is None:
        raise ValueError(f'{arg_name}: type=None (no upsampling) cannot join pyramid levels of different '
                         f'sizes; use "nearest" for the stock behaviour')
    return cfg


def build_checked_upsampler(cfg: Mapping[str, Any], channels: int, scale_factor: int = 2,
                            arg_name: str = 'upsample_cfg') -> nn.Module:
    """``build_upsampler(cfg, channels, scale_factor)`` with configuration errors reported as ``ValueError``."""
    try:
        upsampler = build_upsampler(cfg, channels, scale_factor)
    except (KeyError, TypeError) as err:  # unknown type name / unknown constructor argument
        raise ValueError(f'{arg_name}={dict(cfg)!r} cannot be built at {channels} channels: {err}') from err
    scale = getattr(upsampler, 'scale_factor', scale_factor)
    if scale is not None and float(scale) != float(scale_factor):
        # A step of another ratio would only be hidden by the crop/pad of upsample_to.
        raise ValueError(f'{arg_name}={dict(cfg)!r}: this step is x{scale_factor}, but the upsampler was built '
                         f'with scale {scale}')
    return upsampler


def check_guided_flag(guided: Optional[bool], upsampler: Optional[nn.Module], arg_name: str) -> None:
    """``guided`` is the ``FPN_UPSAMPLE`` config key; here the upsampler class decides, a contradiction is a bug.

    ``upsampler=None`` stands for plain interpolation (never guided).
    """
    actual = upsampler is not None and is_guided(upsampler)
    if guided is not None and bool(guided) != actual:
        name = 'interpolation' if upsampler is None else type(upsampler).__name__
        raise ValueError(f'{arg_name}: guided={guided} contradicts the upsampler ({name}), which is '
                         f'{"" if actual else "not "}guided (the key can be omitted)')


@MODELS.register_module()
class UpsampleFPN(BaseModule):
    """FPN with a configurable top-down upsampler, in mmdet's FPN (A) or FPN_CARAFE (B) topology.

    spec/necks.md, "Layers and init" and "Forward" (A) and (B). With ``upsample_cfg=dict(type='nearest')`` the
    module equals mmdet ``FPN`` (A) or ``FPN_CARAFE`` with nearest upsampling (B) numerically, and loads their
    checkpoints. Any plugin upsampler (``dysample``, ``carafe``, ``dlu``, ``ddf_up``, ``lda_aqu``, ``fade``,
    ``fade_lite``, ``sapa``, ``sapadeform``) or mmcv-style one (``bilinear``, ``deconv``, ``pixel_shuffle``) is
    built with ``upsample_plugin.build_upsampler(upsample_cfg, out_channels, 2)``, one per top-down step.

    Args:
        in_channels: input channels per backbone level.
        out_channels: width of every pyramid level (and of the upsamplers).
        num_outs: number of output levels.
        start_level, end_level: first and last (inclusive, mmdet's convention; ``-1`` = last) backbone level used.
        add_extra_convs: topology A only, as mmdet ``FPN`` (``False``/``True``/``'on_input'``/``'on_lateral'``/
            ``'on_output'``). Topology B always builds its extra levels as stride-2 laterals, so it must be
            ``False`` there.
        relu_before_extra_convs: topology A only, as mmdet ``FPN``.
        no_norm_on_lateral: no norm layer in the backbone laterals (both topologies).
        conv_cfg, norm_cfg, act_cfg: for every ``ConvModule``, as mmdet.
        upsample_cfg: ``dict(type=NAME, **kwargs)`` of the upsampler; ``None`` or mmdet's ``dict(mode=...)`` form
            are accepted. For ``'nearest'``/``'bilinear'`` in topology A no module is built and the step is
            mmdet ``FPN``'s ``F.interpolate`` to the finer lateral's size (or with the given ``scale_factor``).
            ``fade``/``fade_lite`` default to ``gating=False`` here (spec: FADE inside additive necks). The
            ``FPN_UPSAMPLE`` key ``guided`` is accepted and checked against the upsampler.
        topology: ``'fpn'`` (A) or ``'fpn_carafe'`` (B).
        order: ``ConvModule`` order, ``('conv', 'norm', 'act')`` or ``('act', 'conv', 'norm')`` (``FPN_CARAFE``).
        init_cfg: the host init, mmdet ``FPN``'s Xavier-uniform on ``Conv2d`` by default (in both topologies; it
            is what ``FPN_CARAFE.init_weights`` does to the lateral and output convs). Upsamplers then get their
            own ``init_weights`` back (:class:`UpsamplerList`); a plain ``'deconv'`` (``nn.ConvTranspose2d``, no
            ``init_weights``) keeps PyTorch's default init, where ``FPN_CARAFE`` would Xavier it.

    Forward: top-down step ``L[i-1] <- L[i-1] + upsample_to(up[i-1], L[i], L[i-1])``: unguided upsamplers get
    ``L[i]``, guided ones (FADE, SAPA) ``L[i]`` and the guide ``L[i-1]`` *before* the sum; the result is fitted to
    ``L[i-1]`` (top-left crop, FPN_CARAFE's ``slice_as``; replicate pad if ever smaller), so any input size works
    (spec "Size handling", rules 2-3). FreqFusion (``replaces_lateral``) replaces the lateral by its official
    ``hr' + up`` instead: ``L[i-1] <- fuse(L[i], guide=L[i-1])``; with ``topology='fpn_carafe'`` this is the
    official ``FreqFusionCARAFEFPN`` (4 modules, ``alignment.N`` = ``upsample_modules.N``, spec/freqfusion.md
    "Integration notes"), operation for operation. In topology B the nearest/bilinear steps are ``nn.Upsample(x2)`` + crop,
    which is what ``FPN_CARAFE`` does.

    Official quirks fixed (spec/necks.md "Official-code quirks"): 1 (``FPN_UPSAMPLE`` adds without size
    reconciliation), 2 (Xavier init overriding the upsamplers' own init: see :class:`UpsamplerList`; also in
    topology B for every upsampler, where ``FPN_CARAFE`` restores only CARAFE), 3 (``FPN_UPSAMPLE`` builds
    unused upsamplers for ``add_extra_convs`` levels: none here), 6 (inclusive ``end_level`` as mmdet, plain
    dict configs). ``FPN_CARAFE``'s "``init_cfg`` must be None" assertion is not kept: the re-initialisation
    order makes any ``init_cfg`` safe. Bad configurations raise ``ValueError`` naming the argument.
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int,
                 start_level: int = 0,
                 end_level: int = -1,
                 add_extra_convs: Union[bool, str] = False,
                 relu_before_extra_convs: bool = False,
                 no_norm_on_lateral: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None,
                 upsample_cfg: Optional[dict] = dict(type='nearest'),
                 topology: str = 'fpn',
                 order: Sequence[str] = ('conv', 'norm', 'act'),
                 init_cfg: Union[dict, List[dict], None] = dict(type='Xavier', layer='Conv2d',
                                                                distribution='uniform')) -> None:
        super().__init__(init_cfg=init_cfg)
        if topology not in TOPOLOGIES:
            raise ValueError(f"topology must be 'fpn' (mmdet FPN layout, spec/necks.md (A)) or 'fpn_carafe' "
                             f"(FPN_CARAFE layout, (B)), got {topology!r}")
        if not isinstance(in_channels, (list, tuple)) or not in_channels:
            raise ValueError(f'in_channels must be a non-empty list of ints, got {in_channels!r}')
        order = tuple(order)
        if order not in ORDERS:
            raise ValueError(f'order must be one of {ORDERS}, got {order!r}')
        self.topology = topology
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_ins = len(in_channels)
        self.num_outs = num_outs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.no_norm_on_lateral = no_norm_on_lateral
        self.order = order

        # Levels, as mmdet FPN (inclusive end_level, -1 = last).
        if end_level == -1 or end_level == self.num_ins - 1:
            self.backbone_end_level = self.num_ins
            if num_outs < self.num_ins - start_level:
                raise ValueError(f'num_outs={num_outs} must be >= the {self.num_ins - start_level} used backbone '
                                 f'levels (in_channels has {self.num_ins}, start_level={start_level})')
        else:
            if not 0 <= end_level < self.num_ins:
                raise ValueError(f'end_level={end_level} must be -1 or an index into in_channels '
                                 f'(0..{self.num_ins - 1})')
            self.backbone_end_level = end_level + 1
            if num_outs != end_level - start_level + 1:
                raise ValueError(f'with end_level={end_level} (not the last level) no extra level is allowed: '
                                 f'num_outs must be {end_level - start_level + 1}, got {num_outs}')
        if not 0 <= start_level < self.backbone_end_level:
            raise ValueError(f'start_level={start_level} must index a used backbone level '
                             f'(0..{self.backbone_end_level - 1})')
        self.start_level = start_level
        self.end_level = end_level

        if isinstance(add_extra_convs, str):
            if add_extra_convs not in ('on_input', 'on_lateral', 'on_output'):
                raise ValueError(f"add_extra_convs must be a bool or one of 'on_input', 'on_lateral', "
                                 f"'on_output', got {add_extra_convs!r}")
        elif not isinstance(add_extra_convs, bool):
            raise ValueError(f'add_extra_convs must be a bool or a str, got {add_extra_convs!r}')
        elif add_extra_convs:
            add_extra_convs = 'on_input'
        if topology == 'fpn_carafe' and (add_extra_convs or relu_before_extra_convs):
            raise ValueError("topology='fpn_carafe' builds its extra levels as stride-2 laterals joining the "
                             "top-down path (spec/necks.md (B)); add_extra_convs and relu_before_extra_convs "
                             "apply to topology='fpn' only and must be False here")
        self.add_extra_convs = add_extra_convs

        cfg = normalize_upsample_cfg(upsample_cfg)
        if cfg['type'] in _FADE_TYPES:
            cfg.setdefault('gating', False)
        self.upsample_cfg = cfg
        self._guided_flag = cfg.pop('guided', None)
        # Topology A keeps mmdet FPN's interpolation (no module) for nearest/bilinear: exact stock numerics,
        # including FPN's resize-to-size on unpadded inputs.
        self._interpolate = topology == 'fpn' and cfg['type'] in INTERPOLATION_TYPES
        if self._interpolate:
            kwargs = {k: v for k, v in cfg.items() if k != 'type'}
            kwargs.setdefault('mode', cfg['type'])
            if kwargs['mode'] == 'bilinear':
                kwargs.setdefault('align_corners', False)
            self._interpolate_kwargs = kwargs
            check_guided_flag(self._guided_flag, None, 'upsample_cfg')

        def conv_module(in_ch, kernel, norm, stride=1):
            return ConvModule(in_ch, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2,
                              conv_cfg=conv_cfg, norm_cfg=norm, act_cfg=act_cfg, inplace=False, order=order)

        lateral_norm = None if no_norm_on_lateral else norm_cfg
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        self.upsample_modules = UpsamplerList()
        for level in range(start_level, self.backbone_end_level):
            self.lateral_convs.append(conv_module(self.in_channels[level], 1, lateral_norm))
            self.fpn_convs.append(conv_module(out_channels, 3, norm_cfg))
        num_steps = self.backbone_end_level - start_level - 1
        extra_levels = num_outs - self.backbone_end_level + start_level
        if topology == 'fpn':
            # mmdet FPN extra levels; no upsampler for them (spec quirk 3).
            if add_extra_convs:
                for i in range(extra_levels):
                    if i == 0 and add_extra_convs == 'on_input':
                        extra_in = self.in_channels[self.backbone_end_level - 1]
                    else:
                        extra_in = out_channels
                    self.fpn_convs.append(conv_module(extra_in, 3, norm_cfg, stride=2))
        else:
            # FPN_CARAFE: the extra levels are laterals in the top-down path, each with an upsampler.
            for i in range(extra_levels):
                extra_in = self.in_channels[self.backbone_end_level - 1] if i == 0 else out_channels
                self.lateral_convs.append(conv_module(extra_in, 3, norm_cfg, stride=2))
                self.fpn_convs.append(conv_module(out_channels, 3, norm_cfg))
            num_steps += extra_levels
        if not self._interpolate:
            for _ in range(num_steps):
                self.upsample_modules.append(self._build_upsampler(cfg))

    def _build_upsampler(self, cfg: Dict[str, Any]) -> nn.Module:
        cfg = dict(cfg)
        if cfg['type'] == 'deconv' and 'upsample_kernel' in cfg:
            # FPN_CARAFE's name for the deconv kernel.
            cfg['kernel_size'] = cfg.pop('upsample_kernel')
        upsampler = build_checked_upsampler(cfg, self.out_channels)
        check_guided_flag(self._guided_flag, upsampler, 'upsample_cfg')
        return upsampler

    def _top_down(self, laterals: List[torch.Tensor]) -> None:
        for i in range(len(laterals) - 1, 0, -1):
            finer = laterals[i - 1]
            if self._interpolate:
                kwargs = self._interpolate_kwargs
                if 'scale_factor' in kwargs:
                    up = fit_to_size(F.interpolate(laterals[i], **kwargs), *finer.shape[-2:])
                else:
                    up = F.interpolate(laterals[i], size=finer.shape[-2:], **kwargs)
            elif replaces_lateral(self.upsample_modules[i - 1]):
                # FreqFusion: the lateral is replaced by the official sum hr' + up (FreqFusionCARAFEFPN).
                laterals[i - 1] = fuse_to(self.upsample_modules[i - 1], laterals[i], finer)
                continue
            else:
                # Guided upsamplers get `finer` (the lateral before the sum) as the guide.
                up = upsample_to(self.upsample_modules[i - 1], laterals[i], finer)
            laterals[i - 1] = finer + up

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        check_feature_levels('UpsampleFPN', inputs, self.in_channels)
        used = self.backbone_end_level - self.start_level
        laterals = [conv(inputs[self.start_level + i]) for i, conv in enumerate(self.lateral_convs[:used])]
        if self.topology == 'fpn_carafe':
            # First extra lateral on the raw last backbone map, later ones on the previous extra lateral.
            source = inputs[self.backbone_end_level - 1]
            for conv in self.lateral_convs[used:]:
                laterals.append(conv(source))
                source = laterals[-1]
        self._top_down(laterals)
        outs = [self.fpn_convs[i](lateral) for i, lateral in enumerate(laterals)]
        if self.topology == 'fpn' and self.num_outs > len(outs):
            if not self.add_extra_convs:
                for _ in range(self.num_outs - used):
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                if self.add_extra_convs == 'on_input':
                    source = inputs[self.backbone_end_level - 1]
                elif self.add_extra_convs == 'on_lateral':
                    source = laterals[-1]
                else:
                    source = outs[-1]
                outs.append(self.fpn_convs[used](source))
                for i in range(used + 1, self.num_outs):
                    source = F.relu(outs[-1]) if self.relu_before_extra_convs else outs[-1]
                    outs.append(self.fpn_convs[i](source))
        return tuple(outs)
