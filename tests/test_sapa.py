"""SAPA-B and SAPA-D (spec/sapa.md).

SAPA-B: the similarity op ``qk`` against a direct loop of its formula, the module against a direct loop of the
whole forward, the official fixture, "aggregation = CARAFE op with one group", border semantics (zero
similarity for out-of-range taps), parameter counts, shapes, dtypes and bad input.
SAPA-D (no official fixture exists): the deformable ops against a direct loop of the official CUDA kernels'
formulas, "SAPA-D on the fixed k x k grid = SAPA-B", zero offsets = nearest, parameter counts, bad input."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from upsample_test_utils import carafe_loop, check_official, count_parameters, load_official

import upsample_plugin.upsamplers.sapa as sapa_module
from upsample_plugin import build_upsampler
from upsample_plugin.ops import carafe
from upsample_plugin.ops.sapa import (sapa_deform_aggregation, sapa_deform_similarity, sapa_similarity,
                                      sapa_similarity_reference)
from upsample_plugin.upsamplers.sapa import SAPA, SAPADeform


# ----------------------------------------------------------------------------------------------- helpers

def similarity_loop(query, key, kernel_size, scale_factor):
    """spec/sapa.md Forward step 3, one output pixel and one tap at a time (vectorised over batch only).

    ``S[n, a*k + b, p, q] = sum_c query[n, c, p, q] * key[n, c, p//s + a - r, q//s + b - r]``, 0 outside.
    Differentiable, so it is the reference for the gradients too.
    """
    n, _, height, width = key.shape
    k, s, r = kernel_size, scale_factor, (kernel_size - 1) // 2
    rows = []
    for p in range(height * s):
        row = []
        for q in range(width * s):
            taps = []
            for a in range(k):
                for b in range(k):
                    y, x = p // s + a - r, q // s + b - r
                    if 0 <= y < height and 0 <= x < width:
                        taps.append((query[:, :, p, q] * key[:, :, y, x]).sum(1))
                    else:
                        taps.append(query.new_zeros(n))
            row.append(torch.stack(taps, dim=1))
        rows.append(torch.stack(row, dim=-1))
    return torch.stack(rows, dim=-2)


def group_norm_loop(x, groups, weight, bias, eps):
    n, c, h, w = x.shape
    grouped = x.reshape(n, groups, -1)
    mean = grouped.mean(-1, keepdim=True)
    var = ((grouped - mean) ** 2).mean(-1, keepdim=True)
    normed = ((grouped - mean) / torch.sqrt(var + eps)).view(n, c, h, w)
    return normed * weight.view(1, c, 1, 1) + bias.view(1, c, 1, 1)


def conv1x1(x, conv):
    out = torch.einsum('oc,nchw->nohw', conv.weight[:, :, 0, 0], x)
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)


def sapa_loop(module, x, guide):
    """The whole SAPA-B forward from the spec's formulas: GN, 1x1 projections, similarity loop, softmax over
    the taps, and the reassembly loop (the CARAFE formula with one group) on the raw x."""
    x_normed, guide_normed = x, guide
    if module.norm:
        x_normed = group_norm_loop(x, 32, module.norm_x.weight, module.norm_x.bias, module.norm_x.eps)
        guide_normed = group_norm_loop(guide, 32, module.norm_y.weight, module.norm_y.bias, module.norm_y.eps)
    sim = similarity_loop(conv1x1(guide_normed, module.q), conv1x1(x_normed, module.k), module.up_kernel_size,
                          module.up_factor)
    return carafe_loop(x, sim.softmax(dim=1), module.up_kernel_size, 1, module.up_factor)


def randomized(module, seed=0, std=0.3):
    """Non-trivial parameters: with the official N(0, 0.02^2) init the attention is almost uniform."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=param.dtype) * std
            param.copy_(1 + noise if name.startswith('norm') and name.endswith('weight') else noise)
    return module


def random_inputs(n, dim_x, dim_y, h, w, s, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, dim_x, h, w, generator=gen, dtype=dtype),
            torch.randn(n, dim_y, h * s, w * s, generator=gen, dtype=dtype))


class OfficialOrder(SAPA):
    """The official call order ``forward(y, x)`` (guide first), for the fixture."""

    def forward(self, y, x):
        return super().forward(x, y)


# ------------------------------------------------------------------------------------- similarity op

def assert_similarity_matches_loop(n, c, h, w, k, s, seed=0):
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(n, c, h * s, w * s, generator=gen, dtype=torch.float64, requires_grad=True)
    key = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    out = sapa_similarity(query, key, k, s)
    expected = similarity_loop(query, key, k, s)
    assert out.shape == (n, k * k, h * s, w * s)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    grad_out = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad(out, (query, key), grad_out)
    expected_grads = torch.autograd.grad(expected, (query, key), grad_out)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize('k', [1, 3, 5, 7])
@pytest.mark.parametrize('s', [1, 2, 4])
def test_similarity_matches_loop_kernel_sizes_and_scales(k, s):
    assert_similarity_matches_loop(2, 3, 3, 2, k, s)


