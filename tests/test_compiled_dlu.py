"""The fused compiled DLU op (upsample_plugin::dlu_forward / dlu_backward, ops/csrc/*/dlu_*): CPU kernels against
the pure-PyTorch reference (grid_sample + CARAFE) for the output and all three gradients, clamping at the
borders, 1-pixel axes, groups, layouts, dtypes, determinism, torch.library registration (opcheck, fake,
torch.compile), double backward (routed to the reference), the C++ argument checks and dispatch."""
import pytest
import torch
from upsample_test_utils import compile_element_harness

from upsample_plugin.ops import dlu as dlu_ops
from upsample_plugin.ops._library_dlu import dlu_compiled_available
from upsample_plugin.ops.dlu import dlu_reassemble, dlu_reassemble_reference

requires_ext = pytest.mark.skipif(not dlu_compiled_available('cpu'),
                                  reason='upsample_plugin._C without the DLU kernels; build it with '
                                         '`pip install --no-build-isolation --no-deps -e .`')
ops = torch.ops.upsample_plugin


def random_inputs(n, c, h, w, k, g, s, offset_scale=1.5, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    space = torch.randn(n, g, k * k, h, w, generator=gen, dtype=torch.float64).softmax(2).view(n, g * k * k, h, w)
    # Offsets of a few pixels: many sample positions fall outside the map and are clamped.
    offsets = torch.randn(n, g * 2 * s * s, h, w, generator=gen, dtype=torch.float64) * offset_scale
    return features.to(dtype), space.to(dtype), offsets.to(dtype)


def compiled_and_reference(features, space, offsets, k, g, s, seed=1):
    """(out, grad_features, grad_kernel_space, grad_offsets) of the compiled op and of the reference."""
    results = []
    for backend in ('compiled', 'reference'):
        inputs = [t.detach().clone().requires_grad_() for t in (features, space, offsets)]
        out = dlu_reassemble(*inputs, k, g, s, backend=backend)
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        results.append((out, *torch.autograd.grad(out, inputs, grad_out.to(out.dtype))))
    return results


def assert_matches(compiled, reference, dtype):
    atol = 1e-5 if dtype == torch.float32 else 1e-10
    for name, got, expected in zip(('output', 'grad_features', 'grad_kernel_space', 'grad_offsets'), compiled,
                                   reference):
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        torch.testing.assert_close(got, expected, rtol=1e-5 if dtype == torch.float32 else 0, atol=atol,
                                   msg=lambda msg: f'{name}: {msg}')


SHAPES = [  # n, c, h, w, k, g, s
    (2, 4, 5, 7, 5, 1, 2),     # the official configuration (k=5, G=1, x2), odd sizes
    (1, 6, 4, 3, 3, 2, 2),     # G = 2
    (2, 4, 3, 5, 3, 2, 3),     # G = 2, x3
    (1, 3, 5, 4, 5, 1, 4),     # x4
    (1, 4, 3, 3, 5, 2, 4),     # G = 2, x4, kernel wider than the map
    (1, 4, 1, 5, 3, 2, 2),     # H = 1
    (2, 2, 4, 1, 5, 1, 3),     # W = 1
    (1, 2, 1, 1, 3, 1, 3),     # 1 x 1 map
    (1, 3, 6, 5, 1, 1, 2),     # k = 1
    (1, 4, 2, 3, 3, 1, 1),     # scale 1
    (1, 37, 10, 9, 5, 1, 2),   # several channel blocks (6; mask gradient 16) and row chunks (4) with a short last one
]


@requires_ext
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('offset_scale', [0.0, 0.7, 4.0])  # zero (DLU's init), mostly inside, mostly clamped
def test_matches_reference(shape, dtype, offset_scale):
    n, c, h, w, k, g, s = shape
    inputs = random_inputs(n, c, h, w, k, g, s, offset_scale=offset_scale, dtype=dtype)
    assert_matches(*compiled_and_reference(*inputs, k, g, s), dtype)


@requires_ext
def test_offset_gradient_zero_where_clamped_and_borders():
    """Positions beyond the map get no offset gradient; so do positions exactly on the border (grid_sample's
    convention), e.g. zero offsets on the first/last row and column."""
    features, space, offsets = random_inputs(1, 3, 4, 5, 3, 1, 2, offset_scale=0.0)
    offsets[:, :4, :, 2] = 9.0   # x far right of the map for column 2
    offsets[:, 4:, 1, :] = -9.0  # y far above the map for row 1
    compiled, reference = compiled_and_reference(features, space, offsets, 3, 1, 2)
    assert_matches(compiled, reference, torch.float64)
    grad_off = compiled[3]
    assert not grad_off[:, :4, :, 2].any() and not grad_off[:, 4:, 1, :].any()
    assert not grad_off[:, :4, :, 0].any() and not grad_off[:, :4, :, -1].any()  # x exactly on the border
    assert grad_off[:, :4, :, 1].abs().sum() > 0  # interior columns do get a gradient


@requires_ext
def test_forward_bitwise_equal_to_reference_float64():
    """K' is computed with grid_sample's arithmetic: the entry point's default (compiled) equals the reference."""
    inputs = random_inputs(2, 4, 5, 7, 5, 2, 2)
    out = dlu_reassemble(*inputs, 5, 2, 2, backend='compiled')
    assert torch.equal(out, dlu_reassemble_reference(*inputs, 5, 2, 2))


GRADCHECK_CASES = [  # n, c, h, w, k, g, s
    (1, 2, 3, 4, 3, 1, 2),
    (1, 2, 3, 2, 3, 2, 3),     # odd sizes, groups > 1, x3
    (1, 2, 1, 3, 3, 1, 2),     # H = 1
    (1, 2, 3, 1, 5, 2, 2),     # W = 1
    (1, 3, 1, 1, 3, 1, 4),     # 1 x 1 map
    (0, 2, 3, 3, 3, 1, 2),     # empty batch
]


@requires_ext
@pytest.mark.parametrize('case', GRADCHECK_CASES)
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last', 'strided'])
def test_gradcheck(case, layout):
    n, c, h, w, k, g, s = case
    # Offsets away from the bilinear kinks at integer positions (finite differences straddle them otherwise).
    features, space, offsets = random_inputs(n, c, h, w, k, g, s, offset_scale=0.8)
    offsets = offsets.round() + 0.5 * torch.sign(offsets - offsets.round()) * 0.6 + 0.05
    if layout == 'channels_last':
        features, space, offsets = (t.to(memory_format=torch.channels_last) for t in (features, space, offsets))
    elif layout == 'strided':
        features, space, offsets = (torch.stack([t, torch.zeros_like(t)], -1).flatten(-2)[..., ::2]
                                    for t in (features, space, offsets))
    inputs = tuple(t.requires_grad_() for t in (features, space, offsets))
    fn = lambda f, m, o: dlu_reassemble(f, m, o, k, g, s, backend='compiled')  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-7, atol=1e-6)


