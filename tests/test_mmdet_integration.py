"""mmdet integration (spec/necks.md (A)-(D)): UpsampleFPN in both topologies, UpsampleFCNMaskHead,
UpsamplePanopticFPNHead. Stock equivalence with mmdet's FPN / FPN_CARAFE / FCNMaskHead / PanopticFPNHead, every
upsampler at odd and padded sizes, the spec's parameter counts, init preservation and configuration errors."""
import importlib
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.necks import FPN, FPN_CARAFE
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.models.seg_heads import PanopticFPNHead
from mmdet.registry import MODELS
from mmengine.config import ConfigDict

import upsample_plugin
# Every upsampler module, imported so that each registers its type name whatever the package __init__ imports.
from upsample_plugin.upsamplers import carafe, ddf_up, dlu, dysample, fade, lda_aqu, sapa  # noqa: F401
from upsample_plugin.models.heads import UpsampleFCNMaskHead, UpsamplePanopticFPNHead
from upsample_plugin.models.necks import UpsampleFPN
from upsample_plugin.ops import carafe as plugin_carafe

# The module, not the function of the same name that mmcv.ops exports.
mmcv_carafe = importlib.import_module('mmcv.ops.carafe')

SMALL_IN = [16, 32, 64, 128]
R50_IN = [256, 512, 1024, 2048]
PLUGIN_CFGS = [
    dict(type='carafe'), dict(type='dysample'), dict(type='dysample', dyscope=True),
    dict(type='dysample', style='pl'), dict(type='dlu'), dict(type='ddf_up'), dict(type='lda_aqu'),
    dict(type='fade'), dict(type='fade_lite'), dict(type='sapa'), dict(type='sapadeform'),
]
MMCV_CFGS = [dict(type='nearest'), dict(type='bilinear'), dict(type='deconv'), dict(type='pixel_shuffle')]


def cfg_id(cfg):
    return '-'.join(f'{v}' if k == 'type' else f'{k}={v}' for k, v in cfg.items())


def resnet_sizes(height, width, levels=4):
    """C2..C5 sizes of a ResNet on an (unpadded) height x width image: every stride-2 layer gives ceil(n/2)."""
    height, width = math.ceil(math.ceil(height / 2) / 2), math.ceil(math.ceil(width / 2) / 2)
    sizes = [(height, width)]
    for _ in range(levels - 1):
        height, width = math.ceil(height / 2), math.ceil(width / 2)
        sizes.append((height, width))
    return sizes


ODD = resnet_sizes(250, 333)      # (63, 84), (32, 42), (16, 21), (8, 11): unpadded test image
PADDED = resnet_sizes(256, 320)   # pad 64: every x2 step exact, also for the stride-2 P6 lateral
assert ODD == [(63, 84), (32, 42), (16, 21), (8, 11)] and PADDED == [(64, 80), (32, 40), (16, 20), (8, 10)]


def pyramid(sizes, channels=SMALL_IN, batch=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, h, w, generator=gen) for c, (h, w) in zip(channels, sizes)]


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def randomize(module, seed=1):
    """Non-trivial values everywhere (biases included), so equivalence tests do not pass on zeros."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    return module


def copy_strict(src, dst):
    """Load src's state dict into dst with strict=True (same names, same shapes), both ways."""
    dst.load_state_dict(src.state_dict(), strict=True)
    src.load_state_dict(dst.state_dict(), strict=True)


pytestmark = pytest.mark.usefixtures('one_thread')  # conftest.py


@pytest.fixture
def cpu_mmcv_carafe(monkeypatch):
    """mmcv's CARAFEPack calls the CUDA-only ``carafe`` op; route it to the plugin's portable op (the same math,
    checked against mmcv's data in tests/test_carafe_op.py) so stock FPN_CARAFE / FCNMaskHead run on CPU."""
    monkeypatch.setattr(mmcv_carafe, 'carafe', plugin_carafe)


# ------------------------------------------------------------------------------------------------ stock equality
@pytest.mark.parametrize('sizes', [PADDED, ODD], ids=['padded', 'odd'])
@pytest.mark.parametrize('extra', [dict(), dict(add_extra_convs='on_input'),
                                   dict(add_extra_convs='on_output', relu_before_extra_convs=True)],
                         ids=['maxpool', 'on_input', 'on_output_relu'])
