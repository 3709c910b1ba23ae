"""DLU (spec/dlu.md): the op and the module against a per-pixel loop of the formula, the zero-offset CARAFE
identity, parameter counts, official numerics, groups, 1-pixel maps, dtypes, gradients and bad input."""
import pytest
import torch
import torch.nn.functional as F
from upsample_test_utils import carafe_loop, check_official, count_parameters, load_official

import upsample_plugin.upsamplers.dlu as dlu_module
from upsample_plugin import build_upsampler
from upsample_plugin.ops import carafe
from upsample_plugin.ops.dlu import dlu_expand_kernels, dlu_reassemble, dlu_reassemble_reference
from upsample_plugin.upsamplers.dlu import DLUPack


# --------------------------------------------------------------------------------------------- references

def expand_loop(kernel_space, offsets, group_size, scale_factor):
    """Spec step 5 in index coordinates, one output pixel and group at a time (vectorised over the batch):
    bilinear interpolation of the group's kernel space at (p//s + dy, q//s + dx) clamped to the map, with
    offset channel (g*2 + xy)*s*s + i*s + j for sub-pixel (i, j) = (p % s, q % s)."""
    n, channels, height, width = kernel_space.shape
    s, taps = scale_factor, channels // group_size
    batch = torch.arange(n)
    rows = []
    for p in range(s * height):
        row = []
        for q in range(s * width):
            h, w, sub = p // s, q // s, (p % s) * s + q % s
            kernels = []
            for g in range(group_size):
                dx = offsets[:, (2 * g) * s * s + sub, h, w]
                dy = offsets[:, (2 * g + 1) * s * s + sub, h, w]
                y = (h + dy).clamp(0, height - 1)
                x = (w + dx).clamp(0, width - 1)
                y0, x0 = y.detach().floor().long(), x.detach().floor().long()
                y1, x1 = (y0 + 1).clamp(max=height - 1), (x0 + 1).clamp(max=width - 1)
                wy, wx = (y - y0)[:, None], (x - x0)[:, None]
                space = kernel_space[:, g * taps:(g + 1) * taps]
                kernels.append((1 - wy) * (1 - wx) * space[batch, :, y0, x0] + (1 - wy) * wx * space[batch, :, y0, x1]
                               + wy * (1 - wx) * space[batch, :, y1, x0] + wy * wx * space[batch, :, y1, x1])
            row.append(torch.cat(kernels, dim=1))
        rows.append(torch.stack(row, dim=-1))
    return torch.stack(rows, dim=-2)


def dlu_loop(features, kernel_space, offsets, kernel_size, group_size, scale_factor):
    """Spec steps 5-6: sampled kernels, then the CARAFE reassembly loop."""
    masks = expand_loop(kernel_space, offsets, group_size, scale_factor)
    return carafe_loop(features, masks, kernel_size, group_size, scale_factor)


def module_loop(module, x):
    """The whole module from the spec's formulas: convs, per-group softmax over k*k, loop expansion + CARAFE."""
    z = module.channel_compressor(x)
    offsets = module.conv_offset(z)
    logits = module.kernel_space_generator(z)
    n, _, h, w = logits.shape
    g, taps = module.up_group, module.up_kernel ** 2
    space = logits.view(n, g, taps, h, w).softmax(dim=2).view(n, g * taps, h, w)
    return dlu_loop(x, space, offsets, module.up_kernel, g, module.scale_factor)


