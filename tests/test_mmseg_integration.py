"""mmseg integration: UpsampleUPerHead and UpsampleSegformerHead (spec/necks.md (E), (F))."""
import copy
import importlib

import pytest
import torch
import torch.nn as nn
from mmseg.models.decode_heads import SegformerHead, UPerHead
from mmseg.registry import MODELS

from upsample_plugin.models.seg_heads.upsample_segformer_head import UpsampleSegformerHead
from upsample_plugin.models.seg_heads.upsample_uper_head import UpsampleUPerHead
from upsample_plugin.models.utils import is_guided

# Register every plugin upsampler whatever upsample_plugin/__init__ imports at the moment.
for _name in ('carafe', 'dysample', 'dlu', 'ddf_up', 'lda_aqu', 'fade', 'sapa'):
    importlib.import_module(f'upsample_plugin.upsamplers.{_name}')

BN = dict(type='BN', requires_grad=True)
SMALL_IN = [16, 32, 48, 64]
SMALL_C = 32

#: Every plugin upsampler type, in the configuration the heads are tested with (FADE without gate, as in
#: additive necks; the SegFormer head also gets the gated form below).
PLUGIN_CFGS = {
    'carafe': dict(type='carafe'),
    'dysample': dict(type='dysample'),
    'dlu': dict(type='dlu'),
    'ddf_up': dict(type='ddf_up'),
    'lda_aqu': dict(type='lda_aqu'),
    'fade': dict(type='fade', gating=False),
    'sapa': dict(type='sapa'),
}


pytestmark = pytest.mark.usefixtures('one_thread')  # conftest.py


def pyramid_sizes(height, width, levels=4):
    """Feature sizes at strides 4..32 for ResNet-V1c and MiT: every stride-2 stage gives ceil(h / 2).

    ResNet-V1c: stem conv s2 (k3, p1) and max-pool s2 (k3, p1) give ceil(h/2) twice, then stages 2-4 halve
    with ceil again. MiT: the k7/s4/p3 patch embedding gives ceil(h/4), then k3/s2/p1 embeddings ceil(h/2).
    """
    sizes, h, w = [], height, width
    for level in range(levels + 1):
        h, w = -(-h // 2), -(-w // 2)
        if level >= 1:
            sizes.append((h, w))
    return sizes


def test_pyramid_sizes_match_the_spec_example():
    # spec/necks.md "Size handling" rule 4: a 683-pixel side gives C4 43 and C5 22.
    assert pyramid_sizes(512, 683) == [(128, 171), (64, 86), (32, 43), (16, 22)]
    assert pyramid_sizes(250, 333) == [(63, 84), (32, 42), (16, 21), (8, 11)]


def make_inputs(sizes, in_channels=SMALL_IN, batch=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, h, w, generator=gen) for c, (h, w) in zip(in_channels, sizes)]


def head_kwargs(in_channels=SMALL_IN, channels=SMALL_C, num_classes=5, **extra):
    kwargs = dict(in_channels=list(in_channels), in_index=list(range(len(in_channels))), channels=channels,
                  num_classes=num_classes, norm_cfg=BN, align_corners=False)
    kwargs.update(extra)
    return kwargs


def uper(upsample_cfg=dict(type='bilinear'), **kwargs):
    return UpsampleUPerHead(pool_scales=(1, 2, 3, 6), upsample_cfg=upsample_cfg, **head_kwargs(**kwargs))


def segformer(upsample_cfg=None, **kwargs):
    return UpsampleSegformerHead(upsample_cfg=upsample_cfg, **head_kwargs(**kwargs))


def num_params(module):
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------------- registration


def test_heads_are_registered_in_mmseg_models():
    head = MODELS.build(dict(type='UpsampleUPerHead', upsample_cfg=dict(type='dysample'), **head_kwargs()))
    assert isinstance(head, UpsampleUPerHead) and isinstance(head, UPerHead)
    head = MODELS.build(dict(type='UpsampleSegformerHead', upsample_cfg=dict(type='dysample'),
                             **head_kwargs()))
    assert isinstance(head, UpsampleSegformerHead)
    assert len(head.upsample_modules) == 6


# -------------------------------------------------------------------------------------- stock equivalence