def test_topology_a_nearest_equals_mmdet_fpn(sizes, extra):
    stock = randomize(FPN(SMALL_IN, 32, 6, **extra))
    ours = UpsampleFPN(SMALL_IN, 32, 6, upsample_cfg=dict(type='nearest'), topology='fpn', **extra)
    copy_strict(stock, ours)
    assert len(ours.upsample_modules) == 0
    inputs = pyramid(sizes)
    expected, got = stock(inputs), ours(inputs)
    assert len(got) == 6
    for e, g in zip(expected, got):
        assert torch.equal(e, g)


def test_topology_a_bilinear_and_mmdet_style_cfg_equal_mmdet_fpn():
    inputs = pyramid(ODD)
    stock = randomize(FPN(SMALL_IN, 32, 5, upsample_cfg=dict(mode='bilinear', align_corners=False)))
    for cfg in (dict(type='bilinear'), dict(mode='bilinear', align_corners=False)):
        ours = UpsampleFPN(SMALL_IN, 32, 5, upsample_cfg=cfg)
        copy_strict(stock, ours)
        for e, g in zip(stock(inputs), ours(inputs)):
            assert torch.equal(e, g)
    # mmdet FPN's scale_factor form (exact on padded inputs).
    stock = randomize(FPN(SMALL_IN, 32, 5, upsample_cfg=dict(mode='nearest', scale_factor=2)))
    ours = UpsampleFPN(SMALL_IN, 32, 5, upsample_cfg=dict(type='nearest', scale_factor=2))
    copy_strict(stock, ours)
    inputs = pyramid(PADDED)
    for e, g in zip(stock(inputs), ours(inputs)):
        assert torch.equal(e, g)


@pytest.mark.parametrize('sizes', [PADDED, ODD], ids=['padded', 'odd'])
@pytest.mark.parametrize('stock_cfg,our_cfg', [
    (dict(type='carafe', up_kernel=5, up_group=1, encoder_kernel=3, encoder_dilation=1), dict(type='carafe')),
    (dict(type='nearest'), dict(type='nearest')),
    (dict(type='bilinear'), dict(type='bilinear')),
    (ConfigDict(type='deconv', upsample_kernel=3), dict(type='deconv', upsample_kernel=3)),
    (ConfigDict(type='pixel_shuffle', upsample_kernel=3), dict(type='pixel_shuffle')),
], ids=['carafe', 'nearest', 'bilinear', 'deconv', 'pixel_shuffle'])
def test_topology_b_equals_mmdet_fpn_carafe(cpu_mmcv_carafe, sizes, stock_cfg, our_cfg):
    stock = randomize(FPN_CARAFE(SMALL_IN, 32, 5, upsample_cfg=stock_cfg))
    ours = UpsampleFPN(SMALL_IN, 32, 5, upsample_cfg=our_cfg, topology='fpn_carafe')
    copy_strict(stock, ours)
    assert len(ours.upsample_modules) == len(stock.upsample_modules) == 4
    inputs = pyramid(sizes)
    expected, got = stock(inputs), ours(inputs)
    assert len(got) == 5
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-6)


@pytest.mark.parametrize('topology', ['fpn', 'fpn_carafe'])
def test_start_level_and_two_extra_levels_equal_stock(topology):
    """RetinaNet-style: C3..C5 and 5 outputs. In B the second extra lateral reads the first one."""
    if topology == 'fpn':
        stock = FPN(SMALL_IN, 32, 5, start_level=1, add_extra_convs='on_input')
        ours = UpsampleFPN(SMALL_IN, 32, 5, start_level=1, add_extra_convs='on_input')
    else:
        stock = FPN_CARAFE(SMALL_IN, 32, 5, start_level=1, upsample_cfg=dict(type='nearest'))
        ours = UpsampleFPN(SMALL_IN, 32, 5, start_level=1, topology='fpn_carafe')
        assert len(ours.upsample_modules) == 4 and ours.lateral_convs[4].conv.in_channels == 32
    copy_strict(randomize(stock), ours)
    inputs = pyramid(ODD)
    for e, g in zip(stock(inputs), ours(inputs)):
        assert torch.equal(e, g)


def test_topology_b_order_norm_act_equal_fpn_carafe():
    kwargs = dict(norm_cfg=dict(type='GN', num_groups=8), act_cfg=dict(type='ReLU'), order=('act', 'conv', 'norm'))
    stock = FPN_CARAFE(SMALL_IN, 32, 5, upsample_cfg=dict(type='bilinear'), **kwargs)
    ours = UpsampleFPN(SMALL_IN, 32, 5, upsample_cfg=dict(type='bilinear'), topology='fpn_carafe', **kwargs)
    copy_strict(randomize(stock), ours)
    assert ours.lateral_convs[0].conv.bias is None  # bias only without norm, as FPN_CARAFE
    inputs = pyramid(ODD)
    for e, g in zip(stock(inputs), ours(inputs)):
        assert torch.equal(e, g)


