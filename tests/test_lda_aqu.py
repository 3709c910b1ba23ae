"""LDA-AQU (spec/lda_aqu.md): parameter counts, official numerics, a per-pixel loop of the spec's forward,
gradcheck, the sampling geometry and layouts, shapes, precision and bad input."""
import math

import pytest
import torch
import torch.nn.functional as F
from upsample_test_utils import check_official, count_parameters, load_official

from upsample_plugin import build_upsampler, plugin_upsamplers
from upsample_plugin.upsamplers.lda_aqu import LDA_AQU


def randomized(module, std=0.5, offset_std=0.8, seed=0):
    """Random, moderate parameters (float64): non-trivial offsets, LayerNorm affines and bias table."""
    gen = torch.Generator().manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for name, param in module.named_parameters():
            scale = offset_std if name.startswith('conv_offset.3') else std
            param.copy_(torch.randn(param.shape, generator=gen, dtype=param.dtype) * scale)
    return module


# ----------------------------------------------------------------------------------------------------------
# A direct loop of spec "Forward": one output pixel, one group and one sampled point at a time, vectorised only
# over batch and channels. Steps 1-3 use functional ops written from the spec; step 5's sampling is written out
# as the spec's net mapping (input coordinate = P*(H-1)/(H_out-1), bilinear, zero outside the input) instead of
# calling grid_sample. Differentiable, so it is also the gradient reference.
# ----------------------------------------------------------------------------------------------------------

def bilinear_zero(feat, y, x):
    """feat (N, c, H, W) at input coordinates y, x (N,): bilinear, zero outside the map -> (N, c)."""
    n, _, height, width = feat.shape
    batch = torch.arange(n)
    y0, x0 = torch.floor(y.detach()), torch.floor(x.detach())
    acc = 0
    for cy in (y0, y0 + 1):
        for cx in (x0, x0 + 1):
            weight = (1 - (y - cy).abs()) * (1 - (x - cx).abs())
            inside = (cy >= 0) & (cy <= height - 1) & (cx >= 0) & (cx <= width - 1)
            value = feat[batch, :, cy.clamp(0, height - 1).long(), cx.clamp(0, width - 1).long()]
            acc = acc + (weight * inside)[:, None] * value
    return acc


