"""Input validation sweep (issue 8) and the NaN/Inf policy of docs/input_validation.md.

Every public entry point (the nine upsamplers through ``build_upsampler`` and their constructors, the ops of
``upsample_plugin.ops`` on both backends, ``build_upsampler`` itself, the mm necks and heads) rejects bad input with
a ``ValueError`` raised by the plugin's own code, whose message names the argument and the expected shape or value;
valid edge inputs (empty batch, 1x1 maps, empty maps for the ops) work, with gradients. Non-finite values propagate
to the outputs they feed (never silently turned into finite numbers), and ``upsample_plugin.check_finite`` turns
them into a ``ValueError`` naming the argument.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import upsample_plugin
from upsample_plugin import (FADE, FRFU, LDA_AQU, SAPA, CARAFEPack, DDFUpPack, DLUPack, DySample, FADELite,
                             FreqFusion, SAPADeform, UnknownUpsamplerError, build_upsampler, ops)
from upsample_plugin.ops import _library
from upsample_plugin.ops._checks import CHECK_FINITE_ENV

NAN, INF = float('nan'), float('inf')
C = 32  # SAPA's default GroupNorm(32, .) needs a multiple of 32; every other upsampler takes it too
H, W = 3, 4

#: type name -> class name (as the messages print it); all built with build_upsampler(dict(type=...), C, 2).
UPSAMPLERS = {'carafe': 'CARAFEPack', 'dysample': 'DySample', 'dlu': 'DLUPack', 'ddf_up': 'DDFUpPack',
              'lda_aqu': 'LDA_AQU', 'fade': 'FADE', 'fade_lite': 'FADELite', 'sapa': 'SAPA',
              'sapadeform': 'SAPADeform', 'freqfusion': 'FreqFusion', 'frfu': 'FRFU'}
GUIDED = ('fade', 'fade_lite', 'sapa', 'sapadeform', 'freqfusion')
#: Upsamplers whose output depends on statistics of the whole map, so one NaN poisons every output pixel.
GLOBAL_STATISTICS = {
    'ddf_up': 'the channel branches average-pool x over the whole map (spec/ddf.md)',
    'sapa': 'GroupNorm(32) (norm=True, the default) normalises x and the guide over the whole map',
}
COMPILED_BACKENDS = ['compiled', 'reference']


def raise_site(excinfo) -> str:
    """The file whose code raised: a clean error comes from the plugin, not from deep inside torch."""
    return str(excinfo.traceback[-1].path)


def assert_plugin_error(excinfo) -> None:
    assert '/upsample_plugin/' in raise_site(excinfo), raise_site(excinfo)


@functools.lru_cache(maxsize=None)
def upsampler(name: str) -> torch.nn.Module:
    """One module per type, seeded; tests only call it (no training, no dtype/device changes)."""
    torch.manual_seed(0)
    return build_upsampler(dict(type=name), C, 2)


def call(name: str, x, guide=None, **kwargs):
    module = upsampler(name)
    return module(x, guide, **kwargs) if name in GUIDED else module(x, **kwargs)


def guide_for(x: torch.Tensor) -> torch.Tensor:
    return torch.randn(x.shape[0], C, 2 * x.shape[2], 2 * x.shape[3], dtype=x.dtype, device=x.device)


def compiled_backends():
    """Both backends where the compiled ops are built, else only the reference (with the reason)."""
    return [pytest.param(b, marks=pytest.mark.skipif(b == 'compiled' and not _library.compiled_available(),
                                                     reason='upsample_plugin._C is not built here'))
            for b in COMPILED_BACKENDS]


# ---------------------------------------------------------------------------------------------------- upsamplers
# (id, x factory, guide factory or 'good', message regex); {cls} is the class name, every shape is C = 32.
X_CASES = [
    ('x-3d', lambda: torch.randn(C, H, W), r'x must be 4-D \(N, C, H, W\), got shape \(32, 3, 4\)'),
    ('x-5d', lambda: torch.randn(1, C, H, W, 1), r'x must be 4-D \(N, C, H, W\), got shape \(1, 32, 3, 4, 1\)'),
    ('x-numpy', lambda: np.zeros((1, C, H, W), np.float32),
     r'x must be a torch\.Tensor of shape \(N, C, H, W\), got ndarray'),
    ('x-zero-height', lambda: torch.randn(1, C, 0, W),
     r'x must have a non-empty spatial size: shape \(N, 32, H, W\) with H, W >= 1, got \(1, 32, 0, 4\)'),
    ('x-zero-width', lambda: torch.randn(2, C, H, 0),
     r'x must have a non-empty spatial size: shape \(N, 32, H, W\) with H, W >= 1, got \(2, 32, 3, 0\)'),
    ('x-wrong-channels', lambda: torch.randn(1, C + 1, H, W),
     r'{cls} was built for 32 channels; x must have shape \(N, 32, H, W\), got \(1, 33, 3, 4\)'),
    ('x-int64', lambda: torch.ones(1, C, H, W, dtype=torch.int64),
     r'x must be a floating-point tensor \(.*\) of shape \(N, C, H, W\), got dtype torch\.int64'),
    ('x-bool', lambda: torch.ones(1, C, H, W, dtype=torch.bool),
     r'x must be a floating-point tensor \(.*\) of shape \(N, C, H, W\), got dtype torch\.bool'),
    ('x-float64-vs-float32-weights', lambda: torch.randn(1, C, H, W, dtype=torch.float64),
     r'x has dtype torch\.float64 but the parameters of {cls} have torch\.float32'),
    ('x-on-meta-vs-cpu-weights', lambda: torch.randn(1, C, H, W, device='meta'),
     r'x is on meta but the parameters of {cls} are on cpu'),
]
GUIDE_CASES = [
    ('guide-missing', lambda x: None,
     r'{cls} is a guided upsampler: call it as forward\(x, guide\) with guide the high-resolution '
     r'\(N, 32, 2\*H, 2\*W\) map'),
    ('guide-3d', lambda x: torch.randn(C, 2 * H, 2 * W), r'guide must be 4-D \(N, C, H, W\), got shape \(32, 6, 8\)'),
    ('guide-wrong-size', lambda x: torch.randn(1, C, 2 * H, 2 * W + 1),
     r'{cls}: guide must have shape \(N, 32, 2\*H, 2\*W\) = \(1, 32, 6, 8\) for x of shape \(1, 32, 3, 4\), '
     r'got \(1, 32, 6, 9\)'),
    ('guide-low-resolution', lambda x: torch.randn(1, C, H, W),
     r'guide must have shape \(N, 32, 2\*H, 2\*W\) = \(1, 32, 6, 8\) .* got \(1, 32, 3, 4\)'),
    ('guide-wrong-channels', lambda x: torch.randn(1, C // 2, 2 * H, 2 * W),
     r'guide must have shape \(N, 32, 2\*H, 2\*W\) = \(1, 32, 6, 8\) .* got \(1, 16, 6, 8\)'),
    ('guide-wrong-batch', lambda x: torch.randn(2, C, 2 * H, 2 * W),
     r'guide must have shape \(N, 32, 2\*H, 2\*W\) = \(1, 32, 6, 8\) .* got \(2, 32, 6, 8\)'),
    ('guide-int', lambda x: torch.ones(1, C, 2 * H, 2 * W, dtype=torch.int32),
     r'guide must be a floating-point tensor .* got dtype torch\.int32'),
    ('guide-float64-vs-x-float32', lambda x: torch.randn(1, C, 2 * H, 2 * W, dtype=torch.float64),
     r'guide has dtype torch\.float64 but x has torch\.float32; cast one to the other'),
    ('guide-on-meta-vs-x-on-cpu', lambda x: torch.randn(1, C, 2 * H, 2 * W, device='meta'),
     r'guide is on meta but x is on cpu; put both on one device'),
]


@pytest.mark.parametrize('name', UPSAMPLERS)
@pytest.mark.parametrize('case_id,make_x,match', X_CASES, ids=[c[0] for c in X_CASES])
def test_upsampler_rejects_bad_x(name, case_id, make_x, match):
    x = make_x()
    guide = guide_for(torch.randn(1, C, H, W)) if name in GUIDED else None
    with pytest.raises(ValueError, match=match.format(cls=UPSAMPLERS[name])) as excinfo:
        call(name, x, guide)
    assert_plugin_error(excinfo)


@pytest.mark.parametrize('name', GUIDED)
@pytest.mark.parametrize('case_id,make_guide,match', GUIDE_CASES, ids=[c[0] for c in GUIDE_CASES])
def test_guided_upsampler_rejects_bad_guide(name, case_id, make_guide, match):
    x = torch.randn(1, C, H, W)
    with pytest.raises(ValueError, match=match.format(cls=UPSAMPLERS[name])) as excinfo:
        call(name, x, make_guide(x))
    assert_plugin_error(excinfo)


DDF_JOINT_CASES = [
    ('joint-wrong-channels', {}, lambda: torch.randn(1, C + 1, H, W),
     r'DDFUpPack: joint_x must have shape \(N, 32, H, W\) with N = 1 as x \(1, 32, 3, 4\), got \(1, 33, 3, 4\)'),
    ('joint-wrong-size', {}, lambda: torch.randn(1, C, H + 1, W),
     r'joint_x must have the low-resolution size of x, \(N, 32, 3, 4\), got \(1, 32, 4, 4\)'),
    ('joint-3d', {}, lambda: torch.randn(C, H, W), r'joint_x must be 4-D \(N, C, H, W\), got shape \(32, 3, 4\)'),
    ('joint-float64', {}, lambda: torch.randn(1, C, H, W, dtype=torch.float64),
     r'joint_x has dtype torch\.float64 but x has torch\.float32'),
    ('joint-on-meta', {}, lambda: torch.randn(1, C, H, W, device='meta'), r'joint_x is on meta but x is on cpu'),
    ('joint-required', dict(joint_channels=16), lambda: None,
     r'DDFUpPack was built with joint_channels=16: call it as forward\(x, joint_x=\.\.\.\) with joint_x of shape '
     r'\(N, 16, H, W\)'),
    ('joint-empty-resized', dict(joint_resize='bilinear'), lambda: torch.randn(1, C, 0, W),
     r'joint_x must have a non-empty spatial size, got \(1, 32, 0, 4\)'),
]


@pytest.mark.parametrize('case_id,kwargs,make_joint,match', DDF_JOINT_CASES, ids=[c[0] for c in DDF_JOINT_CASES])
def test_ddf_up_rejects_bad_joint_x(case_id, kwargs, make_joint, match):
    module = DDFUpPack(C, **kwargs)
    with pytest.raises(ValueError, match=match) as excinfo:
        module(torch.randn(1, C, H, W), joint_x=make_joint())
    assert_plugin_error(excinfo)


@pytest.mark.parametrize('name', UPSAMPLERS)
def test_empty_batch_gives_empty_output_with_gradients(name):
    x = torch.randn(0, C, H, W, requires_grad=True)
    guide = torch.randn(0, C, 2 * H, 2 * W, requires_grad=True) if name in GUIDED else None
    out = call(name, x, guide)
    assert out.shape == (0, C, 2 * H, 2 * W)
    inputs = [x] + ([guide] if guide is not None else [])
    params = [p for p in upsampler(name).parameters() if p.requires_grad]
    grads = torch.autograd.grad(out.sum(), inputs + params, allow_unused=True)
    for tensor, grad in zip(inputs, grads):
        assert grad is not None and grad.shape == tensor.shape
    # Nothing flows from an empty batch: every parameter gradient that exists is exactly zero.
    assert all(g is None or (g == 0).all() for g in grads[len(inputs):])


@pytest.mark.parametrize('name', UPSAMPLERS)
def test_one_pixel_map(name):
    x = torch.randn(2, C, 1, 1, requires_grad=True)
    guide = torch.randn(2, C, 2, 2, requires_grad=True) if name in GUIDED else None
    out = call(name, x, guide)
    assert out.shape == (2, C, 2, 2) and torch.isfinite(out).all()
    grad = torch.autograd.grad(out.square().sum(), x)[0]
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # Samples are independent: the second one alone gives the same output.
    alone = call(name, x[1:], None if guide is None else guide[1:])
    torch.testing.assert_close(alone, out[1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', UPSAMPLERS)
def test_autocast_input_of_another_dtype_is_accepted(name):
    """The dtype check against the weights only applies outside autocast, which casts for the convs."""
    x = torch.randn(1, C, H, W).bfloat16()
    guide = guide_for(x) if name in GUIDED else None
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = call(name, x, guide)
    assert out.dtype == torch.bfloat16 and out.shape == (1, C, 2 * H, 2 * W) and torch.isfinite(out).all()


# ----------------------------------------------------------------------------------------------- constructors
CONSTRUCTOR_CASES = [
    (CARAFEPack, dict(channels=C, scale_factor=0), r'scale_factor must be an integer >= 1, got 0'),
    (CARAFEPack, dict(channels=C, scale_factor=-2), r'scale_factor must be an integer >= 1, got -2'),
    (CARAFEPack, dict(channels=C, scale_factor=2, up_kernel=4), r'up_kernel must be odd .* got 4'),
    (CARAFEPack, dict(channels=C, scale_factor=2, up_group=3), r'up_group=3 must divide channels=32'),
    (CARAFEPack, dict(channels=0, scale_factor=2), r'channels must be an integer >= 1, got 0'),
    (DySample, dict(in_channels=C, scale=0), r'scale must be an integer >= 1, got 0'),
    (DySample, dict(in_channels=C, scale=-1), r'scale must be an integer >= 1, got -1'),
    (DySample, dict(in_channels=C, groups=3), r'groups=3 must divide in_channels=32'),
    (DySample, dict(in_channels=C, style='lq'), r"style must be 'lp' or 'pl', got 'lq'"),
    (DySample, dict(in_channels=12, scale=4, style='pl', groups=1),
     r"style='pl' needs in_channels divisible by scale\*\*2=16, got in_channels=12"),
    (DySample, dict(in_channels=C, scale=3, scale_factor=4), r'scale=3 and scale_factor=4 disagree'),
    (DLUPack, dict(channels=C, scale_factor=0), r'scale_factor must be an integer >= 1, got 0'),
    (DLUPack, dict(channels=C, scale_factor=2, up_kernel=6), r'up_kernel must be odd .* got 6'),
    (DLUPack, dict(channels=C, scale_factor=2, up_group=5), r'up_group=5 must divide channels=32'),
    (DDFUpPack, dict(in_channels=C, scale_factor=0), r'scale_factor must be an integer >= 1, got 0'),
    (DDFUpPack, dict(in_channels=C, kernel_size=4), r'kernel_size must be odd .* got 4'),
    (DDFUpPack, dict(in_channels=C, kernel_size=1), r'kernel_size must be >= 3: FilterNorm .* got 1'),
    (DDFUpPack, dict(in_channels=C, head=3), r'head=3 must divide in_channels=32'),
    (DDFUpPack, dict(in_channels=C, kernel_combine='sum'), r"kernel_combine must be 'mul' or 'add', got 'sum'"),
    (DDFUpPack, dict(in_channels=C, dw_kernel_size=4), r'dw_kernel_size must be odd .* got 4'),
    (LDA_AQU, dict(in_channels=C, scale_factor=0), r'scale_factor must be an integer ratio >= 1 .* got 0'),
    (LDA_AQU, dict(in_channels=C, scale_factor=1.5), r'scale_factor must be an integer ratio >= 1 .* got 1\.5'),
    (LDA_AQU, dict(in_channels=C, k_u=4), r'k_u must be odd .* got 4'),
    (LDA_AQU, dict(in_channels=C, k_e=2), r'k_e must be odd .* got 2'),
    (LDA_AQU, dict(in_channels=C, n_groups=3), r'n_groups=3 must divide hidden_dim = in_channels // '
                                                r'reduction_factor = 8'),
    (LDA_AQU, dict(in_channels=C, nh=3), r'nh=3 must divide hidden_dim'),
    (FADE, dict(in_channels_en=C, scale=4), r'FADE only supports scale=2 .* got scale=4'),
    (FADE, dict(in_channels_en=C, scale=1), r'FADE only supports scale=2 .* got scale=1'),
    (FADE, dict(in_channels_en=C, scale=-2), r'scale must be an integer >= 1, got -2'),
    (FADE, dict(in_channels_en=C, up_kernel_size=4), r'up_kernel_size must be odd .* got 4'),
    (FADE, dict(in_channels_en=C, up_group=3), r'up_group=3 must divide in_channels_de=32'),
    (FADELite, dict(in_channels_en=C, scale=3), r'FADELite only supports scale=2 .* got scale=3'),
    (FADELite, dict(in_channels_en=C, up_kernel_size=2), r'up_kernel_size must be odd .* got 2'),
    (SAPA, dict(dim_y=C, up_factor=0), r'up_factor must be an integer >= 1, got 0'),
    (SAPA, dict(dim_y=C, up_kernel_size=4), r'up_kernel_size must be odd .* got 4'),
    (SAPA, dict(dim_y=48), r'norm=True uses GroupNorm\(32, dim_y\): dim_y must be divisible by 32, got dim_y=48'),
    (SAPADeform, dict(dim_y=C, up_factor=-1), r'up_factor must be an integer >= 1, got -1'),
    (SAPADeform, dict(dim_y=C, groups=3), r'groups=3 must divide dim_x=32'),
    (SAPADeform, dict(dim_y=C, num_point=0), r'num_point must be an integer >= 1, got 0'),
    (FreqFusion, dict(hr_channels=C, lr_channels=C, scale_factor=2), r'scale_factor must be 1: .* Got scale_factor=2'),
    (FreqFusion, dict(hr_channels=C, lr_channels=C, up_group=3), r'up_group=3 must divide hr_channels=32'),
    (FreqFusion, dict(hr_channels=C, lr_channels=C, lowpass_kernel=4), r'lowpass_kernel must be odd .* got 4'),
    (FreqFusion, dict(hr_channels=C, lr_channels=C, use_low_pass=False), r'use_low_pass must be True'),
    (FreqFusion, dict(hr_channels=C, lr_channels=C, use_high_pass=False), r'comp_feat_upsample=True needs '
                                                                          r'use_high_pass=True'),
    (FreqFusion, dict(hr_channels=C, lr_channels=C, feature_resample=True, compressed_channels=60),
     r'compressed_channels must be >= 8 and divisible by compressed_channels // 8, got 60'),
    (FreqFusion, dict(hr_channels=C, lr_channels=C, feature_resample=True, feature_resample_group=5),
     r'feature_resample_group=5 must divide lr_channels=32'),
    (FRFU, dict(in_channels=C, groups=3), r'groups=3 must divide in_channels=32'),
    (FRFU, dict(in_channels=C, sample_k=2), r'sample_k must be odd .* got 2'),
    (FRFU, dict(in_channels=C, scale_factor=0), r'scale_factor must be an integer >= 1, got 0'),
]


@pytest.mark.parametrize('cls,kwargs,match', CONSTRUCTOR_CASES,
                         ids=[f'{c.__name__}-{"-".join(f"{k}={v}" for k, v in kw.items())}'
                              for c, kw, _ in CONSTRUCTOR_CASES])
def test_constructor_rejects_out_of_range_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match) as excinfo:
        cls(**kwargs)
    assert_plugin_error(excinfo)


@pytest.mark.parametrize('name', [n for n in UPSAMPLERS if n not in ('fade', 'fade_lite', 'freqfusion')])
def test_scale_one_is_valid_where_defined(name):
    """x1 is a valid ratio for every upsampler but FADE and FreqFusion (x2 only, spec/fade.md,
    spec/freqfusion.md): same-size output."""
    torch.manual_seed(0)
    module = build_upsampler(dict(type=name), C, 1)
    x = torch.randn(1, C, H, W)
    out = module(x, torch.randn(1, C, H, W)) if name in GUIDED else module(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------- build_upsampler
BUILDER_CASES = [
    ('type-int', dict(type=3), C, 2, ValueError, r'upsample_cfg\["type"\] must be a registered name \(str\) or a '
                                                r'class, got 3'),
    ('type-none', dict(type=None), C, 2, ValueError, r'upsample_cfg\["type"\] must be a registered name .* got None'),
    ('type-unknown', dict(type='bicubic_plus'), C, 2, ValueError,
     r"upsample_cfg type 'bicubic_plus' is not a registered upsampler; known: \[.*'dysample'.*\]"),
    ('cfg-not-dict', 'dysample', C, 2, ValueError, r'upsample_cfg must be a dict with a "type" key'),
    ('cfg-no-type', dict(scale=2), C, 2, ValueError, r'upsample_cfg must be a dict with a "type" key'),
    ('scale-zero', dict(type='dysample'), C, 0, ValueError, r'scale_factor must be an integer >= 1, got 0'),
    ('scale-negative', dict(type='carafe'), C, -2, ValueError, r'scale_factor must be an integer >= 1, got -2'),
    ('scale-fraction', dict(type='carafe'), C, 2.5, ValueError, r'scale_factor must be an integer >= 1, got 2\.5'),
    ('scale-bool', dict(type='dlu'), C, True, ValueError, r'scale_factor must be an integer >= 1, got True'),
    ('scale-zero-nearest', dict(type='nearest'), C, 0, ValueError, r'scale_factor must be an integer >= 1, got 0'),
    ('scale-zero-deconv', dict(type='deconv'), C, 0, ValueError, r'scale_factor must be an integer >= 1, got 0'),
    ('scale-zero-pixel-shuffle', dict(type='pixel_shuffle'), C, 0, ValueError,
     r'scale_factor must be an integer >= 1, got 0'),
    ('channels-missing', dict(type='carafe'), None, 2, ValueError, r'in_channels must be an integer >= 1, got None'),
    ('channels-zero', dict(type='deconv'), 0, 2, ValueError, r'in_channels must be an integer >= 1, got 0'),
    ('channels-float', dict(type='sapa'), 32.0, 2, ValueError, r'in_channels must be an integer >= 1, got 32\.0'),
]


@pytest.mark.parametrize('case_id,cfg,channels,scale,error,match', BUILDER_CASES, ids=[c[0] for c in BUILDER_CASES])
def test_build_upsampler_rejects_bad_arguments(case_id, cfg, channels, scale, error, match):
    with pytest.raises(error, match=match) as excinfo:
        build_upsampler(cfg, channels, scale)
    assert_plugin_error(excinfo)


def test_unknown_type_is_both_key_error_and_value_error():
    """mmengine's registries raise KeyError for unknown names; the plugin's rule is ValueError: both catch it."""
    with pytest.raises(UnknownUpsamplerError) as excinfo:
        build_upsampler(dict(type='no_such_upsampler'), C, 2)
    assert isinstance(excinfo.value, KeyError) and isinstance(excinfo.value, ValueError)
    assert str(excinfo.value).startswith("upsample_cfg type 'no_such_upsampler'")  # not KeyError's quoted repr


# ------------------------------------------------------------------------------------------------------------ ops
def carafe_args(n=1, c=8, h=3, w=4, k=3, g=2, s=2, dtype=torch.float64):
    return dict(features=torch.randn(n, c, h, w, dtype=dtype), masks=torch.randn(n, k * k * g, h * s, w * s,
                dtype=dtype), kernel_size=k, group_size=g, scale_factor=s)


def ddf_args(n=1, c=4, h=5, w=6, k=3, stride=1, dtype=torch.float64):
    return dict(features=torch.randn(n, c, h, w, dtype=dtype), channel_filter=torch.randn(n, c, k, k, dtype=dtype),
                spatial_filter=torch.randn(n, k * k, h // stride, w // stride, dtype=dtype), kernel_size=k,
                dilation=1, stride=stride, combine='mul')


def dlu_args(n=1, c=4, h=3, w=4, k=3, g=2, s=2, dtype=torch.float64):
    return dict(features=torch.randn(n, c, h, w, dtype=dtype),
                kernel_space=torch.randn(n, k * k * g, h, w, dtype=dtype).softmax(1),
                offsets=torch.randn(n, g * 2 * s * s, h, w, dtype=dtype), kernel_size=k, group_size=g, scale_factor=s)


def sapa_args(n=1, c=4, h=3, w=4, k=3, s=2, dtype=torch.float64):
    return dict(query=torch.randn(n, c, h * s, w * s, dtype=dtype), key=torch.randn(n, c, h, w, dtype=dtype),
                kernel_size=k, scale_factor=s)


def deform_args(n=1, c=4, h=3, w=4, p=2, s=2, g=2, dtype=torch.float64):
    return dict(query=torch.randn(n, c, h * s, w * s, dtype=dtype), key=torch.randn(n, c, h, w, dtype=dtype),
                offset=torch.randn(n, g * p * 2, h * s, w * s, dtype=dtype), num_point=p, scale_factor=s, groups=g)


def aggregation_args(n=1, c=4, h=3, w=4, p=2, s=2, g=2, dtype=torch.float64):
    return dict(attn=torch.randn(n, g, p, h * s, w * s, dtype=dtype), value=torch.randn(n, c, h, w, dtype=dtype),
                offset=torch.randn(n, g * p * 2, h * s, w * s, dtype=dtype), num_point=p, scale_factor=s, groups=g)


#: op name -> (function, argument factory, takes backend=)
OPS = {
    'carafe': (ops.carafe, carafe_args, True),
    'ddf': (ops.ddf, ddf_args, True),
    'dlu_reassemble': (ops.dlu_reassemble, dlu_args, True),
    'sapa_similarity': (ops.sapa_similarity, sapa_args, False),
    'sapa_deform_similarity': (ops.sapa_deform_similarity, deform_args, False),
    'sapa_deform_aggregation': (ops.sapa_deform_aggregation, aggregation_args, False),
}


def run_op(name, backend='reference', **changes):
    function, make_args, has_backend = OPS[name]
    args = dict(make_args(), **changes)
    return function(**args, **(dict(backend=backend) if has_backend else {}))


def f64(*shape):
    return torch.randn(*shape, dtype=torch.float64)


# (op, id, changed arguments, message regex); defaults above: carafe features (1, 8, 3, 4), k=3, G=2, s=2.
OP_CASES = [
    ('carafe', 'features-3d', dict(features=f64(8, 3, 4)),
     r'features must be 4-D \(N, C, H, W\), got shape \(8, 3, 4\)'),
    ('carafe', 'masks-5d', dict(masks=f64(1, 1, 18, 6, 8)),
     r'masks must be 4-D \(N, kernel_size\*\*2 \* group_size, H \* scale_factor, W \* scale_factor\), got shape '
     r'\(1, 1, 18, 6, 8\)'),
    ('carafe', 'features-int', dict(features=torch.ones(1, 8, 3, 4, dtype=torch.int64)),
     r'features must be a floating-point tensor .* got dtype torch\.int64'),
    ('carafe', 'masks-bool', dict(masks=torch.ones(1, 18, 6, 8, dtype=torch.bool)),
     r'masks must be a floating-point tensor .* got dtype torch\.bool'),
    ('carafe', 'masks-float32', dict(masks=torch.randn(1, 18, 6, 8)),
     r'masks has dtype torch\.float32 but features has torch\.float64; cast one to the other'),
    ('carafe', 'masks-meta', dict(masks=torch.randn(1, 18, 6, 8, device='meta', dtype=torch.float64)),
     r'masks is on meta but features is on cpu; put both on one device'),
    ('carafe', 'masks-wrong-size', dict(masks=f64(1, 18, 6, 7)),
     r'masks must have shape \(N, kernel_size\*\*2 \* group_size, H \* scale_factor, W \* scale_factor\) = '
     r'\(1, 18, 6, 8\) for features of shape \(1, 8, 3, 4\), got \(1, 18, 6, 7\)'),
    ('carafe', 'masks-wrong-channels', dict(masks=f64(1, 9, 6, 8)), r'masks must have shape .* = \(1, 18, 6, 8\)'),
    ('carafe', 'masks-low-resolution', dict(masks=f64(1, 18, 3, 4)), r'masks must have shape .* = \(1, 18, 6, 8\)'),
    ('carafe', 'kernel-even', dict(kernel_size=4, masks=f64(1, 32, 6, 8)), r'kernel_size must be odd .* got 4'),
    ('carafe', 'kernel-zero', dict(kernel_size=0), r'kernel_size must be an integer >= 1, got 0'),
    ('carafe', 'groups-not-dividing', dict(group_size=3, masks=f64(1, 27, 6, 8)),
     r'group_size=3 must divide the channels of features \(8\)'),
    ('carafe', 'scale-zero', dict(scale_factor=0), r'scale_factor must be an integer >= 1, got 0'),
    ('carafe', 'scale-negative', dict(scale_factor=-2), r'scale_factor must be an integer >= 1, got -2'),
    ('ddf', 'features-3d', dict(features=f64(4, 5, 6)), r'features must be 4-D \(N, C, H, W\), got shape \(4, 5, 6\)'),
    ('ddf', 'features-int', dict(features=torch.ones(1, 4, 5, 6, dtype=torch.int32)),
     r'features must be a floating-point tensor .* got dtype torch\.int32'),
    ('ddf', 'channel-filter-wrong-shape', dict(channel_filter=f64(1, 4, 3, 2)),
     r'channel_filter must have shape \(N, C, kernel_size, kernel_size\) = \(1, 4, 3, 3\) for features of shape '
     r'\(1, 4, 5, 6\), got \(1, 4, 3, 2\)'),
    ('ddf', 'channel-filter-5d', dict(channel_filter=f64(1, 4, 3, 3, 1)),
     r'channel_filter must be 4-D \(N, C, kernel_size, kernel_size\)'),
    ('ddf', 'spatial-filter-wrong-shape', dict(spatial_filter=f64(1, 9, 5, 5)),
     r'spatial_filter must have shape \(N, kernel_size\*\*2, H // stride, W // stride\) = \(1, 9, 5, 6\) for '
     r'features of shape \(1, 4, 5, 6\) and stride=1, got \(1, 9, 5, 5\)'),
    ('ddf', 'spatial-filter-float32', dict(spatial_filter=torch.randn(1, 9, 5, 6)),
     r'spatial_filter has dtype torch\.float32 but features has torch\.float64'),
    ('ddf', 'channel-filter-meta', dict(channel_filter=torch.randn(1, 4, 3, 3, dtype=torch.float64, device='meta')),
     r'channel_filter is on meta but features is on cpu'),
    ('ddf', 'kernel-even', dict(kernel_size=2), r'kernel_size must be odd .* got 2'),
    ('ddf', 'stride-zero', dict(stride=0), r'stride must be an integer >= 1, got 0'),
    ('ddf', 'dilation-negative', dict(dilation=-1), r'dilation must be an integer >= 1, got -1'),
    ('ddf', 'combine-unknown', dict(combine='sum'), r"combine must be 'mul' or 'add', got 'sum'"),
    ('dlu_reassemble', 'features-5d', dict(features=f64(1, 4, 3, 4, 1)), r'features must be 4-D \(N, C, H, W\)'),
    ('dlu_reassemble', 'kernel-space-wrong-shape', dict(kernel_space=f64(1, 9, 3, 4)),
     r'kernel_space must have shape \(N, kernel_size\*\*2 \* group_size, H, W\) = \(1, 18, 3, 4\) for features of '
     r'shape \(1, 4, 3, 4\), got \(1, 9, 3, 4\)'),
    ('dlu_reassemble', 'offsets-wrong-shape', dict(offsets=f64(1, 16, 6, 8)),
     r'offsets must have shape \(N, group_size \* 2 \* scale_factor\*\*2, H, W\) = \(1, 16, 3, 4\) for features of '
     r'shape \(1, 4, 3, 4\), got \(1, 16, 6, 8\)'),
    ('dlu_reassemble', 'offsets-int', dict(offsets=torch.zeros(1, 16, 3, 4, dtype=torch.int64)),
     r'offsets must be a floating-point tensor .* got dtype torch\.int64'),
    ('dlu_reassemble', 'kernel-space-float32', dict(kernel_space=torch.randn(1, 18, 3, 4)),
     r'kernel_space has dtype torch\.float32 but features has torch\.float64'),
    ('dlu_reassemble', 'offsets-meta', dict(offsets=torch.zeros(1, 16, 3, 4, dtype=torch.float64, device='meta')),
     r'offsets is on meta but features is on cpu'),
    ('dlu_reassemble', 'kernel-even', dict(kernel_size=2, kernel_space=f64(1, 8, 3, 4)),
     r'kernel_size must be odd .* got 2'),
    ('dlu_reassemble', 'groups-not-dividing', dict(group_size=3, kernel_space=f64(1, 27, 3, 4),
                                                  offsets=f64(1, 24, 3, 4)),
     r'group_size=3 must divide the channels of features \(4\)'),
    ('dlu_reassemble', 'scale-zero', dict(scale_factor=0), r'scale_factor must be an integer >= 1, got 0'),
    ('sapa_similarity', 'query-3d', dict(query=f64(4, 6, 8)),
     r'query must be 4-D \(N, C, H \* scale_factor, W \* scale_factor\), got shape \(4, 6, 8\)'),
    ('sapa_similarity', 'key-int', dict(key=torch.ones(1, 4, 3, 4, dtype=torch.int32)),
     r'key must be a floating-point tensor .* got dtype torch\.int32'),
    ('sapa_similarity', 'key-float32', dict(key=torch.randn(1, 4, 3, 4)),
     r'key has dtype torch\.float32 but query has torch\.float64'),
    ('sapa_similarity', 'key-meta', dict(key=torch.randn(1, 4, 3, 4, dtype=torch.float64, device='meta')),
     r'key is on meta but query is on cpu'),
    ('sapa_similarity', 'query-wrong-size', dict(query=f64(1, 4, 6, 7)),
     r'query must have shape \(N, C, H \* scale_factor, W \* scale_factor\) = \(1, 4, 6, 8\) for key of shape '
     r'\(1, 4, 3, 4\), got \(1, 4, 6, 7\)'),
    ('sapa_similarity', 'query-wrong-channels', dict(query=f64(1, 5, 6, 8)),
     r'query must have shape .* = \(1, 4, 6, 8\)'),
    ('sapa_similarity', 'kernel-even', dict(kernel_size=4), r'kernel_size must be odd .* got 4'),
    ('sapa_similarity', 'scale-zero', dict(scale_factor=0), r'scale_factor must be an integer >= 1, got 0'),
    ('sapa_deform_similarity', 'offset-wrong-shape', dict(offset=f64(1, 4, 6, 8)),
     r'offset must have shape \(N, groups \* num_point \* 2, H \* scale_factor, W \* scale_factor\) = '
     r'\(1, 8, 6, 8\), got \(1, 4, 6, 8\)'),
    ('sapa_deform_similarity', 'offset-meta', dict(offset=torch.randn(1, 8, 6, 8, dtype=torch.float64, device='meta')),
     r'offset is on meta but query is on cpu'),
    ('sapa_deform_similarity', 'groups-not-dividing', dict(groups=3, offset=f64(1, 12, 6, 8)),
     r'groups=3 must divide the channels of key and query \(4\)'),
    ('sapa_deform_similarity', 'points-zero', dict(num_point=0), r'num_point must be an integer >= 1, got 0'),
    ('sapa_deform_similarity', 'key-5d', dict(key=f64(1, 4, 3, 4, 1)), r'key must be 4-D \(N, C, H, W\)'),
    ('sapa_deform_aggregation', 'attn-4d', dict(attn=f64(1, 4, 6, 8)),
     r'attn must be a 5-D tensor \(N, groups, num_point, H \* scale_factor, W \* scale_factor\), got \(1, 4, 6, 8\)'),
    ('sapa_deform_aggregation', 'attn-wrong-shape', dict(attn=f64(1, 2, 3, 6, 8)),
     r'attn must have shape \(N, groups, num_point, H \* scale_factor, W \* scale_factor\) = \(1, 2, 2, 6, 8\) for '
     r'value of shape \(1, 4, 3, 4\), got \(1, 2, 3, 6, 8\)'),
    ('sapa_deform_aggregation', 'attn-float32', dict(attn=torch.randn(1, 2, 2, 6, 8)),
     r'attn has dtype torch\.float32 but value has torch\.float64'),
    ('sapa_deform_aggregation', 'offset-wrong-shape', dict(offset=f64(1, 8, 3, 4)),
     r'offset must have shape .* = \(1, 8, 6, 8\), got \(1, 8, 3, 4\)'),
    ('sapa_deform_aggregation', 'value-int', dict(value=torch.ones(1, 4, 3, 4, dtype=torch.int64)),
     r'value must be a floating-point tensor .* got dtype torch\.int64'),
]


def op_cases_with_backends():
    for op, case_id, changes, match in OP_CASES:
        backends = compiled_backends() if OPS[op][2] else [pytest.param(None)]
        for backend in backends:
            name = backend.values[0] or 'only'
            yield pytest.param(op, changes, match, backend.values[0], marks=backend.marks,
                               id=f'{op}-{case_id}-{name}')


@pytest.mark.parametrize('op,changes,match,backend', list(op_cases_with_backends()))
def test_op_rejects_bad_arguments(op, changes, match, backend):
    with pytest.raises(ValueError, match=match) as excinfo:
        run_op(op, backend, **changes)
    assert_plugin_error(excinfo)


@pytest.mark.parametrize('op', ['carafe', 'ddf', 'dlu_reassemble'])
def test_op_rejects_unknown_backend(op):
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'compiled'.*\), got 'cuda'"):
        run_op(op, 'cuda')


@pytest.mark.parametrize('backend', compiled_backends())
@pytest.mark.parametrize('op,changes,out_shape', [
    ('carafe', dict(features=f64(1, 8, 0, 4), masks=f64(1, 18, 0, 8)), (1, 8, 0, 8)),
    ('carafe', dict(features=f64(0, 8, 3, 4), masks=f64(0, 18, 6, 8)), (0, 8, 6, 8)),
    ('ddf', dict(features=f64(1, 4, 5, 0), spatial_filter=f64(1, 9, 5, 0)), (1, 4, 5, 0)),
    ('ddf', dict(features=f64(0, 4, 5, 6), channel_filter=f64(0, 4, 3, 3), spatial_filter=f64(0, 9, 5, 6)),
     (0, 4, 5, 6)),
    ('dlu_reassemble', dict(features=f64(1, 4, 0, 4), kernel_space=f64(1, 18, 0, 4), offsets=f64(1, 16, 0, 4)),
     (1, 4, 0, 8)),
    ('dlu_reassemble', dict(features=f64(0, 4, 3, 4), kernel_space=f64(0, 18, 3, 4), offsets=f64(0, 16, 3, 4)),
     (0, 4, 6, 8)),
])
def test_op_empty_inputs_give_empty_outputs_with_gradients(op, changes, out_shape, backend):
    """An op's empty map is a valid edge case (unlike an upsampler's, whose convs and norms need pixels): the
    output is the empty map of the documented shape and every tensor input gets a gradient of its own shape."""
    tensors = {k: v.requires_grad_() for k, v in changes.items()}
    out = run_op(op, backend, **tensors)
    assert out.shape == out_shape
    grads = torch.autograd.grad(out.sum(), list(tensors.values()))
    assert all(g.shape == t.shape for g, t in zip(grads, tensors.values()))


@pytest.mark.parametrize('op,changes,out_shape', [
    ('sapa_similarity', dict(query=f64(1, 4, 0, 8), key=f64(1, 4, 0, 4)), (1, 9, 0, 8)),
    ('sapa_deform_similarity', dict(query=f64(0, 4, 6, 8), key=f64(0, 4, 3, 4), offset=f64(0, 8, 6, 8)),
     (0, 2, 2, 6, 8)),
    ('sapa_deform_aggregation', dict(attn=f64(0, 2, 2, 6, 8), value=f64(0, 4, 3, 4), offset=f64(0, 8, 6, 8)),
     (0, 4, 6, 8)),
])
def test_sapa_op_empty_inputs_give_empty_outputs_with_gradients(op, changes, out_shape):
    tensors = {k: v.requires_grad_() for k, v in changes.items()}
    out = run_op(op, **tensors)
    assert out.shape == out_shape
    grads = torch.autograd.grad(out.sum(), list(tensors.values()))
    assert all(g.shape == t.shape for g, t in zip(grads, tensors.values()))


# ------------------------------------------------------------------------------------------- mm necks and heads
def small_fpn():
    from upsample_plugin.models import UpsampleFPN
    return UpsampleFPN(in_channels=[8, 16, 32], out_channels=8, num_outs=3, upsample_cfg=dict(type='dysample',
                                                                                              groups=2))


def pyramid(channels=(8, 16, 32), n=1, sizes=((8, 8), (4, 4), (2, 2)), **kwargs):
    return [torch.randn(n, c, *hw, **kwargs) for c, hw in zip(channels, sizes)]


FPN_CASES = [
    ('too-few-levels', lambda: pyramid()[:2],
     r'UpsampleFPN was built for 3 input levels \(in_channels=\[8, 16, 32\]\): inputs must be '
     r'\[\(N, 8, H0, W0\), \(N, 16, H1, W1\), \(N, 32, H2, W2\)\], got 2 maps'),
    ('too-many-levels', lambda: pyramid() + [torch.randn(1, 32, 1, 1)], r'built for 3 input levels .* got 4 maps'),
    ('not-a-list', lambda: torch.randn(1, 8, 8, 8), r'UpsampleFPN: inputs must be a list or tuple of 3 maps .* got '
                                                    r'Tensor'),
    ('mismatched-width', lambda: pyramid(channels=(8, 24, 32)),
     r'UpsampleFPN: inputs\[1\] must have shape \(N, 16, H1, W1\) with in_channels\[1\]=16 and N=1 as inputs\[0\], '
     r'got \(1, 24, 4, 4\)'),
    ('mismatched-batch', lambda: pyramid()[:2] + [torch.randn(2, 32, 2, 2)],
     r'inputs\[2\] must have shape \(N, 32, H2, W2\) .* got \(2, 32, 2, 2\)'),
    ('level-3d', lambda: [torch.randn(8, 8, 8)] + pyramid()[1:], r'inputs\[0\] must be 4-D \(N, 8, H0, W0\)'),
    ('level-int', lambda: pyramid()[:2] + [torch.ones(1, 32, 2, 2, dtype=torch.int64)],
     r'inputs\[2\] must be a floating-point tensor .* got dtype torch\.int64'),
    ('level-float64', lambda: pyramid()[:2] + [torch.randn(1, 32, 2, 2, dtype=torch.float64)],
     r'inputs\[2\] is a torch\.float64 tensor on cpu but inputs\[0\] is a torch\.float32 tensor on cpu'),
    ('level-meta', lambda: pyramid()[:2] + [torch.randn(1, 32, 2, 2, device='meta')],
     r'inputs\[2\] is a torch\.float32 tensor on meta but inputs\[0\] is a torch\.float32 tensor on cpu'),
]


@pytest.mark.parametrize('case_id,make_inputs,match', FPN_CASES, ids=[c[0] for c in FPN_CASES])
def test_upsample_fpn_rejects_bad_inputs(case_id, make_inputs, match):
    pytest.importorskip('mmdet', reason='UpsampleFPN is the mmdet integration')
    with pytest.raises(ValueError, match=match) as excinfo:
        small_fpn()(make_inputs())
    assert_plugin_error(excinfo)


def test_upsample_fpn_accepts_a_good_pyramid():
    pytest.importorskip('mmdet', reason='UpsampleFPN is the mmdet integration')
    outs = small_fpn()(tuple(pyramid()))
    assert [tuple(o.shape) for o in outs] == [(1, 8, 8, 8), (1, 8, 4, 4), (1, 8, 2, 2)]


def test_mask_head_rejects_wrong_roi_features():
    pytest.importorskip('mmdet', reason='UpsampleFCNMaskHead is the mmdet integration')
    from upsample_plugin.models import UpsampleFCNMaskHead
    head = UpsampleFCNMaskHead(num_convs=1, in_channels=8, conv_out_channels=8, num_classes=2,
                               upsample_cfg=dict(type='carafe', scale_factor=2))
    assert head(torch.randn(3, 8, 14, 14)).shape == (3, 2, 28, 28)
    with pytest.raises(ValueError, match=r'UpsampleFCNMaskHead was built for in_channels=8: x must have shape '
                                         r'\(num_rois, 8, H, W\), got \(3, 16, 14, 14\)') as excinfo:
        head(torch.randn(3, 16, 14, 14))
    assert_plugin_error(excinfo)
    with pytest.raises(ValueError, match=r'x must be 4-D \(num_rois, 8, H, W\), got shape \(8, 14, 14\)'):
        head(torch.randn(8, 14, 14))


def test_panoptic_head_rejects_missing_or_wrong_levels():
    pytest.importorskip('mmdet', reason='UpsamplePanopticFPNHead is the mmdet integration')
    from upsample_plugin.models import UpsamplePanopticFPNHead
    head = UpsamplePanopticFPNHead(num_things_classes=2, num_stuff_classes=2, in_channels=8, inner_channels=8,
                                   start_level=0, end_level=2, norm_cfg=None,
                                   upsample_cfg=dict(type='dysample', groups=2))
    levels = [torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4)]
    assert head(levels)['seg_preds'].shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match=r'uses levels 0\.\.1: x must be a list of at least 2 \(N, 8, H, W\) maps, '
                                         r'got 1 feature maps'):
        head(levels[:1])
    with pytest.raises(ValueError, match=r'UpsamplePanopticFPNHead was built for in_channels=8: x\[1\] must have '
                                         r'shape \(N, 8, H, W\), got \(1, 16, 4, 4\)') as excinfo:
        head([levels[0], torch.randn(1, 16, 4, 4)])
    assert_plugin_error(excinfo)


@pytest.mark.parametrize('head_name', ['UpsampleUPerHead', 'UpsampleSegformerHead'])
def test_seg_heads_reject_missing_or_wrong_levels(head_name):
    pytest.importorskip('mmseg', reason='the decode heads are the mmseg integration')
    from upsample_plugin.models import seg_heads
    kwargs = dict(in_channels=[8, 16], in_index=[0, 1], channels=8, num_classes=3, upsample_cfg=dict(type='carafe'))
    if head_name == 'UpsampleUPerHead':
        kwargs['pool_scales'] = (1, 2)
    head = getattr(seg_heads, head_name)(**kwargs)
    levels = [torch.randn(1, 8, 8, 8), torch.randn(1, 16, 4, 4)]
    assert head(levels).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match=rf'{head_name} reads levels in_index=\[0, 1\]: inputs must be a list of at '
                                         r'least 2 maps, got 1 maps'):
        head(levels[:1])
    with pytest.raises(ValueError, match=rf'{head_name}: inputs\[1\] must have shape \(N, 16, H, W\) \(in_channels '
                                         r'for in_index 1\), got \(1, 8, 4, 4\)') as excinfo:
        head([levels[0], torch.randn(1, 8, 4, 4)])
    assert_plugin_error(excinfo)
    with pytest.raises(ValueError, match=r'inputs\[0\] must be 4-D \(N, 8, H, W\)'):
        head([torch.randn(8, 8, 8), levels[1]])


# ------------------------------------------------------------------------------------------------ NaN/Inf policy
def nonfinite(t: torch.Tensor) -> torch.Tensor:
    return ~torch.isfinite(t)


def parents_within(out_h, out_w, s, row, col, reach):
    """(out_h, out_w) mask of the output pixels whose low-res parent is within ``reach`` pixels of (row, col)."""
    rows = torch.arange(out_h).div(s, rounding_mode='floor').view(-1, 1)
    cols = torch.arange(out_w).div(s, rounding_mode='floor').view(1, -1)
    return ((rows - row).abs() <= reach) & ((cols - col).abs() <= reach)


#: Low-res pixels beyond which a poisoned pixel must leave the output finite (local methods, fresh init, 16x16).
LOCAL_REACH = 6
POISON_HW = (16, 16)


@pytest.mark.parametrize('value', [NAN, INF], ids=['nan', 'inf'])
@pytest.mark.parametrize('name,where', [(n, 'x') for n in UPSAMPLERS] + [(n, 'guide') for n in GUIDED])
def test_upsampler_propagates_non_finite_input(name, where, value):
    """One NaN/Inf element makes the output non-finite at the poisoned pixel (in its channel) and, for the local
    methods, nowhere far from it; methods with whole-map statistics make the whole output non-finite."""
    torch.manual_seed(1)
    h, w = POISON_HW
    x, guide = torch.randn(1, C, h, w), torch.randn(1, C, 2 * h, 2 * w)
    row, col, channel = 2, 3, 5
    if where == 'x':
        x[0, channel, row, col] = value
        poisoned = parents_within(2 * h, 2 * w, 2, row, col, 0)  # the pixel's own 2x2 output block
    else:
        guide[0, channel, 2 * row, 2 * col] = value
        poisoned = torch.zeros(2 * h, 2 * w, dtype=torch.bool)
        poisoned[2 * row, 2 * col] = True
    with torch.no_grad():
        out = call(name, x, guide if name in GUIDED else None)
    bad = nonfinite(out[0])
    assert bad[channel][poisoned].all(), 'the poisoned pixel came out finite'
    if name in GLOBAL_STATISTICS:
        assert bad.all(), GLOBAL_STATISTICS[name]
    else:
        far = ~parents_within(2 * h, 2 * w, 2, row, col, LOCAL_REACH)
        assert not bad[:, far].any(), 'a local method spread the NaN beyond its receptive field'


def test_dysample_nan_offset_is_not_clamped_to_a_border_pixel():
    """grid_sample with border padding maps a NaN coordinate to a finite border sample; DySample puts the NaN back.

    Only the offset conv is poisoned (x stays finite), so any non-finite output comes from the coordinates."""
    module = DySample(C, groups=2)
    x = torch.randn(1, C, 5, 6)
    with torch.no_grad():
        module.offset.bias[0] = NAN  # x offset of group 0's point (0, 0) everywhere
        out = module(x)
    bad = nonfinite(out[0])
    assert bad[:C // 2, 0::2, 0::2].all()  # group 0, sub-pixel (0, 0) of every low-res pixel
    assert not bad[C // 2:].any() and not bad[:, 1::2].any() and not bad[:, :, 1::2].any()


@pytest.mark.parametrize('backend', compiled_backends())
@given(data=st.data())
def test_carafe_nan_feature_poisons_exactly_its_reassembly_windows(backend, data):
    k = data.draw(st.sampled_from([1, 3, 5]), label='k')
    s = data.draw(st.integers(1, 3), label='s')
    h, w = data.draw(st.integers(1, 5), label='h'), data.draw(st.integers(1, 5), label='w')
    row, col = data.draw(st.integers(0, h - 1), label='row'), data.draw(st.integers(0, w - 1), label='col')
    value = data.draw(st.sampled_from([NAN, INF, -INF]), label='value')
    args = carafe_args(c=4, h=h, w=w, k=k, g=2, s=s)
    args['features'][0, 3, row, col] = value
    out = ops.carafe(**args, backend=backend)
    expected = parents_within(h * s, w * s, s, row, col, (k - 1) // 2)
    bad = nonfinite(out[0])
    assert torch.equal(bad[3], expected) and not bad[:3].any()


@pytest.mark.parametrize('backend', compiled_backends())
@pytest.mark.parametrize('value', [NAN, INF], ids=['nan', 'inf'])
def test_op_non_finite_filters_propagate(backend, value):
    """Masks, DDF filters and DLU kernel spaces: a non-finite tap poisons the outputs it weighs (both backends)."""
    args = carafe_args(c=4, h=4, w=5, k=3, g=2, s=2)
    args['masks'][0, 9 + 4, 3, 5] = value  # group 1, centre tap, output pixel (3, 5)
    bad = nonfinite(ops.carafe(**args, backend=backend)[0])
    assert bad[2:, 3, 5].all() and bad.sum() == 2  # the two channels of group 1, that pixel only

    args = ddf_args(c=4, h=5, w=6)
    args['spatial_filter'][0, 4, 2, 3] = value
    bad = nonfinite(ops.ddf(**args, backend=backend)[0])
    assert bad[:, 2, 3].all() and bad.sum() == 4
    args = ddf_args(c=4, h=5, w=6)
    args['channel_filter'][0, 1, 1, 1] = value  # centre tap: inside the map for every output pixel
    bad = nonfinite(ops.ddf(**args, backend=backend)[0])
    assert bad[1].all() and not bad[[0, 2, 3]].any()

    args = dlu_args(c=4, h=4, w=5, k=3, g=2, s=2)
    args['offsets'].zero_()
    args['kernel_space'][0, 4, 2, 3] = value  # group 0, centre tap, low-res pixel (2, 3)
    bad = nonfinite(ops.dlu_reassemble(**args, backend=backend)[0])
    assert bad[:2][:, parents_within(8, 10, 2, 2, 3, 0)].all() and not bad[2:].any()


@pytest.mark.parametrize('backend', compiled_backends())
@given(data=st.data())
def test_dlu_non_finite_offset_poisons_its_output_pixel(backend, data):
    """A NaN/Inf offset would be clamped onto the map by the kernel sampling (grid_sample's border padding in
    the reference, the same clamp in the fused kernel); both backends make that output pixel non-finite instead
    (NaN marker, upsample_plugin.ops.sampling), in the offset's group only, not a kernel sampled at the border."""
    s = data.draw(st.integers(1, 3), label='s')
    h, w = data.draw(st.integers(1, 4), label='h'), data.draw(st.integers(1, 4), label='w')
    group, xy = data.draw(st.integers(0, 1), label='group'), data.draw(st.integers(0, 1), label='xy')
    i, j = data.draw(st.integers(0, s - 1), label='i'), data.draw(st.integers(0, s - 1), label='j')
    row, col = data.draw(st.integers(0, h - 1), label='row'), data.draw(st.integers(0, w - 1), label='col')
    args = dlu_args(c=4, h=h, w=w, k=3, g=2, s=s)
    args['offsets'][0, (group * 2 + xy) * s * s + i * s + j, row, col] = data.draw(
        st.sampled_from([NAN, INF, -INF]), label='value')
    bad = nonfinite(ops.dlu_reassemble(**args, backend=backend)[0])
    expected = torch.zeros(h * s, w * s, dtype=torch.bool)
    expected[row * s + i, col * s + j] = True
    group_channels = slice(2 * group, 2 * group + 2)
    assert (bad[group_channels] == expected).all() and bad.sum() == 2


