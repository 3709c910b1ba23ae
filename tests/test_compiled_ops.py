"""The compiled ops (upsample_plugin._C, ops/csrc): CARAFE's CPU kernels against the pure-PyTorch reference,
gradients of every order, dtypes, layouts, determinism, torch.library registration (opcheck, torch.compile),
the C++ argument checks, mmcv's fixtures, the CUDA kernels' per-element functions (run on the CPU) and the
fallback when the extension is missing."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from upsample_test_utils import carafe_loop, compile_element_harness, load_mmcv_carafe

from upsample_plugin.ops import _library, carafe, carafe_reference

requires_ext = pytest.mark.skipif(
    not _library.compiled_available('cpu'),
    reason=f'upsample_plugin._C is not built ({_library.load_error()}); build it with '
           f'`pip install --no-build-isolation --no-deps -e .`')
ops = torch.ops.upsample_plugin


def random_inputs(n, c, h, w, k, g, s, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    masks = torch.randn(n, k * k * g, h * s, w * s, generator=gen, dtype=dtype)
    return features, masks


def compiled_and_reference(features, masks, k, g, s, seed=1):
    """(out, grad_features, grad_masks) of the compiled op and of the reference for one random grad_output."""
    results = []
    for backend in ('compiled', 'reference'):
        f = features.detach().clone().requires_grad_()
        m = masks.detach().clone().requires_grad_()
        out = carafe(f, m, k, g, s, backend=backend)
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        grad_out = grad_out.to(out.dtype)
        results.append((out, *torch.autograd.grad(out, (f, m), grad_out)))
    return results


SHAPES = [  # n, c, h, w, k, g, s
    (2, 6, 3, 5, 3, 3, 2),
    (1, 4, 1, 1, 5, 1, 2),     # 1x1 map: every tap but the centre is padding
    (2, 8, 5, 7, 5, 4, 3),     # odd sizes, groups > 1
    (1, 6, 4, 3, 3, 6, 4),     # one channel per group, scale 4
    (1, 3, 2, 9, 7, 1, 1),     # scale 1, kernel wider than the map
    (1, 5, 6, 4, 1, 1, 3),     # k = 1
    (2, 16, 9, 11, 7, 2, 2),   # k = 7 on a larger map
    # Many channels per group: several channel blocks of the forward (6) and of the register-resident mask
    # gradient (16) plus remainders, and row chunks (4 low-res rows per call) with a short last chunk.
    (1, 37, 10, 13, 5, 1, 2),
    (1, 74, 7, 9, 3, 2, 3),
]


@requires_ext
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype,atol', [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_matches_reference(shape, dtype, atol):
    n, c, h, w, k, g, s = shape
    features, masks = random_inputs(n, c, h, w, k, g, s, dtype=dtype)
    compiled, reference = compiled_and_reference(features, masks, k, g, s)
    for name, got, expected in zip(('output', 'grad_features', 'grad_masks'), compiled, reference):
        assert got.dtype == dtype and got.shape == expected.shape, name
        torch.testing.assert_close(got, expected, rtol=1e-5 if dtype == torch.float32 else 0, atol=atol,
                                   msg=lambda msg: f'{name}: {msg}')


@requires_ext
@pytest.mark.parametrize('k', [1, 3, 5, 7])
@pytest.mark.parametrize('s', [1, 2, 3, 4])
def test_matches_loop_every_kernel_and_scale(k, s):
    features, masks = random_inputs(1, 4, 3, 4, k, 2, s)
    out = carafe(features, masks, k, 2, s, backend='compiled')
    torch.testing.assert_close(out, carafe_loop(features, masks, k, 2, s), rtol=0, atol=1e-12)


GRADCHECK_CASES = [  # n, c, h, w, k, g, s
    (1, 2, 3, 5, 3, 1, 2),
    (2, 4, 3, 2, 5, 2, 3),     # odd sizes, groups > 1
    (1, 3, 1, 1, 3, 1, 4),     # 1x1 map, scale 4
    (1, 2, 2, 3, 7, 2, 1),     # k = 7, scale 1
    (1, 2, 3, 3, 1, 1, 2),     # k = 1
    (0, 2, 3, 3, 3, 1, 2),     # empty batch
]


@requires_ext
@pytest.mark.parametrize('case', GRADCHECK_CASES)
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last', 'strided'])
def test_gradcheck(case, layout):
    n, c, h, w, k, g, s = case
    features, masks = random_inputs(n, c, h, w, k, g, s)
    if layout == 'channels_last':
        features = features.to(memory_format=torch.channels_last)
        masks = masks.to(memory_format=torch.channels_last)
    elif layout == 'strided':  # every other column of a wider map
        features = torch.stack([features, torch.zeros_like(features)], -1).flatten(-2)[..., ::2]
        masks = torch.stack([masks, torch.zeros_like(masks)], -1).flatten(-2)[..., ::2]
        assert n == 0 or (not features.is_contiguous() and not masks.is_contiguous())
    inputs = (features.requires_grad_(), masks.requires_grad_())
    fn = lambda f, m: carafe(f, m, k, g, s, backend='compiled')  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=True)


@requires_ext
def test_third_order_gradients_match_reference():
    features, masks = random_inputs(1, 4, 3, 3, 3, 2, 2)
    results = []
    for backend in ('compiled', 'reference'):
        f, m = features.clone().requires_grad_(), masks.clone().requires_grad_()
        out = carafe(f, m, 3, 2, 2, backend=backend)
        gf, gm = torch.autograd.grad(out.pow(2).sum(), (f, m), create_graph=True)
        hf, hm = torch.autograd.grad((gf.sin().sum() + gm.cos().sum()), (f, m), create_graph=True)
        results.append((gf, gm, hf, hm, *torch.autograd.grad((hf * hm.sum()).sum(), (f, m))))
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@requires_ext
@pytest.mark.parametrize('n,c,h,w', [(0, 4, 3, 3), (2, 0, 3, 3), (1, 4, 0, 3)])
def test_empty_inputs(n, c, h, w):
    features, masks = random_inputs(n, c, h, w, 3, 2 if c else 1, 2)
    g = 2 if c else 1
    features.requires_grad_()
    masks.requires_grad_()
    out = carafe(features, masks, 3, g, 2, backend='compiled')
    assert out.shape == (n, c, 2 * h, 2 * w)
    out.sum().backward()
    assert features.grad.shape == features.shape and masks.grad.shape == masks.shape
    assert not masks.grad.any()  # C = 0: no channel contributes to the mask gradient


@requires_ext
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_reduced_precision_against_float64(dtype):
    features, masks = random_inputs(2, 16, 5, 7, 5, 2, 2)
    masks = masks.softmax(1)
    # The same (rounded) inputs in float64: what is left is the error of the float32 accumulation + output rounding.
    features, masks = features.to(dtype), masks.to(dtype)
    compiled = compiled_and_reference(features, masks, 5, 2, 2)[0]
    exact = compiled_and_reference(features.double(), masks.double(), 5, 2, 2)[1]
    for name, got, expected in zip(('output', 'grad_features', 'grad_masks'), compiled, exact):
        assert got.dtype == dtype
        # float32 accumulation: only the final rounding to `dtype` (half an ulp) is left, plus grad_output's.
        atol = 2 * torch.finfo(dtype).eps * max(1.0, expected.abs().max().item())
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=atol,
                                   msg=lambda msg: f'{name}: {msg}')


@requires_ext
@pytest.mark.parametrize('threads', [1, 2])
def test_backward_is_deterministic(threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        features, masks = random_inputs(2, 32, 13, 11, 5, 2, 2, dtype=torch.float32)
        grad_out = torch.randn(2, 32, 26, 22, generator=torch.Generator().manual_seed(3))
        runs = [ops.carafe_backward(grad_out, features, masks, 5, 2, 2) for _ in range(3)]
        single = [ops.carafe_forward(features, masks, 5, 2, 2) for _ in range(2)]
    finally:
        torch.set_num_threads(previous)
    for grads in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], grads))
    assert torch.equal(single[0], single[1])


@requires_ext
def test_results_do_not_depend_on_thread_count():
    features, masks = random_inputs(2, 32, 13, 11, 5, 2, 2, dtype=torch.float32)
    grad_out = torch.randn(2, 32, 26, 22, generator=torch.Generator().manual_seed(3))
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, max(2, previous)):
            torch.set_num_threads(threads)
            results.append((ops.carafe_forward(features, masks, 5, 2, 2),
                            *ops.carafe_backward(grad_out, features, masks, 5, 2, 2)))
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(a, b) for a, b in zip(*results))


@requires_ext
@pytest.mark.parametrize('shape', [(2, 6, 3, 5, 3, 3, 2), (1, 4, 1, 1, 5, 1, 2), (1, 3, 2, 4, 1, 1, 3)])
def test_opcheck(shape):
    n, c, h, w, k, g, s = shape
    features, masks = random_inputs(n, c, h, w, k, g, s)
    grad_out = torch.randn(n, c, h * s, w * s, dtype=torch.float64)
    torch.library.opcheck(ops.carafe_forward, (features, masks, k, g, s))
    torch.library.opcheck(ops.carafe_forward, (features.requires_grad_(), masks.requires_grad_(), k, g, s))
    torch.library.opcheck(ops.carafe_backward, (grad_out, features.detach(), masks.detach(), k, g, s))
    torch.library.opcheck(ops.carafe_backward, (grad_out.requires_grad_(), features, masks, k, g, s))


@requires_ext
def test_opcheck_float32_channels_last():
    features, masks = random_inputs(2, 8, 5, 7, 5, 2, 2, dtype=torch.float32)
    torch.library.opcheck(ops.carafe_forward, (features.to(memory_format=torch.channels_last).requires_grad_(),
                                               masks.to(memory_format=torch.channels_last), 5, 2, 2))


@requires_ext
def test_torch_compile_fullgraph():
    def upsample(features, logits):
        return carafe(features, logits.softmax(1), 3, 2, 2) * 2

    features, logits = random_inputs(2, 4, 5, 6, 3, 2, 2, dtype=torch.float32)
    compiled = torch.compile(upsample, fullgraph=True)
    f, m = features.clone().requires_grad_(), logits.clone().requires_grad_()
    out = compiled(f, m)
    out.square().sum().backward()
    f_ref, m_ref = features.clone().requires_grad_(), logits.clone().requires_grad_()
    expected = carafe_reference(f_ref, m_ref.softmax(1), 3, 2, 2) * 2
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(f.grad, f_ref.grad)
    torch.testing.assert_close(m.grad, m_ref.grad)


@requires_ext
def test_reproduces_mmcv_cuda_fixtures():
    """mmcv's tests/data/for_carafe: CARAFE(5, 4, 2) on (2, 64, 3, 3), grad_output = ones."""
    features = load_mmcv_carafe('feat', (2, 64, 3, 3)).requires_grad_()
    masks = load_mmcv_carafe('mask', (2, 100, 6, 6)).requires_grad_()
    out = carafe(features, masks, 5, 4, 2, backend='compiled')
    out.sum().backward()
    torch.testing.assert_close(out, load_mmcv_carafe('output', (2, 64, 6, 6)), rtol=0, atol=1e-5)
    torch.testing.assert_close(features.grad, load_mmcv_carafe('feat_grad', (2, 64, 3, 3)), rtol=0, atol=1e-5)
    torch.testing.assert_close(masks.grad, load_mmcv_carafe('mask_grad', (2, 100, 6, 6)), rtol=0, atol=1e-5)


