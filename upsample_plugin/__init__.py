"""upsample_plugin: learned feature upsamplers for MMDetection 3.x and MMSegmentation 1.x.

Importing the package registers every upsampler in mmengine's root ``MODELS`` registry, so mm configs use them
through ``custom_imports = dict(imports=['upsample_plugin'], allow_failed_imports=False)`` and
``mmcv.cnn.build_upsample_layer(dict(type='dysample', ...))``.

The core needs torch only: the upsamplers, the ops and :func:`build_upsampler` work without mmengine, mmcv, mmdet
or mmseg (plain PyTorch, other frameworks). The registration into mmengine's ``MODELS`` happens when mmengine is
importable, and the mm integration (:mod:`upsample_plugin.models`: necks, heads, backbones) is imported when
mmengine and mmcv are.

Input validation and the NaN/Inf policy: docs/input_validation.md. ``set_check_finite(True)``, the context
manager ``check_finite()`` or ``UPSAMPLE_PLUGIN_CHECK_FINITE=1`` make every entry point reject NaN/Inf inputs.
"""
import importlib.util

from . import ops
from .ops._checks import check_finite, check_finite_enabled, set_check_finite
from .registry import UPSAMPLE_LAYERS, UnknownUpsamplerError, build_upsampler, plugin_upsamplers, register_upsampler
from .upsamplers import (FADE, FRFU, LDA_AQU, SAPA, CARAFEPack, DDFUpPack, DLUPack, DySample, FADELite, FreqFusion,
                         SAPADeform, Upsampler)

if all(importlib.util.find_spec(name) is not None for name in ('mmengine', 'mmcv')):
    from . import models  # mm integration (necks, heads); registers into mmdet/mmseg when they are installed

__version__ = '0.1.0'
__all__ = ['ops', 'UPSAMPLE_LAYERS', 'build_upsampler', 'register_upsampler', 'plugin_upsamplers', 'Upsampler',
           'CARAFEPack', 'DDFUpPack', 'DLUPack', 'DySample', 'FADE', 'FADELite', 'FreqFusion', 'FRFU', 'LDA_AQU',
           'SAPA', 'SAPADeform', 'UnknownUpsamplerError', 'check_finite', 'check_finite_enabled', 'set_check_finite',
           '__version__']