# ------------------------------------------------------------------------------------------- every upsampler
@pytest.mark.parametrize('sizes', [ODD, PADDED], ids=['odd', 'padded'])
@pytest.mark.parametrize('topology', ['fpn', 'fpn_carafe'])
@pytest.mark.parametrize('cfg', PLUGIN_CFGS + MMCV_CFGS, ids=cfg_id)
def test_every_upsampler_runs_in_both_topologies(cfg, topology, sizes):
    torch.manual_seed(0)
    neck = UpsampleFPN(SMALL_IN, 32, 5, upsample_cfg=cfg, topology=topology)
    expected_modules = 0 if (topology == 'fpn' and cfg['type'] in ('nearest', 'bilinear')) else \
        (3 if topology == 'fpn' else 4)
    assert len(neck.upsample_modules) == expected_modules
    calls = [0] * len(neck.upsample_modules)
    for i, up in enumerate(neck.upsample_modules):
        up.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    with torch.no_grad():
        outs = neck(pyramid(sizes, batch=2))
    p6 = (math.ceil(sizes[-1][0] / 2), math.ceil(sizes[-1][1] / 2))
    assert [tuple(o.shape) for o in outs] == [(2, 32, h, w) for h, w in sizes + [p6]]
    assert all(torch.isfinite(o).all() for o in outs)
    assert calls == [1] * expected_modules  # each upsampler is one top-down step


class RecordingGuided(nn.Module):
    """A guided x2 'upsampler' (type given as a class) that records its inputs; nearest(x) + guide."""
    needs_guide = True
    channel_args = ('channels',)
    scale_arg = 'scale_factor'
    scale_aliases = ('scale_factor',)

    def __init__(self, channels, scale_factor=2):
        super().__init__()
        self.scale_factor = scale_factor
        self.calls = []

    def forward(self, x, guide=None):
        self.calls.append((x.detach().clone(), guide.detach().clone()))
        return F.interpolate(x, scale_factor=2, mode='nearest') + guide


@pytest.mark.parametrize('topology', ['fpn', 'fpn_carafe'])
def test_guide_is_the_finer_lateral_before_the_sum(topology):
    neck = randomize(UpsampleFPN(SMALL_IN, 32, 5, upsample_cfg=dict(type=RecordingGuided), topology=topology))
    inputs = pyramid(ODD)
    neck(inputs)
    laterals = [conv(x) for conv, x in zip(neck.lateral_convs, inputs)]
    if topology == 'fpn_carafe':  # extra lateral: 3x3 stride-2 conv on the raw C5
        laterals.append(neck.lateral_convs[4](inputs[3]))
    for i in range(len(laterals) - 1, 0, -1):
        x, guide = neck.upsample_modules[i - 1].calls[0]
        assert torch.equal(x, laterals[i])  # the coarser lateral, already updated
        fitted_guide = guide[..., :laterals[i - 1].shape[-2], :laterals[i - 1].shape[-1]]
        assert guide.shape[-2:] == (2 * x.shape[-2], 2 * x.shape[-1])  # exact guide (padded when needed)
        assert torch.equal(fitted_guide, laterals[i - 1])  # the finer lateral *before* the sum
        laterals[i - 1] = laterals[i - 1] + (F.interpolate(x, scale_factor=2) + guide)[
            ..., :laterals[i - 1].shape[-2], :laterals[i - 1].shape[-1]]