@pytest.mark.parametrize('n,c,h,w,k,s', [
    (1, 4, 1, 1, 5, 2),   # 1x1 key map: only the centre tap is inside
    (2, 5, 5, 3, 5, 2),   # odd sizes
    (1, 2, 3, 5, 5, 3),   # odd scale
    (1, 1, 2, 2, 7, 4),   # kernel wider than the map
])
def test_similarity_matches_loop_edge_shapes(n, c, h, w, k, s):
    assert_similarity_matches_loop(n, c, h, w, k, s)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 4), h=st.integers(1, 4), w=st.integers(1, 4),
       k=st.sampled_from([1, 3, 5]), s=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_similarity_matches_loop_random_shapes(n, c, h, w, k, s, seed):
    assert_similarity_matches_loop(n, c, h, w, k, s, seed=seed)


def test_similarity_out_of_range_taps_are_zero():
    """Spec quirk 1: a neighbour outside the map gives similarity exactly 0 (not -inf)."""
    query = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    key = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    sim = sapa_similarity(query, key, 5, 2).view(1, 5, 5, 4, 4)
    # Output pixel (0, 0) has parent (0, 0): rows/columns a, b < 2 point outside, as do a, b > 3.
    assert (sim[0, :2, :, 0, 0] == 0).all() and (sim[0, :, :2, 0, 0] == 0).all()
    assert (sim[0, 4, :, 0, 0] == 0).all() and (sim[0, :, 4, 0, 0] == 0).all()
    assert (sim[0, 2:4, 2:4, 0, 0] != 0).all()


def test_similarity_reference_is_the_entry_point_on_cpu():
    query = torch.randn(2, 4, 6, 8, dtype=torch.float64)
    key = torch.randn(2, 4, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(sapa_similarity(query, key, 5, 2), sapa_similarity_reference(query, key, 5, 2),
                               rtol=0, atol=0)


def test_similarity_gradcheck_float64():
    gen = torch.Generator().manual_seed(1)
    query = torch.randn(2, 3, 6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    key = torch.randn(2, 3, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, k: sapa_similarity(q, k, 3, 2), (query, key))
    assert torch.autograd.gradgradcheck(lambda q, k: sapa_similarity(q, k, 3, 2), (query, key))


def test_similarity_empty_batch_has_gradients():
    query = torch.randn(0, 4, 6, 6, requires_grad=True)
    key = torch.randn(0, 4, 3, 3, requires_grad=True)
    out = sapa_similarity(query, key, 5, 2)
    assert out.shape == (0, 25, 6, 6)
    out.sum().backward()
    assert query.grad.shape == query.shape and key.grad.shape == key.shape


@pytest.mark.parametrize('dtype,atol', [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 1.5e-1)])
def test_similarity_reduced_precision(dtype, atol):
    query = torch.randn(2, 8, 6, 8, dtype=torch.float64)
    key = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    out = sapa_similarity(query.to(dtype), key.to(dtype), 5, 2)
    assert out.dtype == dtype
    expected = sapa_similarity(query.to(dtype).double(), key.to(dtype).double(), 5, 2)
    torch.testing.assert_close(out.double(), expected, rtol=0.01, atol=atol)


@pytest.mark.parametrize('change,match', [
    (dict(query=torch.zeros(4, 6, 6)), 'query must be 4-D'),
    (dict(key=torch.zeros(4, 3, 3)), 'key must be 4-D'),
    (dict(kernel_size=4), 'kernel_size must be odd'),
    (dict(kernel_size=0), 'kernel_size must be an integer >= 1'),
    (dict(scale_factor=2.0), 'scale_factor must be an integer'),
    (dict(query=torch.zeros(1, 4, 7, 6)), r'query must have shape .* = \(1, 4, 6, 6\)'),
    (dict(query=torch.zeros(1, 5, 6, 6)), r'query must have shape .* = \(1, 4, 6, 6\)'),
    (dict(query=torch.zeros(2, 4, 6, 6)), r'query must have shape .* = \(1, 4, 6, 6\)'),
    (dict(key=torch.zeros(1, 4, 3, 3, dtype=torch.float64)), 'key has dtype torch.float64'),
    (dict(key=torch.zeros(1, 4, 3, 3, dtype=torch.int64)), 'key must be a floating-point'),
])
def test_similarity_bad_input_names_the_argument(change, match):
    args = dict(query=torch.zeros(1, 4, 6, 6), key=torch.zeros(1, 4, 3, 3), kernel_size=5, scale_factor=2)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        sapa_similarity(**args)


# ------------------------------------------------------------------------------------------- module

@pytest.mark.parametrize('dim,params', [(256, 17_472), (512, 34_880)])
def test_parameter_counts(dim, params):
    assert count_parameters(SAPA(dim)) == params


def test_parameter_count_breakdown_at_256():
    """spec/sapa.md "Layers": q + k = 16,448, the two GroupNorms 2 x 512."""
    module = SAPA(256)
    assert count_parameters(module.q) + count_parameters(module.k) == 16_448
    assert count_parameters(module.norm_y) == count_parameters(module.norm_x) == 512
    assert count_parameters(SAPA(256, norm=False)) == 16_448
    assert count_parameters(SAPA(256, norm=False, qkv_bias=False)) == 16_384


def test_state_dict_keys_follow_the_official_names():
    fixture = load_official('sapa_base')
    assert set(SAPA(64, 32).state_dict()) == set(fixture['state_dict'])
    assert set(SAPA(64, norm=False).state_dict()) == {'q.weight', 'q.bias', 'k.weight', 'k.bias'}
    assert set(SAPA(64, norm=False, qkv_bias=False).state_dict()) == {'q.weight', 'k.weight'}


def test_reproduces_official_module():
    """tiny-smart/sapa@a5acd52 sapa_base.py, dim_y=64, dim_x=32: output and both input gradients to 1e-8."""
    fixture = load_official('sapa_base')
    assert fixture['forward_args'] == ['y', 'x']  # official order: guide first
    check_official(OfficialOrder(**fixture['init_args']), fixture)


def test_reproduces_official_module_in_plugin_order():
    fixture = load_official('sapa_base')
    module = SAPA(**fixture['init_args']).double()
    module.load_state_dict(fixture['state_dict'], strict=True)
    x = fixture['inputs']['x'].clone().requires_grad_()
    guide = fixture['inputs']['y'].clone().requires_grad_()
    out = module(x, guide)
    torch.testing.assert_close(out, fixture['output'], rtol=0, atol=1e-8)
    grad_x, grad_guide = torch.autograd.grad((out * fixture['grad_weight']).sum(), (x, guide))
    torch.testing.assert_close(grad_x, fixture['input_grads']['x'], rtol=0, atol=1e-8)
    torch.testing.assert_close(grad_guide, fixture['input_grads']['y'], rtol=0, atol=1e-8)


@pytest.mark.parametrize('norm,dim_y,dim_x,n,h,w,s,k', [
    (True, 64, 32, 2, 3, 4, 2, 5),
    (True, 32, 32, 1, 2, 3, 4, 5),     # scale 4
    (False, 5, 3, 2, 3, 5, 2, 3),      # odd sizes and channels, kernel 3
    (False, 4, 4, 1, 1, 1, 2, 5),      # 1x1 low-res map
    (True, 32, 32, 1, 1, 1, 2, 5),     # 1x1 map, batch 1, one value per GroupNorm group of x
    (False, 3, 2, 1, 2, 2, 3, 7),      # odd scale, kernel wider than the map
])
def test_module_matches_loop_of_the_spec_formulas(norm, dim_y, dim_x, n, h, w, s, k):
    module = randomized(SAPA(dim_y, dim_x, up_factor=s, up_kernel_size=k, embedding_dim=6, norm=norm)).double()
    x, guide = random_inputs(n, dim_x, dim_y, h, w, s)
    x.requires_grad_()
    guide.requires_grad_()
    out = module(x, guide)
    expected = sapa_loop(module, x, guide)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(out)
    inputs = (x, guide, *module.parameters())
    grads = torch.autograd.grad(out, inputs, grad_out)
    expected_grads = torch.autograd.grad(expected, inputs, grad_out)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-11)


