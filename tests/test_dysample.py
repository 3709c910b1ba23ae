"""DySample (spec/dysample.md): bilinear at zero offsets, parameter counts, official numerics, the offset
channel layout, precision and bad input."""
import pytest
import torch
import torch.nn.functional as F
from upsample_test_utils import check_official, count_parameters, load_official

from upsample_plugin import DySample

VARIANTS = [('lp', False), ('lp', True), ('pl', False), ('pl', True)]


def zeroed(module):
    for param in module.parameters():
        torch.nn.init.zeros_(param)
    return module


@pytest.mark.parametrize('style,dyscope', VARIANTS)
@pytest.mark.parametrize('scale', [2, 3])
@pytest.mark.parametrize('size', [(1, 1), (5, 7), (4, 9)])
def test_zero_offsets_equal_bilinear(style, dyscope, scale, size):
    groups = 4 if scale == 2 else 2
    channels = 72  # divisible by groups and by scale**2 for 'pl'
    module = zeroed(DySample(channels, scale=scale, style=style, groups=groups, dyscope=dyscope)).double()
    x = torch.randn(2, channels, *size, dtype=torch.float64)
    expected = F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=False)
    torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize('style,groups,dyscope,params', [
    ('lp', 4, False, 8_224), ('lp', 4, True, 16_416), ('pl', 4, False, 520),
    ('pl', 4, True, 1_032), ('pl', 8, False, 1_040), ('pl', 8, True, 2_064),
])
def test_parameter_counts_at_256_channels(style, groups, dyscope, params):
    assert count_parameters(DySample(256, 2, style, groups, dyscope)) == params


def test_parameter_counts_other_widths_and_scope_bias():
    assert count_parameters(DySample(64)) == 2_080
    assert count_parameters(DySample(512)) == 16_416
    assert count_parameters(DySample(512, style='pl', groups=8, dyscope=True)) == 4_112
    # The mmdet/mmseg integration copies give `scope` a bias: 16,448 at C=256.
    assert count_parameters(DySample(256, dyscope=True, scope_bias=True)) == 16_448


@pytest.mark.parametrize('name', ['dysample_lp_s2', 'dysample_lp_s3', 'dysample_lp_dyscope_s2',
                                  'dysample_pl_s2', 'dysample_pl_dyscope_s2'])
def test_reproduces_official_module(name):
    fixture = load_official(name)
    check_official(DySample(**fixture['init_args']), fixture)


def test_init_pos_layout():
    pos = DySample(16, scale=2, groups=4).init_pos.view(2, 4, 2, 2)
    torch.testing.assert_close(pos[0], torch.tensor([[-.25, .25], [-.25, .25]]).expand(4, 2, 2))  # x: column
    torch.testing.assert_close(pos[1], torch.tensor([[-.25, -.25], [.25, .25]]).expand(4, 2, 2))  # y: row


@pytest.mark.parametrize('style', ['lp', 'pl'])
def test_offset_channel_moves_only_its_subpixel_and_group(style):
    """Spec test 3: bias of offset channel xy*G*s^2 + g*s^2 + i*s + j only changes pixels (i, j) of group g."""
    scale, groups, channels = 2, 4, 32
    module = zeroed(DySample(channels, scale=scale, style=style, groups=groups)).double()
    x = torch.randn(1, channels, 5, 6, dtype=torch.float64)
    base = module(x)
    g, i, j = 2, 1, 0
    with torch.no_grad():
        if style == 'lp':
            module.offset.bias[0 * groups * scale**2 + g * scale**2 + i * scale + j] = 1.3
        else:  # 'pl' predicts at high resolution: channel xy*G + g, read at sub-pixel (i, j) by the unshuffle
            module.offset.bias[0 * groups + g] = 1.3
    changed = (module(x) - base).abs() > 0
    per_group = channels // groups
    if style == 'lp':
        expected = torch.zeros_like(changed)
        expected[:, g * per_group:(g + 1) * per_group, i::scale, j::scale] = True
        # Border clamping may leave a pixel unchanged; nothing outside (i, j) of group g may change.
        assert not (changed & ~expected).any() and changed.any()
    else:
        expected = torch.zeros_like(changed)
        expected[:, g * per_group:(g + 1) * per_group] = True
        assert not (changed & ~expected).any() and changed.any()


def test_scale_factor_alias():
    assert DySample(16, scale_factor=3).scale == 3
    assert DySample(16, scale=3, scale_factor=3).scale == 3
    with pytest.raises(ValueError, match='disagree'):
        DySample(16, scale=3, scale_factor=4)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_samples_in_float32(dtype):
    module = DySample(16, dyscope=True)
    with torch.no_grad():
        module.offset.weight.normal_(0, 0.3)
        module.scope.weight.normal_(0, 0.3)
    x = torch.randn(2, 16, 64, 96)
    out = module.to(dtype)(x.to(dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()
    expected = module.float()(x.to(dtype).float())
    # Only the offset convs and the final rounding run in half precision: the coordinates do not.
    torch.testing.assert_close(out.float(), expected, rtol=0.02, atol=0.05)


@pytest.mark.parametrize('style,dyscope', VARIANTS)
def test_empty_batch_forward_and_backward(style, dyscope):
    x = torch.randn(0, 16, 5, 7, requires_grad=True)
    out = DySample(16, style=style, dyscope=dyscope)(x)
    assert out.shape == (0, 16, 10, 14)
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=16, groups=3), 'groups=3 must divide in_channels=16'),
    (dict(in_channels=18, style='pl', groups=2), 'in_channels divisible by scale\\*\\*2=4'),
    (dict(in_channels=16, style='xy'), "style must be 'lp' or 'pl'"),
    (dict(in_channels=16, scale=1.5), 'scale must be an integer'),
    (dict(in_channels=0), 'in_channels must be an integer >= 1'),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DySample(**kwargs)


@pytest.mark.parametrize('x,match', [
    (torch.zeros(16, 5, 7), 'x must be 4-D'),
    (torch.zeros(1, 8, 5, 7), r'must have shape \(N, 16, H, W\)'),
    (torch.zeros(1, 16, 0, 7), 'non-empty spatial size'),
])
def test_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        DySample(16)(x)