@pytest.mark.parametrize('value', [NAN, INF], ids=['nan', 'inf'])
def test_sapa_ops_propagate_non_finite_inputs(value):
    args = sapa_args(c=4, h=4, w=5, k=3, s=2)
    args['query'][0, 1, 3, 5] = value
    bad = nonfinite(ops.sapa_similarity(**args)[0]).any(0)
    assert bad[3, 5] and bad.sum() == 1
    args = sapa_args(c=4, h=4, w=5, k=3, s=2)
    args['key'][0, 1, 2, 3] = value
    bad = nonfinite(ops.sapa_similarity(**args)[0]).any(0)
    assert torch.equal(bad, parents_within(8, 10, 2, 2, 3, 1))

    for name in ('offset', 'query'):
        args = deform_args(c=4, h=4, w=5, p=2, s=2, g=2)
        args[name][0, 0, 3, 5] = value  # offset: point 0 (group 0), width component; query: channel 0 (group 0)
        bad = nonfinite(ops.sapa_deform_similarity(**args)[0])  # (G, P, sH, sW)
        assert bad[0, :, 3, 5].any() and not bad[1].any() and bad.any(1).sum() == 1, name
    for name, index in (('offset', (0, 0, 3, 5)), ('attn', (0, 0, 1, 3, 5))):
        args = aggregation_args(c=4, h=4, w=5, p=2, s=2, g=2)
        args[name][index] = value
        bad = nonfinite(ops.sapa_deform_aggregation(**args)[0])
        assert bad[:2, 3, 5].all() and bad.sum() == 2, name  # the two channels of group 0 at that pixel