def test_aggregation_is_the_carafe_op_with_one_group(monkeypatch):
    """Spec: op ``av`` is the CARAFE formula with G = 1. The module's av step goes through
    ``upsample_plugin.ops.carafe`` (group 1, raw x), and equals it on the module's own attention."""
    module = randomized(SAPA(64, 32, embedding_dim=8)).double()
    x, guide = random_inputs(2, 32, 64, 3, 5, 2)
    calls = []

    def spy(features, masks, kernel_size, group_size, scale_factor):
        calls.append((features, masks, kernel_size, group_size, scale_factor))
        return carafe(features, masks, kernel_size, group_size, scale_factor)

    monkeypatch.setattr(sapa_module, 'carafe', spy)
    out = module(x, guide)
    assert len(calls) == 1
    features, masks, kernel_size, group_size, scale_factor = calls[0]
    assert features is x and (kernel_size, group_size, scale_factor) == (5, 1, 2)
    attn = module.attention_weights(x, guide)
    torch.testing.assert_close(masks, attn, rtol=0, atol=0)
    torch.testing.assert_close(attn.sum(1), torch.ones(2, 6, 10, dtype=torch.float64), rtol=0, atol=1e-12)
    # And against the CARAFE formula itself (the test's loop) with one group.
    torch.testing.assert_close(out, carafe_loop(x, attn, 5, 1, 2), rtol=0, atol=1e-12)


