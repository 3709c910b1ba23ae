"""The CARAFE op (spec/carafe.md): exact against the per-pixel loop, mmcv's CUDA outputs, gradients, edge
shapes, dtypes and bad input."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from upsample_test_utils import carafe_loop, load_mmcv_carafe

from upsample_plugin.ops import carafe


def random_inputs(n, c, h, w, k, g, s, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    masks = torch.randn(n, k * k * g, h * s, w * s, generator=gen, dtype=dtype)
    return features, masks


def assert_matches_loop(n, c, h, w, k, g, s, seed=0):
    features, masks = random_inputs(n, c, h, w, k, g, s, seed=seed)
    features.requires_grad_()
    masks.requires_grad_()
    out = carafe(features, masks, k, g, s)
    expected = carafe_loop(features, masks, k, g, s)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (features, masks), grad_out)
    expected_grads = torch.autograd.grad(expected, (features, masks), grad_out)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize('k', [1, 3, 5, 7])
@pytest.mark.parametrize('s', [2, 3, 4])
def test_matches_loop_kernel_sizes_and_scales(k, s):
    assert_matches_loop(2, 6, 3, 5, k, 3, s)


@pytest.mark.parametrize('n,c,h,w,k,g,s', [
    (1, 4, 1, 1, 5, 1, 2),    # 1x1 map: every tap but the centre is padding
    (2, 8, 5, 7, 5, 4, 2),    # odd sizes, groups > 1
    (1, 6, 4, 3, 3, 6, 3),    # one channel per group
    (1, 3, 2, 9, 7, 1, 1),    # scale 1: plain dynamic filtering
])
def test_matches_loop_edge_shapes(n, c, h, w, k, g, s):
    assert_matches_loop(n, c, h, w, k, g, s)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 2), groups=st.integers(1, 3), per_group=st.integers(1, 3), h=st.integers(1, 4),
       w=st.integers(1, 4), k=st.sampled_from([1, 3, 5]), s=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_matches_loop_random_shapes(n, groups, per_group, h, w, k, s, seed):
    assert_matches_loop(n, groups * per_group, h, w, k, groups, s, seed=seed)


def test_gradcheck_float64():
    features, masks = random_inputs(2, 4, 3, 5, 3, 2, 2)
    assert torch.autograd.gradcheck(lambda f, m: carafe(f, m, 3, 2, 2),
                                    (features.requires_grad_(), masks.requires_grad_()))
    assert torch.autograd.gradgradcheck(lambda f, m: carafe(f, m, 3, 2, 2), (features, masks))


def test_reproduces_mmcv_cuda_fixtures():
    """mmcv's tests/data/for_carafe: CARAFE(5, 4, 2) on (2, 64, 3, 3), grad_output = ones."""
    features = load_mmcv_carafe('feat', (2, 64, 3, 3)).requires_grad_()
    masks = load_mmcv_carafe('mask', (2, 100, 6, 6)).requires_grad_()
    out = carafe(features, masks, 5, 4, 2)
    out.sum().backward()
    torch.testing.assert_close(out, load_mmcv_carafe('output', (2, 64, 6, 6)), rtol=0, atol=1e-5)
    torch.testing.assert_close(features.grad, load_mmcv_carafe('feat_grad', (2, 64, 3, 3)), rtol=0, atol=1e-5)
    torch.testing.assert_close(masks.grad, load_mmcv_carafe('mask_grad', (2, 100, 6, 6)), rtol=0, atol=1e-5)


def test_layouts_do_not_change_the_result():
    features, masks = random_inputs(2, 8, 5, 7, 5, 2, 2)
    expected = carafe(features, masks, 5, 2, 2)
    channels_last = carafe(features.to(memory_format=torch.channels_last),
                           masks.to(memory_format=torch.channels_last), 5, 2, 2)
    torch.testing.assert_close(channels_last, expected, rtol=0, atol=1e-12)
    # Non-contiguous views: every other column of a wider map.
    wide_f = torch.zeros(2, 8, 5, 14, dtype=torch.float64)
    wide_f[..., ::2] = features
    wide_m = torch.zeros(2, 50, 10, 28, dtype=torch.float64)
    wide_m[..., ::2] = masks
    strided = carafe(wide_f[..., ::2], wide_m[..., ::2], 5, 2, 2)
    torch.testing.assert_close(strided, expected, rtol=0, atol=1e-12)


def test_empty_batch_has_gradients():
    features, masks = random_inputs(0, 4, 3, 3, 3, 1, 2)
    features.requires_grad_()
    masks.requires_grad_()
    out = carafe(features, masks, 3, 1, 2)
    assert out.shape == (0, 4, 6, 6)
    out.sum().backward()
    assert features.grad.shape == features.shape and masks.grad.shape == masks.shape


@pytest.mark.parametrize('dtype,atol', [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_reduced_precision(dtype, atol):
    features, masks = random_inputs(2, 8, 5, 7, 5, 2, 2)
    masks = masks.softmax(1)
    out = carafe(features.to(dtype), masks.to(dtype), 5, 2, 2)
    assert out.dtype == dtype
    expected = carafe(features.to(dtype).double(), masks.to(dtype).double(), 5, 2, 2)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=atol)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device on this machine')
def test_cuda_matches_cpu():
    features, masks = random_inputs(2, 8, 5, 7, 5, 2, 2)
    expected = carafe(features, masks, 5, 2, 2)
    torch.testing.assert_close(carafe(features.cuda(), masks.cuda(), 5, 2, 2).cpu(), expected)


@pytest.mark.parametrize('change,match', [
    (dict(features=torch.zeros(4, 3, 3)), 'features must be 4-D'),
    (dict(masks=torch.zeros(1, 25, 6)), 'masks must be 4-D'),
    (dict(kernel_size=4), 'kernel_size must be odd'),
    (dict(kernel_size=0), 'kernel_size must be an integer >= 1'),
    (dict(group_size=3), r'group_size=3 must divide the channels of features \(8\)'),
    (dict(scale_factor=2.0), 'scale_factor must be an integer'),
    (dict(masks=torch.zeros(1, 25, 7, 6)), r'masks must have shape .* = \(1, 50, 6, 6\)'),
    (dict(masks=torch.zeros(1, 49, 6, 6)), r'masks must have shape .* = \(1, 50, 6, 6\)'),
    (dict(masks=torch.zeros(1, 50, 6, 6, dtype=torch.float64)), 'masks has dtype torch.float64'),
    (dict(features=torch.zeros(1, 8, 3, 3, dtype=torch.int64)), 'features must be a floating-point'),
])
def test_bad_input_names_the_argument(change, match):
    args = dict(features=torch.zeros(1, 8, 3, 3), masks=torch.zeros(1, 50, 6, 6), kernel_size=5, group_size=2,
                scale_factor=2)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        carafe(**args)
