"""The CARAFE upsampler (spec/carafe.md): mmcv CARAFEPack's parameters, keys and init; official numerics."""
import pytest
import torch
from upsample_test_utils import check_official, count_parameters, load_official

from upsample_plugin import CARAFEPack


@pytest.mark.parametrize('channels,scale,params', [
    (256, 2, 74_148), (128, 2, 65_956), (512, 2, 90_532), (256, 4, 247_248), (256, 8, 939_648),
    (256, 16, 3_709_248),
])
def test_parameter_counts(channels, scale, params):
    assert count_parameters(CARAFEPack(channels, scale)) == params


@pytest.mark.parametrize('name', ['carafe_g1_s2', 'carafe_g2_s2'])
def test_reproduces_official_module(name):
    fixture = load_official(name)
    check_official(CARAFEPack(**fixture['init_args']), fixture)


def test_state_dict_matches_mmcv_carafepack():
    mmcv_ops = pytest.importorskip('mmcv.ops', reason='mmcv with compiled ops is not installed')
    theirs = mmcv_ops.CARAFEPack(64, 2, up_group=2).state_dict()
    ours = CARAFEPack(64, 2, up_group=2)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.items()}
    ours.load_state_dict(theirs, strict=True)


def test_init_gives_near_uniform_kernels():
    torch.manual_seed(0)
    module = CARAFEPack(64, 2)
    assert module.content_encoder.weight.std() < 0.002 and not module.content_encoder.bias.any()
    assert not module.channel_compressor.bias.any()
    x = torch.randn(1, 64, 6, 5)
    kernels = module.kernel_normalizer(module.content_encoder(module.channel_compressor(x)))
    torch.testing.assert_close(kernels, torch.full_like(kernels, 1 / 25), rtol=0.25, atol=0)


def test_shapes_odd_sizes_and_empty_batch():
    module = CARAFEPack(16, 3, up_group=4, compressed_channels=8)
    assert module(torch.randn(2, 16, 5, 7)).shape == (2, 16, 15, 21)
    assert module(torch.randn(1, 16, 1, 1)).shape == (1, 16, 3, 3)
    empty = torch.randn(0, 16, 4, 4, requires_grad=True)
    out = module(empty)
    assert out.shape == (0, 16, 12, 12)
    out.sum().backward()
    assert empty.grad.shape == empty.shape


@pytest.mark.parametrize('kwargs,match', [
    (dict(channels=16, scale_factor=2, up_group=3), 'up_group=3 must divide channels=16'),
    (dict(channels=16, scale_factor=2, up_kernel=4), 'up_kernel must be odd'),
    (dict(channels=16, scale_factor=0), 'scale_factor must be an integer >= 1'),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CARAFEPack(**kwargs)


@pytest.mark.parametrize('x,match', [
    (torch.zeros(16, 5, 7), 'x must be 4-D'),
    (torch.zeros(1, 8, 5, 7), r'built for 16 channels; x must have shape \(N, 16, H, W\)'),
])
def test_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        CARAFEPack(16, 2)(x)