@requires_ext
@pytest.mark.parametrize('layout', ['channels_last', 'strided'])
def test_layouts_match_reference(layout):
    features, space, offsets = random_inputs(2, 6, 5, 7, 3, 2, 2, dtype=torch.float32)
    if layout == 'channels_last':
        features, space, offsets = (t.to(memory_format=torch.channels_last) for t in (features, space, offsets))
    else:
        features, space, offsets = (torch.stack([t, torch.zeros_like(t)], -1).flatten(-2)[..., ::2]
                                    for t in (features, space, offsets))
        assert not features.is_contiguous()
    assert_matches(*compiled_and_reference(features, space, offsets, 3, 2, 2), torch.float32)


@requires_ext
def test_double_backward_routes_to_reference():
    inputs = random_inputs(1, 4, 3, 4, 3, 2, 2, offset_scale=0.8)
    results = []
    for backend in ('compiled', 'reference'):
        f, m, o = (t.clone().requires_grad_() for t in inputs)
        out = dlu_reassemble(f, m, o, 3, 2, 2, backend=backend)
        grads = torch.autograd.grad(out.pow(2).sum(), (f, m, o), create_graph=True)
        results.append(torch.autograd.grad(sum((gr.sin()).sum() for gr in grads), (f, m, o)))
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@requires_ext
def test_gradgradcheck():
    f, m, o = random_inputs(1, 2, 3, 3, 3, 1, 2, offset_scale=0.3)
    o = o + 0.25  # away from integer positions
    inputs = tuple(t.requires_grad_() for t in (f, m, o))
    fn = lambda f, m, o: dlu_reassemble(f, m, o, 3, 1, 2, backend='compiled')  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, inputs, eps=1e-7, atol=1e-5)


