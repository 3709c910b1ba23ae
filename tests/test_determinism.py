"""``torch.use_deterministic_algorithms(True)`` and every upsampler (issue 8, "determinism"); docs/determinism.md.

* On CPU, under the flag, forward + backward of every upsampler run without error and two runs give bitwise
  equal outputs and gradients (inputs and parameters), with the compiled ops and with the pure-PyTorch
  references. The flag also makes PyTorch fill uninitialised memory with NaN, so a kernel that left an output
  element unwritten would show as a non-finite value here.
* CUDA cannot run on this machine. Which upsampler meets a CUDA op that PyTorch's documentation of
  ``torch.use_deterministic_algorithms`` lists as nondeterministic is decided by the ops it calls, which are the
  same on every device: the ATen ops of forward + backward are recorded on CPU and matched against that list
  (``CUDA_FLAGGED_OPS``); the result must equal the table of docs/determinism.md (``EXPECTED_CUDA_FLAGGED``).

The op-level determinism of the compiled kernels (bitwise equal backward across runs and thread counts) is tested
in test_compiled_ops.py, test_compiled_dlu.py and test_compiled_ddf.py.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from upsample_test_utils import (COMPILED_OP_UPSAMPLERS, MATRIX_CASES, MATRIX_CHANNELS, UPSAMPLER_MATRIX,
                                 build_matrix_upsampler, smooth_inputs, use_op_backend)

from upsample_plugin import build_upsampler


@pytest.fixture
def deterministic_algorithms():
    """Turn the flag on (errors, not warnings) and restore the previous setting afterwards."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


@pytest.fixture
def two_threads():
    """At least two intra-op threads, so that a kernel whose result depended on the work split could show it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(2, previous))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def forward_backward(module, inputs, grad_weight):
    """Output, input gradients and parameter gradients of ``sum(output * grad_weight)``."""
    leaves = [t.detach().requires_grad_() for t in inputs]
    params = [p for p in module.parameters() if p.requires_grad]
    out = module(*leaves)
    grads = torch.autograd.grad((out * grad_weight).sum(), leaves + params, allow_unused=True)
    return [out] + [g for g in grads if g is not None]


@pytest.mark.usefixtures('deterministic_algorithms', 'two_threads')
@pytest.mark.parametrize('name,backend', MATRIX_CASES)
def test_cpu_bitwise_reproducible_under_deterministic_algorithms(name, backend, monkeypatch):
    use_op_backend(monkeypatch, backend)
    module = build_matrix_upsampler(name)
    inputs = smooth_inputs(module, 2, 8, 9)
    grad_weight = torch.randn(2, MATRIX_CHANNELS, 16, 18, generator=torch.Generator().manual_seed(2))
    first = forward_backward(module, inputs, grad_weight)
    second = forward_backward(module, inputs, grad_weight)
    assert len(first) == len(second) > len(inputs)  # the output, every input gradient, parameter gradients
    for a, b in zip(first, second):
        assert torch.isfinite(a).all()
        assert torch.equal(a, b)


# ---- what PyTorch flags on CUDA ----------------------------------------------------------------------------------
#: ATen ops behind the entries of the ``torch.use_deterministic_algorithms`` documentation (torch 2.13) that a
#: feature upsampler could reach, with what the flag does to them on CUDA: 'error' (RuntimeError; a UserWarning
#: with ``warn_only=True``) or 'deterministic' (PyTorch switches to a deterministic implementation).
CUDA_FLAGGED_OPS = {
    'grid_sampler_2d_backward': ('torch.nn.functional.grid_sample, backward', 'error'),
    'upsample_linear1d_backward': ("torch.nn.functional.interpolate, 'linear', backward", 'error'),
    'upsample_bilinear2d_backward': ("torch.nn.functional.interpolate, 'bilinear', backward", 'error'),
    'upsample_bicubic2d_backward': ("torch.nn.functional.interpolate, 'bicubic', backward", 'error'),
    'upsample_trilinear3d_backward': ("torch.nn.functional.interpolate, 'trilinear', backward", 'error'),
    '_adaptive_avg_pool2d_backward': ('torch.nn.AdaptiveAvgPool2d, backward', 'error'),
    'avg_pool3d_backward': ('torch.nn.AvgPool3d, backward', 'error'),
    'reflection_pad2d_backward': ('torch.nn.ReflectionPad2d, backward', 'error'),
    'cumsum': ('torch.cumsum (floating point)', 'error'),
    'put_': ('torch.Tensor.put_', 'error'),
    'histc': ('torch.histc', 'error'),
    'bincount': ('torch.bincount with weights', 'error'),
    'median': ('torch.median with indices', 'error'),
    'index_add': ('torch.index_add', 'deterministic'),
    'scatter_add': ('torch.Tensor.scatter_add_', 'deterministic'),
    'scatter_add_': ('torch.Tensor.scatter_add_', 'deterministic'),
    'index_put': ('torch.Tensor.index_put', 'deterministic'),
    'index_put_': ('torch.Tensor.index_put', 'deterministic'),
    '_index_put_impl_': ('torch.Tensor.index_put', 'deterministic'),
    'index_copy': ('torch.Tensor.index_copy', 'deterministic'),
    'gather': ('torch.gather (backward: scatter_add)', 'deterministic'),
    'index_select_backward': ('torch.index_select, backward', 'deterministic'),
    'scatter': ('torch.Tensor.scatter', 'deterministic'),
    'scatter_reduce': ('torch.Tensor.scatter_reduce', 'deterministic'),
    'replication_pad2d_backward': ('torch.nn.ReplicationPad2d, backward', 'deterministic'),
    'max_pool3d_with_indices_backward': ('torch.nn.MaxPool3d, backward', 'deterministic'),
}

#: The table of docs/determinism.md: the flagged ops each upsampler runs (forward + backward, gradients for the
#: inputs and the parameters). Convolutions (also flagged, made deterministic by the flag) are left out: every
#: upsampler has them. The compiled ops (CARAFE, DLU, DDF) are unknown to the flag; they are deterministic by
#: construction (gathers, no atomics) on CPU and CUDA.
EXPECTED_CUDA_FLAGGED = {
    ('portable_carafe', 'compiled'): set(),
    ('portable_carafe', 'reference'): set(),
    ('dysample_lp', 'reference'): {'grid_sampler_2d_backward'},
    ('dysample_lp_dyscope', 'reference'): {'grid_sampler_2d_backward'},
    ('dysample_pl', 'reference'): {'grid_sampler_2d_backward'},
    ('dysample_pl_dyscope', 'reference'): {'grid_sampler_2d_backward'},
    ('dlu', 'compiled'): set(),
    ('dlu', 'reference'): {'grid_sampler_2d_backward'},
    ('ddf_up', 'compiled'): set(),
    ('ddf_up', 'reference'): set(),
    ('ddf_up_joint_bilinear', 'compiled'): {'upsample_bilinear2d_backward'},
    ('ddf_up_joint_area', 'compiled'): {'_adaptive_avg_pool2d_backward'},
    ('lda_aqu', 'reference'): {'grid_sampler_2d_backward', 'upsample_bilinear2d_backward'},
    ('fade', 'compiled'): set(),
    ('fade', 'reference'): set(),
    ('fade_lite', 'compiled'): set(),
    ('fade_lite', 'reference'): set(),
    ('sapa', 'compiled'): set(),
    ('sapa', 'reference'): set(),
    ('sapadeform', 'reference'): {'grid_sampler_2d_backward'},
    ('freqfusion', 'compiled'): {'grid_sampler_2d_backward'},
    ('freqfusion', 'reference'): {'grid_sampler_2d_backward'},
    ('frfu', 'compiled'): {'grid_sampler_2d_backward'},
    ('frfu', 'reference'): {'grid_sampler_2d_backward'},
}
#: DDF-Up with a guidance map of another size, resized in the module (``joint_resize``); joint_x gets gradients.
JOINT_RESIZE_CASES = {'ddf_up_joint_bilinear': 'bilinear', 'ddf_up_joint_area': 'area'}


class AtenOpRecorder(TorchDispatchMode):
    """Records every op that reaches the dispatcher, backward included: ATen ops by bare name, the plugin's
    compiled ops as ``upsample_plugin.<op>``."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)  # 'aten.grid_sampler_2d_backward', 'upsample_plugin.carafe_forward'
        self.ops.add(name[len('aten.'):] if name.startswith('aten.') else name)
        return func(*args, **(kwargs or {}))