def lda_aqu_loop(m, x):
    n, channels, height, width = x.shape
    s, groups, ku, heads = m.scale_factor, m.n_groups, m.k_u, m.num_head
    taps, pad, hidden = ku * ku, (ku - 1) // 2, m.hidden_dim
    out_h, out_w = height * s, width * s
    # 1. LayerNorm over channels, 1x1 projections; 2. bilinear align_corners=True upsampling of q.
    ln = m.layer_norm.norm
    xn = F.layer_norm(x.permute(0, 2, 3, 1), (channels,), ln.weight, ln.bias, ln.eps).permute(0, 3, 1, 2)
    q = F.interpolate(F.conv2d(xn, m.proj_q.weight), (out_h, out_w), mode='bilinear', align_corners=True)
    k = F.conv2d(xn, m.proj_k.weight)
    # 3. shared offset branch on each group's query channels; tanh * range + regular grid.
    dw, norm, _, last = m.conv_offset
    gc = hidden // groups
    h1 = F.conv2d(q.reshape(n * groups, gc, out_h, out_w), dw.weight, padding=1, groups=gc)
    h1 = F.layer_norm(h1.permute(0, 2, 3, 1), (gc,), norm.norm.weight, norm.norm.bias,
                      norm.norm.eps).permute(0, 3, 1, 2)
    raw = F.conv2d(F.gelu(h1), last.weight, last.bias, padding=m.k_e // 2)
    raw = raw.view(n, groups, taps, 2, out_h, out_w)
    ck, cv, dim = hidden // groups, channels // groups, hidden // heads
    rows = []
    for r in range(out_h):
        row = []
        for c in range(out_w):
            keys, values = [], []  # per tap: (N, hidden), (N, C), channels in (g c) order
            for t in range(taps):
                ty, tx = t // ku - pad, t % ku - pad
                key_t, value_t = [], []
                for g in range(groups):
                    dy = torch.tanh(raw[:, g, t, 0, r, c]) * m.offset_range_factor + ty
                    dx = torch.tanh(raw[:, g, t, 1, r, c]) * m.offset_range_factor + tx
                    yi = (r + dy) * (height - 1) / (out_h - 1)
                    xi = (c + dx) * (width - 1) / (out_w - 1)
                    key_t.append(bilinear_zero(k[:, g * ck:(g + 1) * ck], yi, xi))
                    value_t.append(bilinear_zero(x[:, g * cv:(g + 1) * cv], yi, xi))
                key_t = torch.cat(key_t, 1)
                if m.rpb:
                    key_t = key_t + m.state_dict()['relative_position_bias_table'][0, :, 0, t, :].reshape(hidden)
                keys.append(key_t)
                values.append(torch.cat(value_t, 1))
            pixel = []
            vh = channels // heads
            for h in range(heads):  # one softmax over the points per head, shared by the head's values
                q_pix = q[:, h * dim:(h + 1) * dim, r, c] * dim ** -0.5
                logits = torch.stack([(q_pix * key[:, h * dim:(h + 1) * dim]).sum(1) for key in keys], 1)
                attn = logits.softmax(1)
                pixel.append(sum(attn[:, t, None] * values[t][:, h * vh:(h + 1) * vh] for t in range(taps)))
            row.append(torch.cat(pixel, 1))
        rows.append(torch.stack(row, dim=-1))
    return torch.stack(rows, dim=-2)


LOOP_CASES = [
    # (constructor kwargs, input shape)
    (dict(in_channels=16), (2, 16, 3, 3)),  # defaults: r4, G2, k_u 3, range 11 (most points leave the map)
    (dict(in_channels=16, reduction_factor=2, nh=2, n_groups=4, k_u=5, k_e=1, range_factor=2.5, rpb=False),
     (1, 16, 2, 2)),
    (dict(in_channels=8, reduction_factor=2, scale_factor=4, range_factor=3), (1, 8, 2, 2)),
    (dict(in_channels=12, reduction_factor=3, nh=2, n_groups=2, range_factor=1.5), (2, 12, 3, 1)),  # W = 1
]


@pytest.mark.parametrize('kwargs,shape', LOOP_CASES)
def test_matches_direct_loop_of_spec_formula(kwargs, shape):
    module = randomized(LDA_AQU(**kwargs))
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = module(x)
    expected = lda_aqu_loop(module, x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(out)
    params = [module.conv_offset[3].weight, module.proj_q.weight, module.proj_k.weight]
    grads = torch.autograd.grad(out, [x] + params, grad_out)
    expected_grads = torch.autograd.grad(expected, [x] + params, grad_out)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------------------------------------
# Official numerics, parameter counts, state dict
# ----------------------------------------------------------------------------------------------------------

def test_reproduces_official_module():
    fixture = load_official('lda_aqu_default')
    assert fixture['init_args']['scale_factor'] == 2.0  # the official float default is accepted
    check_official(LDA_AQU(**fixture['init_args']), fixture)


def test_state_dict_keys_match_official():
    fixture = load_official('lda_aqu_default')
    module = LDA_AQU(**fixture['init_args'])
    assert list(module.state_dict()) == list(fixture['state_dict'])
    for key, value in module.state_dict().items():
        assert value.shape == fixture['state_dict'][key].shape, key
    assert 'base_offset' in dict(module.named_buffers()) and 'base_offset' not in module.state_dict()


@pytest.mark.parametrize('kwargs,params', [
    (dict(), 39_410),                       # q, k 32,768; offset branch 5,554; LN 512; rpb 576
    (dict(reduction_factor=16), 10_250),
    (dict(rpb=False), 39_410 - 576),
])
def test_parameter_counts_at_256_channels(kwargs, params):
    assert count_parameters(LDA_AQU(256, **kwargs)) == params


def test_parameter_count_of_four_modules_in_fpn_lau():
    assert 4 * count_parameters(LDA_AQU(256)) == 157_640
    assert 4 * count_parameters(LDA_AQU(256, reduction_factor=16)) == 41_000


# ----------------------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------------------

def test_gradcheck_float64_input_and_parameters():
    module = randomized(LDA_AQU(8, reduction_factor=2, range_factor=3))
    names = ['relative_position_bias_table', 'proj_q.weight', 'proj_k.weight', 'conv_offset.0.weight',
             'conv_offset.3.bias']
    params = dict(module.named_parameters())

    def run(x, *tensors):
        return torch.func.functional_call(module, {**params, **dict(zip(names, tensors))}, (x,))

    x = torch.randn(1, 8, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    inputs = (x.requires_grad_(),) + tuple(params[name].detach().clone().requires_grad_() for name in names)
    assert torch.autograd.gradcheck(run, inputs)


def test_gradcheck_float64_scale_4_odd_size():
    module = randomized(LDA_AQU(8, reduction_factor=2, nh=2, scale_factor=4, range_factor=2), seed=5)
    x = torch.randn(1, 8, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert torch.autograd.gradcheck(module, (x.requires_grad_(),))


# ----------------------------------------------------------------------------------------------------------
# Structure and geometry
# ----------------------------------------------------------------------------------------------------------

def test_base_offset_layout():
    module = LDA_AQU(16)
    base = module.base_offset
    assert base.shape == (1, 18, 1, 1) and base.dtype == torch.float32
    ty = torch.tensor([-1., -1., -1., 0., 0., 0., 1., 1., 1.])
    tx = torch.tensor([-1., 0., 1., -1., 0., 1., -1., 0., 1.])
    torch.testing.assert_close(base.view(9, 2)[:, 0], ty)  # channel 2t: dy of tap t = ty*3 + tx
    torch.testing.assert_close(base.view(9, 2)[:, 1], tx)  # channel 2t+1: dx
    five = LDA_AQU(16, k_u=5).base_offset.view(25, 2)
    assert five[7].tolist() == [-1., 0.] and five[24].tolist() == [2., 2.]


def test_init_weights():
    module = LDA_AQU(256)
    assert (module.conv_offset[3].weight == 0).all() and (module.conv_offset[3].bias == 0).all()
    for norm in (module.layer_norm.norm, module.conv_offset[1].norm):
        assert (norm.weight == 1).all() and (norm.bias == 0).all()
    table = module.state_dict()['relative_position_bias_table']  # the official shape
    assert table.shape == (1, 1, 1, 9, 64) and 0.015 < table.std().item() < 0.025
    bound = math.sqrt(6 / (256 + 64))  # Xavier-uniform, gain 1, of the 1x1 projection
    assert module.proj_q.weight.abs().max() <= bound and module.proj_q.weight.abs().max() > 0.9 * bound


def test_initial_offsets_are_the_regular_grid():
    module = LDA_AQU(16).double()
    x = torch.randn(2, 16, 3, 5, dtype=torch.float64)
    q, _ = module.queries_keys(x)
    offsets = module.offsets(q)
    assert offsets.shape == (2 * 2, 18, 6, 10)
    torch.testing.assert_close(offsets, module.base_offset.double().expand_as(offsets), rtol=0, atol=0)


@pytest.mark.parametrize('scale', [2, 4])
@pytest.mark.parametrize('size', [(5, 7), (1, 4), (3, 3)])
def test_single_point_zero_offset_is_align_corners_bilinear(scale, size):
    """Spec step 5 / quirk 3: with k_u=1 (one point, weight 1) and zero offsets, output pixel r reads input
    coordinate r*(H-1)/(sH-1): exactly bilinear interpolation with align_corners=True."""
    module = randomized(LDA_AQU(16, k_u=1, scale_factor=scale))
    with torch.no_grad():
        module.conv_offset[3].weight.zero_()
        module.conv_offset[3].bias.zero_()
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    out = module(x)
    torch.testing.assert_close(out, F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=True),
                               rtol=0, atol=1e-12)
    if size[0] > 1:  # the half-pixel geometry of align_corners=False (DySample, mmdet FPN) differs
        assert not torch.allclose(out, F.interpolate(x, scale_factor=scale, mode='bilinear'), atol=1e-3)


@pytest.mark.parametrize('channel,dim', [(0, 2), (1, 3)])  # channel 0 is dy (rows), channel 1 is dx (columns)
def test_offsets_are_in_output_pixels_dy_then_dx(channel, dim):
    rf, shift = 11, 2
    module = randomized(LDA_AQU(16, k_u=1, range_factor=rf))
    with torch.no_grad():
        module.conv_offset[3].weight.zero_()
        module.conv_offset[3].bias.zero_()
        module.conv_offset[3].bias[channel] = math.atanh(shift / rf)
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64)
    up = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True)
    out = module(x)
    keep = up.shape[dim] - shift
    torch.testing.assert_close(out.narrow(dim, 0, keep), up.narrow(dim, shift, keep), rtol=0, atol=1e-12)


def test_group_offsets_move_only_their_value_channels():
    """With one point per pixel the attention weight is 1, so group g's offsets (from query channels of group g)
    only move value channels [g*C/G, (g+1)*C/G): the "(g c)" channel layout."""
    module = randomized(LDA_AQU(16, reduction_factor=2, n_groups=2, k_u=1, range_factor=3))
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64)
    base = module(x)
    with torch.no_grad():
        module.proj_q.weight[4:] += 0.7  # query channels of group 1 (hidden_dim 8, 4 per group)
    changed = (module(x) - base).abs() > 1e-12
    assert not changed[:, :8].any() and changed[:, 8:].any()