@requires_ext
@pytest.mark.parametrize('n,c,h,w', [(0, 4, 3, 3), (2, 0, 3, 3), (1, 4, 0, 3), (1, 4, 3, 0)])
def test_empty_inputs(n, c, h, w):
    g = 2 if c else 1
    inputs = [t.requires_grad_() for t in random_inputs(n, c, h, w, 3, g, 2)]
    out = dlu_reassemble(*inputs, 3, g, 2, backend='compiled')
    assert out.shape == (n, c, 2 * h, 2 * w)
    out.sum().backward()
    for t in inputs:
        assert t.grad.shape == t.shape and not t.grad.any()


@requires_ext
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_reduced_precision(dtype):
    """float16/bfloat16 accumulate in float32, like the reference (which computes in float32 and casts back):
    the two differ by the final roundings only. The output is also checked against float64 on the same rounded
    inputs. (Offsets stored in float16/bfloat16 often land exactly on integer positions, where the bilinear
    derivative has a kink; both backends take the same side there because both compute positions in float32.)"""
    inputs = [t.to(dtype) for t in random_inputs(2, 8, 5, 7, 5, 2, 2)]
    compiled, reference = compiled_and_reference(*inputs, 5, 2, 2)
    exact_out = dlu_reassemble_reference(*(t.double() for t in inputs), 5, 2, 2)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(compiled[0].double(), exact_out, rtol=0,
                               atol=2 * eps * max(1.0, exact_out.abs().max().item()))
    for name, got, expected in zip(('output', 'grad_features', 'grad_kernel_space', 'grad_offsets'), compiled,
                                   reference):
        assert got.dtype == dtype
        atol = 4 * eps * max(1.0, expected.double().abs().max().item())
        torch.testing.assert_close(got.double(), expected.double(), rtol=0, atol=atol,
                                   msg=lambda msg: f'{name}: {msg}')


@requires_ext
def test_backward_is_deterministic_and_thread_independent():
    inputs = random_inputs(2, 16, 13, 11, 5, 2, 2, dtype=torch.float32)
    grad_out = torch.randn(2, 16, 26, 22, generator=torch.Generator().manual_seed(3))
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, max(2, previous), max(2, previous)):
            torch.set_num_threads(threads)
            results.append((ops.dlu_forward(*inputs, 5, 2, 2), *ops.dlu_backward(grad_out, *inputs, 5, 2, 2)))
    finally:
        torch.set_num_threads(previous)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


@requires_ext
@pytest.mark.parametrize('shape', [(2, 4, 3, 5, 3, 2, 2), (1, 2, 1, 1, 5, 1, 3), (1, 3, 2, 4, 1, 1, 4)])
def test_opcheck(shape):
    n, c, h, w, k, g, s = shape
    f, m, o = random_inputs(n, c, h, w, k, g, s, offset_scale=0.8)
    grad_out = torch.randn(n, c, h * s, w * s, dtype=torch.float64)
    torch.library.opcheck(ops.dlu_forward, (f, m, o, k, g, s))
    torch.library.opcheck(ops.dlu_forward, (f.requires_grad_(), m.requires_grad_(), o.requires_grad_(), k, g, s))
    torch.library.opcheck(ops.dlu_backward, (grad_out, f.detach(), m.detach(), o.detach(), k, g, s))


@requires_ext
def test_opcheck_float32_channels_last():
    f, m, o = (t.to(memory_format=torch.channels_last)
               for t in random_inputs(2, 8, 5, 7, 5, 2, 2, dtype=torch.float32))
    torch.library.opcheck(ops.dlu_forward, (f.requires_grad_(), m, o.requires_grad_(), 5, 2, 2))


