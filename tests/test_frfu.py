"""FRFU (spec/frfu.md): parameter counts (spec/numbers.md 13.1), official numerics, bilinear at zero displacement,
the displacement layout, the CARAFE form of the dynamic filter, both inits, backends, dtypes, edge shapes and bad
input."""
import pytest
import torch
import torch.nn.functional as F
from upsample_test_utils import check_official, count_parameters, load_official, use_op_backend

from upsample_plugin import FRFU, build_upsampler

FIXTURES = ['frfu_default', 'frfu_g8_k5', 'frfu_s3_g2']


@pytest.mark.parametrize('kwargs,params', [
    (dict(in_channels=64), 5_330), (dict(in_channels=128), 10_578), (dict(in_channels=256), 21_074),
    (dict(in_channels=512), 42_066), (dict(in_channels=256, groups=8), 37_522),
    (dict(in_channels=256, scale_factor=4), 70_418), (dict(in_channels=256, sample_k=5), 29_298),
])
def test_parameter_counts(kwargs, params):
    assert count_parameters(FRFU(**kwargs)) == params


def test_host_totals_of_spec_13_2():
    # FPN topology B: 4 modules at 256; the SegFormer-B1 head as configured: 6 modules at 128.
    assert 4 * count_parameters(FRFU(256)) == 84_296
    assert 4 * sum(m.weight.numel() for m in FRFU(256).children()) == 83_968
    assert 6 * count_parameters(FRFU(128)) == 63_468


@pytest.mark.parametrize('name', FIXTURES)
def test_reproduces_official_module(name):
    fixture = load_official(name)
    check_official(FRFU(**fixture['init_args']), fixture)


@pytest.mark.parametrize('name', FIXTURES)
@pytest.mark.parametrize('backend', ['compiled', 'reference'])
def test_official_numerics_on_both_op_backends(name, backend, monkeypatch):
    use_op_backend(monkeypatch, backend)
    fixture = load_official(name)
    check_official(FRFU(**fixture['init_args']), fixture)


def test_state_dict_has_the_official_keys_only():
    """``coord_base`` is a non-persistent buffer in the official module: not in the state dict (quirk 3)."""
    assert set(FRFU(16).state_dict()) == set(load_official('frfu_default')['state_dict'])


@pytest.mark.parametrize('scale', [1, 2, 3])
@pytest.mark.parametrize('size', [(1, 1), (5, 7), (4, 9)])
def test_zero_displacement_is_bilinear(scale, size):
    module = FRFU(8, scale_factor=scale, groups=2).double()
    x = torch.randn(2, 8, *size, dtype=torch.float64)
    delta = torch.zeros(2, 2 * 2 * scale * scale, *size, dtype=torch.float64)
    expected = F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=False)
    torch.testing.assert_close(module.sample(x, delta), expected, rtol=0, atol=1e-12)


def test_displacement_layout_component_fastest_in_high_res_pixels():
    """Channel ``((g*s + i)*s + j)*2 + d``: displacing channel (g=1, i=0, j=1, d=0) by +1 moves only output pixels
    (2y, 2x+1) of group 1 one *high-res* pixel right (spec quirk 2)."""
    s, groups, channels = 2, 2, 4
    module = FRFU(channels, scale_factor=s, groups=groups).double()
    x = torch.arange(6 * 8, dtype=torch.float64).view(1, 1, 6, 8).expand(1, channels, 6, 8) * 1.0
    base = F.interpolate(x, scale_factor=s, mode='bilinear', align_corners=False)
    delta = torch.zeros(1, 2 * groups * s * s, 6, 8, dtype=torch.float64)
    delta[:, ((1 * s + 0) * s + 1) * 2 + 0] = 1.0
    out = module.sample(x, delta)
    changed = (out - base).abs() > 1e-12
    assert not changed[:, :2].any()  # group 0 untouched
    assert not changed[:, 2:, 1::2].any() and not changed[:, 2:, :, 0::2].any()
    # Interior: one high-res pixel right = half a low-res column of a ramp with slope 1 per low-res pixel.
    torch.testing.assert_close(out[0, 2, 4, 5] - base[0, 2, 4, 5], torch.tensor(0.5, dtype=torch.float64))


def test_dynamic_filter_equals_the_official_unfold_einsum():
    torch.manual_seed(0)
    module = FRFU(8, groups=2, sample_k=5).double()
    x_r = torch.randn(2, 8, 6, 7, dtype=torch.float64)
    kernels = module.kernels(x_r)
    unfolded = F.unfold(x_r, 5, padding=2).reshape(2, 8, 25, 6, 7)
    expected = torch.einsum('bkhw,bckhw->bchw', kernels, unfolded)
    from upsample_plugin.ops import carafe
    torch.testing.assert_close(carafe(x_r, kernels, 5, 1, 1), expected, rtol=0, atol=1e-13)


def test_inits():
    torch.manual_seed(0)
    module = FRFU(256)
    assert not module.offset_mask.weight.any() and not module.kernel_mask.weight.any()
    assert 0.0008 < module.offset.weight.std() < 0.0012 and 0.004 < module.sample_kernel.weight.std() < 0.006
    assert all(not conv.bias.any() for conv in module.children())
    xavier = FRFU(256, init='xavier')
    bound = (6 / (256 + 32)) ** 0.5
    assert 0.95 * bound < xavier.offset.weight.abs().max() <= bound
    assert xavier.offset_mask.weight.any() and xavier.kernel_mask.weight.any()
    # init_weights() restores the chosen init after a host overwrote it.
    torch.nn.init.constant_(module.offset_mask.weight, 1.0)
    module.init_weights()
    assert not module.offset_mask.weight.any()


def test_build_upsampler_and_guide_is_ignored():
    module = build_upsampler(dict(type='frfu'), 16, 2)
    assert isinstance(module, FRFU) and module.scale_factor == 2 and not module.needs_guide
    x = torch.randn(1, 16, 3, 5)
    torch.testing.assert_close(module(x), module(x, torch.randn(1, 16, 6, 10)))


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_close_to_float32(dtype):
    torch.manual_seed(0)
    module = FRFU(16, init='xavier')
    x = torch.randn(1, 16, 6, 7)
    ref = module(x)
    out = module.to(dtype)(x.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=0.1)


def test_empty_batch_forward_and_backward():
    module = FRFU(8, groups=2)
    x = torch.randn(0, 8, 3, 4, requires_grad=True)
    out = module(x)
    assert out.shape == (0, 8, 6, 8)
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=10, groups=4), 'groups=4 must divide in_channels=10'),
    (dict(in_channels=8, sample_k=4), 'sample_k must be odd'),
    (dict(in_channels=8, scale_factor=0), 'scale_factor must be an integer >= 1'),
    (dict(in_channels=8, init='kaiming'), 'init must be one of'),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FRFU(**kwargs)


@pytest.mark.parametrize('x,match', [
    (torch.randn(1, 6, 4, 4), r'x must have shape \(N, 8, H, W\)'),
    (torch.randn(8, 4, 4), 'x must be 4-D'),
    (torch.randn(1, 8, 0, 4), 'non-empty spatial size'),
])
def test_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        FRFU(8)(x)