def random_op_inputs(n, c, h, w, k, g, s, offset_scale=1.5, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    space = torch.randn(n, g, k * k, h, w, generator=gen, dtype=dtype).softmax(2).view(n, g * k * k, h, w)
    # Offsets up to a few pixels: many positions land outside the map and exercise the clamping.
    offsets = torch.randn(n, g * 2 * s * s, h, w, generator=gen, dtype=dtype) * offset_scale
    return features, space, offsets


def randomized(module, offset_std=0.3, kernel_std=0.5, seed=0):
    """Non-trivial kernels and offsets (the official init has zero offsets and near-uniform kernels)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv, std in ((module.kernel_space_generator, kernel_std), (module.conv_offset, offset_std)):
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * std)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * std)
    return module


# --------------------------------------------------------------------------------------------------- the op

@pytest.mark.parametrize('n,c,h,w,k,g,s', [
    (2, 4, 3, 5, 5, 1, 2),   # G = 1, the official configuration
    (1, 6, 4, 3, 3, 2, 2),   # G > 1: per-group kernel spaces and offsets
    (1, 3, 3, 4, 3, 3, 3),   # one channel per group, scale 3
    (1, 2, 2, 3, 3, 1, 4),   # scale 4
    (1, 4, 1, 4, 3, 2, 2),   # H = 1
    (2, 2, 3, 1, 3, 1, 2),   # W = 1
    (1, 2, 1, 1, 3, 1, 3),   # 1 x 1 map
])
def test_op_matches_loop(n, c, h, w, k, g, s):
    features, space, offsets = random_op_inputs(n, c, h, w, k, g, s)
    inputs = [t.requires_grad_() for t in (features, space, offsets)]
    out = dlu_reassemble(*inputs, k, g, s)
    expected = dlu_loop(*inputs, k, g, s)
    assert out.shape == (n, c, s * h, s * w)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, grad_out)
    expected_grads = torch.autograd.grad(expected, inputs, grad_out)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-10)


def test_entry_point_equals_reference():
    features, space, offsets = random_op_inputs(2, 4, 5, 7, 5, 2, 2)
    torch.testing.assert_close(dlu_reassemble(features, space, offsets, 5, 2, 2),
                               dlu_reassemble_reference(features, space, offsets, 5, 2, 2), rtol=0, atol=1e-12)


@pytest.mark.parametrize('h,w', [(5, 7), (1, 4), (3, 1), (1, 1)])
def test_expanded_kernels_sum_to_one(h, w):
    """Spec unit test 2: bilinear weights are convex and border clamping keeps every tap inside."""
    _, space, offsets = random_op_inputs(2, 1, h, w, 5, 2, 3, offset_scale=3.0)
    kernels = dlu_expand_kernels(space, offsets, 3, 2)
    sums = kernels.view(2, 2, 25, 3 * h, 3 * w).sum(2)
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-12)
    assert (kernels >= 0).all()


def test_zero_offsets_equal_carafe_with_nearest_kernels_op():
    features, space, offsets = random_op_inputs(2, 6, 4, 5, 3, 3, 3)
    expected = carafe(features, space.repeat_interleave(3, 2).repeat_interleave(3, 3), 3, 3, 3)
    out = dlu_reassemble(features, space, torch.zeros_like(offsets), 3, 3, 3)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_integer_offsets_select_neighbour_kernels():
    """An offset of exactly (+1, -1) pixels reads the kernel of the low-res pixel one column right, one row up."""
    features, space, offsets = random_op_inputs(1, 2, 4, 5, 3, 1, 2)
    offsets = torch.zeros_like(offsets)
    offsets[:, 0:4] = 1.0   # x of all 4 sub-pixels
    offsets[:, 4:8] = -1.0  # y
    kernels = dlu_expand_kernels(space, offsets, 2, 1)
    shifted = torch.cat([space[:, :, :1], space[:, :, :-1]], 2)  # row h-1, clamped at row 0
    shifted = torch.cat([shifted[:, :, :, 1:], shifted[:, :, :, -1:]], 3)  # column w+1, clamped at the last
    torch.testing.assert_close(kernels, shifted.repeat_interleave(2, 2).repeat_interleave(2, 3), rtol=0, atol=1e-12)


def test_offset_gradient_is_zero_where_clamped():
    features, space, offsets = random_op_inputs(1, 2, 3, 4, 3, 1, 2)
    offsets = offsets.abs() + 5.0  # every position beyond the bottom-right border
    offsets.requires_grad_()
    dlu_reassemble(features, space, offsets, 3, 1, 2).square().sum().backward()
    assert not offsets.grad.any()


def test_one_pixel_axes_are_exact_and_finite():
    """Official quirk 2 fixed: H = 1 / W = 1 divide by zero officially; here the axis clamps to its only pixel."""
    features, space, offsets = random_op_inputs(2, 4, 1, 1, 3, 2, 2)
    offsets.requires_grad_()
    out = dlu_reassemble(features, space, offsets, 3, 2, 2)
    assert torch.isfinite(out).all()
    # Whatever the offsets, a 1x1 map has one kernel per group: CARAFE with that kernel everywhere.
    expected = carafe(features, space.expand(-1, -1, 2, 2), 3, 2, 2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    out.sum().backward()
    assert not offsets.grad.any()
    # H = 1 only: the y offsets (channels (2g+1)*s*s + sub) have no effect, the x offsets do.
    features, space, offsets = random_op_inputs(1, 2, 1, 6, 3, 1, 2, offset_scale=0.4)
    moved = offsets.clone()
    moved[:, 4:8] += 0.7
    torch.testing.assert_close(dlu_reassemble(features, space, moved, 3, 1, 2),
                               dlu_reassemble(features, space, offsets, 3, 1, 2), rtol=0, atol=0)
    moved[:, 0:4] += 0.3
    assert not torch.allclose(dlu_reassemble(features, space, moved, 3, 1, 2),
                              dlu_reassemble(features, space, offsets, 3, 1, 2))


def test_op_gradcheck_float64():
    features, space, offsets = random_op_inputs(1, 2, 2, 3, 3, 2, 2, offset_scale=0.8, seed=3)
    inputs = tuple(t.requires_grad_() for t in (features, space, offsets))
    assert torch.autograd.gradcheck(lambda f, m, o: dlu_reassemble(f, m, o, 3, 2, 2), inputs)


def test_op_empty_batch_has_gradients():
    features, space, offsets = random_op_inputs(0, 4, 3, 5, 3, 2, 2)
    inputs = [t.requires_grad_() for t in (features, space, offsets)]
    out = dlu_reassemble(*inputs, 3, 2, 2)
    assert out.shape == (0, 4, 6, 10)
    out.sum().backward()
    assert all(t.grad is not None and t.grad.shape == t.shape for t in inputs)


@pytest.mark.parametrize('dtype,atol', [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_op_dtypes(dtype, atol):
    features, space, offsets = random_op_inputs(2, 4, 5, 7, 5, 2, 2)
    args = [t.to(dtype) for t in (features, space, offsets)]
    out = dlu_reassemble(*args, 5, 2, 2)
    assert out.dtype == dtype
    expected = dlu_reassemble(*[t.double() for t in args], 5, 2, 2)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=atol)


@pytest.mark.parametrize('change,match', [
    (dict(features=torch.zeros(4, 3, 3)), 'features must be 4-D'),
    (dict(kernel_space=torch.zeros(1, 18, 3)), 'kernel_space must be 4-D'),
    (dict(offsets=torch.zeros(16, 3, 3)), 'offsets must be 4-D'),
    (dict(kernel_space=torch.zeros(1, 9, 3, 3)), r'kernel_space must have shape .* = \(1, 18, 3, 3\)'),
    (dict(kernel_space=torch.zeros(1, 18, 6, 6)), r'kernel_space must have shape .* = \(1, 18, 3, 3\)'),
    (dict(offsets=torch.zeros(1, 8, 3, 3)), r'offsets must have shape .* = \(1, 16, 3, 3\)'),
    (dict(offsets=torch.zeros(1, 16, 6, 6)), r'offsets must have shape .* = \(1, 16, 3, 3\)'),
    (dict(offsets=torch.zeros(1, 16, 3, 3, dtype=torch.float64)), 'offsets has dtype torch.float64'),
    (dict(kernel_space=torch.zeros(1, 18, 3, 3, dtype=torch.float64)), 'kernel_space has dtype torch.float64'),
    (dict(kernel_size=4), 'kernel_size must be odd'),
    (dict(group_size=3), r'group_size=3 must divide the channels of features \(8\)'),
    (dict(scale_factor=2.0), 'scale_factor must be an integer'),
    (dict(features=torch.zeros(1, 8, 3, 3, dtype=torch.int64)), 'features must be a floating-point'),
])
def test_op_bad_input_names_the_argument(change, match):
    args = dict(features=torch.zeros(1, 8, 3, 3), kernel_space=torch.zeros(1, 18, 3, 3),
                offsets=torch.zeros(1, 16, 3, 3), kernel_size=3, group_size=2, scale_factor=2)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        dlu_reassemble(**args)


# ------------------------------------------------------------------------------------------------ the module

@pytest.mark.parametrize('channels,scale,params', [
    (256, 2, 35_489), (256, 4, 49_337), (256, 8, 104_729), (256, 16, 326_297),
])
def test_parameter_counts(channels, scale, params):
    assert count_parameters(DLUPack(channels, scale)) == params


def test_parameter_breakdown_and_names():
    module = DLUPack(256, 2)
    assert count_parameters(module.channel_compressor) == 16_448
    assert count_parameters(module.kernel_space_generator) == 14_425
    assert count_parameters(module.conv_offset) == 4_616
    # Four DLU modules of the official FPN: the README's "+0.6MB" in fp32 (4 x 35,489 x 4 bytes = 0.57 MB).
    assert 4 * count_parameters(module) == 141_956


@pytest.mark.parametrize('name', ['dlu_s2', 'dlu_s4'])
def test_reproduces_official_module(name):
    """Under the default float32 dtype: the grid follows the input (float64), so 1e-8 holds (the official
    float32 linspace grid would be off by ~1e-7, fixtures README)."""
    assert torch.get_default_dtype() == torch.float32
    fixture = load_official(name)
    check_official(DLUPack(**fixture['init_args']), fixture)


def test_result_does_not_depend_on_default_dtype():
    module = randomized(DLUPack(8, 2, compressed_channels=4)).double()
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    expected = module(x)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = module(x)
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(out, expected)


@pytest.mark.parametrize('g,s,size', [(1, 2, (5, 7)), (2, 2, (4, 3)), (2, 3, (3, 4)), (1, 4, (2, 3)),
                                      (2, 2, (1, 5)), (1, 2, (4, 1)), (2, 3, (1, 1))])
def test_module_matches_loop(g, s, size):
    module = randomized(DLUPack(4, s, up_kernel=3, up_group=g, compressed_channels=4), seed=g + s).double()
    x = torch.randn(2, 4, *size, dtype=torch.float64, requires_grad=True)
    out = module(x)
    expected = module_loop(module, x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(out)
    params = list(module.parameters())
    grads = torch.autograd.grad(out, [x] + params, grad_out)
    expected_grads = torch.autograd.grad(expected, [x] + params, grad_out)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize('g,s,size', [(1, 2, (5, 7)), (2, 2, (4, 5)), (1, 3, (3, 4)), (4, 4, (1, 3))])
@pytest.mark.parametrize('random_kernels', [False, True])
def test_zero_offsets_equal_carafe_with_nearest_kernels(g, s, size, random_kernels):
    """Spec unit test 1: with conv_offset = 0 (its init) DLU is CARAFE with the nearest-upsampled kernel map."""
    torch.manual_seed(0)
    module = DLUPack(8, s, up_group=g, compressed_channels=4)
    if random_kernels:
        randomized(module, offset_std=0.0)
    module = module.double()
    assert not module.conv_offset.weight.any() and not module.conv_offset.bias.any()
    x = torch.randn(2, 8, *size, dtype=torch.float64)
    space = module.kernel_space_normalizer(module.kernel_space_generator(module.channel_compressor(x)))
    nearest = F.interpolate(space, scale_factor=s, mode='nearest')
    torch.testing.assert_close(module(x), carafe(x, nearest, 5, g, s), rtol=0, atol=1e-12)


def test_init():
    torch.manual_seed(0)
    module = DLUPack(64, 2)
    assert not module.conv_offset.weight.any() and not module.conv_offset.bias.any()
    assert module.kernel_space_generator.weight.std() < 0.002 and not module.kernel_space_generator.bias.any()
    assert not module.channel_compressor.bias.any()
    bound = (6 / (64 + 64)) ** 0.5  # Xavier-uniform, gain 1, 1x1 conv 64 -> 64
    assert module.channel_compressor.weight.abs().max() <= bound
    assert module.channel_compressor.weight.abs().max() > 0.9 * bound
    space = module.kernel_space_normalizer(module.kernel_space_generator(module.channel_compressor(
        torch.randn(1, 64, 6, 5))))
    torch.testing.assert_close(space, torch.full_like(space, 1 / 25), rtol=0.25, atol=0)


def test_offset_channel_moves_only_its_subpixel_and_group():
    """Group layout: conv_offset channel (g*2 + xy)*s*s + i*s + j moves sub-pixel (i, j) of group g only."""
    s, groups, channels = 2, 2, 8
    module = randomized(DLUPack(channels, s, up_group=groups, compressed_channels=4), offset_std=0.0).double()
    x = torch.randn(1, channels, 5, 6, dtype=torch.float64)
    base = module(x)
    per_group = channels // groups
    for g, xy, i, j in [(1, 0, 0, 1), (0, 1, 1, 0)]:
        with torch.no_grad():
            module.conv_offset.bias.zero_()
            module.conv_offset.bias[(g * 2 + xy) * s * s + i * s + j] = 0.6
        changed = (module(x) - base).abs() > 1e-12
        expected = torch.zeros_like(changed)
        expected[:, g * per_group:(g + 1) * per_group, i::s, j::s] = True
        assert changed.any() and not (changed & ~expected).any()


def test_forward_calls_the_op_entry_point(monkeypatch):
    calls = []

    def spy(*args):
        calls.append(args[3:])
        return dlu_reassemble(*args)

    monkeypatch.setattr(dlu_module, 'dlu_reassemble', spy)
    DLUPack(8, 4, up_kernel=3, up_group=2, compressed_channels=4)(torch.randn(1, 8, 3, 3))
    assert calls == [(3, 2, 4)]


@pytest.mark.parametrize('s', [2, 4])
@pytest.mark.parametrize('n,size', [(1, (5, 7)), (2, (4, 4)), (0, (3, 5)), (1, (1, 1))])
def test_shapes(s, n, size):
    module = randomized(DLUPack(16, s, compressed_channels=8))
    out = module(torch.randn(n, 16, *size))
    assert out.shape == (n, 16, s * size[0], s * size[1]) and torch.isfinite(out).all()


def test_empty_batch_backward():
    module = DLUPack(8, 2, compressed_channels=4)
    x = torch.randn(0, 8, 3, 5, requires_grad=True)
    module(x).sum().backward()
    assert x.grad.shape == x.shape and module.conv_offset.weight.grad is not None


def test_module_gradcheck_float64():
    module = randomized(DLUPack(2, 2, up_kernel=3, up_group=2, compressed_channels=4), seed=5).double()
    x = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))


def test_float64_stays_float64_and_float32_agrees():
    module = randomized(DLUPack(8, 2, compressed_channels=4))
    x = torch.randn(2, 8, 5, 7)
    out32 = module(x)
    out64 = module.double()(x.double())
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=1e-5)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision(dtype):
    module = randomized(DLUPack(16, 2, compressed_channels=8))
    x = torch.randn(2, 16, 6, 9)
    out = module.to(dtype)(x.to(dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()
    expected = module.float()(x.to(dtype).float())
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device on this machine')
def test_cuda_matches_cpu():
    module = randomized(DLUPack(8, 2, up_group=2, compressed_channels=4))
    x = torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(module.cuda()(x.cuda()).cpu(), module.cpu()(x), rtol=1e-4, atol=1e-5)


def test_registered_and_buildable():
    from mmengine.registry import MODELS
    assert MODELS.get('dlu') is DLUPack
    module = build_upsampler(dict(type='dlu', up_kernel=3), in_channels=32, scale_factor=4)
    assert isinstance(module, DLUPack) and module.channels == 32 and module.scale_factor == 4
    assert module.up_kernel == 3


@pytest.mark.parametrize('kwargs,match', [
    (dict(channels=16, scale_factor=2, up_group=3), 'up_group=3 must divide channels=16'),
    (dict(channels=16, scale_factor=2, up_kernel=4), 'up_kernel must be odd'),
    (dict(channels=16, scale_factor=0), 'scale_factor must be an integer >= 1'),
    (dict(channels=16, scale_factor=1.5), 'scale_factor must be an integer'),
    (dict(channels=0, scale_factor=2), 'channels must be an integer >= 1'),
    (dict(channels=16, scale_factor=2, compressed_channels=0), 'compressed_channels must be an integer'),
    (dict(channels=16, scale_factor=2, encoder_kernel=0), 'encoder_kernel must be an integer'),
    (dict(channels=16, scale_factor=2, encoder_dilation=0), 'encoder_dilation must be an integer'),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DLUPack(**kwargs)


@pytest.mark.parametrize('x,match', [
    (torch.zeros(16, 5, 7), 'x must be 4-D'),
    (torch.zeros(1, 8, 5, 7), r'built for 16 channels; x must have shape \(N, 16, H, W\)'),
    (torch.zeros(1, 16, 0, 7), 'non-empty spatial size'),
    (torch.zeros(1, 16, 5, 7, dtype=torch.int64), 'x must be a floating-point'),
])
def test_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        DLUPack(16, 2, compressed_channels=8)(x)