GOOD = dict(features=torch.zeros(1, 8, 3, 3), masks=torch.zeros(1, 50, 6, 6), kernel_size=5, group_size=2,
            scale_factor=2)


@requires_ext
@pytest.mark.parametrize('change,match', [
    (dict(features=torch.zeros(8, 3, 3)), r'features must be 4-D \(N, C, H, W\), got shape \[8, 3, 3\]'),
    (dict(masks=torch.zeros(50, 6, 6)), 'masks must be 4-D'),
    (dict(features=torch.zeros(1, 8, 3, 3, dtype=torch.int64)), 'features must be float16, bfloat16, float32'),
    (dict(features=torch.zeros(1, 8, 3, 3, dtype=torch.complex64)), 'features must be float16'),
    (dict(masks=torch.zeros(1, 50, 6, 6, dtype=torch.float64)), 'masks has dtype Double but features has Float'),
    (dict(kernel_size=4), 'kernel_size must be odd'),
    (dict(kernel_size=-1), 'kernel_size must be odd and >= 1'),
    (dict(group_size=0), 'group_size must be an integer >= 1'),
    (dict(group_size=3), r'group_size=3 must divide the channels of features \(8\)'),
    (dict(scale_factor=0), 'scale_factor must be an integer >= 1'),
    (dict(scale_factor=-2), 'scale_factor must be an integer >= 1'),
    (dict(masks=torch.zeros(1, 50, 7, 6)), r'masks must have shape .* = \[1, 50, 6, 6\]'),
    (dict(masks=torch.zeros(1, 49, 6, 6)), r'masks must have shape .* = \[1, 50, 6, 6\]'),
    (dict(masks=torch.zeros(2, 50, 6, 6)), r'masks must have shape .* = \[1, 50, 6, 6\]'),
    (dict(masks=torch.zeros(1, 50, 6, 6, device='meta')), 'masks is on meta but features is on cpu'),
])
def test_cpp_checks_raise_runtime_error(change, match):
    args = dict(GOOD, **change)
    with pytest.raises(RuntimeError, match=match):
        ops.carafe_forward(*args.values())
    grad_out = torch.zeros(1, 8, 6, 6)
    with pytest.raises(RuntimeError, match=match):
        ops.carafe_backward(grad_out, *args.values())


