"""Panoptic FPN's semantic head with configurable x2 steps (spec/necks.md, section (D)).

The Panoptic FPN *neck* is topology A: use ``UpsampleFPN(..., topology='fpn', upsample_cfg=...)`` as the
detector's ``neck`` (that is what the DySample Panoptic FPN numbers replaced: 3 modules, spec (D)). This file makes
the semantic head's own bilinear x2 steps configurable too; by default they stay bilinear, as in every published
setting.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from mmdet.models.layers import ConvUpsample
from mmdet.models.seg_heads import PanopticFPNHead
from mmdet.registry import MODELS
from mmengine.model import ModuleList

from ...ops._checks import check_4d
from ..necks.upsample_fpn import UpsamplerList, build_checked_upsampler, normalize_upsample_cfg
from ..utils import is_guided, upsample_to


class UpsampleConvUpsample(ConvUpsample):
    """mmdet ``ConvUpsample`` (3x3 ConvModule, then x2 for the first ``num_upsample`` layers) with one upsampler
    per x2 step, built with ``build_upsampler(upsample_cfg, inner_channels, 2)``.

    Parameter names are ``ConvUpsample``'s (``conv.*``) plus ``upsamplers.*`` (nothing for bilinear/nearest).
    ``forward(x, targets=None)``: ``targets[k]`` (optional) is a map whose size the k-th x2 step is fitted to
    (top-left crop / replicate pad, :func:`upsample_plugin.models.utils.upsample_to`).
    """

    def __init__(self, in_channels: int, inner_channels: int, num_layers: int = 1,
                 num_upsample: Optional[int] = None, conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None, upsample_cfg: Optional[dict] = dict(type='bilinear'),
                 init_cfg: Optional[dict] = None, **kwargs) -> None:
        num_upsample = num_layers if num_upsample is None else num_upsample
        if num_upsample > num_layers:
            raise ValueError(f'num_upsample={num_upsample} must be <= num_layers={num_layers}')
        super().__init__(in_channels, inner_channels, num_layers=num_layers, num_upsample=num_upsample,
                         conv_cfg=conv_cfg, norm_cfg=norm_cfg, init_cfg=init_cfg, **kwargs)
        cfg = normalize_upsample_cfg(upsample_cfg)
        # UpsamplerList: mmengine calls its init_weights after this module's init_cfg, restoring the
        # upsamplers' own init.
        self.upsamplers = UpsamplerList(
            build_checked_upsampler(cfg, inner_channels) for _ in range(num_upsample))
        for upsampler in self.upsamplers:
            if is_guided(upsampler):
                raise ValueError(f'upsample_cfg type {cfg["type"]!r} is a guided upsampler; the semantic head '
                                 f'upsamples its own 128-channel features, which have no guide map '
                                 f'(spec/necks.md (D)): use an unguided upsampler')

    def forward(self, x: torch.Tensor, targets: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
        for i in range(self.num_layers):
            x = self.conv[i](x)
            if i < self.num_upsample:
                upsampler = self.upsamplers[i]
                x = upsampler(x) if targets is None else upsample_to(upsampler, x, targets[i])
        return x


@MODELS.register_module()
class UpsamplePanopticFPNHead(PanopticFPNHead):
    """``PanopticFPNHead`` whose semantic branch upsamples with ``upsample_cfg`` (spec/necks.md (D)).

    Arguments are ``PanopticFPNHead``'s plus ``upsample_cfg`` (default ``dict(type='bilinear')``: numerically
    the stock head, same parameter names). Level i (P2..P5 for ``start_level=0``) has i x2 steps, each its own
    upsampler at ``inner_channels`` (6 modules for 4 levels). Each step is fitted to the size of the next finer
    FPN level (top-left crop, the geometry of the padded pipeline), so unpadded inputs work too; the stock head
    fails there when it stacks maps of different sizes.

    Guided upsamplers (FADE, SAPA) are rejected with ``ValueError``: the steps upsample the head's own
    ``inner_channels`` features, for which no finer map of that width exists (using the 256-channel FPN
    levels as guides would be an unpublished design).
    """

    def __init__(self,
                 num_things_classes: int = 80,
                 num_stuff_classes: int = 53,
                 in_channels: int = 256,
                 inner_channels: int = 128,
                 start_level: int = 0,
                 end_level: int = 4,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='GN', num_groups=32, requires_grad=True),
                 loss_seg: dict = dict(type='CrossEntropyLoss', ignore_index=-1, loss_weight=1.0),
                 upsample_cfg: Optional[dict] = dict(type='bilinear'),
                 init_cfg: Optional[dict] = None) -> None:
        if not 0 <= start_level < end_level:
            raise ValueError(f'need 0 <= start_level < end_level, got start_level={start_level}, '
                             f'end_level={end_level}')
        super().__init__(num_things_classes=num_things_classes, num_stuff_classes=num_stuff_classes,
                         in_channels=in_channels, inner_channels=inner_channels, start_level=start_level,
                         end_level=end_level, conv_cfg=conv_cfg, norm_cfg=norm_cfg, loss_seg=loss_seg,
                         init_cfg=init_cfg)
        self.in_channels = in_channels  # PanopticFPNHead does not keep it; forward checks the levels against it
        self.upsample_cfg = normalize_upsample_cfg(upsample_cfg)
        # Same layer arguments as PanopticFPNHead (level i: max(i, 1) convs, i x2 steps), rebuilt with
        # configurable steps.
        self.conv_upsample_layers = ModuleList(
            UpsampleConvUpsample(in_channels, inner_channels, num_layers=max(i, 1), num_upsample=i,
                                 conv_cfg=conv_cfg, norm_cfg=norm_cfg, upsample_cfg=self.upsample_cfg)
            for i in range(start_level, end_level))

    def forward(self, x: Tuple[torch.Tensor]) -> Dict[str, torch.Tensor]:
        if not isinstance(x, (list, tuple)) or len(x) < self.end_level:
            got = f'{len(x)} feature maps' if isinstance(x, (list, tuple)) else type(x).__name__
            raise ValueError(f'UpsamplePanopticFPNHead uses levels {self.start_level}..{self.end_level - 1}: x must '
                             f'be a list of at least {self.end_level} (N, {self.in_channels}, H, W) maps, got {got}')
        for level in range(self.start_level, self.end_level):
            check_4d(f'x[{level}]', x[level], f'(N, {self.in_channels}, H, W)')
            if x[level].shape[1] != self.in_channels:
                raise ValueError(f'UpsamplePanopticFPNHead was built for in_channels={self.in_channels}: x[{level}] '
                                 f'must have shape (N, {self.in_channels}, H, W), got {tuple(x[level].shape)}')
        feats = []
        for i, layer in enumerate(self.conv_upsample_layers):
            level = self.start_level + i
            # The k-th x2 step of this level lands on the size of FPN level `level - k - 1`.
            targets = [x[level - k - 1] for k in range(layer.num_upsample)]
            feats.append(layer(x[level], targets))
        seg_feats = torch.sum(torch.stack(feats, dim=0), dim=0)
        seg_preds = self.conv_logits(seg_feats)
        return dict(seg_preds=seg_preds, seg_feats=seg_feats)
