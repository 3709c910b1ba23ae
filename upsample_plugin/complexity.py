"""Counting multiply-accumulates (MACs) of models that use the plugin's ops.

mmengine's ``FlopAnalyzer`` (a port of fvcore's) traces a model with ``torch.jit`` and counts each recorded op
with a handle; it counts one multiply-add as one "flop", i.e. it counts MACs. It knows convolutions, matmuls,
einsum, norms and ``grid_sampler`` (4 MACs per sampled value, bilinear), but not the plugin's compiled ops,
which appear in a trace as single ``upsample_plugin::*`` nodes. The rules added here:

* ``carafe_forward``: ``k*k`` MACs per output element (one weighted tap each), spec/carafe.md;
* ``dlu_forward``: the same reassembly plus bilinear sampling of the kernels, ``4*k*k*G`` MACs per output
  pixel, spec/dlu.md / numbers.md ("+400 kernel sampling" per low-res pixel at k=5, s=2);
* ``ddf_forward``: ``k*k`` MACs per output element, plus ``k*k`` filter products for ``combine='mul'``.

Softmax, sigmoid and other element-wise ops are not counted (as in the papers' tables). On the pure-PyTorch
fallback (no compiled extension) the references are traced instead: CARAFE's einsum is counted exactly, but
element-wise products (the DDF and DLU references) are not, so :func:`flop_analyzer` warns.
"""
from __future__ import annotations

import warnings
from typing import Any, List

import torch


def _shape(value: Any) -> List[int]:
    from mmengine.analysis.jit_handles import get_shape
    return get_shape(value)


def _constant(value: Any):
    return value.toIValue()


def _numel(shape) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def carafe_forward_macs(inputs: List[Any], outputs: List[Any]) -> int:
    kernel_size = _constant(inputs[2])
    return _numel(_shape(outputs[0])) * kernel_size * kernel_size


def dlu_forward_macs(inputs: List[Any], outputs: List[Any]) -> int:
    kernel_size, group_size = _constant(inputs[3]), _constant(inputs[4])
    n, _, height, width = _shape(outputs[0])
    taps = kernel_size * kernel_size
    return _numel(_shape(outputs[0])) * taps + 4 * taps * group_size * n * height * width


def ddf_forward_macs(inputs: List[Any], outputs: List[Any]) -> int:
    kernel_size = _constant(inputs[3])
    combine = _constant(inputs[6])
    per_tap = 2 if combine == 'mul' else 1
    return _numel(_shape(outputs[0])) * kernel_size * kernel_size * per_tap


#: jit op name -> MAC counting handle, for ``FlopAnalyzer.set_op_handle``.
OP_HANDLES = {
    'upsample_plugin::carafe_forward': carafe_forward_macs,
    'upsample_plugin::dlu_forward': dlu_forward_macs,
    'upsample_plugin::ddf_forward': ddf_forward_macs,
}


def flop_analyzer(model: torch.nn.Module, inputs):
    """A ``FlopAnalyzer`` over ``model(*inputs)`` that also counts the plugin's compiled ops."""
    from mmengine.analysis import FlopAnalyzer

    from .ops._library import compiled_available
    if not compiled_available():
        warnings.warn('upsample_plugin: compiled ops unavailable, MACs of the DDF/DLU references are undercounted '
                      '(element-wise products are not counted by the tracer)', stacklevel=2)
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**OP_HANDLES)
    return analyzer
