"""DDF op and DDF-Up (spec/ddf.md): the op against a direct loop and the unfold formula, gradients, edge shapes,
FilterNorm, the branch/pixel-shuffle layout, heads, guidance, parameter counts, the official fixture and bad
input."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from upsample_test_utils import check_official, count_parameters, load_official

from upsample_plugin import build_upsampler
from upsample_plugin.ops.ddf import ddf, ddf_reference
from upsample_plugin.upsamplers.ddf_up import DDFPack, DDFUpPack, FilterNorm


# ----------------------------------------------------------------------------------------------- references
def ddf_loop(features, channel_filter, spatial_filter, k, dilation=1, stride=1, combine='mul'):
    """The op straight from the formula of spec/ddf.md, one output pixel and one tap at a time.

    Vectorised only over batch and channels; differentiable (autograd). Slow: keep shapes small.
    """
    n, c, height, width = features.shape
    r = (k - 1) // 2
    out = features.new_zeros(n, c, height // stride, width // stride)
    for y in range(height // stride):
        for x in range(width // stride):
            acc = features.new_zeros(n, c)
            for iy in range(k):
                for ix in range(k):
                    py, px = y * stride + (iy - r) * dilation, x * stride + (ix - r) * dilation
                    if 0 <= py < height and 0 <= px < width:  # zero padding: skip the tap
                        spatial = spatial_filter[:, iy * k + ix, y, x].unsqueeze(1)  # (N, 1)
                        channel = channel_filter[:, :, iy, ix]  # (N, C)
                        weight = spatial * channel if combine == 'mul' else spatial + channel
                        acc = acc + weight * features[:, :, py, px]
            out[:, :, y, x] = acc
    return out


def ddf_unfold(features, channel_filter, spatial_filter, k, dilation=1, stride=1, combine='mul'):
    """The spec's unfold form: out[b, c, p] = sum_t unfold(x)[b, c, t, p] * F[b, c, t, p], explicit padding."""
    n, c, height, width = features.shape
    r = (k - 1) // 2
    out_h, out_w = height // stride, width // stride
    padded = F.pad(features, [r * dilation] * 4)
    patches = F.unfold(padded, k, dilation=dilation, stride=stride)
    patches = patches.view(n, c, k * k, (height - 1) // stride + 1, (width - 1) // stride + 1)
    patches = patches[..., :out_h, :out_w]
    spatial = spatial_filter.view(n, 1, k * k, out_h, out_w)
    channel = channel_filter.reshape(n, c, k * k, 1, 1)
    filters = spatial * channel if combine == 'mul' else spatial + channel
    return (patches * filters).sum(2)


def random_op_inputs(n, c, h, w, k, stride=1, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    channel_filter = torch.randn(n, c, k, k, generator=gen, dtype=dtype)
    spatial_filter = torch.randn(n, k * k, h // stride, w // stride, generator=gen, dtype=dtype)
    return features, channel_filter, spatial_filter


def assert_op_matches(n, c, h, w, k, dilation, stride, combine, seed=0):
    inputs = [t.requires_grad_() for t in random_op_inputs(n, c, h, w, k, stride, seed=seed)]
    out = ddf(*inputs, k, dilation, stride, combine)
    assert out.shape == (n, c, h // stride, w // stride)
    loop = ddf_loop(*inputs, k, dilation, stride, combine)
    torch.testing.assert_close(out, loop, rtol=0, atol=1e-12)
    torch.testing.assert_close(out, ddf_unfold(*inputs, k, dilation, stride, combine), rtol=0, atol=1e-12)
    # `ddf` runs the compiled op when it is built (another summation order than the reference): rounding only.
    torch.testing.assert_close(out, ddf_reference(*inputs, k, dilation, stride, combine), rtol=0, atol=1e-12)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, grad_out)
    expected = torch.autograd.grad(loop, inputs, grad_out)
    for name, grad, expected_grad in zip(('features', 'channel', 'spatial'), grads, expected):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12, msg=name)


# ------------------------------------------------------------------------------------------------------ op
@pytest.mark.parametrize('combine', ['mul', 'add'])
@pytest.mark.parametrize('k', [3, 5])
@pytest.mark.parametrize('dilation', [1, 2])
@pytest.mark.parametrize('stride', [1, 2])
def test_op_matches_loop_and_unfold(combine, k, dilation, stride):
    assert_op_matches(2, 3, 5, 7, k, dilation, stride, combine)  # odd sizes: stride 2 drops the last row/col


@pytest.mark.parametrize('combine', ['mul', 'add'])
@pytest.mark.parametrize('n,c,h,w,k,dilation,stride', [
    (1, 2, 1, 1, 3, 1, 1),   # 1x1 map: only the centre tap is inside
    (2, 3, 1, 1, 5, 2, 1),
    (1, 2, 1, 3, 3, 2, 1),   # one row
    (1, 2, 6, 4, 3, 1, 2),   # even sizes with stride
    (1, 2, 7, 3, 5, 1, 3),   # stride 3, not dividing W
    (1, 2, 4, 4, 1, 1, 1),   # k = 1: out = F * x
    (1, 2, 3, 5, 7, 1, 1),   # kernel larger than the map
])
def test_op_edge_shapes(combine, n, c, h, w, k, dilation, stride):
    assert_op_matches(n, c, h, w, k, dilation, stride, combine)


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
       k=st.sampled_from([1, 3, 5]), dilation=st.integers(1, 3), stride=st.integers(1, 3),
       combine=st.sampled_from(['mul', 'add']), seed=st.integers(0, 2 ** 16))
def test_op_matches_loop_random_shapes(n, c, h, w, k, dilation, stride, combine, seed):
    if h < stride or w < stride:
        h, w = max(h, stride), max(w, stride)
    assert_op_matches(n, c, h, w, k, dilation, stride, combine, seed=seed)


def test_op_layouts_do_not_change_the_result():
    features, channel_filter, spatial_filter = random_op_inputs(2, 4, 6, 7, 3, stride=2)
    expected = ddf(features, channel_filter, spatial_filter, 3, 1, 2, 'mul')
    channels_last = ddf(*[t.to(memory_format=torch.channels_last) for t in
                          (features, channel_filter, spatial_filter)], 3, 1, 2, 'mul')
    torch.testing.assert_close(channels_last, expected, rtol=0, atol=1e-12)
    wide = torch.zeros(2, 4, 6, 14, dtype=torch.float64)
    wide[..., ::2] = features  # a non-contiguous view: every other column
    strided = ddf(wide[..., ::2], channel_filter.transpose(2, 3).contiguous().transpose(2, 3),
                  spatial_filter, 3, 1, 2, 'mul')
    torch.testing.assert_close(strided, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize('combine', ['mul', 'add'])
def test_op_empty_outputs_have_gradients(combine):
    for n, h, w, stride in [(0, 3, 4, 1), (2, 1, 3, 2)]:  # batch 0; a map smaller than the stride
        inputs = [t.requires_grad_() for t in random_op_inputs(n, 3, h, w, 3, stride)]
        out = ddf(*inputs, 3, 1, stride, combine)
        assert out.shape == (n, 3, h // stride, w // stride)
        out.sum().backward()
        for tensor in inputs:
            assert tensor.grad is not None and tensor.grad.shape == tensor.shape and not tensor.grad.any()


@pytest.mark.parametrize('combine', ['mul', 'add'])
@pytest.mark.parametrize('k,dilation,stride', [(3, 1, 1), (3, 2, 2), (5, 1, 2)])
def test_op_gradcheck_float64(combine, k, dilation, stride):
    inputs = [t.requires_grad_() for t in random_op_inputs(2, 2, 5, 4, k, stride)]
    op = lambda f, cf, sf: ddf(f, cf, sf, k, dilation, stride, combine)  # noqa: E731
    assert torch.autograd.gradcheck(op, inputs)
    if stride == 2 and dilation == 2:  # second order once per combine: gradgradcheck is slow
        assert torch.autograd.gradgradcheck(op, inputs)


def test_op_add_is_the_sum_of_two_filterings():
    """'add': F = S + C, so out = ddf(S only) + ddf(C only), each with the other filter set to 1 in 'mul'."""
    features, channel_filter, spatial_filter = random_op_inputs(2, 3, 5, 6, 3)
    added = ddf(features, channel_filter, spatial_filter, 3, 2, 1, 'add')
    spatial_only = ddf(features, torch.ones_like(channel_filter), spatial_filter, 3, 2, 1, 'mul')
    channel_only = ddf(features, channel_filter, torch.ones_like(spatial_filter), 3, 2, 1, 'mul')
    torch.testing.assert_close(added, spatial_only + channel_only, rtol=0, atol=1e-12)


def test_op_equals_depthwise_conv_for_static_filters():
    """A spatial filter of ones turns 'mul' DDF into a depthwise cross-correlation with the channel filter."""
    features, channel_filter, _ = random_op_inputs(2, 4, 6, 7, 3)
    ones = torch.ones(2, 9, 3, 3, dtype=torch.float64)
    for sample in range(2):
        out = ddf(features[sample:sample + 1], channel_filter[sample:sample + 1], ones[sample:sample + 1], 3,
                  dilation=2, stride=2)
        conv = F.conv2d(features[sample:sample + 1], channel_filter[sample].unsqueeze(1), padding=2, dilation=2,
                        stride=2, groups=4)
        # The conv keeps ceil(7 / 2) = 4 columns; the op keeps W // stride = 3 (centred on 0, 2, 4).
        torch.testing.assert_close(out, conv[..., :3], rtol=0, atol=1e-12)


@pytest.mark.parametrize('dtype,atol', [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_op_reduced_precision(dtype, atol):
    features, channel_filter, spatial_filter = random_op_inputs(2, 4, 5, 7, 3)
    spatial_filter = spatial_filter / 3
    args = [t.to(dtype) for t in (features, channel_filter, spatial_filter)]
    out = ddf(*args, 3, 1, 1, 'mul')
    assert out.dtype == dtype
    expected = ddf(*[t.double() for t in args], 3, 1, 1, 'mul')
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=atol)


@pytest.mark.parametrize('change,match', [
    (dict(combine='max'), "combine must be 'mul' or 'add'"),
    (dict(combine=1), "combine must be 'mul' or 'add', got 1"),  # the official DDF-Up argument bug
    (dict(kernel_size=4), 'kernel_size must be odd'),
    (dict(kernel_size=0), 'kernel_size must be an integer >= 1'),
    (dict(dilation=0), 'dilation must be an integer >= 1'),
    (dict(stride=1.0), 'stride must be an integer'),
    (dict(features=torch.zeros(4, 5, 6)), 'features must be 4-D'),
    (dict(channel_filter=torch.zeros(1, 4, 9)), 'channel_filter must be 4-D'),
    (dict(channel_filter=torch.zeros(1, 3, 3, 3)), r'channel_filter must have shape .* = \(1, 4, 3, 3\)'),
    (dict(channel_filter=torch.zeros(1, 4, 5, 5)), r'channel_filter must have shape .* = \(1, 4, 3, 3\)'),
    (dict(spatial_filter=torch.zeros(1, 8, 5, 6)), r'spatial_filter must have shape .* = \(1, 9, 5, 6\)'),
    (dict(spatial_filter=torch.zeros(1, 9, 6, 6)), r'spatial_filter must have shape .* = \(1, 9, 5, 6\)'),
    (dict(stride=2), r'spatial_filter must have shape .* = \(1, 9, 2, 3\)'),
    (dict(spatial_filter=torch.zeros(1, 9, 5, 6, dtype=torch.float64)), 'spatial_filter has dtype'),
    (dict(channel_filter=torch.zeros(1, 4, 3, 3, dtype=torch.float64)), 'channel_filter has dtype'),
    (dict(features=torch.zeros(1, 4, 5, 6, dtype=torch.int64)), 'features must be a floating-point'),
])
def test_op_bad_input_names_the_argument(change, match):
    args = dict(features=torch.zeros(1, 4, 5, 6), channel_filter=torch.zeros(1, 4, 3, 3),
                spatial_filter=torch.zeros(1, 9, 5, 6), kernel_size=3, dilation=1, stride=1, combine='mul')
    args.update(change)
    with pytest.raises(ValueError, match=match):
        ddf(**args)


# ----------------------------------------------------------------------------------------------- FilterNorm
def test_filter_norm_spatial_standardises_each_head():
    norm = FilterNorm(2, 3, 'spatial', 'relu')  # 2 heads
    x = torch.randn(3, 18, 4, 5, dtype=torch.float64) * 5 + 2
    taps = norm(x).view(3, 2, 9, 4, 5)
    torch.testing.assert_close(taps.mean(2), torch.zeros(3, 2, 4, 5, dtype=torch.float64), rtol=0, atol=1e-12)
    expected_std = torch.full((3, 2, 4, 5), 2 ** 0.5 / 3, dtype=torch.float64)  # gain(relu) / k, unbiased
    torch.testing.assert_close(taps.std(2), expected_std, rtol=1e-9, atol=0)
    assert [name for name, _ in norm.named_parameters()] == []


def test_filter_norm_channel_uses_the_learnable_std():
    torch.manual_seed(0)
    norm = FilterNorm(4, 3, 'channel', 'linear', running_std=True).double()
    assert norm.std.shape == (36,)
    x = torch.randn(2, 36, 1, 1, dtype=torch.float64) * 3 - 1
    out = norm(x)
    assert out.shape == (2, 36)
    standardised = (out / norm.std).view(2, 4, 9)
    torch.testing.assert_close(standardised.mean(2), torch.zeros(2, 4, dtype=torch.float64), rtol=0, atol=1e-9)
    torch.testing.assert_close(standardised.std(2), torch.ones(2, 4, dtype=torch.float64), rtol=1e-9, atol=0)


# ---------------------------------------------------------------------------------------------- DDF-Up
def randomised(module, seed=0):
    """Non-trivial parameters (biases included), float64."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return module.double()


def branch_filters(module, branch, x, joint_x=None):
    """Channel filter (N, C, k, k) and spatial filter (N, head*k*k, H, W) of one branch, straight from it."""
    n, c = x.shape[:2]
    k = module.kernel_size
    channel_filter = module.channel_branch[branch](x).view(n, c, k, k)
    spatial_filter = module.spatial_branch[branch](x if joint_x is None else joint_x)
    return channel_filter, spatial_filter


@pytest.mark.parametrize('scale', [2, 3])
@pytest.mark.parametrize('head,combine,dilation', [(1, 'mul', 1), (2, 'add', 2), (4, 'mul', 1)])
def test_module_is_branch_filtering_plus_pixel_shuffle(scale, head, combine, dilation):
    """Branch b = i*s + j, filtered with its own decoupled filters (head h: channels [h*C/g, (h+1)*C/g) and
    spatial taps [h*k*k, (h+1)*k*k)), fills output pixels (s*y + i, s*x + j)."""
    channels, k = 8, 3
    module = randomised(DDFUpPack(channels, k, scale, dilation, head, se_ratio=0.5, kernel_combine=combine))
    x = torch.randn(2, channels, 3, 5, dtype=torch.float64)
    out = module(x)
    assert out.shape == (2, channels, 3 * scale, 5 * scale)
    per_head = channels // head
    for i in range(scale):
        for j in range(scale):
            channel_filter, spatial_filter = branch_filters(module, i * scale + j, x)
            for h in range(head):
                block = slice(h * per_head, (h + 1) * per_head)
                expected = ddf_loop(x[:, block], channel_filter[:, block], spatial_filter[:, h * 9:(h + 1) * 9],
                                    k, dilation, 1, combine)
                torch.testing.assert_close(out[:, block, i::scale, j::scale], expected, rtol=0, atol=1e-12)


def test_spatial_filters_have_zero_mean():
    """FilterNorm: every spatial filter sums to 0, so DDF-Up is not an interpolator at init (spec/ddf.md)."""
    module = DDFUpPack(16, head=2).double()
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    for branch in range(4):
        channel_filter, spatial_filter = branch_filters(module, branch, x)
        sums = spatial_filter.view(2, 2, 9, 5, 6).sum(2)
        torch.testing.assert_close(sums, torch.zeros_like(sums), rtol=0, atol=1e-12)
        # Channel filters: zero mean before the learned per-tap std.
        std = module.channel_branch[branch][4].std.view(1, 16, 3, 3)
        torch.testing.assert_close((channel_filter / std).sum((2, 3)), torch.zeros(2, 16, dtype=torch.float64),
                                   rtol=0, atol=1e-9)


@pytest.mark.parametrize('scale', [2, 4])
@pytest.mark.parametrize('size', [(1, 1), (5, 7), (4, 6)])
@pytest.mark.parametrize('n', [0, 1, 2])
def test_output_shapes(scale, size, n):
    module = DDFUpPack(8, scale_factor=scale, se_ratio=0.25)
    out = module(torch.randn(n, 8, *size))
    assert out.shape == (n, 8, size[0] * scale, size[1] * scale) and torch.isfinite(out).all()


def test_empty_batch_backward():
    module = DDFUpPack(8, se_ratio=0.25)
    x = torch.randn(0, 8, 3, 4, requires_grad=True)
    out = module(x)
    assert out.shape == (0, 8, 6, 8)
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_guide_argument_is_ignored():
    module = DDFUpPack(8, se_ratio=0.25).double()
    x = torch.randn(1, 8, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(module(x, torch.randn(1, 8, 8, 10, dtype=torch.float64)), module(x),
                               rtol=0, atol=0)


def test_module_gradcheck_float64():
    module = randomised(DDFUpPack(4, scale_factor=2, se_ratio=0.5, head=2))
    x = torch.randn(1, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    joint = torch.randn(1, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: module(a, joint_x=b), (x, joint))


def test_reproduces_official_module():
    """theFoxofSky/ddfnet DDFUpPack (head/kernel_combine argument fixed), strict state dict, output and grad."""
    fixture = load_official('ddfup_mul_s2')
    check_official(DDFUpPack(**fixture['init_args']), fixture)


@pytest.mark.parametrize('joint_channels', [-1, 16])
def test_joint_x_changes_the_output_and_gets_a_gradient(joint_channels):
    module = randomised(DDFUpPack(16, joint_channels=joint_channels))
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64)
    joint_x = torch.randn(2, 16, 4, 5, dtype=torch.float64, requires_grad=True)
    guided = module(x, joint_x=joint_x)
    assert guided.shape == (2, 16, 8, 10)
    assert (guided - module(x)).abs().max() > 1e-3
    torch.testing.assert_close(module(x, joint_x=x), module(x), rtol=0, atol=0)  # default guidance is x
    grad, = torch.autograd.grad((guided * torch.randn_like(guided)).sum(), joint_x)
    assert grad.abs().max() > 0
    # Only the spatial filters read the guidance; the channel filters always come from x (quirk 4).
    channel_filter, spatial_filter = branch_filters(module, 3, x, joint_x)
    expected = ddf_loop(x, channel_filter, spatial_filter, 3)
    torch.testing.assert_close(guided[:, :, 1::2, 1::2], expected, rtol=0, atol=1e-12)


def test_joint_channels_set_the_guidance_width():
    """Quirk 3 fixed: the spatial branches read joint_channels channels (official: in_channels)."""
    module = DDFUpPack(16, joint_channels=6)
    assert module.spatial_branch[0][0].weight.shape == (9, 6, 1, 1)
    out = module(torch.randn(2, 16, 4, 5), joint_x=torch.randn(2, 6, 4, 5))
    assert out.shape == (2, 16, 8, 10)
    with pytest.raises(ValueError, match='built with joint_channels=6'):
        module(torch.randn(2, 16, 4, 5))


def test_joint_resize():
    """Quirk 9: a guidance at another size is resized to x's size when joint_resize is set."""
    module = randomised(DDFUpPack(8, se_ratio=0.25, joint_channels=8, joint_resize='area'))
    x = torch.randn(1, 8, 3, 5, dtype=torch.float64)
    joint_high = torch.randn(1, 8, 6, 10, dtype=torch.float64)
    torch.testing.assert_close(module(x, joint_x=joint_high), module(x, joint_x=F.avg_pool2d(joint_high, 2)),
                               rtol=0, atol=1e-12)


def test_depthwise_kernel_other_than_kernel_size():
    """Quirk 2 fixed: the depthwise conv is padded by dw_kernel_size // 2, so 5 works with k = 3."""
    module = DDFUpPack(8, kernel_size=3, se_ratio=0.25, dw_kernel_size=5)
    assert module.spatial_branch[0][0].weight.shape == (8, 1, 5, 5)
    assert module(torch.randn(1, 8, 4, 5)).shape == (1, 8, 8, 10)
    assert DDFUpPack(8, se_ratio=0.25, dw_kernel_size=1).spatial_branch[0][0].kernel_size == (3, 3)


def test_kernel_5_add_and_dilation():
    module = randomised(DDFUpPack(4, kernel_size=5, dilation=2, se_ratio=0.5, kernel_combine='add'))
    x = torch.randn(1, 4, 4, 6, dtype=torch.float64)
    out = module(x)
    channel_filter, spatial_filter = branch_filters(module, 2, x)
    torch.testing.assert_close(out[:, :, 1::2, 0::2], ddf_loop(x, channel_filter, spatial_filter, 5, 2, 1, 'add'),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize('channels,joint_channels,params', [(256, -1, 560_368), (256, 256, 550_128)])
def test_parameter_counts(channels, joint_channels, params):
    module = DDFUpPack(channels, joint_channels=joint_channels)
    assert count_parameters(module) == params
    assert count_parameters(module.spatial_branch[0]) + count_parameters(module.channel_branch[0]) == params // 4
    if joint_channels < 1:
        assert params // 4 == 140_092


@pytest.mark.parametrize('channels,params', [(64, 9_429), (128, 35_490), (256, 137_532), (512, 536_175)])
def test_ddfpack_parameter_counts(channels, params):
    assert count_parameters(DDFPack(channels)) == params


def test_state_dict_keys_follow_the_official_names():
    keys = set(DDFUpPack(16, scale_factor=1).state_dict())
    assert keys == {'spatial_branch.0.0.weight', 'spatial_branch.0.0.bias', 'spatial_branch.0.1.0.weight',
                    'spatial_branch.0.1.0.bias', 'channel_branch.0.1.weight', 'channel_branch.0.1.bias',
                    'channel_branch.0.3.weight', 'channel_branch.0.3.bias', 'channel_branch.0.4.std'}
    assert set(DDFUpPack(16, scale_factor=1, joint_channels=4).state_dict()) >= {'spatial_branch.0.0.weight'}


def test_build_upsampler_fills_channels_and_scale():
    module = build_upsampler(dict(type='ddf_up', se_ratio=0.25), in_channels=8, scale_factor=4)
    assert isinstance(module, DDFUpPack) and module.in_channels == 8 and module.scale_factor == 4
    assert len(module.spatial_branch) == 16
    assert module(torch.randn(1, 8, 2, 3)).shape == (1, 8, 8, 12)


def test_init_weights_restores_pytorch_defaults_and_keeps_std():
    module = DDFUpPack(8, se_ratio=0.25)
    std = module.channel_branch[0][4].std.detach().clone()
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for conv in convs:
            conv.weight.fill_(10.0)
    module.init_weights()
    for conv in convs:
        fan_in = conv.weight[0].numel()
        assert conv.weight.abs().max() <= fan_in ** -0.5 + 1e-7  # kaiming_uniform(a=sqrt(5)) bound
    torch.testing.assert_close(module.channel_branch[0][4].std, std, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- DDFPack
@pytest.mark.parametrize('stride,head,combine,size', [(1, 1, 'mul', (5, 7)), (2, 2, 'add', (5, 7)),
                                                      (2, 4, 'mul', (6, 4))])
def test_ddfpack_matches_the_loop(stride, head, combine, size):
    module = randomised(DDFPack(8, 3, stride, dilation=2, head=head, se_ratio=0.5, kernel_combine=combine))
    x = torch.randn(2, 8, *size, dtype=torch.float64)
    out = module(x)
    out_h, out_w = size[0] // stride, size[1] // stride
    assert out.shape == (2, 8, out_h, out_w)
    channel_filter = module.channel_branch(x).view(2, 8, 3, 3)
    spatial_filter = module.spatial_branch(x)[..., :out_h, :out_w]
    per_head = 8 // head
    for h in range(head):
        block = slice(h * per_head, (h + 1) * per_head)
        expected = ddf_loop(x[:, block], channel_filter[:, block], spatial_filter[:, h * 9:(h + 1) * 9], 3, 2,
                            stride, combine)
        torch.testing.assert_close(out[:, block], expected, rtol=0, atol=1e-12)


def test_ddfpack_gradcheck_and_empty_batch():
    module = randomised(DDFPack(4, stride=2, head=2, se_ratio=0.5))
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))
    assert module(torch.randn(0, 4, 5, 4, dtype=torch.float64)).shape == (0, 4, 2, 2)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize('kwargs,match', [
    (dict(kernel_combine='max'), "kernel_combine must be 'mul' or 'add'"),
    (dict(kernel_combine=1), "kernel_combine must be 'mul' or 'add', got 1"),
    (dict(kernel_size=4), 'kernel_size must be odd'),
    (dict(kernel_size=1), 'kernel_size must be >= 3'),
    (dict(scale_factor=1.5), 'scale_factor must be an integer'),
    (dict(scale_factor=0), 'scale_factor must be an integer >= 1'),
    (dict(in_channels=0), 'in_channels must be an integer >= 1'),
    (dict(head=3), 'head=3 must divide in_channels=16'),
    (dict(dilation=0), 'dilation must be an integer >= 1'),
    (dict(se_ratio=0.01), r'int\(in_channels \* se_ratio\) = 0'),
    (dict(se_ratio=0), 'se_ratio must be a positive number'),
    (dict(nonlinearity='swish'), "nonlinearity 'swish' is not supported"),
    (dict(dw_kernel_size=4), 'dw_kernel_size must be odd'),
    (dict(joint_channels=2.0), 'joint_channels must be an integer'),
    (dict(joint_resize='linear'), 'joint_resize must be None or one of'),
])
def test_bad_construction(kwargs, match):
    args = dict(in_channels=16)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DDFUpPack(**args)


@pytest.mark.parametrize('x,joint_x,match', [
    (torch.zeros(16, 4, 5), None, 'x must be 4-D'),
    (torch.zeros(1, 8, 4, 5), None, r'must have shape \(N, 16, H, W\)'),
    (torch.zeros(1, 16, 0, 5), None, 'non-empty spatial size'),
    (torch.zeros(1, 16, 4, 5), torch.zeros(1, 16, 8, 10), r'joint_x must have the low-resolution size of x'),
    (torch.zeros(1, 16, 4, 5), torch.zeros(1, 8, 4, 5), r'joint_x must have shape \(N, 16, H, W\)'),
    (torch.zeros(1, 16, 4, 5), torch.zeros(2, 16, 4, 5), r'joint_x must have shape \(N, 16, H, W\) with N = 1'),
    (torch.zeros(1, 16, 4, 5), torch.zeros(16, 4, 5), 'joint_x must be 4-D'),
    (torch.zeros(1, 16, 4, 5), torch.zeros(1, 16, 4, 5, dtype=torch.float64), 'joint_x has dtype'),
])
def test_bad_input(x, joint_x, match):
    with pytest.raises(ValueError, match=match):
        DDFUpPack(16)(x, joint_x=joint_x)


@pytest.mark.parametrize('kwargs,x,match', [
    (dict(kernel_size=1), None, 'kernel_size must be >= 3'),
    (dict(head=3), None, 'head=3 must divide in_channels=8'),
    (dict(kernel_combine='sum'), None, "kernel_combine must be 'mul' or 'add'"),
    (dict(stride=0), None, 'stride must be an integer >= 1'),
    (dict(), torch.zeros(1, 4, 5, 5), r'must have shape \(N, 8, H, W\)'),
    (dict(stride=2), torch.zeros(1, 8, 1, 5), 'at least stride=2 pixels'),
])
def test_ddfpack_bad_input(kwargs, x, match):
    with pytest.raises(ValueError, match=match):
        module = DDFPack(8, se_ratio=0.25, **kwargs)
        module(x)


@pytest.mark.parametrize('kwargs,match', [
    (dict(filter_type='depth'), "filter_type must be 'spatial' or 'channel'"),
    (dict(kernel_size=1), 'kernel_size must be an integer >= 2'),
])
def test_filter_norm_bad_construction(kwargs, match):
    args = dict(in_channels=1, kernel_size=3, filter_type='spatial')
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        FilterNorm(**args)