# ------------------------------------------------------------------------------------------ parameter counts
@pytest.mark.parametrize('cfg,topology,delta', [
    (dict(type='dysample'), 'fpn_carafe', 4 * 8_224),
    (dict(type='carafe'), 'fpn_carafe', 4 * 74_148),
    (dict(type='dysample', dyscope=True), 'fpn_carafe', 4 * 16_416),
    (dict(type='dlu'), 'fpn_carafe', 4 * 35_489),
    (dict(type='lda_aqu'), 'fpn_carafe', 4 * 39_410),
    (dict(type='deconv'), 'fpn_carafe', 4 * 590_080),
    (dict(type='pixel_shuffle'), 'fpn_carafe', 4 * 2_360_320),
    (dict(type='fade'), 'fpn', 3 * 47_257),  # FADE without gate in additive necks (the neck's default)
    (dict(type='fade', gating=True), 'fpn', 3 * 47_514),
    (dict(type='fade_lite'), 'fpn', 3 * 13_075),
    (dict(type='sapa'), 'fpn', 3 * 17_472),
    (dict(type='sapadeform'), 'fpn', 3 * 139_808),
    (dict(type='carafe'), 'fpn', 3 * 74_148),
    (dict(type='dysample', style='pl', groups=8, dyscope=True), 'fpn', 3 * 2_064),
    (dict(type='ddf_up'), 'fpn', 3 * 560_368),
], ids=lambda v: cfg_id(v) if isinstance(v, dict) else str(v))
def test_parameter_deltas_over_nearest_at_256(cfg, topology, delta):
    nearest = UpsampleFPN(R50_IN, 256, 5, upsample_cfg=dict(type='nearest'), topology=topology)
    neck = UpsampleFPN(R50_IN, 256, 5, upsample_cfg=cfg, topology=topology)
    assert n_params(neck) - n_params(nearest) == delta


def test_topology_b_adds_the_extra_lateral_and_p6_conv_at_r50_widths():
    a = UpsampleFPN(R50_IN, 256, 5, topology='fpn')
    b = UpsampleFPN(R50_IN, 256, 5, topology='fpn_carafe')
    assert n_params(a) == n_params(FPN(R50_IN, 256, 5))
    assert n_params(b) == n_params(FPN_CARAFE(R50_IN, 256, 5, upsample_cfg=dict(type='nearest')))
    assert n_params(b) - n_params(a) == 4_718_848 + 590_080
    assert n_params(b.lateral_convs[4]) == 4_718_848 and n_params(b.fpn_convs[4]) == 590_080


# ------------------------------------------------------------------------------------------------------ init
def is_xavier_uniform(weight):
    fan_in = weight.shape[1] * weight[0, 0].numel()
    fan_out = weight.shape[0] * weight[0, 0].numel()
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return weight.abs().max() <= bound and abs(weight.std().item() - bound / math.sqrt(3)) < 0.05 * bound


@pytest.mark.parametrize('topology', ['fpn', 'fpn_carafe'])
def test_init_weights_keeps_the_upsamplers_own_init(topology):
    torch.manual_seed(0)
    necks = {name: UpsampleFPN(SMALL_IN, 64, 5, upsample_cfg=cfg, topology=topology)
             for name, cfg in [('dysample', dict(type='dysample', dyscope=True)), ('carafe', dict(type='carafe')),
                               ('dlu', dict(type='dlu')), ('lda_aqu', dict(type='lda_aqu'))]}
    for neck in necks.values():
        with torch.no_grad():  # a state an overwrite-free init must repair, and that Xavier would not produce
            for param in neck.parameters():
                param.fill_(0.5)
        neck.init_weights()
        # Host convs: Xavier-uniform (gain 1), zero bias.
        for conv in list(neck.lateral_convs) + list(neck.fpn_convs):
            assert is_xavier_uniform(conv.conv.weight) and not conv.conv.bias.any()
    for up in necks['dysample'].upsample_modules:
        assert abs(up.offset.weight.std().item() - 0.001) < 2e-4 and not up.offset.bias.any()
        assert not up.scope.weight.any()
    for up in necks['carafe'].upsample_modules:
        assert abs(up.content_encoder.weight.std().item() - 0.001) < 2e-4 and not up.content_encoder.bias.any()
        assert is_xavier_uniform(up.channel_compressor.weight)
    for up in necks['dlu'].upsample_modules:
        assert not up.conv_offset.weight.any() and not up.conv_offset.bias.any()
        assert abs(up.kernel_space_generator.weight.std().item() - 0.001) < 2e-4
    for up in necks['lda_aqu'].upsample_modules:
        assert not up.conv_offset[-1].weight.any()


def test_pretrained_init_cfg_is_applied_after_the_upsampler_reinit(tmp_path):
    source = randomize(UpsampleFPN(SMALL_IN, 32, 5, upsample_cfg=dict(type='dysample')))
    path = tmp_path / 'neck.pth'
    torch.save(dict(state_dict=source.state_dict()), path)
    neck = UpsampleFPN(SMALL_IN, 32, 5, upsample_cfg=dict(type='dysample'),
                       init_cfg=[dict(type='Xavier', layer='Conv2d', distribution='uniform'),
                                 dict(type='Pretrained', checkpoint=str(path))])
    neck.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(neck.state_dict()[key], value), key


