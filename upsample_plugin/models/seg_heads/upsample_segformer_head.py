"""SegFormer all-MLP decode head with chains of learned x2 upsamplers (MMSegmentation 1.x).

Wiring: spec/necks.md, section (F) "SegFormer" (the 6-module layout of the working ``poppinace/fade`` head),
on top of mmseg 1.x's ``SegformerHead`` (1x1 ``ConvModule`` projections ``convs``, ``fusion_conv``).
"""
from __future__ import annotations

import copy
from typing import Any, List, Mapping, Optional

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import ModuleList
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS

from ..utils import upsample_to
from .upsample_uper_head import build_upsamplers, parse_upsample_cfg, transform_checked_inputs


@MODELS.register_module()
class UpsampleSegformerHead(BaseDecodeHead):
    """mmseg 1.x ``SegformerHead`` whose multi-step resizes can be chains of learned x2 upsamplers.

    Each input is projected to ``channels`` (E = 256 for SegFormer-B1) by a 1x1 ``ConvModule`` (``convs``),
    brought to the size of the finest level, concatenated finest first (mmseg 1.x order) and fused by the
    1x1 ``fusion_conv``; ``cls_seg`` (dropout + ``conv_seg``) classifies.

    How coarser levels reach the finest one (spec/necks.md (F)), for the 4 MiT levels c1..c4:

    * ``upsample_cfg=None`` (default) or an interpolation type: one resize per level, as mmseg's
      ``SegformerHead`` (same parameter names, same outputs at every size). ``None`` uses
      ``interpolate_mode``; ``dict(type='bilinear'|'nearest')`` its own type (and optional ``align_corners``,
      default the head's).
    * learned, unguided: 6 modules, ``c4 = up2(up1(up0(c4)))``, ``c3 = up4(up3(c3))``, ``c2 = up5(c2)``;
    * learned, guided (FADE, SAPA): ``c4 = up0(c4, guide=c3)``, ``c4 = up1(c4, guide=c2)``,
      ``c4 = up2(c4, guide=c1)``; ``c3 = up3(c3, guide=c2)``, ``c3 = up4(c3, guide=c1)``;
      ``c2 = up5(c2, guide=c1)``. Guides are the projected, not upsampled, finer maps.

    With n inputs the same rule gives n(n-1)/2 modules in ``upsample_modules`` (coarsest level's chain
    first). FADE keeps its class default ``gating=True`` here, the paper's SegFormer setting.

    Args:
        interpolate_mode: mode of the stock resize when ``upsample_cfg`` is ``None`` (as ``SegformerHead``).
        upsample_cfg: ``None``, ``dict(type='bilinear'|'nearest')`` or a learned upsampler config for
            ``upsample_plugin.build_upsampler`` (the head fills channels and the x2 ratio; a ratio key other
            than 2 is a ValueError; the official key ``guided`` is accepted and must agree with the upsampler).
        **kwargs: ``BaseDecodeHead`` arguments.

    Fixes the broken official ``SegformerHead_Upsample`` of ``tiny-smart/segmentation-with-upsamplers``
    (spec/dysample.md quirk 7, spec/necks.md quirk 4): its ``forward`` reads attributes that its constructor
    never defines and its default config has no ``type`` key, so it cannot run; here the layout of the
    working ``poppinace/fade`` head is used. Sizes: MiT levels have ceil-halved sizes and mmseg 1.x does not
    align test images to 32 (spec/necks.md "Size handling", rule 5), so every step goes through
    ``upsample_plugin.models.utils.upsample_to`` (crop for unguided, padded guide for guided): any input size
    works.

    Initialisation: as :class:`UpsampleUPerHead` (``upsample_modules`` is an mmengine ``ModuleList``, so each
    upsampler's own ``init_weights`` runs after the head's ``init_cfg`` and before a ``Pretrained`` one;
    the default ``init_cfg`` only targets ``conv_seg``).
    """

    def __init__(self, interpolate_mode: str = 'bilinear',
                 upsample_cfg: Optional[Mapping[str, Any]] = None, **kwargs):
        super().__init__(input_transform='multiple_select', **kwargs)
        num_inputs = len(self.in_channels)  # BaseDecodeHead checked len(in_index) == num_inputs
        if upsample_cfg is None and interpolate_mode not in ('bilinear', 'nearest'):
            raise ValueError(f"interpolate_mode must be 'bilinear' or 'nearest', got {interpolate_mode!r}")
        interpolation, learned_cfg, guided = parse_upsample_cfg(
            upsample_cfg if upsample_cfg is not None else dict(type=interpolate_mode), self.align_corners)
        self.upsample_cfg = copy.deepcopy(upsample_cfg)
        self.interpolate_mode = interpolation['mode'] if interpolation is not None else interpolate_mode
        self._interpolation = interpolation

        self.convs = nn.ModuleList(
            ConvModule(in_channels=c, out_channels=self.channels, kernel_size=1, stride=1,
                       norm_cfg=self.norm_cfg, act_cfg=self.act_cfg) for c in self.in_channels)
        self.fusion_conv = ConvModule(in_channels=self.channels * num_inputs, out_channels=self.channels,
                                      kernel_size=1, norm_cfg=self.norm_cfg)

        # Level j (0 = finest) needs j x2 steps; the coarsest chain comes first (up0..up2 for c4 with 4 levels).
        num_modules = num_inputs * (num_inputs - 1) // 2 if learned_cfg is not None else 0
        modules = build_upsamplers(learned_cfg, self.channels, num_modules, guided) if num_modules else []
        # mmengine ModuleList so that each upsampler's own init_weights runs after the head's init_cfg.
        self.upsample_modules = ModuleList(modules)

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        inputs = transform_checked_inputs(self, inputs)
        projected = [conv(x) for conv, x in zip(self.convs, inputs)]
        if self._interpolation is not None:
            # mmseg's SegformerHead: every level (the finest too, a no-op) resized once to the finest size.
            size = inputs[0].shape[2:]
            outs = [resize(p, size=size, mode=self._interpolation['mode'],
                           align_corners=self._interpolation['align_corners']) for p in projected]
        else:
            outs = list(projected)
            index = 0
            for level in range(len(projected) - 1, 0, -1):
                x = projected[level]
                for finer in range(level - 1, -1, -1):
                    # The finer projected map sets the size and is the guide of guided upsamplers.
                    x = upsample_to(self.upsample_modules[index], x, projected[finer])
                    index += 1
                outs[level] = x
        out = self.fusion_conv(torch.cat(outs, dim=1))
        return self.cls_seg(out)
