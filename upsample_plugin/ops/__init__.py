"""The plugin's ops, one module each: a checked entry point that dispatches to the fastest available kernel,
and the pure-PyTorch ``*_reference`` that defines the math.

``UPSAMPLE_PLUGIN_FORCE_REFERENCE=1`` forces the references everywhere, e.g. to compare paths.
"""
from ._checks import force_reference
from .carafe import carafe, carafe_reference

__all__ = ['carafe', 'carafe_reference', 'force_reference']