@requires_ext
@pytest.mark.parametrize('grad_out,match', [
    (torch.zeros(1, 8, 6, 5), r'grad_output must have shape \(N, C, H \* scale_factor, W \* scale_factor\) = '
                              r'\[1, 8, 6, 6\]'),
    (torch.zeros(1, 8, 6), 'grad_output must be 4-D'),
    (torch.zeros(1, 8, 6, 6, dtype=torch.float64), 'grad_output has dtype Double but features has Float'),
    (torch.zeros(1, 8, 6, 6, dtype=torch.int32), 'grad_output must be float16, bfloat16, float32 or float64'),
])
def test_cpp_backward_checks_grad_output(grad_out, match):
    with pytest.raises(RuntimeError, match=match):
        ops.carafe_backward(grad_out, *GOOD.values())


@requires_ext
def test_cpp_checks_cover_devices_without_kernels():
    """A device the build has no kernel for is a clean error, not a crash."""
    if _library.compiled_available('cuda'):
        pytest.skip('this build has CUDA kernels')
    if not torch.cuda.is_available():
        pytest.skip('no CUDA device to put a tensor on')
    with pytest.raises(NotImplementedError):
        ops.carafe_forward(GOOD['features'].cuda(), GOOD['masks'].cuda(), 5, 2, 2)