# ------------------------------------------------------------------------------------------- opt-in finite check
@pytest.fixture
def finite_check_default(monkeypatch):
    """The check as a fresh process sees it: no set_check_finite, no env var; restored afterwards."""
    monkeypatch.delenv(CHECK_FINITE_ENV, raising=False)
    upsample_plugin.set_check_finite(None)
    yield
    upsample_plugin.set_check_finite(None)


def poisoned_upsampler_inputs(name, where):
    x = torch.randn(1, C, H, W)
    guide = guide_for(x) if name in GUIDED else None
    (x if where == 'x' else guide)[0, 1, 1, 2] = NAN
    return x, guide


@pytest.mark.parametrize('name,where', [(n, 'x') for n in UPSAMPLERS] + [(n, 'guide') for n in GUIDED])
def test_check_finite_names_the_non_finite_upsampler_input(finite_check_default, name, where):
    x, guide = poisoned_upsampler_inputs(name, where)
    with upsample_plugin.check_finite():
        with pytest.raises(ValueError, match=rf'^{where} contains 1 NaN and 0 Inf values \(shape \(1, 32, \d+, \d+\), '
                                             rf'first at index \(0, 1, 1, 2\)\); {where} must be finite') as excinfo:
            call(name, x, guide)
    assert_plugin_error(excinfo)
    # Off (the default): no check, the NaN reaches the output.
    assert nonfinite(call(name, x, guide)).any()


