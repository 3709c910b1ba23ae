"""``torch.compile(fullgraph=True)`` of every upsampler (issue 8, "torch.compile").

The whole matrix runs with ``backend='aot_eager'``: dynamo must capture each forward as one graph (fullgraph
raises on any graph break), AOTAutograd traces the forward and backward with fake tensors (so the compiled ops'
fake kernels must give the right shapes and dtypes), and the result must equal eager mode, output and input
gradients. Upsamplers that call a compiled op (CARAFE, DLU, DDF) run twice: with the op, which must appear in
the captured graph, and with ``UPSAMPLE_PLUGIN_FORCE_REFERENCE=1``, where the graph holds only ATen ops.
``dynamic=True`` must serve two input sizes with one graph (three cases). Inductor (the default backend, which
generates and compiles C++ here) runs for two cases only, DySample and CARAFE with the compiled op, to keep the
file fast.
The op-level compile tests live in test_compiled_ops.py, test_compiled_dlu.py and test_compiled_ddf.py.
"""
from __future__ import annotations

import shutil

import pytest
import torch
from upsample_test_utils import (COMPILED_OP_UPSAMPLERS, MATRIX_CASES, build_matrix_upsampler, smooth_inputs,
                                 use_op_backend)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each case compiles from scratch: no cached graph or guard from a previous case."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class RecordingBackend:
    """``aot_eager`` that keeps every graph dynamo hands it."""

    def __init__(self):
        self.graphs = []
        self._aot_eager = torch._dynamo.lookup_backend('aot_eager')

    def __call__(self, graph_module, example_inputs):
        self.graphs.append(graph_module)
        return self._aot_eager(graph_module, example_inputs)

    def computing_graphs(self) -> list:
        """The recorded graphs that call anything (dynamo may also hand over an empty one, e.g. for a frame that
        only evaluates a constant-result helper)."""
        return [graph for graph in self.graphs if any(node.op == 'call_function' for node in graph.graph.nodes)]

    def plugin_ops(self) -> set:
        """The ``upsample_plugin::*`` ops called in the recorded graphs."""
        return {str(node.target) for graph in self.graphs for node in graph.graph.nodes
                if node.op == 'call_function' and str(node.target).startswith('upsample_plugin.')}


def output_and_input_grads(module, inputs, grad_weight):
    leaves = [t.detach().requires_grad_() for t in inputs]
    out = module(*leaves)
    return out, torch.autograd.grad((out * grad_weight).sum(), leaves)


def assert_matches_eager(compiled, module, inputs):
    """``compiled`` gives ``module``'s output and input gradients (of a fixed random weighting of the output)."""
    n, channels, height, width = inputs[0].shape
    grad_weight = torch.randn(n, channels, 2 * height, 2 * width, generator=torch.Generator().manual_seed(2))
    out, grads = output_and_input_grads(compiled, inputs, grad_weight)
    expected, expected_grads = output_and_input_grads(module, inputs, grad_weight)
    # AOTAutograd decomposes some ops (e.g. GELU, LayerNorm): float32 rounding may differ, nothing more.
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name,backend', MATRIX_CASES)
def test_fullgraph_aot_eager_matches_eager(name, backend, monkeypatch):
    use_op_backend(monkeypatch, backend)
    module = build_matrix_upsampler(name)
    inputs = smooth_inputs(module, 2, 8, 9)
    recorder = RecordingBackend()
    assert_matches_eager(torch.compile(module, fullgraph=True, backend=recorder), module, inputs)
    assert len(recorder.computing_graphs()) == 1
    if backend == 'compiled' and name in COMPILED_OP_UPSAMPLERS:
        assert recorder.plugin_ops()  # traced through the fake kernel, not around it
    else:
        assert not recorder.plugin_ops()


@pytest.mark.parametrize('name,backend', [('portable_carafe', 'compiled'), ('dlu', 'compiled'),
                                          ('dysample_lp', 'reference')])
def test_dynamic_shapes_one_graph_for_two_sizes(name, backend, monkeypatch):
    """``dynamic=True``: the fake kernels (CARAFE, DLU) and the grid arithmetic (DySample) stay symbolic, so a
    second input size reuses the first graph (no recompilation) and still matches eager mode. Three cases only:
    symbolic tracing costs 2-20 s per upsampler here."""
    use_op_backend(monkeypatch, backend)
    module = build_matrix_upsampler(name)
    recorder = RecordingBackend()
    compiled = torch.compile(module, fullgraph=True, dynamic=True, backend=recorder)
    for height, width in ((8, 9), (5, 12)):
        assert_matches_eager(compiled, module, smooth_inputs(module, 2, height, width))
    assert len(recorder.computing_graphs()) == 1


@pytest.mark.skipif(shutil.which('c++') is None and shutil.which('g++') is None,
                    reason='no C++ compiler on PATH: inductor compiles its CPU kernels with one')
@pytest.mark.parametrize('name,backend', [('dysample_lp', 'reference'), ('portable_carafe', 'compiled')])
def test_inductor_matches_eager(name, backend, monkeypatch):
    """The default backend generates and compiles C++ kernels (about 5-15 s per case on one core the first time;
    inductor caches them on disk)."""
    use_op_backend(monkeypatch, backend)
    module = build_matrix_upsampler(name)
    assert_matches_eager(torch.compile(module, fullgraph=True), module, smooth_inputs(module, 1, 6, 7))
