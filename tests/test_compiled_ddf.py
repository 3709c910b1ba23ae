"""The compiled DDF ops (upsample_plugin._C: ops/csrc/cpu/ddf_cpu.cpp, cuda/ddf_cuda.cu, include/ddf_common.h)
against the pure-PyTorch reference: forward and the three gradients for 'mul'/'add', kernel sizes, dilations,
strides and edge shapes, gradients of every order, dtypes, layouts, determinism, torch.library registration
(opcheck, torch.compile), the C++ argument checks, the CUDA kernels' per-element functions (run on the CPU),
and the dispatch of ``ddf(..., backend=)``."""
import sys

import pytest
import torch
from upsample_test_utils import compile_element_harness

from upsample_plugin.ops import _library_ddf
from upsample_plugin.ops.ddf import ddf, ddf_reference
from upsample_plugin.upsamplers.ddf_up import DDFPack, DDFUpPack

requires_ext = pytest.mark.skipif(
    not _library_ddf.ddf_compiled_available('cpu'),
    reason='upsample_plugin._C has no DDF kernels; build it with `pip install --no-build-isolation --no-deps -e .`')
ops = torch.ops.upsample_plugin


def random_inputs(n, c, h, w, k, s=1, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    channel_filter = torch.randn(n, c, k, k, generator=gen, dtype=dtype)
    spatial_filter = torch.randn(n, k * k, h // s, w // s, generator=gen, dtype=dtype)
    return features, channel_filter, spatial_filter


def compiled_and_reference(inputs, k, d, s, combine, seed=1):
    """(out, grad_features, grad_channel, grad_spatial) of the compiled op and of the reference."""
    results = []
    for backend in ('compiled', 'reference'):
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        out = ddf(*leaves, k, d, s, combine, backend=backend)
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        grad_out = grad_out.to(out.dtype)
        results.append((out, *torch.autograd.grad(out, leaves, grad_out)))
    return results


NAMES = ('output', 'grad_features', 'grad_channel_filter', 'grad_spatial_filter')


def assert_matches(inputs, k, d, s, combine, dtype):
    compiled, reference = compiled_and_reference(inputs, k, d, s, combine)
    for name, got, expected in zip(NAMES, compiled, reference):
        assert got.dtype == dtype and got.shape == expected.shape, name
        torch.testing.assert_close(got, expected, rtol=1e-5 if dtype == torch.float32 else 0,
                                   atol=1e-5 if dtype == torch.float32 else 1e-12,
                                   msg=lambda msg: f'{name}: {msg}')


@requires_ext
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('combine', ['mul', 'add'])
@pytest.mark.parametrize('k', [3, 5])
@pytest.mark.parametrize('d', [1, 2])
@pytest.mark.parametrize('s', [1, 2])
def test_matches_reference(dtype, combine, k, d, s):
    inputs = random_inputs(2, 5, 7, 9, k, s, dtype=dtype)  # odd sizes: stride 2 drops the last row/column
    assert_matches(inputs, k, d, s, combine, dtype)


EDGE_SHAPES = [  # n, c, h, w, k, d, s
    (1, 3, 1, 1, 3, 1, 1),     # 1x1 map: only the centre tap is inside
    (2, 2, 1, 1, 5, 2, 1),
    (1, 2, 1, 6, 3, 2, 1),     # one row
    (1, 4, 6, 4, 3, 1, 2),     # even sizes with stride
    (1, 2, 7, 8, 5, 1, 3),     # stride 3, not dividing H
    (2, 3, 4, 5, 1, 1, 1),     # k = 1: out = F * x
    (1, 2, 3, 5, 7, 1, 1),     # kernel larger than the map
    (1, 2, 5, 5, 3, 3, 2),     # dilation 3 with stride
    (2, 16, 13, 11, 3, 1, 1),  # larger map, more channels
]


@requires_ext
@pytest.mark.parametrize('shape', EDGE_SHAPES)
@pytest.mark.parametrize('combine', ['mul', 'add'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_edge_shapes_match_reference(shape, combine, dtype):
    n, c, h, w, k, d, s = shape
    assert_matches(random_inputs(n, c, h, w, k, s, dtype=dtype), k, d, s, combine, dtype)


@requires_ext
@pytest.mark.parametrize('combine', ['mul', 'add'])
@pytest.mark.parametrize('n,c,h,w,s', [(0, 3, 4, 5, 1), (2, 0, 4, 4, 1), (1, 3, 0, 4, 1), (2, 3, 1, 3, 2)])
def test_empty_outputs(combine, n, c, h, w, s):
    inputs = [t.requires_grad_() for t in random_inputs(n, c, h, w, 3, s)]
    out = ddf(*inputs, 3, 1, s, combine, backend='compiled')
    assert out.shape == (n, c, h // s, w // s)
    out.sum().backward()
    for t in inputs:
        assert t.grad is not None and t.grad.shape == t.shape and not t.grad.any()


def _layout(t, layout):
    if layout == 'channels_last':
        return t.to(memory_format=torch.channels_last)
    if layout == 'strided':  # every other column of a wider tensor
        return torch.stack([t, torch.zeros_like(t)], -1).flatten(-2)[..., ::2]
    return t


@requires_ext
@pytest.mark.parametrize('layout', ['channels_last', 'strided'])
@pytest.mark.parametrize('combine', ['mul', 'add'])
def test_layouts_match_contiguous(layout, combine):
    inputs = random_inputs(2, 4, 7, 6, 3, 2)
    expected = compiled_and_reference(inputs, 3, 2, 2, combine)[0]
    laid_out = [_layout(t, layout) for t in inputs]
    assert layout == 'channels_last' or not any(t.is_contiguous() for t in laid_out)
    got = compiled_and_reference(laid_out, 3, 2, 2, combine)[0]
    for name, a, b in zip(NAMES, got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=lambda msg: f'{name}: {msg}')


GRADCHECK_CASES = [  # n, c, h, w, k, d, s, combine
    (1, 2, 3, 5, 3, 1, 1, 'mul'),
    (2, 2, 5, 4, 3, 2, 2, 'add'),
    (1, 3, 5, 6, 5, 1, 2, 'mul'),
    (1, 2, 1, 1, 3, 1, 1, 'add'),    # 1x1 map
    (1, 2, 4, 3, 1, 1, 1, 'mul'),    # k = 1
    (0, 2, 3, 3, 3, 1, 1, 'mul'),    # empty batch
]


@requires_ext
@pytest.mark.parametrize('case', GRADCHECK_CASES)
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last', 'strided'])
def test_gradcheck(case, layout):
    n, c, h, w, k, d, s, combine = case
    inputs = [_layout(t, layout).requires_grad_() for t in random_inputs(n, c, h, w, k, s)]
    fn = lambda f, cf, sf: ddf(f, cf, sf, k, d, s, combine, backend='compiled')  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=True)


@requires_ext
@pytest.mark.parametrize('combine', ['mul', 'add'])
def test_gradgradcheck_slow_mode(combine):
    inputs = [t.requires_grad_() for t in random_inputs(1, 2, 4, 5, 3, 2)]
    fn = lambda f, cf, sf: ddf(f, cf, sf, 3, 1, 2, combine, backend='compiled')  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, inputs)


@requires_ext
@pytest.mark.parametrize('combine', ['mul', 'add'])
def test_third_order_gradients_match_reference(combine):
    inputs = random_inputs(1, 3, 4, 5, 3, 1)
    results = []
    for backend in ('compiled', 'reference'):
        f, cf, sf = [t.clone().requires_grad_() for t in inputs]
        out = ddf(f, cf, sf, 3, 2, 1, combine, backend=backend)
        g = torch.autograd.grad(out.pow(2).sum(), (f, cf, sf), create_graph=True)
        h = torch.autograd.grad(g[0].sin().sum() + g[1].cos().sum() + g[2].pow(2).sum(), (f, cf, sf),
                                create_graph=True)
        third = torch.autograd.grad((h[0] * h[1].sum()).sum() + h[2].sum() ** 2, (f, cf, sf))
        results.append((*g, *h, *third))
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@requires_ext
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('combine', ['mul', 'add'])
def test_reduced_precision_against_float64(dtype, combine):
    features, channel_filter, spatial_filter = random_inputs(2, 16, 9, 7, 3, 1)
    inputs = [t.to(dtype) for t in (features, channel_filter / 3, spatial_filter / 3)]
    compiled = compiled_and_reference(inputs, 3, 1, 1, combine)[0]
    exact = compiled_and_reference([t.double() for t in inputs], 3, 1, 1, combine)[1]
    for name, got, expected in zip(NAMES, compiled, exact):
        assert got.dtype == dtype
        # float32 accumulation: only the final rounding (half an ulp) is left, plus grad_output's rounding.
        atol = 2 * torch.finfo(dtype).eps * max(1.0, expected.abs().max().item())
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=atol, msg=lambda msg: f'{name}: {msg}')


@requires_ext
@pytest.mark.parametrize('combine', ['mul', 'add'])
def test_deterministic_and_thread_independent(combine):
    inputs = random_inputs(2, 32, 17, 15, 5, 1, dtype=torch.float32)
    grad_out = torch.randn(2, 32, 17, 15, generator=torch.Generator().manual_seed(3))
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 1, max(2, previous), max(2, previous)):
            torch.set_num_threads(threads)
            results.append((ops.ddf_forward(*inputs, 5, 2, 1, combine),
                            *ops.ddf_backward(grad_out, *inputs, 5, 2, 1, combine)))
    finally:
        torch.set_num_threads(previous)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


@requires_ext
@pytest.mark.parametrize('combine', ['mul', 'add'])
@pytest.mark.parametrize('shape', [(2, 3, 5, 7, 3, 1, 1), (1, 2, 1, 1, 5, 2, 1), (1, 3, 6, 5, 3, 2, 2)])
def test_opcheck(combine, shape):
    n, c, h, w, k, d, s = shape
    inputs = random_inputs(n, c, h, w, k, s)
    grad_out = torch.randn(n, c, h // s, w // s, dtype=torch.float64)
    torch.library.opcheck(ops.ddf_forward, (*inputs, k, d, s, combine))
    torch.library.opcheck(ops.ddf_forward, (*[t.clone().requires_grad_() for t in inputs], k, d, s, combine))
    torch.library.opcheck(ops.ddf_backward, (grad_out, *inputs, k, d, s, combine))
    torch.library.opcheck(ops.ddf_backward, (grad_out.clone().requires_grad_(),
                                             *[t.clone().requires_grad_() for t in inputs], k, d, s, combine))


@requires_ext
def test_opcheck_float32_channels_last():
    inputs = random_inputs(2, 8, 6, 7, 3, 1, dtype=torch.float32)
    torch.library.opcheck(ops.ddf_forward, (*[t.to(memory_format=torch.channels_last).requires_grad_()
                                              for t in inputs], 3, 1, 1, 'mul'))


@requires_ext
def test_torch_compile_fullgraph():
    def filt(features, channel_logits, spatial_logits):
        return ddf(features, channel_logits.tanh(), spatial_logits.softmax(1), 3, 1, 1, 'mul') * 2

    inputs = random_inputs(2, 4, 5, 6, 3, 1, dtype=torch.float32)
    compiled = torch.compile(filt, fullgraph=True)
    leaves = [t.clone().requires_grad_() for t in inputs]
    out = compiled(*leaves)
    out.square().sum().backward()
    refs = [t.clone().requires_grad_() for t in inputs]
    expected = ddf_reference(refs[0], refs[1].tanh(), refs[2].softmax(1), 3, 1, 1, 'mul') * 2
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected)
    for a, b in zip(leaves, refs):
        torch.testing.assert_close(a.grad, b.grad)


@requires_ext
@pytest.mark.parametrize('combine,joint', [('mul', False), ('add', True)])
def test_ddf_up_and_ddfpack_compiled_match_reference(monkeypatch, combine, joint):
    """The modules run the compiled op by default; UPSAMPLE_PLUGIN_FORCE_REFERENCE=1 gives the same values."""
    torch.manual_seed(0)
    up = DDFUpPack(8, kernel_size=3, scale_factor=2, kernel_combine=combine,
                   joint_channels=8 if joint else -1).double()
    pack = DDFPack(8, kernel_size=3, stride=2, head=2, se_ratio=0.5, kernel_combine=combine).double()
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    results = []
    for force in ('0', '1'):
        monkeypatch.setenv('UPSAMPLE_PLUGIN_FORCE_REFERENCE', force)
        xi = x.clone().requires_grad_()
        out_up = up(xi, joint_x=xi * 2) if joint else up(xi)
        out_pack = pack(xi)
        (out_up.square().sum() + out_pack.sum()).backward()
        results.append((out_up, out_pack, xi.grad))
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


# ---- the C++ argument checks ---------------------------------------------------------------------------------

GOOD = dict(features=torch.zeros(1, 4, 5, 6), channel_filter=torch.zeros(1, 4, 3, 3),
            spatial_filter=torch.zeros(1, 9, 5, 6), kernel_size=3, dilation=1, stride=1, combine='mul')


@requires_ext
@pytest.mark.parametrize('change,match', [
    (dict(features=torch.zeros(4, 5, 6)), r'features must be 4-D \(N, C, H, W\), got shape \[4, 5, 6\]'),
    (dict(channel_filter=torch.zeros(1, 4, 9)), 'channel_filter must be 4-D'),
    (dict(spatial_filter=torch.zeros(9, 5, 6)), 'spatial_filter must be 4-D'),
    (dict(features=torch.zeros(1, 4, 5, 6, dtype=torch.int64)), 'features must be float16, bfloat16, float32'),
    (dict(channel_filter=torch.zeros(1, 4, 3, 3, dtype=torch.float64)),
     'channel_filter has dtype Double but features has Float'),
    (dict(spatial_filter=torch.zeros(1, 9, 5, 6, dtype=torch.float16)),
     'spatial_filter has dtype Half but features has Float'),
    (dict(kernel_size=4), 'kernel_size must be odd'),
    (dict(kernel_size=-1), 'kernel_size must be odd and >= 1'),
    (dict(dilation=0), 'dilation must be an integer >= 1'),
    (dict(stride=0), 'stride must be an integer >= 1'),
    (dict(combine='max'), "combine must be 'mul' or 'add', got 'max'"),
    (dict(channel_filter=torch.zeros(1, 3, 3, 3)), r'channel_filter must have shape .* = \[1, 4, 3, 3\]'),
    (dict(channel_filter=torch.zeros(1, 4, 5, 5)), r'channel_filter must have shape .* = \[1, 4, 3, 3\]'),
    (dict(spatial_filter=torch.zeros(1, 8, 5, 6)), r'spatial_filter must have shape .* = \[1, 9, 5, 6\]'),
    (dict(stride=2), r'spatial_filter must have shape .* = \[1, 9, 2, 3\]'),
    (dict(spatial_filter=torch.zeros(1, 9, 5, 6, device='meta')), 'spatial_filter is on meta but features is on cpu'),
])
def test_cpp_checks_raise_runtime_error(change, match):
    args = dict(GOOD, **change)
    with pytest.raises(RuntimeError, match=match):
        ops.ddf_forward(*args.values())
    with pytest.raises(RuntimeError, match=match):
        ops.ddf_backward(torch.zeros(1, 4, 5, 6), *args.values())


@requires_ext
@pytest.mark.parametrize('grad_out,match', [
    (torch.zeros(1, 4, 5, 5), r'grad_output must have shape \(N, C, H // stride, W // stride\) = \[1, 4, 5, 6\]'),
    (torch.zeros(1, 4, 5), 'grad_output must be 4-D'),
    (torch.zeros(1, 4, 5, 6, dtype=torch.float64), 'grad_output has dtype Double but features has Float'),
])
def test_cpp_backward_checks_grad_output(grad_out, match):
    with pytest.raises(RuntimeError, match=match):
        ops.ddf_backward(grad_out, *GOOD.values())


# ---- the CUDA kernels' per-element functions, compiled for the CPU -------------------------------------------

ELEMENT_HARNESS = r'''
#include <ATen/ATen.h>
#include <torch/library.h>
#include "ddf_common.h"
using namespace upsample_plugin::ddf;

// The index decomposition of cuda/ddf_cuda.cu, one loop iteration per CUDA thread.
std::vector<at::Tensor> ddf_elements(at::Tensor grad, at::Tensor feat, at::Tensor chan, at::Tensor spat, int64_t k,
                                     int64_t d, int64_t s, c10::string_view combine) {
  const Geometry geo = ddf_check_backward(grad, feat, chan, spat, k, d, s, combine);
  TORCH_CHECK(feat.scalar_type() == at::kDouble, "the harness runs float64");
  grad = grad.contiguous(); feat = feat.contiguous(); chan = chan.contiguous(); spat = spat.contiguous();
  auto out = at::empty({geo.n, geo.c, geo.oh, geo.ow}, feat.options());
  auto gf = at::empty(feat.sizes(), feat.options()), gc = at::empty(chan.sizes(), feat.options()),
       gs = at::empty(spat.sizes(), feat.options());
  const double* g = grad.data_ptr<double>(); const double* f = feat.data_ptr<double>();
  const double* c = chan.data_ptr<double>(); const double* sp = spat.data_ptr<double>();
  const int64_t plane = geo.oh * geo.ow, src = geo.h * geo.w;
  for (int64_t idx = 0; idx < out.numel(); ++idx) {
    const int64_t x = idx % geo.ow, y = (idx / geo.ow) % geo.oh, bc = idx / plane, b = bc / geo.c;
    out.data_ptr<double>()[idx] = forward_element<double, double>(f + bc * src, c + bc * geo.kk,
                                                                  sp + b * geo.kk * plane, y, x, geo);
  }
  for (int64_t idx = 0; idx < gf.numel(); ++idx) {
    const int64_t px = idx % geo.w, py = (idx / geo.w) % geo.h, bc = idx / src, b = bc / geo.c;
    gf.data_ptr<double>()[idx] = feature_grad_element<double, double>(g + bc * plane, c + bc * geo.kk,
                                                                      sp + b * geo.kk * plane, py, px, geo);
  }
  for (int64_t idx = 0; idx < gs.numel(); ++idx) {
    const int64_t x = idx % geo.ow, y = (idx / geo.ow) % geo.oh, t = (idx / plane) % geo.kk,
                  b = idx / (plane * geo.kk);
    gs.data_ptr<double>()[idx] = spatial_grad_element<double, double>(
        g + b * geo.c * plane, f + b * geo.c * src, c + b * geo.c * geo.kk, t, y, x, geo);
  }
  for (int64_t idx = 0; idx < gc.numel(); ++idx) {
    const int64_t t = idx % geo.kk, bc = idx / geo.kk, b = bc / geo.c;
    gc.data_ptr<double>()[idx] = channel_grad_element<double, double>(g + bc * plane, f + bc * src,
                                                                      sp + b * geo.kk * plane, t, geo);
  }
  return {out, gf, gc, gs};
}

TORCH_LIBRARY(upsample_plugin_ddf_test, m) {
  m.def("ddf_elements(Tensor grad, Tensor feat, Tensor chan, Tensor spat, int k, int d, int s, str combine) "
        "-> Tensor[]");
  m.impl("ddf_elements", c10::DispatchKey::CPU, TORCH_FN(ddf_elements));
}
'''


@pytest.fixture(scope='module')
def element_harness(tmp_path_factory):
    """ddf_common.h's per-element functions in a small CPU library (about 10 s to compile)."""
    compile_element_harness(tmp_path_factory, 'ddf_elements', ELEMENT_HARNESS)
    return torch.ops.upsample_plugin_ddf_test.ddf_elements


@pytest.mark.parametrize('shape', [(2, 5, 7, 9, 3, 1, 1), (2, 5, 7, 9, 5, 2, 2), (1, 3, 1, 1, 5, 2, 1),
                                   (1, 2, 7, 8, 5, 1, 3), (2, 3, 4, 5, 1, 1, 1), (1, 2, 3, 5, 7, 1, 1)])
@pytest.mark.parametrize('combine', ['mul', 'add'])
def test_cuda_element_functions_match_reference(element_harness, shape, combine):
    """The bodies of the CUDA kernels (include/ddf_common.h), checked without a GPU."""
    n, c, h, w, k, d, s = shape
    inputs = random_inputs(n, c, h, w, k, s)
    grad_out = torch.randn(n, c, h // s, w // s, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    leaves = [t.clone().requires_grad_() for t in inputs]
    expected_out = ddf_reference(*leaves, k, d, s, combine)
    expected = (expected_out.detach(), *torch.autograd.grad(expected_out, leaves, grad_out))
    for name, got, want in zip(NAMES, element_harness(grad_out, *inputs, k, d, s, combine), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12, msg=lambda msg: f'{name}: {msg}')


@requires_ext
@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device on this machine')
@pytest.mark.parametrize('dtype,atol', [(torch.float64, 1e-12), (torch.float32, 1e-5), (torch.float16, 1e-2),
                                        (torch.bfloat16, 6e-2)])
def test_cuda_matches_cpu(dtype, atol):
    if not _library_ddf.ddf_compiled_available('cuda'):
        pytest.skip('upsample_plugin._C was built without CUDA kernels')
    inputs = [t.to(dtype) for t in random_inputs(2, 16, 9, 7, 3, 2)]
    cpu = compiled_and_reference(inputs, 3, 2, 2, 'mul')[0]
    cuda = compiled_and_reference([t.cuda() for t in inputs], 3, 2, 2, 'mul')[0]
    for got, expected in zip(cuda, cpu):
        torch.testing.assert_close(got.cpu().double(), expected.double(), rtol=0,
                                   atol=atol * max(1.0, expected.abs().max().item()))


# ---- dispatch ------------------------------------------------------------------------------------------------

@requires_ext
def test_auto_uses_the_compiled_op_on_cpu(monkeypatch):
    ddf_module = sys.modules['upsample_plugin.ops.ddf']

    def no_reference(*args):
        raise AssertionError('the reference ran')

    monkeypatch.setattr(ddf_module, 'ddf_reference', no_reference)
    inputs = random_inputs(1, 4, 3, 3, 3)
    ddf(*inputs, 3)
    monkeypatch.setenv('UPSAMPLE_PLUGIN_FORCE_REFERENCE', '1')
    with pytest.raises(AssertionError, match='the reference ran'):
        ddf(*inputs, 3)


def test_backend_argument(monkeypatch):
    inputs = random_inputs(1, 4, 3, 3, 3)
    with pytest.raises(ValueError, match='backend must be one of'):
        ddf(*inputs, 3, backend='fast')
    monkeypatch.setattr(_library_ddf, '_KERNEL_DEVICES', frozenset())
    with pytest.raises(RuntimeError, match='backend="compiled"'):
        ddf(*inputs, 3, backend='compiled')
    torch.testing.assert_close(ddf(*inputs, 3), ddf_reference(*inputs, 3), rtol=0, atol=0)  # falls back