def test_check_finite_names_ddf_up_joint_x(finite_check_default):
    joint = torch.randn(1, C, H, W)
    joint[0, 0, 0, 0] = INF
    with upsample_plugin.check_finite(), pytest.raises(ValueError, match=r'^joint_x contains 0 NaN and 1 Inf'):
        DDFUpPack(C)(torch.randn(1, C, H, W), joint_x=joint)


OP_TENSORS = {
    'carafe': ('features', 'masks'),
    'ddf': ('features', 'channel_filter', 'spatial_filter'),
    'dlu_reassemble': ('features', 'kernel_space', 'offsets'),
    'sapa_similarity': ('query', 'key'),
    'sapa_deform_similarity': ('query', 'key', 'offset'),
    'sapa_deform_aggregation': ('attn', 'value', 'offset'),
}


@pytest.mark.parametrize('op,argument', [(op, a) for op, names in OP_TENSORS.items() for a in names])
@pytest.mark.parametrize('value', [NAN, -INF], ids=['nan', 'inf'])
def test_check_finite_names_the_non_finite_op_argument(finite_check_default, op, argument, value):
    args = OPS[op][1]()
    args[argument].view(-1)[-1] = value
    counts = '1 NaN and 0 Inf' if math.isnan(value) else '0 NaN and 1 Inf'
    backends = ['compiled', 'reference'] if OPS[op][2] and _library.compiled_available() else ['reference']
    for backend in backends:
        with upsample_plugin.check_finite():
            with pytest.raises(ValueError, match=rf'^{argument} contains {counts} values') as excinfo:
                run_op(op, backend, **args)
        assert_plugin_error(excinfo)


