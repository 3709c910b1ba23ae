"""UPerNet decode head with configurable top-down upsamplers (MMSegmentation 1.x).

Wiring: spec/necks.md, section (E) "UPerNet". Only the three FPN top-down x2 steps are replaced; the PPM's own
upsampling and the final resize of every FPN output to 1/4 stay bilinear, as in the papers and in the
official ``UPerHead_Upsample`` (``tiny-smart/segmentation-with-upsamplers``).

This module also holds the small config helpers shared with :mod:`.upsample_segformer_head`.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import ModuleList
from mmseg.models.decode_heads.uper_head import UPerHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS

from ...ops._checks import check_4d
from ...registry import build_upsampler
from ..utils import is_guided, upsample_to

#: Parameter-free interpolation types; the heads resize with them exactly as mmseg does (straight to the
#: target size), which is what makes the stock configuration numerically identical to mmseg's heads.
INTERPOLATION_TYPES = ('nearest', 'bilinear')
#: Names under which the plugin's upsamplers (and nn.Upsample) take their ratio. The heads only do x2 steps.
_SCALE_KEYS = ('scale', 'scale_factor', 'up_factor')
_INTERPOLATION_KEYS = {'type', 'align_corners', 'scale_factor'}


def parse_upsample_cfg(upsample_cfg: Optional[Mapping[str, Any]], default_align_corners: bool,
                       fade_gating_default: Optional[bool] = None
                       ) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]], Optional[bool]]:
    """Validate ``upsample_cfg`` and split it into the interpolation case and the learned case.

    Returns ``(interpolation, learned_cfg, guided)``:

    * ``interpolation`` = ``dict(mode=..., align_corners=...)`` for ``None``/``nearest``/``bilinear``
      (``None`` means bilinear, the mmseg stock), else ``None``;
    * ``learned_cfg`` = the config to give :func:`build_upsampler` (without the ``guided`` key), else ``None``;
    * ``guided`` = the optional ``guided`` flag of the official ``tiny-smart`` configs (checked against the
      built module by :func:`build_upsamplers`), else ``None``.

    ``fade_gating_default``: value of ``gating`` for ``fade``/``fade_lite`` when the config does not set it.
    """
    if upsample_cfg is None:
        return dict(mode='bilinear', align_corners=default_align_corners), None, None
    if not isinstance(upsample_cfg, Mapping) or 'type' not in upsample_cfg:
        raise ValueError(f'upsample_cfg must be None or a dict with a "type" key (e.g. dict(type="dysample")), '
                         f'got {upsample_cfg!r}')
    cfg = dict(copy.deepcopy(dict(upsample_cfg)))
    guided = cfg.pop('guided', None)
    if guided is not None and not isinstance(guided, bool):
        raise ValueError(f'upsample_cfg["guided"] must be True or False, got {guided!r}')
    for key in _SCALE_KEYS:
        # Every step of these heads doubles the size; another ratio would be silently cropped to the lateral.
        if key in cfg and cfg[key] != 2:
            raise ValueError(f'upsample_cfg[{key!r}]={cfg[key]!r}: every top-down step of this head is x2; '
                             f'leave the ratio out of upsample_cfg (the head fills it)')
    layer_type = cfg['type']
    if isinstance(layer_type, str) and layer_type in INTERPOLATION_TYPES:
        extra = sorted(set(cfg) - _INTERPOLATION_KEYS)
        if extra:
            raise ValueError(f'upsample_cfg of type {layer_type!r} takes only "align_corners" besides "type" '
                             f'(the head resizes to the finer map\'s size itself), got extra keys {extra}')
        if guided:
            raise ValueError(f'upsample_cfg: {layer_type!r} interpolation is not guided, but guided=True')
        if layer_type == 'nearest':
            if cfg.get('align_corners') is not None:
                raise ValueError('upsample_cfg: align_corners only applies to bilinear, not to nearest')
            align_corners = None
        else:
            align_corners = cfg.get('align_corners', default_align_corners)
            if not isinstance(align_corners, bool):
                raise ValueError(f'upsample_cfg["align_corners"] must be True or False, got {align_corners!r}')
        return dict(mode=layer_type, align_corners=align_corners), None, False
    if fade_gating_default is not None and layer_type in ('fade', 'fade_lite'):
        cfg.setdefault('gating', fade_gating_default)
    return None, cfg, guided


def build_upsamplers(cfg: Mapping[str, Any], channels: int, number: int,
                     guided: Optional[bool] = None) -> List[nn.Module]:
    """``number`` x2 upsamplers at ``channels`` from a learned config; errors name ``upsample_cfg``."""
    modules = []
    for _ in range(number):
        try:
            module = build_upsampler(cfg, channels, 2)
        except KeyError as err:  # unknown type name (the registry's message lists the known ones)
            raise ValueError(f'upsample_cfg: {err.args[0] if err.args else err}') from err
        except TypeError as err:  # an argument the upsampler's constructor does not take
            raise ValueError(f'upsample_cfg {dict(cfg)!r} does not fit its upsampler: {err}') from err
        if guided is not None and guided != is_guided(module):
            raise ValueError(f'upsample_cfg["guided"]={guided} but {type(module).__name__} '
                             f'{"needs" if is_guided(module) else "takes no"} guide; drop the "guided" key '
                             f'(the head asks the upsampler)')
        modules.append(module)
    return modules


def transform_checked_inputs(head: nn.Module, inputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """``head._transform_inputs(inputs)`` (the levels ``in_index`` selects) after checking that ``inputs`` holds
    them and that level ``in_index[i]`` is an (N, in_channels[i], H, W) map: a ``ValueError`` naming the level
    instead of an ``IndexError`` or a failure inside a lateral conv."""
    owner = type(head).__name__
    needed = max(head.in_index) + 1
    if not isinstance(inputs, (list, tuple)) or len(inputs) < needed:
        got = f'{len(inputs)} maps' if isinstance(inputs, (list, tuple)) else type(inputs).__name__
        raise ValueError(f'{owner} reads levels in_index={list(head.in_index)}: inputs must be a list of at least '
                         f'{needed} maps, got {got}')
    for index, channels in zip(head.in_index, head.in_channels):
        check_4d(f'inputs[{index}]', inputs[index], f'(N, {channels}, H, W)')
        if inputs[index].shape[1] != channels:
            raise ValueError(f'{owner}: inputs[{index}] must have shape (N, {channels}, H, W) (in_channels for '
                             f'in_index {index}), got {tuple(inputs[index].shape)}')
    return head._transform_inputs(inputs)


def top_down_step(upsampler: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bring the coarser ``x`` to ``target``'s size (``target`` is also the guide of guided upsamplers).

    ``nn.Upsample`` (the interpolation configs) resizes straight to the target's size like mmseg's own code,
    so the stock configuration reproduces mmseg at every size; learned upsamplers go through
    :func:`upsample_to` (exact x2, then crop/pad per spec/necks.md "Size handling").
    """
    if isinstance(upsampler, nn.Upsample):
        return resize(x, size=target.shape[2:], mode=upsampler.mode, align_corners=upsampler.align_corners)
    return upsample_to(upsampler, x, target)


