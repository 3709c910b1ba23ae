"""One module per method; importing this package registers them all (see ``upsample_plugin.registry``)."""
from .base import Upsampler
from .carafe import CARAFEPack
from .dysample import DySample

__all__ = ['Upsampler', 'CARAFEPack', 'DySample']