def test_attention_weights_sum_to_one():
    module = randomized(LDA_AQU(16, nh=2, reduction_factor=2))
    x = torch.randn(2, 16, 3, 4, dtype=torch.float64)
    q, k = module.queries_keys(x)
    grid = module.sampling_grid(module.offsets(q))
    keys = module.sample(k, grid)
    ones = torch.ones(2, 16, 9, 6, 8, dtype=torch.float64)
    torch.testing.assert_close(module.attend(q, keys, ones), torch.ones(2, 16, 6, 8, dtype=torch.float64))


@pytest.mark.parametrize('scale', [2, 4])
def test_one_pixel_input_is_copied(scale):
    """align_corners=True maps every coordinate of a 1-pixel map to 0: each point reads the pixel, so the
    output is the input everywhere (the official module cannot run this input: its q.view fails)."""
    module = randomized(LDA_AQU(16, scale_factor=scale))
    x = torch.randn(3, 16, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(module(x), x.expand(3, 16, scale, scale), rtol=0, atol=1e-12)


def test_guide_is_ignored():
    module = randomized(LDA_AQU(16))
    x = torch.randn(1, 16, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(module(x, torch.randn(1, 16, 6, 8, dtype=torch.float64)), module(x),
                               rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------
# Shapes, registry, dtypes
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('scale', [2, 4, 2.0, 4.0])
@pytest.mark.parametrize('n', [0, 1, 2])
@pytest.mark.parametrize('size', [(1, 1), (5, 7), (4, 9), (3, 1)])
def test_output_shapes(scale, n, size):
    module = LDA_AQU(16, scale_factor=scale)
    out = module(torch.randn(n, 16, *size))
    s = int(scale)
    assert out.shape == (n, 16, s * size[0], s * size[1]) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_empty_batch_backward():
    module = LDA_AQU(16)
    x = torch.randn(0, 16, 5, 7, requires_grad=True)
    module(x).sum().backward()
    assert x.grad.shape == x.shape


def test_registered_and_built_from_official_cfg():
    assert plugin_upsamplers()['lda_aqu'] is LDA_AQU
    # FPN_LAU's upsample_cfg (configs/lda_aqu/fasterrcnn_r50_lau.py), as a plain dict.
    cfg = dict(type='lda_aqu', reduction_factor=4, k_e=3, k_u=3, n_groups=2, range_factor=11)
    layer = build_upsampler(cfg, in_channels=256, scale_factor=2)
    assert type(layer) is LDA_AQU and layer.scale_factor == 2 and count_parameters(layer) == 39_410
    assert layer(torch.randn(1, 256, 3, 5)).shape == (1, 256, 6, 10)
    layer = build_upsampler(dict(type='lda_aqu', reduction_factor=2), in_channels=16, scale_factor=4)
    assert layer.scale_factor == 4 and layer(torch.randn(2, 16, 3, 5)).shape == (2, 16, 12, 20)


def test_coordinates_float32_or_better():
    module = randomized(LDA_AQU(16))
    q = torch.randn(1, 4, 6, 8, dtype=torch.float64)
    assert module.offsets(q).dtype == torch.float64  # float64 stays float64
    module = module.to(torch.bfloat16)
    offsets = module.offsets(q.bfloat16())
    assert offsets.dtype == torch.float32 and module.sampling_grid(offsets).dtype == torch.float32


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision(dtype):
    module = randomized(LDA_AQU(16), std=0.3, offset_std=0.3).float()
    x = torch.randn(2, 16, 6, 7)
    try:
        out = module.to(dtype)(x.to(dtype))
    except RuntimeError as err:  # a CPU kernel (conv/layer_norm) without this dtype: nothing of ours to test
        pytest.skip(f'{dtype} not supported on CPU by torch: {err}')
    assert out.dtype == dtype and torch.isfinite(out).all()
    expected = module.float()(x.to(dtype).float())
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.1)


# ----------------------------------------------------------------------------------------------------------
# Bad construction and bad input
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=0), 'in_channels must be an integer >= 1'),
    (dict(in_channels=16, reduction_factor=0), 'reduction_factor must be an integer >= 1'),
    (dict(in_channels=16, reduction_factor=32), 'reduction_factor=32 must be <= in_channels=16'),
    (dict(in_channels=16, n_groups=3), 'n_groups=3 must divide hidden_dim'),
    (dict(in_channels=18, n_groups=4), r'n_groups=4 must divide in_channels=18'),
    (dict(in_channels=16, nh=3), 'nh=3 must divide hidden_dim'),
    (dict(in_channels=18, nh=4, n_groups=1), 'nh=4 must divide in_channels=18'),
    (dict(in_channels=16, nh=0), 'nh must be an integer >= 1'),
    (dict(in_channels=16, k_u=2), 'k_u must be odd'),
    (dict(in_channels=16, k_e=4), 'k_e must be odd'),
    (dict(in_channels=16, scale_factor=1.5), 'scale_factor must be an integer ratio'),
    (dict(in_channels=16, scale_factor=0), 'scale_factor must be an integer ratio'),
    (dict(in_channels=16, scale_factor=True), 'scale_factor must be an integer ratio'),
    (dict(in_channels=16, scale_factor='2'), 'scale_factor must be an integer ratio'),
    (dict(in_channels=16, range_factor=-1), 'range_factor must be a real number >= 0'),
    (dict(in_channels=16, range_factor='11'), 'range_factor must be a real number >= 0'),
    (dict(in_channels=16, rpb='yes'), 'rpb must be True or False'),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LDA_AQU(**kwargs)