@requires_ext
@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device on this machine')
@pytest.mark.parametrize('dtype,atol', [(torch.float64, 1e-12), (torch.float32, 1e-5), (torch.float16, 1e-2),
                                        (torch.bfloat16, 6e-2)])
def test_cuda_matches_cpu(dtype, atol):
    if not _library.compiled_available('cuda'):
        pytest.skip('upsample_plugin._C was built without CUDA kernels')
    features, masks = random_inputs(2, 16, 9, 7, 5, 2, 3, dtype=dtype)
    masks = masks.softmax(1)
    cpu = compiled_and_reference(features, masks, 5, 2, 3)[0]
    cuda = compiled_and_reference(features.cuda(), masks.cuda(), 5, 2, 3)[0]
    for got, expected in zip(cuda, cpu):
        torch.testing.assert_close(got.cpu().double(), expected.double(), rtol=0,
                                   atol=atol * max(1.0, expected.abs().max().item()))
    grad_out = torch.randn(2, 16, 27, 21, dtype=dtype, device='cuda')
    args = (grad_out, features.cuda(), masks.cuda(), 5, 2, 3)
    assert all(torch.equal(a, b) for a, b in zip(ops.carafe_backward(*args), ops.carafe_backward(*args)))


# ---- the CUDA kernels' per-element functions, compiled for the CPU -------------------------------------------

ELEMENT_HARNESS = r'''
#include <ATen/ATen.h>
#include <torch/library.h>
#include "carafe_common.h"
using namespace upsample_plugin::carafe;

// The index decomposition of cuda/carafe_cuda.cu, one loop iteration per CUDA thread.
std::vector<at::Tensor> carafe_elements(at::Tensor grad, at::Tensor feat, at::Tensor mask, int64_t k, int64_t g,
                                        int64_t s) {
  const Geometry geo = carafe_check_backward(grad, feat, mask, k, g, s);
  TORCH_CHECK(feat.scalar_type() == at::kDouble, "the harness runs float64");
  grad = grad.contiguous(); feat = feat.contiguous(); mask = mask.contiguous();
  auto out = at::empty({geo.n, geo.c, geo.oh, geo.ow}, feat.options());
  auto gf = at::empty(feat.sizes(), feat.options()), gm = at::empty(mask.sizes(), mask.options());
  const double* d = grad.data_ptr<double>(); const double* f = feat.data_ptr<double>();
  const double* m = mask.data_ptr<double>();
  for (int64_t idx = 0; idx < out.numel(); ++idx) {
    const int64_t q = idx % geo.ow, p = (idx / geo.ow) % geo.oh, nc = idx / (geo.ow * geo.oh);
    out.data_ptr<double>()[idx] = forward_element<double, double>(
        f + nc * geo.h * geo.w, m + nc / geo.cpg * geo.kk * geo.oh * geo.ow, p, q, geo);
  }
  for (int64_t idx = 0; idx < gf.numel(); ++idx) {
    const int64_t x = idx % geo.w, y = (idx / geo.w) % geo.h, nc = idx / (geo.w * geo.h);
    gf.data_ptr<double>()[idx] = feature_grad_element<double, double>(
        d + nc * geo.oh * geo.ow, m + nc / geo.cpg * geo.kk * geo.oh * geo.ow, y, x, geo);
  }
  for (int64_t idx = 0; idx < gm.numel(); ++idx) {
    const int64_t q = idx % geo.ow, p = (idx / geo.ow) % geo.oh;
    const int64_t t = (idx / (geo.ow * geo.oh)) % geo.kk, first = idx / (geo.ow * geo.oh * geo.kk) * geo.cpg;
    gm.data_ptr<double>()[idx] = mask_grad_element<double, double>(
        d + first * geo.oh * geo.ow, f + first * geo.h * geo.w, t / geo.k, t % geo.k, p, q, geo);
  }
  return {out, gf, gm};
}

TORCH_LIBRARY(upsample_plugin_test, m) {
  m.def("carafe_elements(Tensor grad, Tensor feat, Tensor mask, int k, int g, int s) -> Tensor[]");
  m.impl("carafe_elements", c10::DispatchKey::CPU, TORCH_FN(carafe_elements));
}
'''