@pytest.mark.parametrize('s', [2, 3])
def test_zero_queries_give_the_zero_padded_mean(s):
    """Spec quirk 1 (kept): with q = 0 every similarity is 0, also for out-of-range taps, so the attention is
    uniform 1/k^2 over all k*k taps and the border is attenuated: SAPA equals a zero-padded 5x5 mean that
    counts the padding, nearest-upsampled."""
    module = randomized(SAPA(32, 32, up_factor=s)).double()
    with torch.no_grad():
        module.q.weight.zero_()
        module.q.bias.zero_()
    x, guide = random_inputs(2, 32, 32, 4, 5, s)
    expected = F.interpolate(F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=True), scale_factor=s,
                             mode='nearest')
    torch.testing.assert_close(module(x, guide), expected, rtol=0, atol=1e-12)


def test_output_pixel_depends_on_its_own_guide_pixel_only():
    """Without GroupNorm (which mixes pixels) the query of output pixel (p, q) comes from guide pixel (p, q)."""
    module = randomized(SAPA(4, 3, norm=False)).double()
    x, guide = random_inputs(1, 3, 4, 4, 5, 2)
    base = module(x, guide)
    guide = guide.clone()
    guide[0, :, 3, 6] += 1.0
    changed = (module(x, guide) - base).abs() > 0
    expected = torch.zeros_like(changed)
    expected[:, :, 3, 6] = True
    assert torch.equal(changed, expected)


def test_low_res_pixel_reaches_the_children_of_its_neighbours_only():
    module = randomized(SAPA(4, 3, norm=False)).double()
    x, guide = random_inputs(1, 3, 4, 7, 7, 2)
    base = module(x, guide)
    x = x.clone()
    x[0, :, 1, 5] += 1.0
    changed = ((module(x, guide) - base).abs() > 0).any(1)[0]  # (14, 14)
    parents_row = torch.arange(14) // 2
    expected = ((parents_row - 1).abs() <= 2).view(-1, 1) & ((parents_row - 5).abs() <= 2).view(1, -1)
    assert torch.equal(changed, expected)


def test_module_gradcheck_float64_with_norm():
    module = randomized(SAPA(32, 32, embedding_dim=4)).double()
    x, guide = random_inputs(1, 32, 32, 2, 2, 2)
    assert torch.autograd.gradcheck(module, (x.requires_grad_(), guide.requires_grad_()))


def test_module_gradcheck_float64_without_norm():
    module = randomized(SAPA(3, 2, up_factor=3, up_kernel_size=3, embedding_dim=4, norm=False)).double()
    x, guide = random_inputs(2, 2, 3, 2, 2, 3)
    assert torch.autograd.gradcheck(module, (x.requires_grad_(), guide.requires_grad_()))


@pytest.mark.parametrize('s', [1, 2, 3, 4])
@pytest.mark.parametrize('n,h,w', [(1, 1, 1), (1, 5, 7), (2, 3, 4), (0, 3, 5)])
def test_output_shapes(s, n, h, w):
    module = SAPA(64, 32, up_factor=s)
    x, guide = random_inputs(n, 32, 64, h, w, s, dtype=torch.float32)
    out = module(x, guide)
    assert out.shape == (n, 32, h * s, w * s) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_empty_batch_has_gradients():
    module = SAPA(64, 32)
    x, guide = random_inputs(0, 32, 64, 3, 5, 2, dtype=torch.float32)
    x.requires_grad_()
    guide.requires_grad_()
    out = module(x, guide)
    assert out.shape == (0, 32, 6, 10)
    out.sum().backward()
    assert x.grad.shape == x.shape and guide.grad.shape == guide.shape
    assert module.q.weight.grad is not None and (module.q.weight.grad == 0).all()