def _check_stock_equivalence(stock, ours, inputs):
    stock_sd, ours_sd = stock.state_dict(), ours.state_dict()
    assert list(stock_sd) == list(ours_sd)  # same parameter/buffer names, same order
    # Random non-trivial weights everywhere (BN statistics too), loaded strictly both ways.
    gen = torch.Generator().manual_seed(1)
    for value in stock_sd.values():
        if value.is_floating_point():
            value.copy_(torch.rand(value.shape, generator=gen) * 0.2 + 0.9 if value.dim() == 1
                        else torch.randn(value.shape, generator=gen) * 0.1)
    ours.load_state_dict(stock_sd, strict=True)
    stock.load_state_dict(ours.state_dict(), strict=True)
    stock.eval(), ours.eval()
    with torch.no_grad():
        expected, actual = stock(inputs), ours(inputs)
    assert actual.shape == expected.shape
    assert torch.equal(actual, expected)


# mmseg's resize warns about align_corners=True on sizes that are not n*x+1; both heads do the same resizes.
@pytest.mark.filterwarnings('ignore:When align_corners=True')
@pytest.mark.parametrize('image', [(128, 160), (250, 333)], ids=['exact', 'odd'])
@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('cfg', [dict(type='bilinear'), None], ids=['bilinear', 'None'])
def test_uper_bilinear_equals_mmseg_uperhead(image, align_corners, cfg):
    stock = UPerHead(pool_scales=(1, 2, 3, 6), **head_kwargs(align_corners=align_corners))
    ours = uper(cfg, align_corners=align_corners)
    assert all(isinstance(m, nn.Upsample) for m in ours.upsample_modules) and len(ours.upsample_modules) == 3
    assert num_params(ours) == num_params(stock)
    _check_stock_equivalence(stock, ours, make_inputs(pyramid_sizes(*image)))


# mmseg's resize warns about align_corners=True on sizes that are not n*x+1; both heads do the same resizes.
@pytest.mark.filterwarnings('ignore:When align_corners=True')
@pytest.mark.parametrize('image', [(128, 160), (250, 333)], ids=['exact', 'odd'])
@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('cfg', [None, dict(type='bilinear')], ids=['None', 'bilinear'])
def test_segformer_bilinear_equals_mmseg_segformerhead(image, align_corners, cfg):
    stock = SegformerHead(**head_kwargs(align_corners=align_corners))
    ours = segformer(cfg, align_corners=align_corners)
    assert len(ours.upsample_modules) == 0
    assert num_params(ours) == num_params(stock)
    _check_stock_equivalence(stock, ours, make_inputs(pyramid_sizes(*image)))


def test_uper_learned_head_loads_stock_checkpoint_for_shared_weights():
    # A stock UPerHead checkpoint fills every non-upsampler weight of a learned head (fine-tuning start).
    stock = UPerHead(pool_scales=(1, 2, 3, 6), **head_kwargs())
    ours = uper(dict(type='dysample'))
    missing, unexpected = ours.load_state_dict(stock.state_dict(), strict=False)
    assert unexpected == []
    assert missing and all(key.startswith('upsample_modules.') for key in missing)


# ------------------------------------------------------------------------------- every type, odd sizes


@pytest.mark.parametrize('image', [(250, 333)])
@pytest.mark.parametrize('name', list(PLUGIN_CFGS))
def test_uper_every_upsampler_on_odd_sizes(name, image):
    head = uper(PLUGIN_CFGS[name]).eval()
    assert len(head.upsample_modules) == 3
    assert not any(isinstance(m, nn.Upsample) for m in head.upsample_modules)
    sizes = pyramid_sizes(*image)
    with torch.no_grad():
        out = head(make_inputs(sizes))
    assert out.shape == (1, 5, *sizes[0])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('image', [(250, 333)])
@pytest.mark.parametrize('name', list(PLUGIN_CFGS) + ['fade_gated'])
def test_segformer_every_upsampler_on_odd_sizes(name, image):
    cfg = dict(type='fade') if name == 'fade_gated' else PLUGIN_CFGS[name]
    head = segformer(cfg).eval()
    assert len(head.upsample_modules) == 6
    sizes = pyramid_sizes(*image)
    with torch.no_grad():
        out = head(make_inputs(sizes))
    assert out.shape == (1, 5, *sizes[0])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('name', ['dysample', 'sapa'])
@pytest.mark.parametrize('make', [uper, segformer], ids=['uper', 'segformer'])
def test_predict_at_test_time_on_unpadded_512x683(make, name):
    # mmseg 1.x test pipeline: resize to (2048, 512) keep-ratio, no padding -> a 512x683 image reaches the
    # head as is (spec/necks.md rule 4; the official plain `+` fails here: 2 * 22 != 43).
    head = make(PLUGIN_CFGS[name]).eval()
    metas = [dict(img_shape=(512, 683), ori_shape=(512, 683))]
    with torch.no_grad():
        logits = head.predict(make_inputs(pyramid_sizes(512, 683)), metas, test_cfg=None)
    assert logits.shape == (1, 5, 512, 683)