def module_and_inputs(name):
    """A module, its forward arguments and keyword arguments; DDF-Up's joint-resize variants get a 4 x 5 joint_x."""
    if name in JOINT_RESIZE_CASES:
        module = build_upsampler(dict(type='ddf_up', joint_resize=JOINT_RESIZE_CASES[name]), MATRIX_CHANNELS, 2)
        joint_x = torch.randn(2, MATRIX_CHANNELS, 4, 5, generator=torch.Generator().manual_seed(3),
                              requires_grad=True)
        return module, smooth_inputs(module, 2, 8, 9), dict(joint_x=joint_x)
    module = build_matrix_upsampler(name)
    return module, smooth_inputs(module, 2, 8, 9), {}


@pytest.mark.parametrize('name,backend', list(EXPECTED_CUDA_FLAGGED))
def test_cuda_flagged_ops_match_the_documentation(name, backend, monkeypatch):
    use_op_backend(monkeypatch, backend)
    module, inputs, kwargs = module_and_inputs(name)
    leaves = [t.detach().requires_grad_() for t in inputs]
    recorder = AtenOpRecorder()
    with recorder:
        out = module(*leaves, **kwargs)
        out.sum().backward()
    flagged = {op for op in recorder.ops if op in CUDA_FLAGGED_OPS}
    assert flagged == EXPECTED_CUDA_FLAGGED[(name, backend)]
    # The recorder sees the compiled ops too: they are the ones that replace grid_sample (DLU) and unfold.
    uses_compiled_op = any(op.startswith('upsample_plugin.') for op in recorder.ops)
    assert uses_compiled_op == (backend == 'compiled')


def test_every_matrix_upsampler_is_documented():
    assert {name for name, _ in EXPECTED_CUDA_FLAGGED} >= set(UPSAMPLER_MATRIX)
    assert {(name, 'compiled') for name in COMPILED_OP_UPSAMPLERS} <= set(EXPECTED_CUDA_FLAGGED)
