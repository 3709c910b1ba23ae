"""mmdet heads of the plugin (importing registers them in ``mmdet.registry.MODELS``); spec/necks.md (C), (D)."""
from .upsample_mask_head import UpsampleFCNMaskHead
from .upsample_panoptic_head import UpsampleConvUpsample, UpsamplePanopticFPNHead

__all__ = ['UpsampleFCNMaskHead', 'UpsamplePanopticFPNHead', 'UpsampleConvUpsample']