# ------------------------------------------------------------------------------------------------- wiring


def _record_calls(modules):
    calls = []
    for index, module in enumerate(modules):
        module.register_forward_hook(lambda mod, args, out, index=index: calls.append((index, args, out)))
    return calls


def test_uper_guided_upsamplers_get_the_finer_lateral_as_guide():
    head = uper(dict(type='sapa')).eval()
    calls = _record_calls(head.upsample_modules)
    sizes = pyramid_sizes(128, 160)  # exact: the guide is the lateral itself
    inputs = make_inputs(sizes)
    with torch.no_grad():
        head(inputs)
        laterals = [conv(x) for conv, x in zip(head.lateral_convs, inputs)]
        top = head.psp_forward(inputs)
    assert [index for index, _, _ in calls] == [2, 1, 0]  # top-down order
    for index, (x, guide), out in calls:
        assert torch.equal(guide, laterals[index])  # the finer lateral before the sum
        assert x.shape[2:] == sizes[index + 1] and out.shape[2:] == sizes[index]
    assert torch.equal(calls[0][1][0], top)  # the first step upsamples the PPM output


def test_uper_guided_on_odd_sizes_pads_the_guide():
    head = uper(dict(type='fade', gating=False)).eval()
    calls = _record_calls(head.upsample_modules)
    sizes = pyramid_sizes(250, 333)
    with torch.no_grad():
        head(make_inputs(sizes))
    for _, (x, guide), _ in calls:
        assert guide.shape[2:] == (2 * x.shape[2], 2 * x.shape[3])


def test_segformer_unguided_chains():
    head = segformer(dict(type='dysample')).eval()
    calls = _record_calls(head.upsample_modules)
    sizes = pyramid_sizes(250, 333)
    with torch.no_grad():
        head(make_inputs(sizes))
    assert [index for index, _, _ in calls] == list(range(6))
    # up0, up1, up2 chain c4 -> c1; up3, up4 chain c3 -> c1; up5 takes c2 -> c1 (spec/necks.md (F)).
    source_levels = [3, 2, 1, 2, 1, 1]
    for (index, args, _), level in zip(calls, source_levels):
        assert len(args) == 1  # unguided: no guide passed
        assert args[0].shape[2:] == sizes[level]


def test_segformer_guided_chains_use_projected_finer_features():
    head = segformer(dict(type='fade')).eval()  # gated FADE, as in the paper's SegFormer
    calls = _record_calls(head.upsample_modules)
    sizes = pyramid_sizes(256, 320)  # exact, so the guides are passed unchanged
    inputs = make_inputs(sizes)
    with torch.no_grad():
        head(inputs)
        projected = [conv(x) for conv, x in zip(head.convs, inputs)]
    guide_levels = [2, 1, 0, 1, 0, 0]
    source_levels = [3, 2, 1, 2, 1, 1]
    for (index, (x, guide), _), g, s in zip(calls, guide_levels, source_levels):
        assert torch.equal(guide, projected[g])
        assert x.shape[2:] == sizes[s]
    # The first step of each chain starts from the projected (not upsampled) coarse map.
    for index, level in ((0, 3), (3, 2), (5, 1)):
        assert torch.equal(calls[index][1][0], projected[level])


# ----------------------------------------------------------------------------------------- parameter counts

UPER_R50 = dict(in_channels=[256, 512, 1024, 2048], channels=512, num_classes=150)
SEGFORMER_B1 = dict(in_channels=[64, 128, 320, 512], channels=256, num_classes=150)


@pytest.fixture(scope='module')
def uper_r50_baseline():
    stock = UPerHead(pool_scales=(1, 2, 3, 6), **head_kwargs(**UPER_R50))
    ours = uper(dict(type='bilinear'), **UPER_R50)
    assert num_params(ours) == num_params(stock)
    return num_params(stock)


@pytest.fixture(scope='module')
def segformer_b1_baseline():
    stock = SegformerHead(**head_kwargs(**SEGFORMER_B1))
    ours = segformer(None, **SEGFORMER_B1)
    assert num_params(ours) == num_params(stock)
    return num_params(stock)


