"""FADE and FADE-Lite (spec/fade.md): parameter counts, official numerics, a direct loop of the semi-shift
formula, the L2H = H2L equivalence, the structural identities of the gate and the kernels, gradients, edge
shapes, dtypes and bad input."""
import pytest
import torch
import torch.nn.functional as F
from upsample_test_utils import carafe_loop, count_parameters, load_official

from upsample_plugin.registry import build_upsampler
from upsample_plugin.upsamplers.fade import FADE, FADELite

CLASSES = [FADE, FADELite]


def randomised(module, seed=0, scale=0.5):
    """Non-trivial weights (the Xavier init is fine too, but biases start at 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen, dtype=param.dtype) * scale)
    return module


def inputs(n, c_en, c_de, h, w, dtype=torch.float64, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_de, h, w, generator=gen, dtype=dtype)
    guide = torch.randn(n, c_en, 2 * h, 2 * w, generator=gen, dtype=dtype)
    return x, guide


# ---------------------------------------------------------------------------------------------------------------
# Parameter counts (spec/numbers.md) and state-dict layout


@pytest.mark.parametrize('cls,channels,gating,params', [
    (FADE, 256, True, 47_514), (FADE, 256, False, 47_257), (FADE, 512, True, 80_538), (FADE, 512, False, 80_025),
    (FADELite, 256, True, 13_332), (FADELite, 256, False, 13_075), (FADELite, 512, True, 26_388),
    (FADELite, 512, False, 25_875),
])
def test_parameter_counts(cls, channels, gating, params):
    assert count_parameters(cls(channels, gating=gating)) == params


def test_parameter_counts_per_layer_at_256():
    """spec "Layers and init" table."""
    fade, lite = FADE(256), FADELite(256)
    assert [count_parameters(m) for m in (fade.ker_generator.compressor_en, fade.ker_generator.compressor_de,
                                          fade.ker_generator.content_encoder, fade.gate_generator)] \
        == [16_448, 16_384, 14_425, 257]
    assert [count_parameters(m) for m in (lite.ker_generator.compressor_en, lite.ker_generator.compressor_de,
                                          lite.ker_generator.content_encoder, lite.gate_generator)] \
        == [6_425, 6_400, 250, 257]
    # SegFormer-B1 uses six gated modules at 256: "+0.29M" / "+80K" (poppinace/fade README).
    assert 6 * count_parameters(fade) == 285_084 and 6 * count_parameters(lite) == 79_992


def test_state_dict_keys_follow_official_names():
    fixture = load_official('fade_gated')
    assert set(FADE(4).state_dict()) == set(fixture['state_dict'])
    assert set(FADELite(8).state_dict()) == set(load_official('fade_lite')['state_dict'])
    # Without the gate (official SemiShiftUp, tiny-smart gating=False) only the kernel generator remains.
    assert set(FADE(4, gating=False).state_dict()) == {k for k in fixture['state_dict'] if 'ker_generator' in k}


def test_unequal_channels_get_an_aligner_only_when_gated():
    gated, ungated = FADE(6, 4), FADE(6, 4, gating=False)
    assert {k for k in gated.state_dict() if k.startswith('aligner')} == {'aligner.conv.weight', 'aligner.conv.bias'}
    assert gated.aligner.conv.weight.shape == (4, 6, 1, 1)
    assert not any(k.startswith('aligner') for k in ungated.state_dict())
    assert count_parameters(gated) == count_parameters(ungated) + 5 + 6 * 4 + 4
    assert not hasattr(FADE(4), 'aligner')


def test_init_is_xavier_uniform_with_zero_bias():
    torch.manual_seed(0)
    module = FADE(256)
    for name, param in module.named_parameters():
        if name.endswith('bias'):
            assert not param.any(), name
    weight = module.ker_generator.compressor_en.weight
    bound = (6 / (256 + 64)) ** 0.5
    assert weight.abs().max() <= bound and weight.abs().max() > 0.95 * bound
    weight = module.ker_generator.content_encoder.weight  # fan_in 64*9, fan_out 25*9
    bound = (6 / (64 * 9 + 25 * 9)) ** 0.5
    assert weight.abs().max() <= bound and weight.abs().max() > 0.95 * bound


# ---------------------------------------------------------------------------------------------------------------
# Official numerics (poppinace/fade pytorch_implementation/FADE_L2H.py)


def check_official_guided(module, fixture, atol=1e-8):
    """Like upsample_test_utils.check_official, for the guide-first official call: official forward(en, de),
    ours forward(x=de, guide=en)."""
    assert fixture['forward_args'] == ['en', 'de']
    module = module.double()
    module.load_state_dict(fixture['state_dict'], strict=True)
    en = fixture['inputs']['en'].clone().requires_grad_()
    de = fixture['inputs']['de'].clone().requires_grad_()
    out = module(de, en)
    torch.testing.assert_close(out, fixture['output'], rtol=0, atol=atol)
    grad_en, grad_de = torch.autograd.grad((out * fixture['grad_weight']).sum(), (en, de))
    torch.testing.assert_close(grad_en, fixture['input_grads']['en'], rtol=0, atol=atol)
    torch.testing.assert_close(grad_de, fixture['input_grads']['de'], rtol=0, atol=atol)


@pytest.mark.parametrize('cls,name', [(FADE, 'fade_gated'), (FADELite, 'fade_lite')])
def test_reproduces_official_module(cls, name):
    fixture = load_official(name)
    check_official_guided(cls(**fixture['init_args']), fixture)


@pytest.mark.parametrize('cls,name', [(FADE, 'fade_gated'), (FADELite, 'fade_lite')])
def test_official_weights_keyword_call_and_tiny_smart_signature(cls, name):
    """The tiny-smart copies' signature (scale_factor, gating) loads the same weights; keywords x / guide."""
    fixture = load_official(name)
    args = dict(fixture['init_args'])
    args['scale_factor'] = args.pop('scale')
    module = cls(**args, gating=True).double()
    module.load_state_dict(fixture['state_dict'], strict=True)
    out = module(guide=fixture['inputs']['en'], x=fixture['inputs']['de'])
    torch.testing.assert_close(out, fixture['output'], rtol=0, atol=1e-8)