@pytest.mark.parametrize('x,match', [
    (torch.zeros(16, 5, 7), 'x must be 4-D'),
    (torch.zeros(1, 8, 5, 7), r'must have shape \(N, 16, H, W\)'),
    (torch.zeros(1, 16, 0, 7), 'non-empty spatial size'),
    (torch.zeros(1, 16, 5, 7, dtype=torch.int64), 'x must be a floating-point tensor'),
])
def test_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        LDA_AQU(16)(x)


def test_channels_last_model_conversion_keeps_official_state_dict():
    """Module.to(memory_format=channels_last) converts every 4-D/5-D tensor and rejects 5-D ones: the bias table
    is held 3-D, while state dicts keep the official 5-D shape both ways."""
    module = LDA_AQU(64)
    official = module.state_dict()
    x = torch.randn(2, 64, 5, 7)
    expected = module(x)
    module.to(memory_format=torch.channels_last)
    torch.testing.assert_close(module(x.contiguous(memory_format=torch.channels_last)), expected)
    fresh = LDA_AQU(64)
    fresh.load_state_dict(official, strict=True)
    assert official['relative_position_bias_table'].dim() == 5
    assert fresh.state_dict()['relative_position_bias_table'].shape == official['relative_position_bias_table'].shape
    torch.testing.assert_close(fresh(x), expected)