@pytest.fixture(scope='module')
def element_harness(tmp_path_factory):
    """carafe_common.h's per-element functions in a small CPU library (about 10 s to compile)."""
    compile_element_harness(tmp_path_factory, 'carafe_elements', ELEMENT_HARNESS)
    return torch.ops.upsample_plugin_test.carafe_elements


@pytest.mark.parametrize('shape', SHAPES)
def test_cuda_element_functions_match_reference(element_harness, shape):
    """The bodies of the CUDA kernels (include/carafe_common.h), checked without a GPU."""
    n, c, h, w, k, g, s = shape
    features, masks = random_inputs(n, c, h, w, k, g, s)
    grad_out = torch.randn(n, c, h * s, w * s, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f, m = features.clone().requires_grad_(), masks.clone().requires_grad_()
    expected_out = carafe_reference(f, m, k, g, s)
    expected = (expected_out.detach(), *torch.autograd.grad(expected_out, (f, m), grad_out))
    for got, want in zip(element_harness(grad_out, features, masks, k, g, s), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


# ---- dispatch and fallback ---------------------------------------------------------------------------------

@requires_ext
def test_auto_uses_the_compiled_op_on_cpu(monkeypatch):
    carafe_module = sys.modules['upsample_plugin.ops.carafe']  # the package attribute is the function

    def no_reference(*args):
        raise AssertionError('the reference ran')

    monkeypatch.setattr(carafe_module, 'carafe_reference', no_reference)
    features, masks = random_inputs(1, 4, 3, 3, 3, 1, 2)
    carafe(features, masks, 3, 1, 2)
    monkeypatch.setenv('UPSAMPLE_PLUGIN_FORCE_REFERENCE', '1')
    with pytest.raises(AssertionError, match='the reference ran'):
        carafe(features, masks, 3, 1, 2)


def test_backend_argument():
    features, masks = random_inputs(1, 4, 3, 3, 3, 1, 2)
    with pytest.raises(ValueError, match='backend must be one of'):
        carafe(features, masks, 3, 1, 2, backend='fast')
    with pytest.raises(RuntimeError, match='backend="mmcv"'):
        carafe(features, masks, 3, 1, 2, backend='mmcv')  # CPU tensors


def test_missing_extension_falls_back_with_one_warning():
    """Without upsample_plugin._C the plugin imports, runs the reference and warns once."""
    script = textwrap.dedent('''
        import sys, warnings
        sys.modules['upsample_plugin._C'] = None  # as if the extension had not been built
        warnings.simplefilter('always')
        import torch
        from upsample_plugin.ops import _library, carafe
        assert not _library.compiled_available() and not _library.compiled_available('cpu')
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            for _ in range(3):
                out = carafe(torch.randn(1, 2, 3, 3), torch.rand(1, 9, 6, 6), 3, 1, 2)
        messages = [str(w.message) for w in caught if w.category is _library.CompiledOpsUnavailableWarning]
        assert len(messages) == 1, messages
        assert 'compiled ops unavailable' in messages[0] and 'pure-PyTorch' in messages[0], messages[0]
        try:
            carafe(torch.randn(1, 2, 3, 3), torch.rand(1, 9, 6, 6), 3, 1, 2, backend='compiled')
        except RuntimeError as err:
            assert 'backend="compiled"' in str(err)
        else:
            raise AssertionError('backend="compiled" ran without the extension')
        print('ok', tuple(out.shape))
    ''')
    env = dict(os.environ, UPSAMPLE_PLUGIN_FORCE_REFERENCE='0')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env,
                            cwd=Path(__file__).parents[1], timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok (1, 2, 6, 6)'
