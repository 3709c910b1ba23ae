"""The NVlabs SegFormer all-MLP decode head, with the plugin's upsamplers in its six x2 slots (MMSegmentation 1.x).

This is the head behind the published SegFormer-B1 numbers of FADE, SAPA and FRFU (``poppinace/fade``
``segformer/segformer_head.py``, a copy of the ``NVlabs/SegFormer`` head with upsampler slots; spec/necks.md (F)).
It differs from mmseg 1.x's ``SegformerHead`` in three ways that matter for those numbers:

* each level is projected by a plain linear layer (``linear_c1`` .. ``linear_c4``: bias, no norm, no activation),
  where mmseg 1.x uses a 1x1 conv + (Sync)BN + ReLU per level: with mmseg's head every upsampler and every guide
  sees normalised, rectified features, which is not the published experiment;
* the one BatchNorm of the head is in the fuse layer (``linear_fuse``: 1x1 conv 4E -> E, BN, ReLU), which takes the
  levels coarsest first (``[c4, c3, c2, c1]``);
* the classifier is ``linear_pred`` (1x1 conv, PyTorch's default init), after dropout.

The parameter names are the NVlabs ones, so NVlabs / FADE / SAPA SegFormer checkpoints load strictly (their
``conv_seg``, built by mmseg 0.x's ``BaseDecodeHead`` and never used, is dropped on load).
"""
from __future__ import annotations

import copy
from typing import Any, List, Mapping, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import ModuleList
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS

from .upsample_uper_head import build_upsamplers, parse_upsample_cfg, top_down_step, transform_checked_inputs


class LinearProjection(nn.Module):
    """NVlabs' ``MLP``: a per-pixel ``nn.Linear`` (``proj``) from ``in_channels`` to ``embed_dim``.

    Applied as a 1x1 convolution with the linear layer's weight (same map, no flatten/transpose round trip, any
    memory layout); the parameter is still ``proj.weight`` of shape (E, C) as in the checkpoints."""

    def __init__(self, in_channels: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_channels, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.proj.weight[:, :, None, None], self.proj.bias)