# (config, per-module count of spec/numbers.md section 1, spec/necks.md table value for 3 modules at 512)
UPER_TABLE = [
    (dict(type='carafe'), 90_532, 0.272e6),
    (dict(type='dysample'), 16_416, 49.2e3),
    (dict(type='dysample', dyscope=True), 32_800, 98.4e3),
    (dict(type='fade'), 80_025, 0.240e6),  # UPerHead defaults FADE to gating=False (additive neck)
    (dict(type='sapa'), 34_880, 0.105e6),
    (dict(type='sapadeform'), 279_072, 0.837e6),
    (dict(type='deconv'), 2_359_808, 7.08e6),
    (dict(type='pixel_shuffle'), 9_439_232, 28.3e6),
    (dict(type='nearest'), 0, 0),
]


def cfg_id(cfg):
    return ','.join([cfg['type']] + [f'{k}={v}' for k, v in cfg.items() if k != 'type'])


def _matches_rounded(value, table_value):
    """``value`` rounds to ``table_value`` at the table's 3 significant digits."""
    if table_value == 0:
        return value == 0
    return float(f'{value:.3g}') == float(f'{table_value:.3g}')


@pytest.mark.parametrize('cfg,per_module,table', UPER_TABLE, ids=[cfg_id(c) for c, _, _ in UPER_TABLE])
def test_uper_r50_parameter_delta_matches_spec(uper_r50_baseline, cfg, per_module, table):
    head = uper(cfg, **UPER_R50)
    delta = num_params(head) - uper_r50_baseline
    assert delta == 3 * per_module
    assert delta == num_params(head.upsample_modules)
    assert _matches_rounded(delta, table)


SEGFORMER_TABLE = [
    (dict(type='carafe'), 74_148, 0.445e6),
    (dict(type='dysample'), 8_224, 49.3e3),
    (dict(type='dysample', dyscope=True), 16_416, 98.5e3),
    (dict(type='fade', gating=False), 47_257, 0.284e6),
    (dict(type='fade'), 47_514, 0.285e6),  # gated (class default, the paper's SegFormer)
    (dict(type='fade_lite'), 13_332, 80e3),  # poppinace/fade README "+80K"
    (dict(type='sapa'), 17_472, 0.105e6),
    (dict(type='sapadeform'), 139_808, 0.839e6),
    (dict(type='deconv'), 590_080, 3.54e6),
    (dict(type='pixel_shuffle'), 2_360_320, 14.2e6),
    (dict(type='dlu'), 35_489, None),  # per-module counts of spec/numbers.md section 1 (no table entry)
    (dict(type='lda_aqu'), 39_410, None),
    (dict(type='ddf_up'), 560_368, None),
]


@pytest.mark.parametrize('cfg,per_module,table', SEGFORMER_TABLE, ids=[cfg_id(c) for c, _, _ in SEGFORMER_TABLE])
def test_segformer_b1_parameter_delta_matches_spec(segformer_b1_baseline, cfg, per_module, table):
    head = segformer(cfg, **SEGFORMER_B1)
    delta = num_params(head) - segformer_b1_baseline
    assert delta == 6 * per_module
    assert delta == num_params(head.upsample_modules)
    if table is not None:
        assert _matches_rounded(delta, table)


# --------------------------------------------------------------------------------------------------- init

INIT_CFGS = dict(PLUGIN_CFGS, dysample_plus=dict(type='dysample', dyscope=True))


def _assert_own_init(upsampler, name):
    """Every parameter follows the upsampler's own init: constants exactly, random ones by their spread."""
    reference = copy.deepcopy(upsampler)
    reference.init_weights()
    for (key, value), (_, ref) in zip(upsampler.named_parameters(), reference.named_parameters()):
        if torch.all(ref == ref.flatten()[0]):
            assert torch.equal(value, ref), f'{name}: {key} lost its constant init'
        elif ref.numel() >= 64:
            ratio = float(value.detach().std() / ref.detach().std())
            assert 0.5 < ratio < 2.0, f'{name}: {key} std ratio {ratio:.3g} to its own init'


@pytest.mark.parametrize('make', [uper, segformer], ids=['uper', 'segformer'])
def test_default_init_only_touches_conv_seg_and_keeps_upsampler_init(make):
    # spec/necks.md "Init pitfalls": BaseDecodeHead's init_cfg targets only conv_seg.
    for name, cfg in INIT_CFGS.items():
        head = make(cfg)
        before = {k: v.clone() for k, v in head.state_dict().items()}
        head.init_weights()
        after = head.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        # mmengine also re-runs ConvModule.init_weights (Kaiming) of ConvModules held directly by the head
        # (same distribution as their constructor init); nothing else outside the upsamplers changes.
        direct_conv_modules = ('bottleneck.', 'fpn_bottleneck.', 'fusion_conv.')
        outside = {k for k in changed if not k.startswith(('upsample_modules.', 'conv_seg.')
                                                          + direct_conv_modules)}
        assert outside == set(), f'{name}: {outside}'
        assert 'conv_seg.weight' in changed
        assert abs(float(after['conv_seg.weight'].std()) - 0.01) < 0.005
        for upsampler in head.upsample_modules:
            _assert_own_init(upsampler, name)