@MODELS.register_module()
class UpsampleUPerHead(UPerHead):
    """mmseg ``UPerHead`` whose three FPN top-down x2 steps use configurable upsamplers.

    spec/necks.md (E): ``L_{i-1} <- L_{i-1} + up(L_i)`` for unguided upsamplers and
    ``L_{i-1} <- L_{i-1} + up(L_i, guide=L_{i-1})`` for guided ones (FADE, SAPA: the guide is the finer lateral
    before the sum). The PPM's pooled-branch upsampling and the final resize of the FPN outputs to 1/4 stay
    bilinear. One upsampler per top-down step (``len(in_channels) - 1``, i.e. 3 for UPerNet-R50), built with
    ``upsample_plugin.build_upsampler(upsample_cfg, channels, 2)`` and held in ``upsample_modules`` (the
    official ``UPerHead_Upsample``'s attribute name, so its checkpoints keep their keys).

    Args:
        pool_scales: PPM pooling scales, as in ``UPerHead``.
        upsample_cfg: the top-down upsampler. ``dict(type='bilinear')`` (default) or ``None`` is mmseg's
            ``UPerHead`` exactly (same parameters and names, same outputs at every size: the step resizes
            straight to the lateral's size with the head's ``align_corners``); ``dict(type='nearest')`` the
            same with nearest. Any other type is a learned upsampler (``carafe``, ``dysample``, ``dlu``,
            ``ddf_up``, ``lda_aqu``, ``fade``, ``fade_lite``, ``sapa``, ``sapadeform``, ``deconv``,
            ``pixel_shuffle``; extra keys go to its constructor). ``fade``/``fade_lite`` default to
            ``gating=False`` here, the additive-neck setting of the spec and of the ``tiny-smart``
            integration (pass ``gating=True`` to override). The official key ``guided`` is accepted and must
            agree with the upsampler. The ratio is always 2; a ratio key other than 2 is a ValueError.
        **kwargs: ``BaseDecodeHead`` arguments (``in_channels``, ``channels``, ``in_index``, ``num_classes``,
            ``norm_cfg``, ``align_corners``, ``init_cfg``...).

    Official quirks fixed (spec/necks.md quirks 1 and 7, dysample.md quirk 6): the official head adds the
    upsampled map with a plain ``+``, which fails on test images whose sides are not multiples of 32 (mmseg
    1.x does not pad at test time; e.g. a 683-pixel side gives C4 43 and C5 22, and 2 x 22 != 43). Here any
    input size works: unguided results are cropped to the lateral (top-left), guided ones get a
    replicate-padded guide and are cropped back (``upsample_plugin.models.utils.upsample_to``).

    Initialisation (spec/necks.md "Init pitfalls"): ``BaseDecodeHead``'s ``init_cfg`` only targets
    ``conv_seg`` (mmengine also re-runs ``ConvModule.init_weights`` of the ConvModules held directly by the
    head, ``bottleneck``/``fpn_bottleneck``); neither touches the upsamplers. A user ``init_cfg`` with
    ``layer='Conv2d'`` would, so ``upsample_modules`` is an mmengine ``ModuleList``: mmengine's
    ``BaseModule.init_weights`` applies the head's ``init_cfg`` first, then calls the children's
    ``init_weights`` (there: each upsampler's own ``init_weights``), then a ``Pretrained`` ``init_cfg`` last.
    Upsamplers therefore always end with their own init, and pretrained weights still win. Upsamplers
    without ``init_weights`` (``deconv``) keep their constructor init unless the head's ``init_cfg`` targets
    them.
    """

    def __init__(self, pool_scales: Sequence[int] = (1, 2, 3, 6),
                 upsample_cfg: Optional[Mapping[str, Any]] = dict(type='bilinear'), **kwargs):
        super().__init__(pool_scales=pool_scales, **kwargs)
        interpolation, learned_cfg, guided = parse_upsample_cfg(upsample_cfg, self.align_corners,
                                                                fade_gating_default=False)
        self.upsample_cfg = copy.deepcopy(upsample_cfg)
        num_steps = len(self.in_channels) - 1
        if interpolation is not None:
            cfg = dict(type=interpolation['mode'])
            if interpolation['mode'] == 'bilinear':
                cfg['align_corners'] = interpolation['align_corners']
            modules = [build_upsampler(cfg, self.channels, 2) for _ in range(num_steps)]
        else:
            modules = build_upsamplers(learned_cfg, self.channels, num_steps, guided)
        # mmengine ModuleList: its init_weights calls every upsampler's own init_weights after the head's
        # init_cfg (see the class docstring); a plain nn.ModuleList would be skipped.
        self.upsample_modules = ModuleList(modules)

    def _forward_feature(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        """``UPerHead._forward_feature`` with the top-down steps of spec/necks.md (E); any input size."""
        inputs = transform_checked_inputs(self, inputs)
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs))  # the PPM (bilinear inside) is the top lateral

        for i in range(len(laterals) - 1, 0, -1):
            # laterals[i - 1] is still the plain lateral here: it is the guide of guided upsamplers.
            laterals[i - 1] = laterals[i - 1] + top_down_step(self.upsample_modules[i - 1], laterals[i],
                                                              laterals[i - 1])

        outs = [fpn_conv(laterals[i]) for i, fpn_conv in enumerate(self.fpn_convs)]
        outs.append(laterals[-1])
        # The fusion at 1/4 stays bilinear (spec/necks.md (E)).
        size = outs[0].shape[2:]
        outs = [outs[0]] + [resize(out, size=size, mode='bilinear', align_corners=self.align_corners)
                            for out in outs[1:]]
        return self.fpn_bottleneck(torch.cat(outs, dim=1))