@MODELS.register_module()
class NVlabsSegFormerHead(BaseDecodeHead):
    """NVlabs SegFormer head (``poppinace/fade`` layout) whose multi-step resizes can be learned x2 chains.

    For the 4 MiT levels c1..c4 (finest first), projected to ``channels`` (the NVlabs ``embed_dim``, 256 for
    SegFormer-B1) by ``linear_c{i}``:

    * ``upsample_cfg=None`` or ``dict(type='bilinear'|'nearest')``: c2..c4 are resized straight to c1's size
      (NVlabs: bilinear, ``align_corners=False``);
    * a learned, unguided upsampler: 6 modules in ``upsamplers``, ``c4 = up2(up1(up0(c4)))``,
      ``c3 = up4(up3(c3))``, ``c2 = up5(c2)``;
    * a guided one (FADE, FADE-Lite, SAPA-B/D): ``c4 = up0(c4, guide=c3)``, ``up1(., guide=c2)``,
      ``up2(., guide=c1)``; ``c3 = up3(c3, guide=c2)``, ``up4(., guide=c1)``; ``c2 = up5(c2, guide=c1)``; guides are
      the projected, not upsampled, finer maps.

    Then ``linear_fuse(cat[c4, c3, c2, c1])`` -> dropout -> ``linear_pred``. FADE keeps its class default
    ``gating=True`` here (the paper's SegFormer setting).

    Args:
        upsample_cfg: ``None``, an interpolation type or a learned upsampler config for
            :func:`upsample_plugin.build_upsampler` (the head fills channels and the x2 ratio; the official key
            ``guided`` is accepted and must agree with the upsampler).
        interpolate_mode: resize mode when ``upsample_cfg`` is ``None``.
        decoder_params: the NVlabs spelling of the embedding width, ``dict(embed_dim=E)``; when given, ``E`` must
            equal ``channels`` (NVlabs configs set ``channels=128`` for the unused ``conv_seg``: use
            ``channels=E`` here).
        **kwargs: ``BaseDecodeHead`` arguments (``in_channels``, ``in_index``, ``channels``, ``num_classes``,
            ``norm_cfg`` for the fuse layer, ``dropout_ratio``, ``align_corners``, ``loss_decode``, ...).

    Initialisation: as NVlabs (mmseg 0.x), the projections and ``linear_pred`` keep PyTorch's default init and the
    fuse layer mmcv's ``ConvModule`` init; the default ``init_cfg`` is ``None`` (mmseg 1.x's default targets
    ``conv_seg``, which this head does not have). Each upsampler's own ``init_weights`` runs after the head's
    (``upsamplers`` is an mmengine ``ModuleList``).

    Sizes: the official test pipeline aligns images to multiples of 32 (NVlabs ``AlignedResize``, mmseg 1.x
    ``ResizeToMultiple``), so every x2 step is exact; other sizes go through
    :func:`upsample_plugin.models.utils.upsample_to` (crop, or padded guide), as in the plugin's other heads.
    """

    def __init__(self, upsample_cfg: Optional[Mapping[str, Any]] = None, interpolate_mode: str = 'bilinear',
                 decoder_params: Optional[Mapping[str, Any]] = None, init_cfg=None, **kwargs):
        kwargs.pop('feature_strides', None)  # NVlabs configs carry it; the strides follow from the inputs
        super().__init__(input_transform='multiple_select', init_cfg=init_cfg, **kwargs)
        if len(self.in_channels) != 4:
            raise ValueError(f'NVlabsSegFormerHead takes the 4 MiT levels c1..c4: in_channels must have 4 entries, '
                             f'got {list(self.in_channels)}')
        if decoder_params is not None and decoder_params.get('embed_dim', self.channels) != self.channels:
            raise ValueError(f'decoder_params["embed_dim"]={decoder_params["embed_dim"]} but channels='
                             f'{self.channels}: the head projects to channels; set channels to the embedding width')
        if upsample_cfg is None and interpolate_mode not in ('bilinear', 'nearest'):
            raise ValueError(f"interpolate_mode must be 'bilinear' or 'nearest', got {interpolate_mode!r}")
        interpolation, learned_cfg, guided = parse_upsample_cfg(
            upsample_cfg if upsample_cfg is not None else dict(type=interpolate_mode), self.align_corners)
        self.upsample_cfg = copy.deepcopy(upsample_cfg)
        self._interpolation = interpolation

        # mmseg 1.x's BaseDecodeHead builds conv_seg; NVlabs classifies with linear_pred (conv_seg unused there).
        del self.conv_seg
        embed_dim = self.channels
        for level, channels in enumerate(self.in_channels, start=1):
            self.add_module(f'linear_c{level}', LinearProjection(channels, embed_dim))
        self.linear_fuse = ConvModule(embed_dim * 4, embed_dim, kernel_size=1, norm_cfg=self.norm_cfg)
        self.linear_pred = nn.Conv2d(embed_dim, self.out_channels, kernel_size=1)
        # 3 + 2 + 1 x2 steps, coarsest chain first (the NVlabs / FADE indices).
        modules = build_upsamplers(learned_cfg, embed_dim, 6, guided) if learned_cfg is not None else []
        self.upsamplers = ModuleList(modules)
        self._register_load_state_dict_pre_hook(self._drop_unused_conv_seg)

    @staticmethod
    def _drop_unused_conv_seg(state_dict, prefix, *args) -> None:
        """NVlabs checkpoints hold mmseg 0.x's never-used ``conv_seg`` (``channels=128`` wide): not a parameter of
        this head, so it is dropped instead of failing a strict load."""
        for name in ('weight', 'bias'):
            state_dict.pop(f'{prefix}conv_seg.{name}', None)

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.linear_pred(feat)

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        c1, c2, c3, c4 = transform_checked_inputs(self, inputs)
        projected = [self.linear_c1(c1), self.linear_c2(c2), self.linear_c3(c3), self.linear_c4(c4)]
        outs = list(projected)
        if self._interpolation is not None:
            size = projected[0].shape[2:]
            for level in (3, 2, 1):
                outs[level] = resize(projected[level], size=size, mode=self._interpolation['mode'],
                                     align_corners=self._interpolation['align_corners'])
        else:
            index = 0
            for level in (3, 2, 1):
                x = projected[level]
                for finer in range(level - 1, -1, -1):
                    x = top_down_step(self.upsamplers[index], x, projected[finer])
                    index += 1
                outs[level] = x
        fused = self.linear_fuse(torch.cat(outs[::-1], dim=1))
        return self.cls_seg(fused)