def test_batch_elements_are_independent():
    module = randomized(SAPA(64, 32, embedding_dim=8)).double()
    x, guide = random_inputs(3, 32, 64, 3, 4, 2)
    out = module(x, guide)
    for i in range(3):
        torch.testing.assert_close(module(x[i:i + 1], guide[i:i + 1]), out[i:i + 1], rtol=0, atol=1e-13)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision(dtype):
    module = randomized(SAPA(64, 32, embedding_dim=8), std=0.1)
    x, guide = random_inputs(2, 32, 64, 5, 6, 2, dtype=torch.float32)
    expected = module(x.to(dtype).float(), guide.to(dtype).float())
    out = module.to(dtype)(x.to(dtype), guide.to(dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.1)


def test_official_init_and_reinit_after_xavier():
    """q/k ~ N(0, 0.02^2) with zero bias; ``init_weights`` restores them after a neck's Xavier init (quirk 9)."""
    torch.manual_seed(0)
    module = SAPA(256)
    for conv in (module.q, module.k):
        assert abs(conv.weight.std().item() - 0.02) < 0.002 and (conv.bias == 0).all()
        torch.nn.init.xavier_uniform_(conv.weight)
        torch.nn.init.ones_(conv.bias)
    module.init_weights()
    for conv in (module.q, module.k):
        assert abs(conv.weight.std().item() - 0.02) < 0.002 and (conv.bias == 0).all()
    assert (module.norm_y.weight == 1).all() and (module.norm_x.bias == 0).all()


def test_scale_factor_alias():
    assert SAPA(32, scale_factor=4).up_factor == 4
    assert SAPA(32, up_factor=3, scale_factor=3).scale_factor == 3
    assert SAPA(32).up_factor == 2 and SAPA(32).dim_x == 32
    with pytest.raises(ValueError, match='disagree'):
        SAPA(32, up_factor=3, scale_factor=4)


def test_builder_fills_channels_and_scale():
    module = build_upsampler(dict(type='sapa'), 64)
    assert isinstance(module, SAPA) and (module.dim_y, module.dim_x, module.up_factor) == (64, 64, 2)
    assert build_upsampler(dict(type='sapa'), 64, scale_factor=4).up_factor == 4
    assert build_upsampler(dict(type='sapa', scale_factor=4), 64, scale_factor=2).up_factor == 4
    wide_guide = build_upsampler(dict(type='sapa', dim_y=128), 64)
    assert (wide_guide.dim_y, wide_guide.dim_x) == (128, 64)
    assert SAPA.needs_guide


@pytest.mark.parametrize('kwargs,match', [
    (dict(dim_y=64, up_kernel_size=4), 'up_kernel_size must be odd'),
    (dict(dim_y=48), 'dim_y must be divisible by 32'),
    (dict(dim_y=64, dim_x=16), 'dim_x must be divisible by 32'),
    (dict(dim_y=64, up_factor=1.5), 'up_factor must be an integer'),
    (dict(dim_y=64, up_factor=0), 'up_factor must be an integer >= 1'),
    (dict(dim_y=64, embedding_dim=0), 'embedding_dim must be an integer >= 1'),
    (dict(dim_y=0), 'dim_y must be an integer >= 1'),
    (dict(dim_y=64, norm=torch.nn.LayerNorm), 'norm must be a bool'),
    (dict(dim_y=64, qkv_bias=None), 'qkv_bias must be a bool'),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAPA(**kwargs)


def test_norm_false_accepts_any_width():
    assert SAPA(48, 5, norm=False)(torch.randn(1, 5, 2, 2), torch.randn(1, 48, 4, 4)).shape == (1, 5, 4, 4)


@pytest.mark.parametrize('x,guide,match', [
    (torch.zeros(1, 32, 3, 4), None, 'guided upsampler'),
    (torch.zeros(1, 32, 3, 4), torch.zeros(1, 64, 6, 9), r'guide must have shape .* = \(1, 64, 6, 8\)'),
    (torch.zeros(1, 32, 3, 4), torch.zeros(1, 64, 3, 4), r'guide must have shape .* = \(1, 64, 6, 8\)'),
    (torch.zeros(1, 32, 3, 4), torch.zeros(1, 32, 6, 8), r'guide must have shape .* = \(1, 64, 6, 8\)'),
    (torch.zeros(1, 32, 3, 4), torch.zeros(2, 64, 6, 8), r'guide must have shape .* = \(1, 64, 6, 8\)'),
    (torch.zeros(1, 32, 3, 4), torch.zeros(64, 6, 8), 'guide must be 4-D'),
    (torch.zeros(1, 32, 3, 4), torch.zeros(1, 64, 6, 8, dtype=torch.float64), 'guide has dtype'),
    (torch.zeros(1, 64, 3, 4), torch.zeros(1, 64, 6, 8), r'x must have shape \(N, 32, H, W\)'),
    (torch.zeros(32, 3, 4), torch.zeros(1, 64, 6, 8), 'x must be 4-D'),
    (torch.zeros(1, 32, 0, 4), torch.zeros(1, 64, 0, 8), 'non-empty spatial size'),
])
def test_bad_input(x, guide, match):
    with pytest.raises(ValueError, match=match):
        SAPA(64, 32)(x, guide)


# ------------------------------------------------------------------------------------------- SAPA-D

def bilinear_loop(plane, row, col):
    """The official kernels' bilinear read (deformable_im2col_bilinear): corners outside the map read 0.
    ``plane`` is (C, H, W); ``row``/``col`` are 0-d tensors (differentiable); returns (C,)."""
    height, width = plane.shape[-2:]
    row_low, col_low = math.floor(row.item()), math.floor(col.item())
    frac_row, frac_col = row - row_low, col - col_low
    value = plane.new_zeros(plane.shape[0])
    for r, c, weight in ((row_low, col_low, (1 - frac_row) * (1 - frac_col)),
                         (row_low, col_low + 1, (1 - frac_row) * frac_col),
                         (row_low + 1, col_low, frac_row * (1 - frac_col)),
                         (row_low + 1, col_low + 1, frac_row * frac_col)):
        if 0 <= r < height and 0 <= c < width:
            value = value + weight * plane[:, r, c]
    return value


def deform_points_loop(features, offset, num_point, scale_factor, groups, visit):
    """Walk every (n, g, p, i, j) as the CUDA kernels do; ``visit(n, g, p, i, j, block, sample)`` gets the
    group's channel slice and the bilinear sample, or is skipped when the point lies outside
    (-1, H) x (-1, W)."""
    n_batch, channels, height, width = features.shape
    per_group, s = channels // groups, scale_factor
    for n in range(n_batch):
        for g in range(groups):
            block = slice(g * per_group, (g + 1) * per_group)
            for p in range(num_point):
                m = g * num_point + p
                for i in range(height * s):
                    for j in range(width * s):
                        row = i // s + offset[n, 2 * m + 1, i, j]
                        col = j // s + offset[n, 2 * m, i, j]
                        if -1 < row.item() < height and -1 < col.item() < width:
                            visit(n, g, p, i, j, block, bilinear_loop(features[n, block], row, col))


def deform_similarity_loop(query, key, offset, num_point, scale_factor, groups):
    n, _, out_h, out_w = query.shape
    rows = {}

    def visit(n_, g, p, i, j, block, sample):
        rows[n_, g, p, i, j] = (query[n_, block, i, j] * sample).sum()

    deform_points_loop(key, offset, num_point, scale_factor, groups, visit)
    zero = query.new_zeros(())
    return torch.stack([rows.get(idx, zero) for idx in
                        ((a, b, c, d, e) for a in range(n) for b in range(groups) for c in range(num_point)
                         for d in range(out_h) for e in range(out_w))]).view(n, groups, num_point, out_h, out_w)


def deform_aggregation_loop(attn, value, offset, num_point, scale_factor, groups):
    n, channels, height, width = value.shape
    out_h, out_w = height * scale_factor, width * scale_factor
    acc = {}

    def visit(n_, g, p, i, j, block, sample):
        key = (n_, g, i, j)
        acc[key] = acc.get(key, 0) + attn[n_, g, p, i, j] * sample

    deform_points_loop(value, offset, num_point, scale_factor, groups, visit)
    zero = value.new_zeros(channels // groups)
    pixels = torch.stack([torch.cat([acc.get((a, g, i, j), zero) for g in range(groups)])
                          for a in range(n) for i in range(out_h) for j in range(out_w)])
    return pixels.view(n, out_h, out_w, channels).permute(0, 3, 1, 2)


def random_deform_inputs(n, c, h, w, num_point, s, groups, spread=2.5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(n, c, h * s, w * s, generator=gen, dtype=torch.float64)
    key = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    offset = (torch.rand(n, groups * num_point * 2, h * s, w * s, generator=gen, dtype=torch.float64) * 2 - 1) \
        * spread
    attn = torch.randn(n, groups, num_point, h * s, w * s, generator=gen, dtype=torch.float64)
    return query, key, offset, attn


@pytest.mark.parametrize('n,c,h,w,num_point,s,groups', [
    (1, 4, 3, 4, 3, 2, 2),    # offsets of +-2.5: many points outside the map
    (2, 3, 2, 3, 2, 2, 1),
    (1, 6, 1, 1, 2, 2, 3),    # 1x1 map
    (1, 2, 1, 3, 2, 3, 1),    # height 1, odd scale
    (1, 4, 2, 2, 1, 4, 4),    # scale 4, one channel per group
])
def test_deform_ops_match_loop_of_the_official_kernels(n, c, h, w, num_point, s, groups):
    query, key, offset, attn = random_deform_inputs(n, c, h, w, num_point, s, groups)
    inputs = [t.requires_grad_() for t in (query, key, offset, attn)]
    sim = sapa_deform_similarity(query, key, offset, num_point, s, groups)
    expected_sim = deform_similarity_loop(query, key, offset, num_point, s, groups)
    assert sim.shape == (n, groups, num_point, h * s, w * s)
    torch.testing.assert_close(sim, expected_sim, rtol=0, atol=1e-12)
    out = sapa_deform_aggregation(attn, key, offset, num_point, s, groups)
    expected_out = deform_aggregation_loop(attn, key, offset, num_point, s, groups)
    assert out.shape == (n, c, h * s, w * s)
    torch.testing.assert_close(out, expected_out, rtol=0, atol=1e-12)
    gen = torch.Generator().manual_seed(1)
    weights = (torch.randn(sim.shape, generator=gen, dtype=torch.float64),
               torch.randn(out.shape, generator=gen, dtype=torch.float64))
    total = (sim * weights[0]).sum() + (out * weights[1]).sum()
    expected_total = (expected_sim * weights[0]).sum() + (expected_out * weights[1]).sum()
    grads = torch.autograd.grad(total, inputs)
    expected_grads = torch.autograd.grad(expected_total, inputs)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-11)


@pytest.mark.parametrize('s,h,w', [(2, 3, 4), (3, 2, 2), (2, 1, 1)])
def test_deform_on_the_fixed_grid_is_sapa_base(s, h, w):
    """SAPA-D with P = k*k points of one group placed on the k x k window equals SAPA-B's ops: the qk op, and
    the CARAFE op with one group (out-of-range points: similarity 0 and value 0 in both)."""
    k, r = 5, 2
    query, key, _, _ = random_deform_inputs(2, 3, h, w, 1, s, 1)
    taps = torch.tensor([[b - r, a - r] for a in range(k) for b in range(k)], dtype=torch.float64)  # (x, y)
    offset = taps.reshape(1, 2 * k * k, 1, 1).expand(2, -1, h * s, w * s).contiguous()
    sim = sapa_deform_similarity(query, key, offset, k * k, s, 1)
    torch.testing.assert_close(sim.view(2, k * k, h * s, w * s), sapa_similarity(query, key, k, s), rtol=0,
                               atol=1e-12)
    attn = sim.softmax(dim=2)
    out = sapa_deform_aggregation(attn, key, offset, k * k, s, 1)
    torch.testing.assert_close(out, carafe(key, attn.view(2, k * k, h * s, w * s), k, 1, s), rtol=0, atol=1e-12)


@pytest.mark.parametrize('high_offset', [True, False])
def test_deform_zero_offsets_give_nearest(high_offset):
    """No base grid (quirk 5): with zero offsets all P points sit on the parent pixel, so whatever the
    attention, the output is nearest upsampling of x."""
    module = randomized(SAPADeform(8, 8, num_point=3, groups=2, high_offset=high_offset)).double()
    with torch.no_grad():
        module.offset.weight.zero_()
        module.offset.bias.zero_()
    x, guide = random_inputs(2, 8, 8, 3, 5, 2)
    torch.testing.assert_close(module(x, guide), F.interpolate(x, scale_factor=2, mode='nearest'), rtol=0,
                               atol=1e-12)


def deform_module_loop(module, x, guide):
    x_normed, guide_normed = x, guide
    if module.norm:
        x_normed = group_norm_loop(x, 32, module.norm_x.weight, module.norm_x.bias, module.norm_x.eps)
        guide_normed = group_norm_loop(guide, 32, module.norm_y.weight, module.norm_y.bias, module.norm_y.eps)
    offset = conv1x1(x_normed, module.offset)
    s = module.up_factor
    if module.high_offset:  # channel c*s^2 + i*s + j of the low-res map -> channel c at sub-pixel (i, j)
        n, c, h, w = offset.shape
        offset = offset.view(n, c // (s * s), s, s, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, -1, h * s, w * s)
    else:
        offset = offset.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)
    args = (module.num_point, s, module.groups)
    sim = deform_similarity_loop(conv1x1(guide_normed, module.q), conv1x1(x_normed, module.k), offset, *args)
    return deform_aggregation_loop(sim.softmax(dim=2), x, offset, *args)


@pytest.mark.parametrize('kwargs,n,h,w', [
    (dict(dim_y=5, dim_x=4, num_point=3, groups=2, embedding_dim=3), 1, 2, 3),
    (dict(dim_y=3, dim_x=4, num_point=2, groups=1, embedding_dim=2, high_offset=False, up_factor=3), 1, 2, 2),
    (dict(dim_y=32, dim_x=32, num_point=2, groups=2, embedding_dim=2, norm=True), 1, 2, 2),
])
def test_deform_module_matches_loop(kwargs, n, h, w):
    module = randomized(SAPADeform(**kwargs), std=0.4).double()
    s = module.up_factor
    x, guide = random_inputs(n, module.dim_x, module.dim_y, h, w, s)
    x.requires_grad_()
    guide.requires_grad_()
    out = module(x, guide)
    expected = deform_module_loop(module, x, guide)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(out.sum(), (x, guide, *module.parameters()))
    expected_grads = torch.autograd.grad(expected.sum(), (x, guide, *module.parameters()))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-11)


def test_deform_ops_gradcheck_float64():
    query, key, offset, attn = random_deform_inputs(1, 4, 2, 3, 2, 2, 2, spread=1.7, seed=3)
    inputs = tuple(t.requires_grad_() for t in (query, key, offset, attn))
    assert torch.autograd.gradcheck(
        lambda q, k, o, a: (sapa_deform_similarity(q, k, o, 2, 2, 2), sapa_deform_aggregation(a, k, o, 2, 2, 2)),
        inputs)


def test_deform_module_gradcheck_float64():
    module = randomized(SAPADeform(3, 4, num_point=2, groups=2, embedding_dim=2), std=0.4).double()
    x, guide = random_inputs(1, 4, 3, 2, 2, 2, seed=2)
    assert torch.autograd.gradcheck(module, (x.requires_grad_(), guide.requires_grad_()))


@pytest.mark.parametrize('dim,params', [(256, 139_808), (512, 279_072)])
def test_deform_parameter_counts(dim, params):
    module = SAPADeform(dim)
    assert count_parameters(module) == params
    if dim == 256:  # spec/sapa.md: q 32,896 + k 32,896 + offset 74,016
        assert [count_parameters(m) for m in (module.q, module.k, module.offset)] == [32_896, 32_896, 74_016]


def test_deform_state_dict_keys_and_init():
    torch.manual_seed(0)
    module = SAPADeform(256)
    assert set(module.state_dict()) == {'q.weight', 'q.bias', 'k.weight', 'k.bias', 'offset.weight',
                                        'offset.bias'}
    assert set(SAPADeform(64, norm=True).state_dict()) >= {'norm_y.weight', 'norm_x.bias'}
    assert SAPADeform(64, high_offset=False).offset.out_channels == 4 * 9 * 2
    for conv in (module.q, module.k, module.offset):
        torch.nn.init.xavier_uniform_(conv.weight)
    module.init_weights()
    for conv in (module.q, module.k, module.offset):
        assert abs(conv.weight.std().item() - 0.02) < 0.002 and (conv.bias == 0).all()


@pytest.mark.parametrize('s', [2, 4])
@pytest.mark.parametrize('n,h,w', [(1, 1, 1), (1, 5, 7), (0, 3, 4)])
def test_deform_output_shapes(s, n, h, w):
    module = SAPADeform(16, 8, up_factor=s)
    x, guide = random_inputs(n, 8, 16, h, w, s, dtype=torch.float32)
    out = module(x, guide)
    assert out.shape == (n, 8, h * s, w * s) and torch.isfinite(out).all()


def test_deform_half_precision_and_autocast():
    module = randomized(SAPADeform(16, 8, groups=2), std=0.1)
    x, guide = random_inputs(2, 8, 16, 4, 5, 2, dtype=torch.float32)
    expected = module(x.bfloat16().float(), guide.bfloat16().float())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert module(x, guide).dtype == torch.float32
    out = module.to(torch.bfloat16)(x.bfloat16(), guide.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.1)


def test_deform_builder_and_alias():
    module = build_upsampler(dict(type='sapadeform'), 32, scale_factor=4)
    assert isinstance(module, SAPADeform) and (module.dim_y, module.dim_x, module.up_factor) == (32, 32, 4)
    assert SAPADeform(32, scale_factor=3).up_factor == 3


@pytest.mark.parametrize('kwargs,match', [
    (dict(dim_y=16, groups=3), 'groups=3 must divide dim_x=16'),
    (dict(dim_y=16, norm=True), 'dim_y must be divisible by 32'),
    (dict(dim_y=16, num_point=0), 'num_point must be an integer >= 1'),
    (dict(dim_y=16, high_offset=1), 'high_offset must be a bool'),
    (dict(dim_y=16, up_factor=3, scale_factor=4), 'disagree'),
])
def test_deform_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAPADeform(**kwargs)


@pytest.mark.parametrize('x,guide,match', [
    (torch.zeros(1, 8, 3, 4), None, 'guided upsampler'),
    (torch.zeros(1, 8, 3, 4), torch.zeros(1, 16, 6, 7), r'guide must have shape .* = \(1, 16, 6, 8\)'),
    (torch.zeros(1, 8, 3, 4), torch.zeros(1, 8, 6, 8), r'guide must have shape .* = \(1, 16, 6, 8\)'),
    (torch.zeros(1, 16, 3, 4), torch.zeros(1, 16, 6, 8), r'x must have shape \(N, 8, H, W\)'),
    (torch.zeros(8, 3, 4), torch.zeros(1, 16, 6, 8), 'x must be 4-D'),
])
def test_deform_bad_input(x, guide, match):
    with pytest.raises(ValueError, match=match):
        SAPADeform(16, 8)(x, guide)


@pytest.mark.parametrize('op,change,match', [
    ('qk', dict(query=torch.zeros(1, 4, 6, 7)), r'query must have shape .* = \(1, 4, 6, 8\)'),
    ('qk', dict(groups=3), r'groups=3 must divide the channels of key and query \(4\)'),
    ('qk', dict(offset=torch.zeros(1, 6, 6, 8)), r'offset must have shape .* = \(1, 8, 6, 8\)'),
    ('qk', dict(num_point=0), 'num_point must be an integer >= 1'),
    ('qk', dict(key=torch.zeros(4, 3, 4)), 'key must be 4-D'),
    ('av', dict(attn=torch.zeros(1, 2, 2, 6)), 'attn must be a 5-D tensor'),
    ('av', dict(attn=torch.zeros(1, 2, 3, 6, 8)), r'attn must have shape .* = \(1, 2, 2, 6, 8\)'),
    ('av', dict(value=torch.zeros(1, 5, 3, 4)), r'groups=2 must divide the channels of value \(5\)'),
    ('av', dict(offset=torch.zeros(1, 8, 6, 8, dtype=torch.float64)), 'offset has dtype torch.float64'),
])
def test_deform_op_bad_input(op, change, match):
    if op == 'qk':
        args = dict(query=torch.zeros(1, 4, 6, 8), key=torch.zeros(1, 4, 3, 4), offset=torch.zeros(1, 8, 6, 8),
                    num_point=2, scale_factor=2, groups=2)
        fn = sapa_deform_similarity
    else:
        args = dict(attn=torch.zeros(1, 2, 2, 6, 8), value=torch.zeros(1, 4, 3, 4), offset=torch.zeros(1, 8, 6, 8),
                    num_point=2, scale_factor=2, groups=2)
        fn = sapa_deform_aggregation
    args.update(change)
    with pytest.raises(ValueError, match=match):
        fn(**args)
