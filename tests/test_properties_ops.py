"""Property tests (Hypothesis) of the ops in ``upsample_plugin/ops`` over random shapes (empty batch and 1-pixel
maps included), groups, kernel sizes, scales, dtypes and memory layouts (issue 8).

* CARAFE, DDF, DLU: the compiled op (``backend='compiled'``) equals the pure-PyTorch reference in value (float32,
  float64; bfloat16 within a rounding bound of the exact result) and in gradients (float64), whatever the memory
  layout of each input and of the incoming gradient.
* Algebraic properties of the math itself, on every backend: CARAFE with a one-hot centre kernel is nearest
  upsampling, normalised kernels scale a constant map by their in-map weight (spec/carafe.md), CARAFE is bilinear;
  DDF with a centre tap is strided subsampling, ``'add'`` is a sum of two ``'mul'`` filters, DDF is linear in the
  features (spec/ddf.md); DLU with integer offsets reassembles with the clamped kernel-space pixels and its
  expanded kernels keep a kernel's sum (spec/dlu.md); SAPA's similarity is the adjoint of CARAFE's reassembly,
  SAPA-D's two ops are adjoint, integer SAPA-D offsets read pixels and zero outside the map (spec/sapa.md).
* SAPA ops (no compiled kernel): layouts and bfloat16 against float64, gradients against finite differences.

Inputs come from a ``torch.Generator`` seeded with a Hypothesis-drawn seed, so a failure replays exactly.
The example counts come from the profiles in conftest.py.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st
from upsample_test_utils import LAYOUTS, random_tensor, with_layout

from upsample_plugin.ops import (_library, carafe, carafe_reference, ddf, ddf_reference, dlu_expand_kernels,
                                 dlu_reassemble, dlu_reassemble_reference, sapa_deform_aggregation,
                                 sapa_deform_similarity, sapa_similarity)
from upsample_plugin.ops._library_ddf import ddf_compiled_available
from upsample_plugin.ops._library_dlu import dlu_compiled_available

_NOT_BUILT = (f'the compiled extension upsample_plugin._C has no {{}} CPU kernel ({_library.load_error()}); build '
              f'it with `pip install --no-build-isolation --no-deps -e .`')
requires_compiled_carafe = pytest.mark.skipif(not _library.compiled_available('cpu'),
                                              reason=_NOT_BUILT.format('CARAFE'))
requires_compiled_ddf = pytest.mark.skipif(not ddf_compiled_available('cpu'), reason=_NOT_BUILT.format('DDF'))
requires_compiled_dlu = pytest.mark.skipif(not dlu_compiled_available('cpu'), reason=_NOT_BUILT.format('DLU'))


def backends(requires_compiled):
    """Parametrisation over the op backends an algebraic property must hold on."""
    return pytest.mark.parametrize('backend', ['reference', pytest.param('compiled', marks=requires_compiled)])


# ---------------------------------------------------------------------------------------------- helpers

#: Dtypes of the value comparisons; gradients are compared in float64.
DTYPES = (torch.float32, torch.float64, torch.bfloat16)

seeds = st.integers(0, 2 ** 31 - 1)
#: Map widths: mostly tiny, sometimes long rows, so the compiled kernels' row loops run past any vector width.
widths = st.one_of(st.integers(1, 5), st.integers(6, 20))
layouts = st.sampled_from(LAYOUTS)
dtypes = st.sampled_from(DTYPES)


def leaves(*tensors_and_layouts):
    """Fresh autograd leaves with the requested layouts: ``leaves((t1, 'strided'), (t2, 'contiguous'))``."""
    return [with_layout(t.detach(), layout).detach().requires_grad_() for t, layout in tensors_and_layouts]


def assert_within_rounding(got: torch.Tensor, exact: torch.Tensor, name: str = 'output') -> None:
    """``got`` (in its dtype) against ``exact`` (float64 on the same, already rounded, inputs).

    The ops accumulate reduced precision in float32 and round once, so bfloat16 is within one bf16 ulp (relative
    2**-7) of the exact value; float32 within its summation error. Where terms cancel, the float32 accumulation
    error is bounded by 1e-5 of the largest value (the ``atol``).
    """
    assert got.shape == exact.shape, name
    scale = max(1.0, exact.abs().max().item()) if exact.numel() else 1.0
    rtol = {torch.bfloat16: 2 ** -7, torch.float32: 1e-5, torch.float64: 1e-10}[got.dtype]
    atol = 1e-12 if got.dtype == torch.float64 else 1e-5 * scale
    torch.testing.assert_close(got.double(), exact, rtol=rtol, atol=atol,
                               msg=lambda msg: f'{name} ({got.dtype} vs float64): {msg}')


def assert_close_for_dtype(got: torch.Tensor, expected: torch.Tensor, exact: torch.Tensor, name: str = 'output'):
    """``got`` (one backend or layout) against ``expected`` (the reference path in the same dtype): float32 and
    float64 equal up to summation order; bfloat16, whose one rounding may land on either side of a tie between
    two float32 sums, within its rounding bound of ``exact`` instead."""
    assert got.dtype == expected.dtype and got.shape == expected.shape, name
    if got.dtype == torch.bfloat16:
        assert_within_rounding(got, exact, name)
        return
    tol = dict(rtol=1e-5, atol=1e-5) if got.dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got, expected, **tol, msg=lambda msg: f'{name}: {msg}')


def compare_backends(op, reference, args, layouts_of_args, dtype, extra_args):
    """Run the compiled ``op`` and the ``reference`` on ``args`` (float64 tensors) cast to ``dtype`` and laid out
    as ``layouts_of_args``; compare them (bf16: both against the float64 reference)."""
    cast = [with_layout(a.to(dtype), layout) for a, layout in zip(args, layouts_of_args)]
    got = op(*cast, *extra_args, backend='compiled')
    expected = reference(*cast, *extra_args)
    exact = reference(*[a.double() for a in cast], *extra_args)
    assert_close_for_dtype(got, expected, exact, 'compiled')
    if dtype != torch.float64:  # the reduced-precision reference meets the same bound
        assert_within_rounding(expected, exact, 'reference')


def compare_backend_gradients(op, args, layouts_of_args, grad_layout, extra_args, gen):
    """float64 gradients of the compiled op and of the reference w.r.t. every tensor argument, for one random
    incoming gradient in layout ``grad_layout``: equal up to summation order."""
    results = []
    for backend in ('compiled', 'reference'):
        inputs = leaves(*zip(args, layouts_of_args))
        out = op(*inputs, *extra_args, backend=backend)
        if not results:
            grad_out = with_layout(random_tensor(gen, out.shape), grad_layout)
        results.append((out, *torch.autograd.grad(out, inputs, grad_out, allow_unused=False)))
    for index, (got, expected) in enumerate(zip(*results)):
        name = 'output' if index == 0 else f'gradient of argument {index - 1}'
        assert got.shape == expected.shape, name
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12, msg=lambda msg: f'{name}: {msg}')


def inside_map(height: int, width: int, kernel_size: int, scale: int) -> torch.Tensor:
    """(k*k, s*H, s*W) float64: 1 where tap (a, b) of output pixel (p, q), centred on its parent (p//s, q//s),
    lies inside the H x W map (the taps the zero padding does not drop)."""
    offsets = torch.arange(kernel_size) - (kernel_size - 1) // 2
    rows = (torch.arange(height * scale) // scale).view(1, -1) + offsets.view(-1, 1)  # (k, sH)
    cols = (torch.arange(width * scale) // scale).view(1, -1) + offsets.view(-1, 1)
    row_ok = ((rows >= 0) & (rows < height)).double()
    col_ok = ((cols >= 0) & (cols < width)).double()
    return torch.einsum('ap,bq->abpq', row_ok, col_ok).reshape(kernel_size ** 2, height * scale, width * scale)


# ----------------------------------------------------------------------------------------------- CARAFE

carafe_shapes = dict(n=st.integers(0, 2), groups=st.integers(1, 3), per_group=st.integers(1, 3),
                     h=st.integers(1, 5), w=widths, k=st.sampled_from([1, 3, 5, 7]), s=st.integers(1, 3))


def carafe_inputs(seed, n, c, h, w, k, g, s):
    gen = torch.Generator().manual_seed(seed)
    return random_tensor(gen, (n, c, h, w)), random_tensor(gen, (n, k * k * g, h * s, w * s)), gen


@requires_compiled_carafe
@given(**carafe_shapes, dtype=dtypes, feature_layout=layouts, mask_layout=layouts, seed=seeds)
def test_carafe_compiled_matches_reference(n, groups, per_group, h, w, k, s, dtype, feature_layout, mask_layout,
                                           seed):
    c = groups * per_group
    features, masks, _ = carafe_inputs(seed, n, c, h, w, k, groups, s)
    compare_backends(carafe, carafe_reference, (features, masks), (feature_layout, mask_layout), dtype,
                     (k, groups, s))


@requires_compiled_carafe
@given(**carafe_shapes, feature_layout=layouts, mask_layout=layouts, grad_layout=layouts, seed=seeds)
def test_carafe_compiled_gradients_match_reference(n, groups, per_group, h, w, k, s, feature_layout, mask_layout,
                                                   grad_layout, seed):
    features, masks, gen = carafe_inputs(seed, n, groups * per_group, h, w, k, groups, s)
    compare_backend_gradients(carafe, (features, masks), (feature_layout, mask_layout), grad_layout,
                              (k, groups, s), gen)


@backends(requires_compiled_carafe)
@given(**carafe_shapes, layout=layouts, seed=seeds)
def test_carafe_centre_one_hot_kernel_is_nearest_upsampling(backend, n, groups, per_group, h, w, k, s, layout,
                                                            seed):
    """A kernel whose only non-zero tap is the centre copies the parent pixel: nearest upsampling, exactly."""
    features, _, _ = carafe_inputs(seed, n, groups * per_group, h, w, k, groups, s)
    masks = torch.zeros(n, groups, k * k, h * s, w * s, dtype=torch.float64)
    masks[:, :, (k * k) // 2] = 1
    out = carafe(with_layout(features, layout), masks.view(n, k * k * groups, h * s, w * s), k, groups, s,
                 backend=backend)
    torch.testing.assert_close(out, F.interpolate(features, scale_factor=s, mode='nearest'), rtol=0, atol=0)


@backends(requires_compiled_carafe)
@given(**carafe_shapes, layout=layouts, seed=seeds)
def test_carafe_normalised_kernels_scale_a_constant_map_by_their_in_map_weight(backend, n, groups, per_group, h,
                                                                               w, k, s, layout, seed):
    """Softmax kernels on a per-channel constant map give the constant times the weight of the in-map taps:
    the constant itself where the whole neighbourhood is inside (zero padding takes the rest, spec/carafe.md)."""
    c = groups * per_group
    gen = torch.Generator().manual_seed(seed)
    constants = random_tensor(gen, (n, c, 1, 1))
    masks = random_tensor(gen, (n, groups, k * k, h * s, w * s)).softmax(dim=2)
    constant_map = with_layout(constants.expand(n, c, h, w), layout)
    out = carafe(constant_map, masks.view(n, k * k * groups, h * s, w * s), k, groups, s, backend=backend)
    in_map_weight = (masks * inside_map(h, w, k, s)).sum(dim=2)  # (N, G, sH, sW)
    expected = constants.view(n, groups, per_group, 1, 1) * in_map_weight.unsqueeze(2)
    torch.testing.assert_close(out, expected.view(n, c, h * s, w * s), rtol=1e-12, atol=1e-12)
    r = (k - 1) // 2
    if h > 2 * r and w > 2 * r:  # pixels whose parent is at least r from every border keep the constant
        interior = out[:, :, r * s:(h - r) * s, r * s:(w - r) * s]
        torch.testing.assert_close(interior, constants.expand_as(interior), rtol=1e-12, atol=1e-12)


@backends(requires_compiled_carafe)
@given(**carafe_shapes, alpha=st.floats(-3, 3), beta=st.floats(-3, 3), seed=seeds)
def test_carafe_is_bilinear(backend, n, groups, per_group, h, w, k, s, alpha, beta, seed):
    """Linear in the features for fixed kernels, and in the kernels for fixed features."""
    c = groups * per_group
    features, masks, gen = carafe_inputs(seed, n, c, h, w, k, groups, s)
    features2, masks2 = random_tensor(gen, features.shape), random_tensor(gen, masks.shape)

    def op(f, m):
        return carafe(f, m, k, groups, s, backend=backend)

    torch.testing.assert_close(op(alpha * features + beta * features2, masks),
                               alpha * op(features, masks) + beta * op(features2, masks), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(op(features, alpha * masks + beta * masks2),
                               alpha * op(features, masks) + beta * op(features, masks2), rtol=1e-10, atol=1e-10)


# -------------------------------------------------------------------------------------------------- DDF

ddf_shapes = dict(n=st.integers(0, 2), c=st.integers(1, 4), h=st.integers(1, 6), w=widths,
                  k=st.sampled_from([1, 3, 5]), dilation=st.integers(1, 3), stride=st.integers(1, 3),
                  combine=st.sampled_from(['mul', 'add']))


def ddf_inputs(seed, n, c, h, w, k, stride):
    gen = torch.Generator().manual_seed(seed)
    return (random_tensor(gen, (n, c, h, w)), random_tensor(gen, (n, c, k, k)),
            random_tensor(gen, (n, k * k, h // stride, w // stride)), gen)


@requires_compiled_ddf
@given(**ddf_shapes, dtype=dtypes, arg_layouts=st.tuples(layouts, layouts, layouts), seed=seeds)
def test_ddf_compiled_matches_reference(n, c, h, w, k, dilation, stride, combine, dtype, arg_layouts, seed):
    features, channel_filter, spatial_filter, _ = ddf_inputs(seed, n, c, h, w, k, stride)
    compare_backends(ddf, ddf_reference, (features, channel_filter, spatial_filter), arg_layouts, dtype,
                     (k, dilation, stride, combine))


@requires_compiled_ddf
@given(**ddf_shapes, arg_layouts=st.tuples(layouts, layouts, layouts), grad_layout=layouts, seed=seeds)
def test_ddf_compiled_gradients_match_reference(n, c, h, w, k, dilation, stride, combine, arg_layouts, grad_layout,
                                                seed):
    features, channel_filter, spatial_filter, gen = ddf_inputs(seed, n, c, h, w, k, stride)
    compare_backend_gradients(ddf, (features, channel_filter, spatial_filter), arg_layouts, grad_layout,
                              (k, dilation, stride, combine), gen)


@backends(requires_compiled_ddf)
@given(**ddf_shapes, layout=layouts, seed=seeds)
def test_ddf_centre_tap_filter_is_strided_subsampling(backend, n, c, h, w, k, dilation, stride, combine, layout,
                                                      seed):
    """A filter that is 1 at the centre tap and 0 elsewhere ('mul': spatial one-hot x channel ones; 'add':
    spatial one-hot + channel zeros) returns input pixel (y*stride, x*stride) at output pixel (y, x)."""
    features, _, _, _ = ddf_inputs(seed, n, c, h, w, k, stride)
    out_h, out_w = h // stride, w // stride
    spatial = torch.zeros(n, k * k, out_h, out_w, dtype=torch.float64)
    spatial[:, (k * k) // 2] = 1
    channel = torch.full((n, c, k, k), 1.0 if combine == 'mul' else 0.0, dtype=torch.float64)
    out = ddf(with_layout(features, layout), channel, spatial, k, dilation, stride, combine, backend=backend)
    expected = features[:, :, ::stride, ::stride][:, :, :out_h, :out_w]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@backends(requires_compiled_ddf)
@given(**ddf_shapes, alpha=st.floats(-3, 3), seed=seeds)
def test_ddf_add_is_two_mul_filters_and_linear_in_features(backend, n, c, h, w, k, dilation, stride, combine,
                                                           alpha, seed):
    """sum_t x_t (s_t + c_t) = sum_t x_t (s_t * 1) + sum_t x_t (1 * c_t); and ddf is linear in the features."""
    features, channel_filter, spatial_filter, gen = ddf_inputs(seed, n, c, h, w, k, stride)

    def op(f, ch, sp, how):
        return ddf(f, ch, sp, k, dilation, stride, how, backend=backend)

    added = op(features, channel_filter, spatial_filter, 'add')
    split = (op(features, torch.ones_like(channel_filter), spatial_filter, 'mul')
             + op(features, channel_filter, torch.ones_like(spatial_filter), 'mul'))
    torch.testing.assert_close(added, split, rtol=1e-10, atol=1e-10)
    features2 = random_tensor(gen, features.shape)
    torch.testing.assert_close(op(features + alpha * features2, channel_filter, spatial_filter, combine),
                               op(features, channel_filter, spatial_filter, combine)
                               + alpha * op(features2, channel_filter, spatial_filter, combine),
                               rtol=1e-10, atol=1e-10)


# -------------------------------------------------------------------------------------------------- DLU

dlu_shapes = dict(n=st.integers(0, 2), groups=st.integers(1, 3), per_group=st.integers(1, 2), h=st.integers(1, 5),
                  w=widths, k=st.sampled_from([1, 3, 5]), s=st.integers(1, 3))
#: Offsets reach past the map (clamped to the border) and, scaled small, stay near the parent pixel.
offset_scales = st.sampled_from([0.3, 1.0, 4.0])


def dlu_inputs(seed, n, c, h, w, k, g, s, offset_scale):
    gen = torch.Generator().manual_seed(seed)
    features = random_tensor(gen, (n, c, h, w))
    kernel_space = random_tensor(gen, (n, g, k * k, h, w)).softmax(dim=2).view(n, g * k * k, h, w)
    offsets = random_tensor(gen, (n, g * 2 * s * s, h, w)) * offset_scale
    return features, kernel_space, offsets, gen


@requires_compiled_dlu
@given(**dlu_shapes, offset_scale=offset_scales, dtype=dtypes, arg_layouts=st.tuples(layouts, layouts, layouts),
       seed=seeds)
def test_dlu_compiled_matches_reference(n, groups, per_group, h, w, k, s, offset_scale, dtype, arg_layouts, seed):
    args = dlu_inputs(seed, n, groups * per_group, h, w, k, groups, s, offset_scale)[:3]
    compare_backends(dlu_reassemble, dlu_reassemble_reference, args, arg_layouts, dtype, (k, groups, s))


@requires_compiled_dlu
@given(**dlu_shapes, offset_scale=offset_scales, arg_layouts=st.tuples(layouts, layouts, layouts),
       grad_layout=layouts, seed=seeds)
def test_dlu_compiled_gradients_match_reference(n, groups, per_group, h, w, k, s, offset_scale, arg_layouts,
                                                grad_layout, seed):
    """Random real offsets: no sampling position falls on a grid line or a clamp boundary, where bilinear
    interpolation has a kink and the two backends could legitimately pick different one-sided derivatives."""
    *args, gen = dlu_inputs(seed, n, groups * per_group, h, w, k, groups, s, offset_scale)
    compare_backend_gradients(dlu_reassemble, args, arg_layouts, grad_layout, (k, groups, s), gen)


@backends(requires_compiled_dlu)
@given(**dlu_shapes, max_shift=st.integers(0, 6), layout=layouts, seed=seeds)
def test_dlu_integer_offsets_reassemble_with_the_clamped_kernel_space_pixels(backend, n, groups, per_group, h, w, k,
                                                                             s, max_shift, layout, seed):
    """Integer offsets (dx, dy) give output pixel (p, q) the kernel of low-res pixel (clamp(p//s + dy),
    clamp(q//s + dx)) exactly (spec/dlu.md step 5); zero offsets are the spec's CARAFE-with-a-nearest-upsampled-
    kernel-map equivalence (its unit test 1)."""
    c = groups * per_group
    features, kernel_space, _, gen = dlu_inputs(seed, n, c, h, w, k, groups, s, 0)
    shift = torch.randint(-max_shift, max_shift + 1, (n, groups, 2, s, s, h, w), generator=gen)
    # High-res (N, G, sH, sW) shifts: channel (g*2 + xy)*s*s + i*s + j is sub-pixel (i, j) of low-res (h, w).
    dx, dy = (shift[:, :, xy].permute(0, 1, 4, 2, 5, 3).reshape(n, groups, h * s, w * s) for xy in (0, 1))
    rows = (torch.arange(h * s).view(-1, 1) // s + dy).clamp(0, h - 1)
    cols = (torch.arange(w * s).view(1, -1) // s + dx).clamp(0, w - 1)
    space = kernel_space.view(n, groups, k * k, h * w)
    index = (rows * w + cols).view(n, groups, 1, h * s * w * s).expand(n, groups, k * k, h * s * w * s)
    kernels = space.gather(3, index).view(n, groups * k * k, h * s, w * s)
    offsets = shift.view(n, groups * 2 * s * s, h, w).double()
    out = dlu_reassemble(with_layout(features, layout), kernel_space, offsets, k, groups, s, backend=backend)
    torch.testing.assert_close(out, carafe_reference(features, kernels, k, groups, s), rtol=1e-12, atol=1e-12)


@given(**dlu_shapes, offset_scale=offset_scales, seed=seeds)
def test_dlu_expanded_kernels_keep_the_kernel_sum(n, groups, per_group, h, w, k, s, offset_scale, seed):
    """Bilinear sampling with border clamping is a convex combination of kernel-space pixels, so each expanded
    kernel of a softmax kernel space sums to 1 (spec/dlu.md step 5, unit test 2)."""
    _, kernel_space, offsets, _ = dlu_inputs(seed, n, groups * per_group, h, w, k, groups, s, offset_scale)
    kernels = dlu_expand_kernels(kernel_space, offsets, s, groups).view(n, groups, k * k, h * s, w * s)
    assert (kernels >= 0).all()
    torch.testing.assert_close(kernels.sum(dim=2), torch.ones(n, groups, h * s, w * s, dtype=torch.float64),
                               rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------- SAPA

sapa_shapes = dict(n=st.integers(0, 2), c=st.integers(1, 4), h=st.integers(1, 5), w=widths,
                   k=st.sampled_from([1, 3, 5]), s=st.integers(1, 3))


def sapa_inputs(seed, n, c, h, w, s):
    gen = torch.Generator().manual_seed(seed)
    return random_tensor(gen, (n, c, h * s, w * s)), random_tensor(gen, (n, c, h, w)), gen


@given(**sapa_shapes, seed=seeds)
def test_sapa_similarity_is_the_adjoint_of_carafe_reassembly(n, c, h, w, k, s, seed):
    """sum_t sim[t] m[t] = sum_c query[c] carafe(key, m)[c] at every output pixel: both are
    sum_{c,t} query[c] m[t] key[c, neighbour t] (SAPA's ``qk`` and ``av`` share the neighbourhood, spec/sapa.md)."""
    query, key, gen = sapa_inputs(seed, n, c, h, w, s)
    masks = random_tensor(gen, (n, k * k, h * s, w * s))
    lhs = (sapa_similarity(query, key, k, s) * masks).sum(dim=1)
    rhs = (query * carafe_reference(key, masks, k, 1, s)).sum(dim=1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


@given(**sapa_shapes, dtype=dtypes, query_layout=layouts, key_layout=layouts, seed=seeds)
def test_sapa_similarity_layouts_and_dtypes(n, c, h, w, k, s, dtype, query_layout, key_layout, seed):
    """Any layout gives the contiguous result; float32/bfloat16 are within their rounding bound of float64."""
    query, key, _ = sapa_inputs(seed, n, c, h, w, s)
    query, key = query.to(dtype), key.to(dtype)
    got = sapa_similarity(with_layout(query, query_layout), with_layout(key, key_layout), k, s)
    expected = sapa_similarity(query, key, k, s)
    exact = sapa_similarity(query.double(), key.double(), k, s)
    assert_close_for_dtype(got, expected, exact, 'non-contiguous layouts')
    if dtype != torch.float64:
        assert_within_rounding(expected, exact)


@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 3), w=st.integers(1, 3),
       k=st.sampled_from([1, 3]), s=st.integers(1, 2), query_layout=layouts, key_layout=layouts, seed=seeds)
def test_sapa_similarity_gradients_match_finite_differences(n, c, h, w, k, s, query_layout, key_layout, seed):
    query, key, _ = sapa_inputs(seed, n, c, h, w, s)
    inputs = tuple(leaves((query, query_layout), (key, key_layout)))
    assert torch.autograd.gradcheck(lambda q, kk: sapa_similarity(q, kk, k, s), inputs)


deform_shapes = dict(n=st.integers(0, 2), groups=st.integers(1, 3), per_group=st.integers(1, 2),
                     h=st.integers(1, 4), w=widths, num_point=st.integers(1, 4), s=st.integers(1, 3))


def deform_inputs(seed, n, c, h, w, num_point, s, groups, offset_scale):
    """query, key (= value), offset, attn (softmax over the points) as float64."""
    gen = torch.Generator().manual_seed(seed)
    query = random_tensor(gen, (n, c, h * s, w * s))
    key = random_tensor(gen, (n, c, h, w))
    offset = random_tensor(gen, (n, groups * num_point * 2, h * s, w * s)) * offset_scale
    attn = random_tensor(gen, (n, groups, num_point, h * s, w * s)).softmax(dim=2)
    return query, key, offset, attn, gen


@given(**deform_shapes, offset_scale=offset_scales, seed=seeds)
def test_sapa_deform_similarity_is_the_adjoint_of_aggregation(n, groups, per_group, h, w, num_point, s,
                                                              offset_scale, seed):
    """sum_p S[g, p] A[g, p] = sum_{c in g} query[c] aggregation(A, key)[c]: ``deform_qk`` and ``deform_av``
    sample at the same points (spec/sapa.md, SAPA-D steps 3-5)."""
    c = groups * per_group
    query, key, offset, attn, _ = deform_inputs(seed, n, c, h, w, num_point, s, groups, offset_scale)
    sim = sapa_deform_similarity(query, key, offset, num_point, s, groups)
    lhs = (sim * attn).sum(dim=2)  # (N, G, sH, sW)
    aggregated = sapa_deform_aggregation(attn, key, offset, num_point, s, groups)
    rhs = (query * aggregated).view(n, groups, per_group, h * s, w * s).sum(dim=2)
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


@given(**deform_shapes, max_shift=st.integers(0, 5), seed=seeds)
def test_sapa_deform_integer_offsets_read_pixels_and_zero_outside(n, groups, per_group, h, w, num_point, s,
                                                                  max_shift, seed):
    """Integer offsets (dx, dy) sample exactly low-res pixel (p//s + dy, q//s + dx), or 0 when it is outside the
    map (spec/sapa.md SAPA-D step 3); zero offsets therefore give nearest upsampling."""
    c = groups * per_group
    query, key, _, attn, gen = deform_inputs(seed, n, c, h, w, num_point, s, groups, 0)
    shift = torch.randint(-max_shift, max_shift + 1, (n, groups, num_point, 2, h * s, w * s), generator=gen)
    rows = torch.arange(h * s).view(-1, 1) // s + shift[:, :, :, 1]  # (N, G, P, sH, sW)
    cols = torch.arange(w * s).view(1, -1) // s + shift[:, :, :, 0]
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).view(n, groups, 1, num_point * h * s * w * s)
    flat_key = key.view(n, groups, per_group, h * w)
    sampled = flat_key.gather(3, index.expand(n, groups, per_group, index.shape[-1]))
    sampled = sampled.view(n, groups, per_group, num_point, h * s, w * s) * inside.unsqueeze(2)
    offset = shift.view(n, groups * num_point * 2, h * s, w * s).double()
    expected_sim = (sampled * query.view(n, groups, per_group, 1, h * s, w * s)).sum(dim=2)
    torch.testing.assert_close(sapa_deform_similarity(query, key, offset, num_point, s, groups), expected_sim,
                               rtol=1e-12, atol=1e-12)
    expected_out = (sampled * attn.unsqueeze(2)).sum(dim=3).view(n, c, h * s, w * s)
    torch.testing.assert_close(sapa_deform_aggregation(attn, key, offset, num_point, s, groups), expected_out,
                               rtol=1e-12, atol=1e-12)


@given(**deform_shapes, offset_scale=offset_scales, dtype=dtypes, arg_layouts=st.tuples(layouts, layouts, layouts),
       seed=seeds)
def test_sapa_deform_layouts_and_dtypes(n, groups, per_group, h, w, num_point, s, offset_scale, dtype, arg_layouts,
                                        seed):
    """Any layout of query/key/offset (similarity) and value/offset (aggregation) gives the contiguous result;
    float32/bfloat16 are within their rounding bound of float64."""
    c = groups * per_group
    inputs = deform_inputs(seed, n, c, h, w, num_point, s, groups, offset_scale)[:4]
    query, key, offset, attn = (t.to(dtype) for t in inputs)
    laid_out = [with_layout(t, layout) for t, layout in zip((query, key, offset), arg_layouts)]
    query64, key64, offset64, attn64 = (t.double() for t in (query, key, offset, attn))
    extra = (num_point, s, groups)
    similarity = (sapa_deform_similarity(*laid_out, *extra), sapa_deform_similarity(query, key, offset, *extra),
                  sapa_deform_similarity(query64, key64, offset64, *extra))
    aggregation = (sapa_deform_aggregation(attn, *laid_out[1:], *extra),
                   sapa_deform_aggregation(attn, key, offset, *extra),
                   sapa_deform_aggregation(attn64, key64, offset64, *extra))
    for name, (got, expected, exact) in (('similarity', similarity), ('aggregation', aggregation)):
        assert_close_for_dtype(got, expected, exact, name)
        if dtype != torch.float64:
            assert_within_rounding(expected, exact, name)


@given(n=st.integers(1, 2), groups=st.integers(1, 2), per_group=st.integers(1, 2), h=st.integers(1, 3),
       w=st.integers(1, 3), num_point=st.integers(1, 3), s=st.integers(1, 2), offset_scale=offset_scales,
       seed=seeds)
def test_sapa_deform_gradients_match_finite_differences(n, groups, per_group, h, w, num_point, s, offset_scale,
                                                        seed):
    """Random real offsets: the points avoid the grid lines where bilinear sampling has kinks."""
    c = groups * per_group
    query, key, offset, attn, _ = deform_inputs(seed, n, c, h, w, num_point, s, groups, offset_scale)
    inputs = tuple(leaves((query, 'contiguous'), (key, 'channels_last'), (offset, 'strided')))
    assert torch.autograd.gradcheck(lambda q, kk, o: sapa_deform_similarity(q, kk, o, num_point, s, groups), inputs)
    attn = attn.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, v, o: sapa_deform_aggregation(a, v, o, num_point, s, groups),
                                    (attn, *inputs[1:]))