# ---------------------------------------------------------------------------------------------------------------
# Direct loop of the spec's formula


def fade_loop(module, x, guide):
    """spec "Forward (L2H form)" one high-res pixel and one 3x3 tap at a time; vectorised over batch/channels.

    logits[t, p, q] = sum_{u,v} w[t, :, u, v] . e[:, p+u-1, q+v-1] + b_t
                    + sum_{u,v} w[t, :, u, v] . d[:, p//2+u-1, q//2+v-1] + b_t        (zero outside)
    with e = W_en en + b_en, d = W_de de; per-group softmax over the k*k taps; CARAFE (carafe_loop);
    g[p, q] = sigmoid(w_g . de[:, p//2, q//2] + b_g); out = g*en + (1-g)*CARAFE (en through the aligner if any).
    """
    gen = module.ker_generator
    k, groups = module.up_kernel_size, module.up_group
    n, _, height, width = x.shape
    e = torch.einsum('nchw,oc->nohw', guide, gen.compressor_en.weight[:, :, 0, 0]) \
        + gen.compressor_en.bias.view(1, -1, 1, 1)
    d = torch.einsum('nchw,oc->nohw', x, gen.compressor_de.weight[:, :, 0, 0])
    weight, bias = gen.content_encoder.weight, gen.content_encoder.bias
    depthwise = gen.content_encoder.groups > 1

    def tap(feature, row, col, u, v):
        if not (0 <= row < feature.shape[2] and 0 <= col < feature.shape[3]):
            return 0
        values = feature[:, :, row, col]  # (N, E)
        return values * weight[:, 0, u, v] if depthwise else values @ weight[:, :, u, v].T

    if module.gating:
        gate_low = torch.sigmoid(torch.einsum('nchw,c->nhw', x, module.gate_generator.conv.weight[0, :, 0, 0])
                                 + module.gate_generator.conv.bias[0])
        en = guide
        if hasattr(module, 'aligner'):
            en = torch.einsum('nchw,oc->nohw', guide, module.aligner.conv.weight[:, :, 0, 0]) \
                + module.aligner.conv.bias.view(1, -1, 1, 1)
    kernel_rows, gate_rows = [], []
    for p in range(2 * height):
        kernel_row, gate_row = [], []
        for q in range(2 * width):
            logits = 2 * bias.expand(n, -1)  # one bias per path (spec quirk 4)
            for u in range(3):
                for v in range(3):
                    logits = logits + tap(e, p + u - 1, q + v - 1, u, v) \
                        + tap(d, p // 2 + u - 1, q // 2 + v - 1, u, v)
            kernel_row.append(torch.softmax(logits.view(n, groups, k * k), dim=2).view(n, groups * k * k))
            if module.gating:
                gate_row.append(gate_low[:, p // 2, q // 2])
        kernel_rows.append(torch.stack(kernel_row, dim=-1))
        if module.gating:
            gate_rows.append(torch.stack(gate_row, dim=-1))
    kernels = torch.stack(kernel_rows, dim=-2)
    up = carafe_loop(x, kernels, k, groups, 2)
    if not module.gating:
        return up
    gate = torch.stack(gate_rows, dim=-2).unsqueeze(1)
    return gate * en + (1 - gate) * up


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('c_en,c_de,h,w,k,groups,gating', [
    (4, 4, 3, 4, 5, 1, True),    # the official configuration, odd size
    (4, 4, 3, 4, 5, 1, False),
    (6, 4, 2, 3, 3, 2, True),    # unequal channels (aligner), k=3, two groups
    (3, 6, 1, 1, 7, 3, False),   # 1x1 low-res map, k=7, three groups
])
def test_matches_direct_loop(cls, c_en, c_de, h, w, k, groups, gating):
    module = randomised(cls(c_en, c_de, up_kernel_size=k, up_group=groups, gating=gating).double())
    x, guide = inputs(2, c_en, c_de, h, w)
    x.requires_grad_()
    guide.requires_grad_()
    out = module(x, guide)
    expected = fade_loop(module, x, guide)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, guide), grad_out)
    expected_grads = torch.autograd.grad(expected, (x, guide), grad_out)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


def h2l_logits(gen, en, de):
    """spec "H2L form": FADE_H2L.py's formulation with the shared kernel of our generator (width kept
    separate from the height, spec quirk 5). Pads are [left, right, top, bottom] for versions v = i*2 + j."""
    e, d = gen.compressor_en(en), gen.compressor_de(de)
    weight, bias, conv_groups = gen.content_encoder.weight, gen.content_encoder.bias, gen.content_encoder.groups
    n, _, height, width = d.shape
    pads = [[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1], [0, 1, 0, 1]]
    low = F.conv2d(d, weight, bias, padding=1, groups=conv_groups)
    versions = [F.conv2d(F.pad(e, pad), weight, bias, stride=2, groups=conv_groups) + low for pad in pads]
    stacked = torch.stack(versions, dim=2)  # (N, T, v, H, W)
    channels = stacked.shape[1]
    # space_reassemble: version (i, j) of low-res pixel (y, x) goes to high-res pixel (2y + i, 2x + j).
    return stacked.view(n, channels, 2, 2, height, width).permute(0, 1, 4, 2, 5, 3).reshape(
        n, channels, 2 * height, 2 * width)


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('h,w', [(3, 5), (4, 2), (1, 1)])
def test_l2h_equals_h2l(cls, h, w):
    module = randomised(cls(5, 3, up_group=3).double())
    x, guide = inputs(2, 5, 3, h, w)
    torch.testing.assert_close(module.ker_generator(guide, x), h2l_logits(module.ker_generator, guide, x),
                               rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Structural identities


@pytest.mark.parametrize('cls', CLASSES)
def test_kernels_are_normalised_per_group(cls):
    module = randomised(cls(6, up_kernel_size=3, up_group=2).double())
    x, guide = inputs(2, 6, 6, 3, 4)
    kernels = module.generate_kernels(x, guide)
    assert kernels.shape == (2, 2 * 9, 6, 8) and (kernels > 0).all()
    torch.testing.assert_close(kernels.view(2, 2, 9, 6, 8).sum(2), torch.ones(2, 2, 6, 8, dtype=torch.float64))


@pytest.mark.parametrize('cls', CLASSES)
def test_content_encoder_bias_is_added_twice(cls):
    """Spec quirk 4: with zero compressors the logits are 2*b everywhere."""
    module = randomised(cls(4).double())
    gen = module.ker_generator
    with torch.no_grad():
        gen.compressor_en.weight.zero_()
        gen.compressor_en.bias.zero_()
        gen.compressor_de.weight.zero_()
    x, guide = inputs(1, 4, 4, 3, 5)
    expected = (2 * gen.content_encoder.bias).view(1, -1, 1, 1).expand(1, 25, 6, 10)
    torch.testing.assert_close(gen(guide, x), expected, rtol=0, atol=0)


@pytest.mark.parametrize('cls', CLASSES)
def test_decoder_path_is_nearest_upsampled(cls):
    """Semi-shift: the decoder contribution is constant on each 2x2 block; the encoder one is not."""
    module = randomised(cls(4).double())
    with torch.no_grad():  # a zero encoder path (its bias would show the conv's zero padding at the border)
        module.ker_generator.compressor_en.bias.zero_()
    x, guide = inputs(1, 4, 4, 3, 5)
    decoder_only = module.ker_generator(torch.zeros_like(guide), x)
    blocks = decoder_only.unfold(2, 2, 2).unfold(3, 2, 2)  # (1, 25, 3, 5, 2, 2)
    torch.testing.assert_close(blocks, blocks[..., :1, :1].expand_as(blocks), rtol=0, atol=0)
    full = module.ker_generator(guide, x).unfold(2, 2, 2).unfold(3, 2, 2)
    assert (full - full[..., :1, :1]).abs().max() > 1e-3


@pytest.mark.parametrize('cls', CLASSES)
def test_gate_is_nearest_upsampled_sigmoid(cls):
    module = randomised(cls(4).double())
    x, _ = inputs(1, 4, 4, 3, 5)
    gate = module.gate_generator(x)
    low = torch.sigmoid(module.gate_generator.conv(x))
    torch.testing.assert_close(gate, low.repeat_interleave(2, 2).repeat_interleave(2, 3), rtol=0, atol=1e-15)
    blocks = gate.unfold(2, 2, 2).unfold(3, 2, 2)  # one value per 2x2 block (up to SIMD-lane rounding)
    torch.testing.assert_close(blocks, blocks[..., :1, :1].expand_as(blocks), rtol=0, atol=1e-15)
    assert gate.shape == (1, 1, 6, 10) and ((gate > 0) & (gate < 1)).all()


@pytest.mark.parametrize('cls', CLASSES)
def test_saturated_gate_selects_encoder_or_reassembly(cls):
    """out = g*en + (1-g)*CARAFE(de): g = 1 gives en, g = 0 gives the ungated module's output."""
    gated = randomised(cls(4).double())
    ungated = cls(4, gating=False).double()
    ungated.ker_generator.load_state_dict(gated.ker_generator.state_dict())
    x, guide = inputs(2, 4, 4, 3, 5)
    with torch.no_grad():
        gated.gate_generator.conv.weight.zero_()
        gated.gate_generator.conv.bias.fill_(-1e4)
    torch.testing.assert_close(gated(x, guide), ungated(x, guide), rtol=0, atol=0)
    with torch.no_grad():
        gated.gate_generator.conv.bias.fill_(1e4)
    torch.testing.assert_close(gated(x, guide), guide, rtol=0, atol=0)


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('k,groups', [(3, 1), (5, 2)])
def test_uniform_kernels_are_a_box_filter(cls, k, groups):
    """Zero content encoder: every kernel is 1/k^2, so CARAFE is a zero-padded k x k mean, nearest-upsampled."""
    module = randomised(cls(4, up_kernel_size=k, up_group=groups, gating=False).double())
    with torch.no_grad():
        module.ker_generator.content_encoder.weight.zero_()
        module.ker_generator.content_encoder.bias.zero_()
    x, guide = inputs(2, 4, 4, 3, 5)
    box = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=True)
    torch.testing.assert_close(module(x, guide), F.interpolate(box, scale_factor=2, mode='nearest'),
                               rtol=0, atol=1e-14)


@pytest.mark.parametrize('cls', CLASSES)
def test_kernel_size_one_is_nearest(cls):
    module = randomised(cls(4, up_kernel_size=1, gating=False).double())
    x, guide = inputs(2, 4, 4, 3, 5)
    torch.testing.assert_close(module(x, guide), F.interpolate(x, scale_factor=2, mode='nearest'),
                               rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------------------------------------------
# Gradients, shapes, dtypes


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('kwargs', [dict(), dict(gating=False, up_kernel_size=3, up_group=2)])
def test_gradcheck_float64(cls, kwargs):
    module = randomised(cls(2, **kwargs).double())
    x, guide = inputs(1, 2, 2, 2, 3)
    assert torch.autograd.gradcheck(module, (x.requires_grad_(), guide.requires_grad_()))


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('gating', [True, False])
@pytest.mark.parametrize('n', [0, 1, 2])
@pytest.mark.parametrize('h,w', [(1, 1), (5, 7), (3, 1)])
def test_output_shapes(cls, gating, n, h, w):
    module = cls(8, gating=gating)
    x, guide = inputs(n, 8, 8, h, w, dtype=torch.float32)
    x.requires_grad_()
    guide.requires_grad_()
    out = module(x, guide)
    assert out.shape == (n, 8, 2 * h, 2 * w) and torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad.shape == x.shape and guide.grad.shape == guide.shape


def test_unequal_channels_output_has_decoder_channels():
    for gating in (True, False):
        x, guide = inputs(1, 12, 4, 3, 5, dtype=torch.float32)
        assert FADE(12, 4, gating=gating)(x, guide).shape == (1, 4, 6, 10)


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision(cls, dtype):
    module = cls(8)
    x, guide = inputs(2, 8, 8, 5, 7, dtype=torch.float32)
    x, guide = x.to(dtype), guide.to(dtype)
    out = module.to(dtype)(x, guide)
    assert out.dtype == dtype and torch.isfinite(out).all()
    expected = module.float()(x.float(), guide.float())
    torch.testing.assert_close(out.float(), expected, rtol=0.02, atol=0.05)


# ---------------------------------------------------------------------------------------------------------------
# Builder, aliases and bad input


def test_builder_fills_both_channels_and_scale():
    module = build_upsampler(dict(type='fade'), in_channels=16)
    assert type(module) is FADE and module.gating
    assert (module.in_channels_en, module.in_channels_de, module.scale) == (16, 16, 2)
    lite = build_upsampler(dict(type='fade_lite', gating=False, in_channels_en=32), in_channels=16)
    assert type(lite) is FADELite and not lite.gating and (lite.in_channels_en, lite.in_channels_de) == (32, 16)
    assert build_upsampler(dict(type='fade', scale_factor=2), in_channels=8).scale == 2
    assert FADE.needs_guide and FADELite.needs_guide


def test_scale_factor_alias_and_defaults():
    assert FADE(16, scale_factor=2).scale == 2 and FADE(16).scale_factor == 2
    assert FADE(16).in_channels_de == 16
    with pytest.raises(ValueError, match='disagree'):
        FADE(16, scale=3, scale_factor=4)


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels_en=8, scale=4), 'only supports scale=2.*got scale=4'),
    (dict(in_channels_en=8, scale_factor=3), 'only supports scale=2.*got scale=3'),
    (dict(in_channels_en=8, scale=1.5), 'scale must be an integer'),
    (dict(in_channels_en=8, up_kernel_size=4), 'up_kernel_size must be odd'),
    (dict(in_channels_en=8, up_group=3), 'up_group=3 must divide in_channels_de=8'),
    (dict(in_channels_en=0), 'in_channels_en must be an integer >= 1'),
    (dict(in_channels_en=8, in_channels_de=-1), 'in_channels_de must be an integer >= 1'),
    (dict(in_channels_en=8, gating='yes'), 'gating must be True or False'),
])
def test_bad_construction(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('x_shape,guide_shape,match', [
    ((1, 8, 3, 5), None, 'guided upsampler'),
    ((1, 8, 3, 5), (1, 6, 6, 12), r'guide must have shape \(N, 6, 2\*H, 2\*W\)'),   # wrong size
    ((1, 8, 3, 5), (1, 6, 6, 11), r'guide must have shape'),                        # odd width
    ((1, 8, 3, 5), (1, 8, 6, 10), r'guide must have shape .* got \(1, 8, 6, 10\)'),  # wrong channels
    ((2, 8, 3, 5), (1, 6, 6, 10), r'guide must have shape'),                        # wrong batch
    ((1, 6, 3, 5), (1, 6, 6, 10), r'x must have shape \(N, 8, H, W\)'),              # wrong x channels
    ((8, 3, 5), (1, 6, 6, 10), 'x must be 4-D'),
    ((1, 8, 3, 5), (6, 6, 10), 'guide must be 4-D'),
])
def test_bad_input(cls, x_shape, guide_shape, match):
    module = cls(6, 8)
    x = torch.zeros(x_shape)
    guide = None if guide_shape is None else torch.zeros(guide_shape)
    with pytest.raises(ValueError, match=match):
        module(x, guide)


def test_guide_dtype_must_match():
    with pytest.raises(ValueError, match='guide has dtype torch.float64'):
        FADE(4)(torch.zeros(1, 4, 3, 5), torch.zeros(1, 4, 6, 10, dtype=torch.float64))