@pytest.mark.parametrize('make', [uper, segformer], ids=['uper', 'segformer'])
def test_conv_wide_init_cfg_does_not_overwrite_upsampler_init(make):
    # A head init_cfg reaching every Conv2d (like mmdet FPN's Xavier) hits the upsamplers' convs too; the
    # upsamplers' own init_weights must run after it.
    hostile = dict(type='Normal', std=1.0, layer='Conv2d')
    for name, cfg in INIT_CFGS.items():
        head = make(cfg, init_cfg=hostile)
        head.init_weights()
        lateral = head.lateral_convs[0] if make is uper else head.convs[0]
        assert 0.8 < float(lateral.conv.weight.std()) < 1.2  # the host init did run
        for upsampler in head.upsample_modules:
            _assert_own_init(upsampler, name)


def test_pretrained_init_cfg_wins_over_upsampler_init(tmp_path):
    source = uper(dict(type='dysample'))
    with torch.no_grad():
        source.upsample_modules[1].offset.weight.fill_(0.123)
    path = tmp_path / 'head.pth'
    torch.save(source.state_dict(), path)
    head = uper(dict(type='dysample'), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    head.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(head.state_dict()[key], value), key


# ----------------------------------------------------------------------------------------------- backward


@pytest.mark.parametrize('name', list(PLUGIN_CFGS))
@pytest.mark.parametrize('make', [uper, segformer], ids=['uper', 'segformer'])
def test_backward_reaches_upsampler_parameters(make, name):
    head = make(PLUGIN_CFGS[name]).train()
    out = head(make_inputs(pyramid_sizes(120, 150), batch=2))  # odd sizes: 30x38, 15x19, 8x10, 4x5
    out.square().mean().backward()
    for index, upsampler in enumerate(head.upsample_modules):
        params = list(upsampler.named_parameters())
        assert params
        assert all(p.grad is not None for _, p in params), [k for k, p in params if p.grad is None]
        assert sum(float(p.grad.abs().sum()) for _, p in params) > 0, f'{name}: upsampler {index}'


# ------------------------------------------------------------------------------------------- bad configs


@pytest.mark.parametrize('make', [uper, segformer], ids=['uper', 'segformer'])
@pytest.mark.parametrize('cfg,match', [
    ('dysample', 'upsample_cfg must be None or a dict'),
    (dict(mode='bilinear', guided=False), 'with a "type" key'),  # the broken official default
    (dict(type='no_such_upsampler'), 'upsample_cfg.*no_such_upsampler'),
    (dict(type='dysample', scale=4), r"upsample_cfg\['scale'\]=4"),
    (dict(type='carafe', scale_factor=4), r"upsample_cfg\['scale_factor'\]=4"),
    (dict(type='dysample', guided=True), r'upsample_cfg\["guided"\]=True'),
    (dict(type='sapa', guided=False), r'upsample_cfg\["guided"\]=False'),
    (dict(type='dysample', guided='yes'), r'upsample_cfg\["guided"\] must be True or False'),
    (dict(type='dysample', not_an_argument=1), 'upsample_cfg.*does not fit'),
    (dict(type='bilinear', mode='nearest'), 'extra keys'),
    (dict(type='nearest', align_corners=True), 'align_corners only applies to bilinear'),
    (dict(type='bilinear', guided=True), 'not guided'),
])
def test_bad_upsample_cfg_raises_value_error(make, cfg, match):
    with pytest.raises(ValueError, match=match):
        make(cfg)


def test_bad_segformer_interpolate_mode_raises_value_error():
    with pytest.raises(ValueError, match='interpolate_mode'):
        UpsampleSegformerHead(interpolate_mode='bicubic', **head_kwargs())


def test_official_guided_key_accepted_when_consistent():
    assert is_guided(uper(dict(type='sapa', guided=True)).upsample_modules[0])
    assert not is_guided(segformer(dict(type='dysample', guided=False)).upsample_modules[0])
    # UPerHead defaults FADE to the additive-neck form; an explicit gating=True is honoured.
    assert not uper(dict(type='fade')).upsample_modules[0].gating
    assert uper(dict(type='fade', gating=True)).upsample_modules[0].gating
    assert segformer(dict(type='fade')).upsample_modules[0].gating
