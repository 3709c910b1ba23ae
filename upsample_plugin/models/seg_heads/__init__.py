"""MMSegmentation 1.x decode heads with configurable upsamplers (spec/necks.md (E) UPerNet, (F) SegFormer).

Importing this package registers ``UpsampleUPerHead``, ``UpsampleSegformerHead`` (mmseg 1.x's SegFormer head) and
``NVlabsSegFormerHead`` (the NVlabs head behind the papers' SegFormer numbers) in ``mmseg.registry.MODELS``
(configs: ``custom_imports=dict(imports=['upsample_plugin.models.seg_heads'])``).
"""
from .nvlabs_segformer_head import NVlabsSegFormerHead
from .upsample_segformer_head import UpsampleSegformerHead
from .upsample_uper_head import UpsampleUPerHead

__all__ = ['UpsampleUPerHead', 'UpsampleSegformerHead', 'NVlabsSegFormerHead']
