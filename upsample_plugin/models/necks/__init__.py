"""mmdet necks of the plugin (importing registers them in ``mmdet.registry.MODELS``); spec/necks.md."""
from .upsample_fpn import UpsampleFPN, UpsamplerList

__all__ = ['UpsampleFPN', 'UpsamplerList']