def test_check_finite_switches(finite_check_default, monkeypatch):
    x = torch.randn(1, C, H, W)
    x[0, 0, 0, 0] = NAN
    module = upsampler('carafe')
    assert not upsample_plugin.check_finite_enabled()
    module(x)  # off by default: no data-dependent check
    monkeypatch.setenv(CHECK_FINITE_ENV, '1')
    assert upsample_plugin.check_finite_enabled()
    with pytest.raises(ValueError, match='^x contains 1 NaN'):
        module(x)
    with upsample_plugin.check_finite(False):  # the context manager wins over the environment...
        module(x)
        with upsample_plugin.check_finite(True):  # ...nests...
            with pytest.raises(ValueError, match='^x contains'):
                module(x)
        module(x)  # ...and restores the enclosing setting on exit
    monkeypatch.setenv(CHECK_FINITE_ENV, '0')
    upsample_plugin.set_check_finite(True)  # the switch wins over the environment until reset to None
    with pytest.raises(ValueError, match='^x contains'):
        module(x)
    upsample_plugin.set_check_finite(None)
    module(x)
    with pytest.raises(ValueError, match=r'enabled must be True or False or None, got 1'):
        upsample_plugin.set_check_finite(1)
    with pytest.raises(ValueError, match=r'enabled must be True or False, got None'):
        with upsample_plugin.check_finite(None):
            pass