@requires_ext
def test_torch_compile_fullgraph():
    def upsample(features, logits, offsets):
        space = logits.view(2, 1, 9, 5, 6).softmax(2).view(2, 9, 5, 6)
        return dlu_reassemble(features, space, offsets, 3, 1, 2) * 2

    f, logits, o = random_inputs(2, 4, 5, 6, 3, 1, 2, dtype=torch.float32)
    compiled = torch.compile(upsample, fullgraph=True)
    leaves = [t.clone().requires_grad_() for t in (f, logits, o)]
    out = compiled(*leaves)
    out.square().sum().backward()
    ref_leaves = [t.clone().requires_grad_() for t in (f, logits, o)]
    space = ref_leaves[1].view(2, 1, 9, 5, 6).softmax(2).view(2, 9, 5, 6)
    expected = dlu_reassemble_reference(ref_leaves[0], space, ref_leaves[2], 3, 1, 2) * 2
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected)
    for a, b in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad, b.grad)


GOOD = dict(features=torch.zeros(1, 8, 3, 3), kernel_space=torch.zeros(1, 50, 3, 3),
            offsets=torch.zeros(1, 16, 3, 3), kernel_size=5, group_size=2, scale_factor=2)


@requires_ext
@pytest.mark.parametrize('change,match', [
    (dict(features=torch.zeros(8, 3, 3)), r'features must be 4-D \(N, C, H, W\), got shape \[8, 3, 3\]'),
    (dict(kernel_space=torch.zeros(50, 3, 3)), 'kernel_space must be 4-D'),
    (dict(offsets=torch.zeros(16, 3, 3)), 'offsets must be 4-D'),
    (dict(features=torch.zeros(1, 8, 3, 3, dtype=torch.int64)), 'features must be float16, bfloat16, float32'),
    (dict(kernel_space=torch.zeros(1, 50, 3, 3, dtype=torch.float64)),
     'kernel_space has dtype Double but features has Float'),
    (dict(offsets=torch.zeros(1, 16, 3, 3, dtype=torch.float16)), 'offsets has dtype Half but features has Float'),
    (dict(kernel_size=4), 'kernel_size must be odd'),
    (dict(group_size=0), 'group_size must be an integer >= 1'),
    (dict(group_size=3), r'group_size=3 must divide the channels of features \(8\)'),
    (dict(scale_factor=0), 'scale_factor must be an integer >= 1'),
    (dict(kernel_space=torch.zeros(1, 49, 3, 3)), r'kernel_space must have shape .* = \[1, 50, 3, 3\]'),
    (dict(kernel_space=torch.zeros(1, 50, 6, 6)), r'kernel_space must have shape .* = \[1, 50, 3, 3\]'),
    (dict(offsets=torch.zeros(1, 8, 3, 3)), r'offsets must have shape .* = \[1, 16, 3, 3\]'),
    (dict(offsets=torch.zeros(2, 16, 3, 3)), r'offsets must have shape .* = \[1, 16, 3, 3\]'),
    (dict(offsets=torch.zeros(1, 16, 3, 3, device='meta')), 'offsets is on meta but features is on cpu'),
])
def test_cpp_checks_raise_runtime_error(change, match):
    args = dict(GOOD, **change)
    with pytest.raises(RuntimeError, match=match):
        ops.dlu_forward(*args.values())
    with pytest.raises(RuntimeError, match=match):
        ops.dlu_backward(torch.zeros(1, 8, 6, 6), *args.values())


@requires_ext
@pytest.mark.parametrize('grad_out,match', [
    (torch.zeros(1, 8, 6, 5), r'grad_output must have shape .* = \[1, 8, 6, 6\]'),
    (torch.zeros(1, 8, 6), 'grad_output must be 4-D'),
    (torch.zeros(1, 8, 6, 6, dtype=torch.float64), 'grad_output has dtype Double but features has Float'),
])
def test_cpp_backward_checks_grad_output(grad_out, match):
    with pytest.raises(RuntimeError, match=match):
        ops.dlu_backward(grad_out, *GOOD.values())


