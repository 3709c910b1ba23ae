"""FreqFusion (spec/freqfusion.md): parameter counts (spec/numbers.md 13.1), official numerics through
``official_forward`` (all four fixtures, outputs and input gradients), the plugin contract (``forward`` and
``fuse`` against the official FPN sum), groups > 1, the kernel normaliser, the sampler's similarity and identity,
the official init, backends, dtypes, edge shapes and bad input."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from upsample_test_utils import check_official_tuple, count_parameters, load_official, use_op_backend

from upsample_plugin import FreqFusion, build_upsampler
from upsample_plugin.upsamplers.freqfusion import LocalSimGuidedSampler, local_cosine_similarity

FIXTURES = ['freqfusion_default', 'freqfusion_nocomp_k3k5', 'freqfusion_resample_g4', 'freqfusion_segnext_sim']
FPN = dict(compressed_channels=64, feature_resample=True, feature_resample_group=4)


def from_fixture(fixture):
    kwargs = dict(fixture['init_args'])
    if 'SegNeXt' in fixture['official_path']:
        kwargs['direction_feat'] = 'sim'  # the SegNeXt copy's sampler default (spec quirk 5)
    module = FreqFusion(**kwargs).double()
    module.load_state_dict(fixture['state_dict'], strict=True)
    return module


def fixture_inputs(fixture):
    return [fixture['inputs'][k].clone().requires_grad_() for k in fixture['forward_args']]


# ---------------------------------------------------------------------------------------------------------------
# Parameter counts


@pytest.mark.parametrize('kwargs,params', [
    (dict(hr_channels=256, lr_channels=256, **FPN), 104_690),
    (dict(hr_channels=256, lr_channels=256, **FPN, feature_resample_norm=False), 104_434),
    (dict(hr_channels=256, lr_channels=256, **dict(FPN, feature_resample_group=8)), 156_610),
    (dict(hr_channels=256, lr_channels=256), 52_514),
    (dict(hr_channels=512, lr_channels=512), 85_282),
    (dict(hr_channels=512, lr_channels=512, **dict(FPN, compressed_channels=128)), 269_042),
    (dict(hr_channels=128, lr_channels=128, **dict(FPN, compressed_channels=32)), 47_090),
    (dict(hr_channels=160, lr_channels=256, **dict(FPN, compressed_channels=104), hamming_window=False,
          direction_feat='sim'), 116_146),
    (dict(hr_channels=64, lr_channels=416, **dict(FPN, compressed_channels=120), hamming_window=False,
          direction_feat='sim'), 141_234),
])
def test_parameter_counts(kwargs, params):
    assert count_parameters(FreqFusion(**kwargs)) == params


def test_parameter_breakdown_and_host_totals():
    module = FreqFusion(256, 256, **FPN)
    parts = [module.hr_channel_compressor, module.lr_channel_compressor, module.content_encoder,
             module.content_encoder2, module.dysampler]
    assert [count_parameters(m) for m in parts] == [16_448, 16_448, 14_425, 5_193, 52_176]
    sampler = module.dysampler
    assert [count_parameters(m) for m in (sampler.offset, sampler.direct_scale, sampler.hr_offset,
                                          sampler.hr_direct_scale)] == [20_768, 20_768, 5_192, 5_192]
    assert 4 * count_parameters(module) == 418_760  # Faster/Mask R-CNN R50 (4 modules, topology B)
    panoptic = FreqFusion(256, 256, **FPN, feature_resample_norm=False)
    assert 4 * count_parameters(panoptic) == 417_736 and 3 * count_parameters(panoptic) == 313_302


# ---------------------------------------------------------------------------------------------------------------
# Official numerics (Linwei-Chen/FreqFusion FreqFusion.py and the SegNeXt copy)


@pytest.mark.parametrize('name', FIXTURES)
def test_reproduces_official_module(name):
    fixture = load_official(name)
    assert fixture['forward_args'] == ['hr_feat', 'lr_feat']
    assert fixture['output_names'] == ['mask_lr', 'hr_feat', 'lr_feat']
    check_official_tuple(from_fixture(fixture), fixture)


@pytest.mark.parametrize('name', FIXTURES)
@pytest.mark.parametrize('backend', ['compiled', 'reference'])
def test_official_numerics_on_both_op_backends(name, backend, monkeypatch):
    use_op_backend(monkeypatch, backend)
    fixture = load_official(name)
    check_official_tuple(from_fixture(fixture), fixture)


def test_use_checkpoint_gives_the_same_numbers():
    fixture = load_official('freqfusion_resample_g4')
    check_official_tuple(from_fixture(fixture), fixture, use_checkpoint=True)


@pytest.mark.parametrize('name', FIXTURES)
def test_state_dict_keys_and_buffers(name):
    fixture = load_official(name)
    kwargs = dict(fixture['init_args'], direction_feat='sim' if 'segnext' in name else 'sim_concat')
    state = FreqFusion(**kwargs).double().state_dict()
    assert set(state) == set(fixture['state_dict'])
    # The rebuilt buffers equal the official ones (float32-rounded Hamming windows, DySample-lp base grid).
    for key in ('hamming_lowpass', 'hamming_highpass', 'dysampler.init_pos'):
        if key in state:
            assert torch.equal(state[key], fixture['state_dict'][key]), key


def test_hamming_window_values():
    module = FreqFusion(8, 8, compressed_channels=8)
    assert module.hamming_lowpass.dtype == torch.float32
    expected = torch.tensor(np.outer(np.hamming(5), np.hamming(5)), dtype=torch.float32)
    assert torch.equal(module.hamming_lowpass[0, 0], expected)
    assert abs(module.hamming_lowpass.sum().item() - 5.0176) < 1e-5


# ---------------------------------------------------------------------------------------------------------------
# The plugin contract: forward(x, guide) and fuse(x, guide)


@pytest.mark.parametrize('kwargs', [
    dict(), dict(feature_resample=True), dict(comp_feat_upsample=False), dict(hr_residual=False),
    dict(use_high_pass=False, comp_feat_upsample=False), dict(semi_conv=False),
])
def test_forward_is_the_additive_form_of_the_official_fpn_sum(kwargs):
    """``guide + forward(x, guide)`` equals the official ``hr_feat' + lr_feat'`` up to reassociation, and
    ``fuse`` is that sum operation for operation (spec "Plugin call contract")."""
    fixture = load_official('freqfusion_resample_g4')
    torch.manual_seed(0)
    module = FreqFusion(4, 4, compressed_channels=8, **kwargs).double()
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    hr, lr = fixture['inputs']['hr_feat'], fixture['inputs']['lr_feat']
    _, hr_out, lr_out = module.official_forward(hr, lr)
    assert torch.equal(module.fuse(lr, hr), hr_out + lr_out)
    torch.testing.assert_close(hr + module(lr, hr), hr_out + lr_out, rtol=0, atol=1e-13)
    if not module.use_high_pass:
        assert torch.equal(module(lr, hr), lr_out)


def test_unequal_widths_forward_the_upsampled_map_and_fuse_refuses():
    fixture = load_official('freqfusion_segnext_sim')
    module = from_fixture(fixture)
    hr, lr = fixture['inputs']['hr_feat'], fixture['inputs']['lr_feat']
    assert torch.equal(module(lr, hr), module.official_forward(hr, lr)[2])
    with pytest.raises(ValueError, match='needs hr_channels == lr_channels'):
        module.fuse(lr, hr)


def test_build_upsampler_fills_both_widths_and_keeps_the_ratio_2():
    module = build_upsampler(dict(type='freqfusion', compressed_channels=16), 32, 2)
    assert (module.hr_channels, module.lr_channels, module.scale_factor) == (32, 32, 2)
    assert module.needs_guide and module.replaces_lateral


# ---------------------------------------------------------------------------------------------------------------
# Groups, kernel normaliser, sampler


@pytest.mark.parametrize('kwargs', [dict(), dict(feature_resample=True), dict(comp_feat_upsample=False)])
def test_groups_with_equal_kernel_weights_reproduce_one_group(kwargs):
    """No official reference exists for up_group > 1 (the official normaliser crashes, quirk 1): G groups whose
    encoders predict the same kernels for every group must give the G = 1 result."""
    torch.manual_seed(0)
    one = FreqFusion(8, 8, compressed_channels=8, **kwargs).double()
    with torch.no_grad():
        for param in one.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    two = FreqFusion(8, 8, compressed_channels=8, up_group=2, **kwargs).double()
    state = dict(one.state_dict())
    for key in ('content_encoder.weight', 'content_encoder.bias', 'content_encoder2.weight',
                'content_encoder2.bias'):
        state[key] = state[key].repeat(2, *[1] * (state[key].dim() - 1))
    two.load_state_dict(state, strict=True)
    hr = torch.randn(2, 8, 6, 10, dtype=torch.float64)
    lr = torch.randn(2, 8, 3, 5, dtype=torch.float64)
    out_one, out_two = one.official_forward(hr, lr), two.official_forward(hr, lr)
    torch.testing.assert_close(out_two[0], out_one[0].repeat(1, 2, 1, 1), rtol=0, atol=1e-13)
    for a, b in zip(out_one[1:], out_two[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_groups_have_their_own_kernels():
    torch.manual_seed(0)
    module = FreqFusion(8, 8, compressed_channels=8, up_group=2).double()
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    kernels, _, _ = module.official_forward(torch.randn(1, 8, 6, 8, dtype=torch.float64),
                                            torch.randn(1, 8, 3, 4, dtype=torch.float64))
    assert kernels.shape == (1, 50, 6, 8)
    torch.testing.assert_close(kernels.view(1, 2, 25, 6, 8).sum(2), torch.ones(1, 2, 6, 8, dtype=torch.float64))
    assert (kernels[:, :25] - kernels[:, 25:]).abs().max() > 1e-3


def test_kernel_normalizer_is_windowed_softmax():
    module = FreqFusion(8, 8, compressed_channels=8).double()
    logits = torch.randn(2, 25, 3, 4, dtype=torch.float64)
    window = module.hamming_lowpass.reshape(25, 1, 1)
    weighted = logits.exp() * window
    torch.testing.assert_close(module._lowpass(logits), weighted / weighted.sum(1, keepdim=True), rtol=0,
                               atol=1e-14)
    # At init the logits are small (encoders N(0, 0.001^2)): each kernel is about the normalised window
    # (centre 1/5.0176 = 0.199, corner 0.0064/5.0176 = 0.0013).
    torch.manual_seed(0)
    fresh = FreqFusion(64, 64)
    kernels, _, _ = fresh.official_forward(torch.randn(1, 64, 8, 8), torch.randn(1, 64, 4, 4))
    torch.testing.assert_close(kernels[0, 12], torch.full((8, 8), 1 / 5.0176), rtol=0.1, atol=0)
    torch.testing.assert_close(kernels[0, 0], torch.full((8, 8), 0.0064 / 5.0176), rtol=0.1, atol=0)


def test_local_similarity_equals_the_official_unfold_form():
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    unfolded = F.unfold(x, 3, padding=2, dilation=2).reshape(2, 6, 9, 5, 7)
    sim = F.cosine_similarity(unfolded[:, :, 4:5], unfolded, dim=1)
    expected = torch.cat([sim[:, :4], sim[:, 5:]], dim=1)
    torch.testing.assert_close(local_cosine_similarity(x), expected, rtol=0, atol=1e-15)


def test_sampler_at_the_base_grid_is_the_identity():
    sampler = LocalSimGuidedSampler(8, groups=4).double()
    feature = torch.randn(2, 8, 6, 10, dtype=torch.float64)
    offset = sampler.init_pos.expand(2, -1, 3, 5)
    torch.testing.assert_close(sampler.sample(feature, offset), feature, rtol=0, atol=1e-13)


def test_official_init_xaviers_the_sampler_and_the_option_keeps_its_own():
    torch.manual_seed(0)
    official = FreqFusion(256, 256, **FPN)
    assert official.dysampler.direct_scale.weight.any()  # quirk 3: Xavier overwrote the zero direct scale
    assert official.dysampler.offset.weight.std() > 0.01
    assert 0.0008 < official.content_encoder.weight.std() < 0.0012
    intended = FreqFusion(256, 256, **FPN, sampler_init='dysample')
    assert not intended.dysampler.direct_scale.weight.any()
    assert intended.dysampler.offset.weight.std() < 0.0012
    assert intended.hr_channel_compressor.weight.std() > 0.01  # the rest is still Xavier


# ---------------------------------------------------------------------------------------------------------------
# dtypes, shapes, bad input


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_close_to_float32(dtype):
    torch.manual_seed(0)
    module = FreqFusion(16, 16, compressed_channels=8, feature_resample=True)
    x, guide = torch.randn(1, 16, 4, 5), torch.randn(1, 16, 8, 10)
    ref = module(x, guide)
    out = module.to(dtype)(x.to(dtype), guide.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=0.15)


@pytest.mark.parametrize('size', [(1, 1), (1, 3), (3, 5)])
def test_small_and_odd_sizes_and_empty_batch(size):
    module = FreqFusion(8, 8, compressed_channels=8, feature_resample=True)
    for n in (0, 2):
        x = torch.randn(n, 8, *size, requires_grad=True)
        guide = torch.randn(n, 8, 2 * size[0], 2 * size[1], requires_grad=True)
        out = module(x, guide)
        assert out.shape == (n, 8, 2 * size[0], 2 * size[1])
        out.sum().backward()
        assert x.grad.shape == x.shape and guide.grad.shape == guide.shape


@pytest.mark.parametrize('kwargs,match', [
    (dict(scale_factor=2), 'scale_factor must be 1'),
    (dict(up_group=3), 'up_group=3 must divide hr_channels=8'),
    (dict(use_low_pass=False), 'use_low_pass must be True'),
    (dict(use_high_pass=False), 'comp_feat_upsample=True needs use_high_pass=True'),
    (dict(lowpass_kernel=4), 'lowpass_kernel must be odd'),
    (dict(feature_resample=True, compressed_channels=60, hr_channels=60, lr_channels=60),
     'compressed_channels must be >= 8 and divisible'),
    (dict(feature_resample=True, feature_resample_group=3, compressed_channels=9, feature_resample_norm=False),
     'feature_resample_group=3 must divide lr_channels=8'),
    (dict(feature_resample=True, direction_feat='dot'), 'direction_feat must be one of'),
    (dict(sampler_init='zeros'), 'sampler_init must be one of'),
    (dict(upsample_mode='area'), 'upsample_mode must be'),
])
def test_bad_construction(kwargs, match):
    kwargs = dict(dict(hr_channels=8, lr_channels=8, compressed_channels=8), **kwargs)
    with pytest.raises(ValueError, match=match):
        FreqFusion(**kwargs)


def test_unknown_keyword_is_not_swallowed():
    with pytest.raises(TypeError):
        FreqFusion(8, 8, compress_ratio=8)


@pytest.mark.parametrize('args,match', [
    ((torch.randn(1, 8, 3, 4), None), 'guided upsampler'),
    ((torch.randn(1, 8, 3, 4), torch.randn(1, 8, 7, 8)), r'guide must have shape \(N, 8, 2\*H, 2\*W\)'),
    ((torch.randn(1, 6, 3, 4), torch.randn(1, 8, 6, 8)), r'x must have shape \(N, 8, H, W\)'),
    ((torch.randn(1, 8, 3, 4), torch.randn(1, 8, 6, 8, dtype=torch.float64)), 'guide has dtype'),
])
def test_bad_input(args, match):
    module = FreqFusion(8, 8, compressed_channels=8)
    with pytest.raises(ValueError, match=match):
        module(*args)
    with pytest.raises(ValueError, match=match):
        module.fuse(*args)
    if args[1] is not None:
        with pytest.raises(ValueError, match=match):
            module.official_forward(args[1], args[0])