def test_check_finite_restores_the_setting_after_an_error(finite_check_default):
    with pytest.raises(ValueError, match='^features contains'):
        with upsample_plugin.check_finite():
            run_op('carafe', features=torch.full((1, 8, 3, 4), NAN, dtype=torch.float64))
    assert not upsample_plugin.check_finite_enabled()


def test_check_finite_skips_tensors_without_data(finite_check_default):
    """Meta tensors (shape-only tracing) have no values to check; the shape checks still run."""
    args = {k: (v.to('meta') if isinstance(v, torch.Tensor) else v) for k, v in carafe_args().items()}
    with upsample_plugin.check_finite():
        assert run_op('carafe', 'reference', **args).shape == (1, 8, 6, 8)


def test_check_finite_is_skipped_while_tracing(finite_check_default):
    """A value-dependent branch cannot be traced: under TorchScript tracing (one of the ONNX exporters) the check
    is skipped, even for a NaN in the example input, and the traced graph propagates the NaN."""
    args = carafe_args()
    args['features'][0, 0, 1, 1] = NAN
    with upsample_plugin.check_finite():
        with pytest.raises(ValueError, match='^features contains 1 NaN'):  # eager: checked
            ops.carafe(**args, backend='reference')
        traced = torch.jit.trace(lambda f, m: ops.carafe(f, m, 3, 2, 2, backend='reference'),
                                 (args['features'], args['masks']), check_trace=False)
    assert nonfinite(traced(args['features'], args['masks'])).any()