# ---- dispatch -------------------------------------------------------------------------------------------------

@requires_ext
def test_auto_uses_the_compiled_op_on_cpu(monkeypatch):
    def no_reference(*args):
        raise AssertionError('the reference ran')

    monkeypatch.setattr(dlu_ops, 'dlu_reassemble_reference', no_reference)
    inputs = random_inputs(1, 4, 3, 3, 3, 1, 2)
    dlu_reassemble(*inputs, 3, 1, 2)
    monkeypatch.setenv('UPSAMPLE_PLUGIN_FORCE_REFERENCE', '1')
    with pytest.raises(AssertionError, match='the reference ran'):
        dlu_reassemble(*inputs, 3, 1, 2)


def test_backend_argument():
    inputs = random_inputs(1, 4, 3, 3, 3, 1, 2)
    with pytest.raises(ValueError, match='backend must be one of'):
        dlu_reassemble(*inputs, 3, 1, 2, backend='mmcv')
    if not dlu_compiled_available('meta'):
        with pytest.raises(RuntimeError, match='backend="compiled"'):
            dlu_reassemble(*(t.to('meta') for t in inputs), 3, 1, 2, backend='compiled')


# ---- the CUDA kernels' per-element functions, compiled for the CPU -------------------------------------------


ELEMENT_HARNESS = r'''
#include <ATen/ATen.h>
#include <torch/library.h>
#include "dlu_common.h"
using namespace upsample_plugin::dlu;

// The index decomposition and host steps of cuda/dlu_cuda.cu, one loop iteration per CUDA thread (float64).
std::vector<at::Tensor> dlu_elements(at::Tensor grad, at::Tensor feat, at::Tensor ks, at::Tensor off, int64_t k,
                                     int64_t G, int64_t s) {
  const Geometry geo = dlu_check_backward(grad, feat, ks, off, k, G, s);
  TORCH_CHECK(feat.scalar_type() == at::kDouble, "the harness runs float64");
  grad = grad.contiguous(); feat = feat.contiguous(); ks = ks.contiguous(); off = off.contiguous();
  const int64_t plane = geo.h * geo.w, oplane = geo.oh * geo.ow, offn = geo.groups * 2 * geo.ss * plane;
  auto out = at::empty({geo.n, geo.c, geo.oh, geo.ow}, feat.options());
  auto gf = at::empty(feat.sizes(), feat.options()), gks = at::empty(ks.sizes(), ks.options());
  auto goff = at::empty(off.sizes(), off.options());
  auto dkp = at::empty({geo.n * geo.groups * geo.kk, geo.oh, geo.ow}, feat.options());
  auto cell = at::empty({geo.n * geo.groups * oplane}, feat.options().dtype(at::kLong));
  const double *d = grad.data_ptr<double>(), *f = feat.data_ptr<double>(), *m = ks.data_ptr<double>(),
               *o = off.data_ptr<double>();
  for (int64_t idx = 0; idx < out.numel(); ++idx) {
    const int64_t q = idx % geo.ow, p = (idx / geo.ow) % geo.oh, nc = idx / oplane;
    const int64_t ng = nc / geo.cpg, n = ng / geo.groups, g = ng % geo.groups;
    out.data_ptr<double>()[idx] = forward_element<double, double>(f + nc * plane, m + ng * geo.kk * plane,
                                                                  o + n * offn, g, p, q, geo);
  }
  for (int64_t idx = 0; idx < gf.numel(); ++idx) {
    const int64_t x = idx % geo.w, y = (idx / geo.w) % geo.h, nc = idx / plane;
    const int64_t ng = nc / geo.cpg, n = ng / geo.groups, g = ng % geo.groups;
    gf.data_ptr<double>()[idx] = feature_grad_element<double, double>(d + nc * oplane, m + ng * geo.kk * plane,
                                                                      o + n * offn, g, y, x, geo);
  }
  for (int64_t idx = 0; idx < dkp.numel(); ++idx) {
    const int64_t q = idx % geo.ow, p = (idx / geo.ow) % geo.oh;
    const int64_t t = (idx / oplane) % geo.kk, ng = idx / (oplane * geo.kk), first = ng * geo.cpg;
    dkp.data_ptr<double>()[idx] = kernel_grad_element<double, double>(d + first * oplane, f + first * plane,
                                                                      t / geo.k, t % geo.k, p, q, geo);
  }
  for (int64_t idx = 0; idx < cell.numel(); ++idx) {
    const int64_t q = idx % geo.ow, p = (idx / geo.ow) % geo.oh, ng = idx / oplane;
    const int64_t n = ng / geo.groups, g = ng % geo.groups;
    double gx, gy;
    offset_grad_element<double, double, double>(dkp.data_ptr<double>() + ng * geo.kk * oplane,
                                                m + ng * geo.kk * plane, o + n * offn, g, p, q, geo, &gx, &gy);
    const int64_t sub = (p % s) * s + q % s, pix = (p / s) * geo.w + q / s;
    goff.data_ptr<double>()[n * offn + ((g * 2) * geo.ss + sub) * plane + pix] = gx;
    goff.data_ptr<double>()[n * offn + ((g * 2 + 1) * geo.ss + sub) * plane + pix] = gy;
    cell.data_ptr<int64_t>()[idx] = ng * plane + sample_point<double, double>(o + n * offn, g, p, q, geo).i00;
  }
  auto sorted = at::sort(cell, true, 0, false);
  auto order = std::get<1>(sorted).contiguous();
  auto start = at::searchsorted(std::get<0>(sorted), at::arange(geo.n * geo.groups * plane + 1,
                                                                cell.options())).contiguous();
  for (int64_t idx = 0; idx < gks.numel(); ++idx) {
    const int64_t X = idx % geo.w, Y = (idx / geo.w) % geo.h, t = (idx / plane) % geo.kk;
    const int64_t ng = idx / (plane * geo.kk), n = ng / geo.groups, g = ng % geo.groups;
    gks.data_ptr<double>()[idx] = kernel_space_grad_element<double, double, double>(
        dkp.data_ptr<double>() + ng * geo.kk * oplane, o + n * offn, order.data_ptr<int64_t>(),
        start.data_ptr<int64_t>() + ng * plane, ng * oplane, g, t, Y, X, geo);
  }
  return {out, gf, gks, goff};
}

TORCH_LIBRARY(upsample_plugin_dlu_test, m) {
  m.def("dlu_elements(Tensor grad, Tensor feat, Tensor ks, Tensor off, int k, int g, int s) -> Tensor[]");
  m.impl("dlu_elements", c10::DispatchKey::CPU, TORCH_FN(dlu_elements));
}
'''


