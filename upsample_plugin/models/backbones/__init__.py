"""Backbones of the plugin (mmcv/mmengine only, no mmdet/mmseg import): registered in mmengine's root ``MODELS``,
which the scoped registries of mmdet and mmseg fall back to, so ``backbone=dict(type='LiteHRNet', ...)`` builds
in any default scope once ``upsample_plugin`` is imported."""
from .lite_hrnet import (LITE_HRNET_18, LITE_HRNET_30, NAIVE_LITE_HRNET_18, WIDER_NAIVE_LITE_HRNET_18,
                         ConditionalChannelWeighting, CrossResolutionWeighting, IterativeHead, LiteHRModule,
                         LiteHRNet, ShuffleUnit, SpatialWeighting, Stem)

__all__ = ['LiteHRNet', 'LiteHRModule', 'ConditionalChannelWeighting', 'CrossResolutionWeighting',
           'SpatialWeighting', 'ShuffleUnit', 'Stem', 'IterativeHead', 'LITE_HRNET_18', 'LITE_HRNET_30',
           'NAIVE_LITE_HRNET_18', 'WIDER_NAIVE_LITE_HRNET_18']