# -------------------------------------------------------------------------------------------------- mask head
def test_mask_head_default_equals_fcn_mask_head():
    stock = randomize(FCNMaskHead(in_channels=32, conv_out_channels=32, num_classes=3))
    ours = UpsampleFCNMaskHead(in_channels=32, conv_out_channels=32, num_classes=3)
    copy_strict(stock, ours)
    x = torch.randn(2, 32, 14, 14)
    assert torch.equal(stock(x), ours(x))
    assert n_params(UpsampleFCNMaskHead()) == n_params(FCNMaskHead()) == 2_643_280  # spec/numbers.md §2


def test_carafe_mask_head_matches_mmdet_and_counts(cpu_mmcv_carafe):
    cfg = dict(type='carafe', scale_factor=2, up_kernel=5, up_group=1, encoder_kernel=3, encoder_dilation=1,
               compressed_channels=64)
    stock = randomize(FCNMaskHead(in_channels=32, conv_out_channels=32, num_classes=3, upsample_cfg=cfg))
    ours = UpsampleFCNMaskHead(in_channels=32, conv_out_channels=32, num_classes=3, upsample_cfg=cfg)
    copy_strict(stock, ours)
    x = torch.randn(2, 32, 14, 14)
    torch.testing.assert_close(ours(x), stock(x), rtol=0, atol=1e-6)
    # 4 convs 2,360,320 + CARAFEPack(256, 2) 74,148 + conv_logits 20,560 (the deconv's 262,400 is gone).
    assert n_params(UpsampleFCNMaskHead(upsample_cfg=cfg)) == 2_643_280 - 262_400 + 74_148 == 2_455_028


@pytest.mark.parametrize('cfg', [dict(type='carafe', scale_factor=2), dict(type='dysample'), dict(type='dlu'),
                                 dict(type='lda_aqu'), dict(type='pixel_shuffle')], ids=cfg_id)
def test_mask_head_upsamplers_14_to_28_without_relu(cfg):
    torch.manual_seed(0)
    head = UpsampleFCNMaskHead(in_channels=32, conv_out_channels=32, num_classes=3, upsample_cfg=cfg)
    head.init_weights()
    x = torch.randn(2, 32, 14, 14)
    out = head(x)
    assert out.shape == (2, 3, 28, 28)
    feats = x
    for conv in head.convs:
        feats = conv(feats)
    up = head.upsample(feats)
    assert up.shape == (2, 32, 28, 28)
    assert torch.equal(out, head.conv_logits(up))  # the upsampled map reaches conv_logits without a ReLU
    if cfg['type'] == 'pixel_shuffle':
        assert (up < 0).any()  # a learned conv output: a ReLU there would have changed it


def test_mask_head_init_restores_the_upsampler_init():
    head = UpsampleFCNMaskHead(upsample_cfg=dict(type='dysample', dyscope=True))
    with torch.no_grad():
        head.upsample.offset.weight.fill_(0.5)
        head.upsample.scope.weight.fill_(0.5)
    head.init_weights()
    assert abs(head.upsample.offset.weight.std().item() - 0.001) < 2e-4
    assert not head.upsample.scope.weight.any()
    assert head.conv_logits.weight.std() > 0.01  # the host's Kaiming init still ran


# ---------------------------------------------------------------------------------------------- panoptic head
def panoptic_inputs(sizes, channels=32, seed=0):
    return pyramid(sizes, channels=[channels] * 4, seed=seed)


def test_panoptic_head_default_equals_stock():
    kwargs = dict(num_stuff_classes=5, in_channels=32, inner_channels=32, norm_cfg=dict(type='GN', num_groups=8))
    stock = randomize(PanopticFPNHead(**kwargs))
    ours = UpsamplePanopticFPNHead(**kwargs)
    copy_strict(stock, ours)
    x = panoptic_inputs(PADDED)
    expected, got = stock(x), ours(x)
    for key in ('seg_preds', 'seg_feats'):
        assert torch.equal(expected[key], got[key])
    assert n_params(UpsamplePanopticFPNHead()) == n_params(PanopticFPNHead()) == 1_630_774  # numbers.md §2


