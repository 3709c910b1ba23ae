"""The plugin's ops, one module each: a checked entry point that dispatches to the fastest available kernel,
and the pure-PyTorch ``*_reference`` that defines the math.

``UPSAMPLE_PLUGIN_FORCE_REFERENCE=1`` forces the references everywhere, e.g. to compare paths.
``compiled_available()`` tells whether the compiled ops (``upsample_plugin._C``, ``ops/csrc``) are loaded;
``cpu_isa()`` / ``set_cpu_isa()`` read and set the instruction set of their CPU kernels.
"""
from ._checks import force_reference
from ._library import compiled_available, cpu_isa, set_cpu_isa
from .carafe import carafe, carafe_reference
from .ddf import ddf, ddf_reference
from .dlu import dlu_expand_kernels, dlu_reassemble, dlu_reassemble_reference
from .sapa import (sapa_deform_aggregation, sapa_deform_aggregation_reference, sapa_deform_similarity,
                   sapa_deform_similarity_reference, sapa_similarity, sapa_similarity_reference)

__all__ = ['force_reference', 'compiled_available', 'cpu_isa', 'set_cpu_isa', 'carafe', 'carafe_reference', 'ddf', 'ddf_reference',
           'dlu_expand_kernels', 'dlu_reassemble', 'dlu_reassemble_reference', 'sapa_similarity',
           'sapa_similarity_reference', 'sapa_deform_similarity', 'sapa_deform_similarity_reference',
           'sapa_deform_aggregation', 'sapa_deform_aggregation_reference']
