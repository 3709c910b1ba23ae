"""Integration with MMDetection and MMSegmentation: necks and heads whose upsampling is any upsampler config.

``import upsample_plugin`` imports this package, which registers the mmdet parts (``UpsampleFPN``,
``UpsampleFCNMaskHead``, ``UpsamplePanopticFPNHead``) in ``mmdet.registry.MODELS`` when mmdet is installed and
the mmseg parts (``UpsampleUPerHead``, ``UpsampleSegformerHead``) in ``mmseg.registry.MODELS`` when mmseg is,
so either library alone suffices and ``custom_imports=dict(imports=['upsample_plugin'])`` gives a config all of
them. The upsamplers themselves never import mmdet or mmseg.

The backbones (``LiteHRNet``) need only mmcv/mmengine: they are registered in mmengine's root ``MODELS``, which
both libraries' registries fall back to, and are always imported.
"""
import importlib.util
import warnings

from . import backbones
from .backbones import LiteHRNet

__all__ = ['backbones', 'LiteHRNet']


def _import_integration(library: str, *modules: str) -> None:
    if importlib.util.find_spec(library) is None:
        return
    for module in modules:
        try:
            imported = importlib.import_module(f'{__name__}.{module}')
        except ImportError as error:  # e.g. mmdet installed over mmcv-lite (no compiled RoIAlign/nms)
            warnings.warn(f'upsample_plugin: {library} is installed but its integration could not be imported '
                          f'({error}); the {library} necks/heads of the plugin are unavailable.', stacklevel=3)
            return
        __all__.extend(imported.__all__)
        globals().update({name: getattr(imported, name) for name in imported.__all__})


_import_integration('mmdet', 'necks', 'heads')
_import_integration('mmseg', 'seg_heads')