@pytest.mark.parametrize('sizes', [PADDED, ODD], ids=['padded', 'odd'])
def test_panoptic_head_with_dysample(sizes):
    torch.manual_seed(0)
    head = UpsamplePanopticFPNHead(num_stuff_classes=5, in_channels=32, inner_channels=32,
                                   norm_cfg=dict(type='GN', num_groups=8), upsample_cfg=dict(type='dysample'))
    assert sum(len(layer.upsamplers) for layer in head.conv_upsample_layers) == 0 + 1 + 2 + 3
    with torch.no_grad():
        for layer in head.conv_upsample_layers:
            for up in layer.upsamplers:
                up.offset.weight.fill_(0.5)
    head.init_weights()
    for layer in head.conv_upsample_layers:
        for up in layer.upsamplers:
            assert up.offset.weight.abs().max() < 0.01  # own N(0, 0.001^2) init restored
    out = head(panoptic_inputs(sizes))
    assert out['seg_preds'].shape == (1, 6, *sizes[0]) and torch.isfinite(out['seg_preds']).all()
    # 6 DySample(128) modules at the stock width: 6 x (128 * 32 + 32).
    assert n_params(UpsamplePanopticFPNHead(upsample_cfg=dict(type='dysample'))) - 1_630_774 == 6 * 4_128


# ------------------------------------------------------------------------------------------------ registration
def test_built_from_mmdet_configs():
    neck = MODELS.build(dict(type='UpsampleFPN', in_channels=SMALL_IN, out_channels=32, num_outs=5,
                             upsample_cfg=dict(type='dysample'), topology='fpn_carafe'))
    mask_head = MODELS.build(dict(type='UpsampleFCNMaskHead', in_channels=32, conv_out_channels=32,
                                  num_classes=3, upsample_cfg=dict(type='carafe', scale_factor=2)))
    sem_head = MODELS.build(dict(type='UpsamplePanopticFPNHead', in_channels=32, inner_channels=32,
                                 norm_cfg=dict(type='GN', num_groups=8)))
    assert isinstance(neck, UpsampleFPN) and len(neck.upsample_modules) == 4
    assert isinstance(mask_head.upsample, upsample_plugin.CARAFEPack)
    assert isinstance(sem_head, UpsamplePanopticFPNHead)


# ----------------------------------------------------------------------------------------------- bad configs
@pytest.mark.parametrize('kwargs,match', [
    (dict(topology='fpn_carafee'), 'topology'),
    (dict(upsample_cfg=dict(type='no_such_upsampler')), 'upsample_cfg'),
    (dict(upsample_cfg='dysample'), 'upsample_cfg'),
    (dict(upsample_cfg=dict(up_kernel=5)), 'upsample_cfg'),
    (dict(upsample_cfg=dict(type=None)), 'upsample_cfg'),
    (dict(upsample_cfg=dict(type='dysample', scale=4)), 'upsample_cfg'),
    (dict(upsample_cfg=dict(type='dysample', no_such_arg=1)), 'upsample_cfg'),
    (dict(upsample_cfg=dict(type='dysample', guided=True)), 'guided'),
    (dict(upsample_cfg=dict(type='sapa', guided=False)), 'guided'),
    (dict(topology='fpn_carafe', add_extra_convs=True), 'add_extra_convs'),
    (dict(add_extra_convs='on_nothing'), 'add_extra_convs'),
    (dict(order=('norm', 'conv', 'act')), 'order'),
    (dict(num_outs=3), 'num_outs'),
    (dict(end_level=7), 'end_level'),
])
def test_neck_bad_configs(kwargs, match):
    args = dict(in_channels=SMALL_IN, out_channels=32, num_outs=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        UpsampleFPN(**args)


@pytest.mark.parametrize('cfg', [dict(type='sapa'), dict(type='fade')], ids=cfg_id)
def test_heads_reject_guided_upsamplers(cfg):
    with pytest.raises(ValueError, match='guided'):
        UpsampleFCNMaskHead(in_channels=32, conv_out_channels=32, num_classes=3, upsample_cfg=cfg)
    with pytest.raises(ValueError, match='guided'):
        UpsamplePanopticFPNHead(in_channels=32, inner_channels=32, norm_cfg=dict(type='GN', num_groups=8),
                                upsample_cfg=cfg)


def test_heads_bad_configs():
    with pytest.raises(ValueError, match='upsample_cfg'):
        UpsampleFCNMaskHead(upsample_cfg=dict(type='no_such_upsampler'))
    with pytest.raises(ValueError, match='upsample_cfg'):
        UpsampleFCNMaskHead(upsample_cfg=dict(scale_factor=2))
    with pytest.raises(ValueError, match='upsample_cfg'):
        UpsamplePanopticFPNHead(upsample_cfg=dict(type='no_such_upsampler'))
