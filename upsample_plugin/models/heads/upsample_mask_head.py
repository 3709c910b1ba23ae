"""Mask R-CNN's FCN mask head with any upsampler (spec/necks.md, section (C))."""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.registry import MODELS

from ...ops._checks import check_4d
from ..necks.upsample_fpn import build_checked_upsampler, normalize_upsample_cfg
from ..utils import is_guided

#: ``upsample_cfg`` types that stock ``FCNMaskHead`` builds itself (mmcv layers, mmdet's init and ReLU rules).
STOCK_TYPES = (None, 'deconv', 'nearest', 'bilinear')


@MODELS.register_module()
class UpsampleFCNMaskHead(FCNMaskHead):
    """``FCNMaskHead`` whose 14x14 -> 28x28 upsampling is any upsampler (the CARAFE paper's Mask R-CNN setting).

    spec/necks.md (C): 4 x 3x3 convs -> upsample -> 1x1 ``conv_logits``. Arguments are ``FCNMaskHead``'s; only
    ``upsample_cfg`` accepts more:

    * ``None``, ``'deconv'`` (default, ``dict(type='deconv', scale_factor=2)``), ``'nearest'``, ``'bilinear'``:
      built by ``FCNMaskHead`` itself, so the default is stock ``FCNMaskHead`` (same parameter names, same
      output, same init: Kaiming for the deconv, ReLU after it);
    * any other type (``'carafe'``, ``'dysample'``, ``'dlu'``, ``'ddf_up'``, ``'lda_aqu'``, ``'pixel_shuffle'``,
      ...): ``upsample_plugin.build_upsampler(cfg, conv_out_channels, scale_factor)`` with ``scale_factor`` from
      the config (default 2). ``'carafe'`` is the plugin's portable CARAFE: mmdet's ``CARAFEPack(256, 2)`` with
      the same parameter names (mmdet CARAFE mask-head checkpoints load) that also runs on CPU. No ReLU follows
      a learned upsampler (mmdet's rule for CARAFE), and ``conv_logits`` reads ``conv_out_channels``.

    Guided upsamplers (FADE, SAPA) are rejected with ``ValueError``: this head has no high-resolution guide
    (spec (C)). ``init_weights`` runs ``FCNMaskHead``'s init, then re-applies the upsampler's own init, so e.g.
    DySample's offsets stay at N(0, 0.001^2) (spec "Init pitfalls"; mmdet only does this for mmcv's CARAFE).
    """

    def __init__(self,
                 num_convs: int = 4,
                 roi_feat_size: int = 14,
                 in_channels: int = 256,
                 conv_kernel_size: int = 3,
                 conv_out_channels: int = 256,
                 num_classes: int = 80,
                 class_agnostic: int = False,
                 upsample_cfg: dict = dict(type='deconv', scale_factor=2),
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 predictor_cfg: dict = dict(type='Conv'),
                 loss_mask: dict = dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0),
                 init_cfg: Optional[dict] = None) -> None:
        if not isinstance(upsample_cfg, Mapping) or 'type' not in upsample_cfg:
            raise ValueError(f'upsample_cfg must be a dict with a "type" key, such as dict(type="carafe", '
                             f'scale_factor=2), got {upsample_cfg!r}')
        if upsample_cfg['type'] in STOCK_TYPES:
            plugin_cfg, host_cfg = None, upsample_cfg
        else:
            plugin_cfg = normalize_upsample_cfg(upsample_cfg)
            host_cfg = dict(type=None)  # FCNMaskHead builds no upsampler; this class adds it below
        super().__init__(num_convs=num_convs, roi_feat_size=roi_feat_size, in_channels=in_channels,
                         conv_kernel_size=conv_kernel_size, conv_out_channels=conv_out_channels,
                         num_classes=num_classes, class_agnostic=class_agnostic, upsample_cfg=host_cfg,
                         conv_cfg=conv_cfg, norm_cfg=norm_cfg, predictor_cfg=predictor_cfg, loss_mask=loss_mask,
                         init_cfg=init_cfg)
        if plugin_cfg is None:
            return
        # FCNMaskHead (type None) already built conv_logits for `upsample_in_channels`, which every upsampler
        # keeps: only the upsampler itself is missing.
        channels = self.conv_out_channels if self.num_convs > 0 else self.in_channels
        scale_factor = plugin_cfg.pop('scale_factor', 2)
        upsampler = build_checked_upsampler(plugin_cfg, channels, scale_factor)
        if is_guided(upsampler):
            raise ValueError(f'upsample_cfg type {plugin_cfg["type"]!r} is a guided upsampler; the mask head has '
                             f'no high-resolution guide (spec/necks.md (C)): use an unguided one')
        self.upsample = upsampler
        self.upsample_method = plugin_cfg['type']
        self.upsample_cfg = plugin_cfg
        self.scale_factor = scale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``FCNMaskHead.forward`` on the (num_rois, in_channels, H, W) RoI features, checked first."""
        check_4d('x', x, f'(num_rois, {self.in_channels}, H, W)')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'UpsampleFCNMaskHead was built for in_channels={self.in_channels}: x must have shape '
                             f'(num_rois, {self.in_channels}, H, W), got {tuple(x.shape)}')
        return super().forward(x)

    def init_weights(self) -> None:
        """``FCNMaskHead.init_weights``, then the learned upsampler's own init (it is not mmcv's CARAFEPack, so
        mmdet would leave it at whatever ran before)."""
        super().init_weights()
        if self.upsample_method not in STOCK_TYPES and hasattr(self.upsample, 'init_weights'):
            self.upsample.init_weights()