@pytest.fixture(scope='module')
def element_harness(tmp_path_factory):
    """dlu_common.h's per-element functions + the CUDA host steps in a small CPU library (~15 s to compile)."""
    compile_element_harness(tmp_path_factory, 'dlu_elements', ELEMENT_HARNESS)
    return torch.ops.upsample_plugin_dlu_test.dlu_elements


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('offset_scale', [0.0, 1.5, 4.0])
def test_cuda_element_functions_match_reference(element_harness, shape, offset_scale):
    """The bodies of the CUDA kernels (include/dlu_common.h), incl. the sorted-bucket kernel-space gather."""
    n, c, h, w, k, g, s = shape
    inputs = random_inputs(n, c, h, w, k, g, s, offset_scale=offset_scale)
    grad_out = torch.randn(n, c, h * s, w * s, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    leaves = [t.clone().requires_grad_() for t in inputs]
    expected_out = dlu_reassemble_reference(*leaves, k, g, s)
    expected = (expected_out.detach(), *torch.autograd.grad(expected_out, leaves, grad_out))
    for name, got, want in zip(('output', 'grad_features', 'grad_kernel_space', 'grad_offsets'),
                               element_harness(grad_out, *inputs, k, g, s), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10, msg=lambda msg: f'{name}: {msg}')
