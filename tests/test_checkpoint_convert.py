"""Checkpoint conversion (upsample_plugin/checkpoints.py, tools/convert_checkpoint.py).

Official state dicts are built here WITH THE OFFICIAL KEY NAMES AND SHAPES, independently of the plugin: from
tables written after the official constructors (each table cites its class and is checked against the official
fixtures of tests/data/official or against mmdet's/mmseg's own classes, which are the official FPN_CARAFE / FPN /
UPerHead code), filled with distinct random values, converted, loaded into the plugin's module / neck / head /
model with ``strict=True``, and every official tensor is checked to sit in the plugin parameter the mapping of
this file (written out below, not taken from the converter) names.
"""
import importlib
import importlib.util
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import mmdet
import mmseg
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmdet.models.necks import FPN, FPN_CARAFE
from mmengine.config import Config, ConfigDict
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope
from mmseg.models.decode_heads import UPerHead

import upsample_plugin  # noqa: F401  (registers the upsamplers and the mm integration)
from upsample_plugin import (FADE, FRFU, LDA_AQU, SAPA, CARAFEPack, DDFUpPack, DLUPack, DySample, FADELite,
                             FreqFusion)
from upsample_plugin.checkpoints import (SOURCES, UnsupportedSourceError, convert_checkpoint, convert_state_dict,
                                         load_checkpoint_file)
from upsample_plugin.models.necks import UpsampleFPN
from upsample_plugin.models.seg_heads import UpsampleUPerHead
from upsample_plugin.ops import carafe as plugin_carafe
from upsample_test_utils import check_official_tuple, load_official

ROOT = Path(__file__).parents[1]
MMDET_CONFIGS = Path(mmdet.__file__).parent / '.mim' / 'configs'
MMSEG_CONFIGS = Path(mmseg.__file__).parent / '.mim' / 'configs'
TOOL = ROOT / 'tools' / 'convert_checkpoint.py'
# mmcv's CARAFEPack module (mmcv.ops re-exports a function of the same name).
mmcv_carafe = importlib.import_module('mmcv.ops.carafe')

SMALL_IN = [8, 16, 24, 40]
WIDTH = 32  # SAPA's GroupNorm(32, C) needs C divisible by 32


pytestmark = pytest.mark.usefixtures('one_thread')  # conftest.py


# ------------------------------------------------------------------------------------ official name/shape tables
def conv(out_ch, in_ch, kernel=1, bias=True, name=''):
    """An ``nn.Conv2d``'s state dict entries (``name.weight``, ``name.bias``)."""
    prefix = f'{name}.' if name else ''
    table = {f'{prefix}weight': (out_ch, in_ch, kernel, kernel)}
    if bias:
        table[f'{prefix}bias'] = (out_ch,)
    return table


def conv_module(name, out_ch, in_ch, kernel, norm=None):
    """mmcv ``ConvModule`` entries: ``name.conv.*`` (bias only without norm, bias='auto') and ``name.bn.*``."""
    table = conv(out_ch, in_ch, kernel, bias=norm is None, name=f'{name}.conv')
    if norm == 'bn':
        table.update({f'{name}.bn.{p}': (out_ch,) for p in ('weight', 'bias', 'running_mean', 'running_var')})
        table[f'{name}.bn.num_batches_tracked'] = ()
    return table


def carafe_pack(channels, compressed_channels=64, up_kernel=5, up_group=1, encoder_kernel=3, scale_factor=2,
                encoder_dilation=1):
    """mmcv ``CARAFEPack.__init__`` (mmcv/ops/carafe.py): 1x1 compressor, k_enc x k_enc content encoder with
    k_up^2 * G * s^2 outputs (the dilation changes no shape)."""
    out = up_kernel ** 2 * up_group * scale_factor ** 2
    return {**conv(compressed_channels, channels, 1, name='channel_compressor'),
            **conv(out, compressed_channels, encoder_kernel, name='content_encoder')}


def dlu_pack(channels, compressed_channels=64, up_kernel=5, encoder_kernel=3, scale_factor=2):
    """``DLUPack`` (Fu0511/Dynamic-Lightweight-Upsampling custom/ops/dlu.py; spec/dlu.md "Layers"): a k_up^2
    kernel space and 2*s^2 offsets, both k_enc x k_enc convs on the compressed map (G = 1)."""
    return {**conv(compressed_channels, channels, 1, name='channel_compressor'),
            **conv(up_kernel ** 2, compressed_channels, encoder_kernel, name='kernel_space_generator'),
            **conv(2 * scale_factor ** 2, compressed_channels, encoder_kernel, name='conv_offset')}


def dysample(in_channels, scale=2, style='lp', groups=4, dyscope=False, scope_bias=False):
    """``DySample`` (tiny-smart/dysample dysample.py; spec/dysample.md): persistent ``init_pos``; ``scope`` has a
    bias in the tiny-smart detection/segmentation copies (``scope_bias=True`` here), none at HEAD."""
    conv_in = in_channels // scale ** 2 if style == 'pl' else in_channels
    conv_out = 2 * groups if style == 'pl' else 2 * groups * scale ** 2
    table = {'init_pos': (1, 2 * groups * scale ** 2, 1, 1), **conv(conv_out, conv_in, 1, name='offset')}
    if dyscope:
        table.update(conv(conv_out, conv_in, 1, bias=scope_bias, name='scope'))
    return table


def lda_aqu(in_channels, reduction_factor=4, nh=1, k_e=3, k_u=3, n_groups=2, **_):
    """``LDA_AQU`` (duzw9311/LDA-AQU mmdet/models/necks/fpn_lau.py; spec/lda_aqu.md "Layers")."""
    hidden = in_channels // reduction_factor
    group_channel = in_channels // (reduction_factor * n_groups)
    return {'relative_position_bias_table': (1, nh, 1, k_u ** 2, hidden // nh),
            **conv(hidden, in_channels, 1, bias=False, name='proj_q'),
            **conv(hidden, in_channels, 1, bias=False, name='proj_k'),
            'conv_offset.0.weight': (group_channel, 1, 3, 3),
            'conv_offset.1.norm.weight': (group_channel,), 'conv_offset.1.norm.bias': (group_channel,),
            **conv(2 * k_u ** 2, group_channel, k_e, name='conv_offset.3'),
            'layer_norm.norm.weight': (in_channels,), 'layer_norm.norm.bias': (in_channels,)}


def fade(in_channels_en, in_channels_de=None, up_kernel_size=5, gating=True, lite=False, **_):
    """``FADE`` / ``FADELite`` (poppinace/fade FADE_L2H.py; the tiny-smart copies have gating=False): the gate is
    a 1x1 conv of the decoder map; the kernel generator compresses en (bias) and de (no bias) to 64 channels
    (FADE) or straight to k^2 (Lite, with a depthwise content encoder)."""
    in_channels_de = in_channels_de or in_channels_en
    k2 = up_kernel_size ** 2
    embedding = k2 if lite else 64
    table = conv(1, in_channels_de, 1, name='gate_generator.conv') if gating else {}
    table.update(conv(embedding, in_channels_en, 1, name='ker_generator.compressor_en'))
    table.update(conv(embedding, in_channels_de, 1, bias=False, name='ker_generator.compressor_de'))
    table.update({'ker_generator.content_encoder.weight': (k2, 1 if lite else embedding, 3, 3),
                  'ker_generator.content_encoder.bias': (k2,)})
    return table


def sapa(dim_y, dim_x=None, embedding_dim=32, norm=True, **_):
    """SAPA-B (tiny-smart/sapa sapa_base.py): GroupNorms of y and x, 1x1 q (from y) and k (from x)."""
    dim_x = dim_x or dim_y
    table = {'norm_y.weight': (dim_y,), 'norm_y.bias': (dim_y,), 'norm_x.weight': (dim_x,), 'norm_x.bias': (dim_x,)}
    if not norm:
        table = {}
    return {**table, **conv(embedding_dim, dim_y, 1, name='q'), **conv(embedding_dim, dim_x, 1, name='k')}


def sapa_deform(dim, scale_factor=2, num_point=9, groups=4, embedding_dim=32):
    """SAPA-D (tiny-smart/sapa sapa_deform.py, tiny-smart defaults: no norm, high_offset)."""
    return {**conv(groups * embedding_dim, dim, 1, name='q'), **conv(groups * embedding_dim, dim, 1, name='k'),
            **conv(groups * num_point * 2 * scale_factor ** 2, dim, 1, name='offset')}


def pixelshuffle_sequential(channels, scale_factor=2):
    """tiny-smart ``build_upsampler('pixelshuffle')``: ``nn.Sequential(Conv2d(C, C*s^2, 3, padding=1),
    nn.PixelShuffle(s))``."""
    return conv(channels * scale_factor ** 2, channels, 3, name='0')


def pixel_shuffle_pack(channels, upsample_kernel=3, scale_factor=2):
    """mmcv ``PixelShufflePack`` (mmdet FPN_CARAFE's 'pixel_shuffle')."""
    return conv(channels * scale_factor ** 2, channels, upsample_kernel, name='upsample_conv')


def conv_transpose(channels, kernel=3):
    """``nn.ConvTranspose2d(C, C, k)`` (weight (in, out, k, k))."""
    return conv(channels, channels, kernel)


def freqfusion(hr_channels, lr_channels=None, compressed_channels=64, lowpass_kernel=5, highpass_kernel=3,
               encoder_kernel=3, feature_resample=True, feature_resample_group=4, feature_resample_norm=True,
               hamming_window=True):
    """``FreqFusion.__init__`` (Linwei-Chen/FreqFusion FreqFusion.py, up_group 1, ``'sim_concat'``) and its
    ``LocalSimGuidedSampler``: compressors, ALPF/AHPF encoders, Hamming buffers, sampler convs, norms, init_pos."""
    lr_channels = lr_channels or hr_channels
    cm, ke = compressed_channels, encoder_kernel
    table = {'hamming_lowpass': (1, 1, lowpass_kernel, lowpass_kernel) if hamming_window else (1,),
             'hamming_highpass': (1, 1, highpass_kernel, highpass_kernel) if hamming_window else (1,),
             **conv(cm, hr_channels, 1, name='hr_channel_compressor'),
             **conv(cm, lr_channels, 1, name='lr_channel_compressor'),
             **conv(lowpass_kernel ** 2, cm, ke, name='content_encoder'),
             **conv(highpass_kernel ** 2, cm, ke, name='content_encoder2')}
    if feature_resample:
        g = feature_resample_group
        for name, out_ch in (('offset', 8 * g), ('direct_scale', 8 * g), ('hr_offset', 2 * g),
                             ('hr_direct_scale', 2 * g)):
            table.update(conv(out_ch, cm + 8, ke, name=f'dysampler.{name}'))
        if feature_resample_norm:
            table.update({f'dysampler.norm_{x}.{p}': (cm,) for x in ('hr', 'lr') for p in ('weight', 'bias')})
        table['dysampler.init_pos'] = (1, 8 * g, 1, 1)
    return table


def frfu(in_channels, scale_factor=2, groups=4, sample_k=3):
    """``FRFU.__init__`` (yisi-xj/Relaxed-Receptive-Field-for-Adaptive-Upsampling frfu.py; ``coord_base`` is not
    persistent)."""
    points = 2 * groups * scale_factor ** 2
    return {**conv(points, in_channels, name='offset'), **conv(points, in_channels, name='offset_mask'),
            **conv(sample_k ** 2, in_channels, name='sample_kernel'), **conv(sample_k ** 2, in_channels,
                                                                              name='kernel_mask')}


def prefixed(prefix, table):
    return {f'{prefix}{k}': v for k, v in table.items()}


def fpn_levels(in_channels, out_channels, upsampler):
    """The per-level part every FPN variant shares: a 1x1 lateral and a 3x3 output per input level and an
    upsampler on every level but the last (``upsampler``: a table of one upsampler module, or None)."""
    table = {}
    for i, c in enumerate(in_channels):
        table.update(conv_module(f'lateral_convs.{i}', out_channels, c, 1))
        table.update(conv_module(f'fpn_convs.{i}', out_channels, out_channels, 3))
        if i != len(in_channels) - 1 and upsampler:
            table.update(prefixed(f'upsample_modules.{i}.', upsampler))
    return table


def fpn_upsample_neck(in_channels, out_channels, num_outs, upsampler, add_extra_convs=False):
    """``FPN_UPSAMPLE.__init__`` (tiny-smart/detection-with-upsamplers mmdet/models/necks/fpn_upsample.py):
    1x1 laterals and 3x3 outputs per level, an upsampler per level but the last, and with ``add_extra_convs`` a
    stride-2 3x3 conv per extra level (C_last-wide for the first 'on_input' one) plus one more (unused)
    upsampler each. ``upsampler`` is a table of one upsampler module or None (parameter-free)."""
    table = fpn_levels(in_channels, out_channels, upsampler)
    levels = len(in_channels)
    if add_extra_convs:
        for j in range(num_outs - levels):
            extra_in = in_channels[-1] if j == 0 and add_extra_convs == 'on_input' else out_channels
            table.update(conv_module(f'fpn_convs.{levels + j}', out_channels, extra_in, 3))
            if upsampler:
                table.update(prefixed(f'upsample_modules.{levels - 1 + j}.', upsampler))
    return table


def fpn_carafe_neck(in_channels, out_channels, num_outs, upsampler):
    """``FPN_CARAFE.__init__`` (mmdet/models/necks/fpn_carafe.py) and its copies ``UNIFIED_FPN`` (DLU) and
    ``FPN_LAU`` (LDA-AQU): per level a 1x1 lateral, a 3x3 output and (but the last) an upsampler; per extra level a
    3x3 stride-2 lateral (on C_last first, then out_channels wide), its own upsampler and 3x3 output."""
    table = fpn_levels(in_channels, out_channels, upsampler)
    levels = len(in_channels)
    for j in range(num_outs - levels):
        extra_in = in_channels[-1] if j == 0 else out_channels
        table.update(conv_module(f'lateral_convs.{levels + j}', out_channels, extra_in, 3))
        if upsampler:
            table.update(prefixed(f'upsample_modules.{levels - 1 + j}.', upsampler))
        table.update(conv_module(f'fpn_convs.{levels + j}', out_channels, out_channels, 3))
    return table


def uper_head_upsample(in_channels, channels, num_classes, upsampler, pool_scales=(1, 2, 3, 6)):
    """``UPerHead_Upsample.__init__`` (tiny-smart/segmentation-with-upsamplers
    mmseg/models/decode_heads/uper_head_upsample.py), BN everywhere: PPM branches (pool -> 1x1 ConvModule), 3x3
    bottleneck, per level but the top a 1x1 lateral, a 3x3 output and an upsampler, a 3x3 fusion bottleneck and
    BaseDecodeHead's 1x1 ``conv_seg``."""
    table = {}
    for j in range(len(pool_scales)):
        table.update(conv_module(f'psp_modules.{j}.1', channels, in_channels[-1], 1, 'bn'))
    table.update(conv_module('bottleneck', channels, in_channels[-1] + len(pool_scales) * channels, 3, 'bn'))
    for i, c in enumerate(in_channels[:-1]):
        table.update(conv_module(f'lateral_convs.{i}', channels, c, 1, 'bn'))
        table.update(conv_module(f'fpn_convs.{i}', channels, channels, 3, 'bn'))
        if upsampler:
            table.update(prefixed(f'upsample_modules.{i}.', upsampler))
    table.update(conv_module('fpn_bottleneck', channels, len(in_channels) * channels, 3, 'bn'))
    table.update(conv(num_classes, channels, 1, name='conv_seg'))
    return table


def nvlabs_segformer_head(in_channels, embed_dim, num_classes, upsampler, channels=128):
    """The NVlabs SegFormer head of poppinace/fade (segformer/segformer_head.py): per-level ``MLP.proj`` Linear
    layers, the ``linear_fuse`` ConvModule with BN (no conv bias), ``linear_pred``, six ``upsamplers`` and mmseg
    0.x BaseDecodeHead's unused ``conv_seg`` at ``channels`` (128 in the official configs)."""
    table = {}
    for level, c in enumerate(in_channels, start=1):
        table.update({f'linear_c{level}.proj.weight': (embed_dim, c), f'linear_c{level}.proj.bias': (embed_dim,)})
    table.update(conv_module('linear_fuse', embed_dim, 4 * embed_dim, 1, 'bn'))
    table.update(conv(num_classes, embed_dim, 1, name='linear_pred'))
    table.update(conv(num_classes, channels, 1, name='conv_seg'))
    if upsampler:
        for i in range(6):
            table.update(prefixed(f'upsamplers.{i}.', upsampler))
    return table


def fill(table, seed=0):
    """Distinct random values for every entry of a name -> shape table (int64 for BN counters)."""
    gen = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for name, shape in table.items():
        if name.endswith('num_batches_tracked'):
            out[name] = torch.randint(1, 10 ** 9, shape, generator=gen)
        else:
            out[name] = torch.randn(shape, generator=gen)
    return out


def refill(state_dict, seed=0):
    """The same keys, shapes and dtypes with fresh distinct random values."""
    gen = torch.Generator().manual_seed(seed)
    return OrderedDict((k, torch.randint(1, 10 ** 9, v.shape, generator=gen) if not v.is_floating_point()
                        else torch.randn(v.shape, generator=gen, dtype=v.dtype)) for k, v in state_dict.items())


def shapes_of(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def assert_landed(official, module, renamed=None, dropped=()):
    """Every official tensor equals the plugin tensor ``renamed.get(key, key)`` (dropped keys excepted), and the
    plugin module has no other tensor."""
    renamed = renamed or {}
    plugin = module.state_dict()
    targets = set()
    for key, value in official.items():
        if key in dropped:
            continue
        target = renamed.get(key, key)
        assert target in plugin, f'official {key} -> {target}: no such plugin tensor'
        assert torch.equal(plugin[target], value), f'official {key} did not land in plugin {target}'
        targets.add(target)
    assert targets == set(plugin), f'plugin tensors not from the checkpoint: {sorted(set(plugin) - targets)}'


def without_type(cfg):
    return {k: v for k, v in cfg.items() if k != 'type'}


def convert_and_load(official, module, **kwargs):
    conversion = convert_state_dict(official, **kwargs)
    module.load_state_dict(conversion.state_dict, strict=True)
    return conversion


# --------------------------------------------------------------------------------------- the tables are official
FIXTURE_TABLES = {
    'carafe_g1_s2': lambda a: carafe_pack(**a),
    'carafe_g2_s2': lambda a: carafe_pack(**a),
    'dlu_s2': lambda a: dlu_pack(a['channels'], a['compressed_channels'], a['up_kernel'], a['encoder_kernel'],
                                 a['scale_factor']),
    'dlu_s4': lambda a: dlu_pack(a['channels'], a['compressed_channels'], a['up_kernel'], a['encoder_kernel'],
                                 a['scale_factor']),
    'dysample_lp_s2': lambda a: dysample(**a),
    'dysample_lp_s3': lambda a: dysample(**a),
    'dysample_lp_dyscope_s2': lambda a: dysample(**a),
    'dysample_pl_s2': lambda a: dysample(**a),
    'dysample_pl_dyscope_s2': lambda a: dysample(**a),
    'lda_aqu_default': lambda a: lda_aqu(**a),
    'fade_gated': lambda a: fade(**a),
    'fade_lite': lambda a: fade(**a, lite=True),
    'sapa_base': lambda a: sapa(**a),
}


@pytest.mark.parametrize('name', sorted(FIXTURE_TABLES))
def test_module_tables_equal_the_official_fixtures(name):
    """The name/shape tables used below give exactly the official modules' state dicts (tests/data/official)."""
    fixture = load_official(name)
    assert FIXTURE_TABLES[name](fixture['init_args']) == shapes_of(fixture['state_dict'])


@pytest.mark.parametrize('upsample_cfg,upsampler', [
    (dict(type='nearest'), None),
    (dict(type='carafe', up_kernel=5, up_group=1, encoder_kernel=3, encoder_dilation=1, compressed_channels=8),
     carafe_pack(WIDTH, compressed_channels=8)),
    (dict(type='deconv', upsample_kernel=3), conv_transpose(WIDTH)),
    (dict(type='pixel_shuffle', upsample_kernel=3), pixel_shuffle_pack(WIDTH)),
], ids=['nearest', 'carafe', 'deconv', 'pixel_shuffle'])
def test_fpn_carafe_table_equals_mmdet_fpn_carafe(upsample_cfg, upsampler):
    """mmdet's FPN_CARAFE *is* the official class (mmdet 2.x and 3.x share it); the copies UNIFIED_FPN / FPN_LAU
    build the same layout, so the table stands for them too."""
    # FPN_CARAFE reads upsample_kernel as an attribute: a ConfigDict, as in mmdet configs.
    official = FPN_CARAFE(SMALL_IN, WIDTH, 6, upsample_cfg=ConfigDict(upsample_cfg))
    assert shapes_of(official.state_dict()) == fpn_carafe_neck(SMALL_IN, WIDTH, 6, upsampler)


@pytest.mark.parametrize('extra', [False, 'on_input', 'on_output'])
def test_fpn_upsample_table_without_upsamplers_equals_mmdet_fpn(extra):
    """FPN_UPSAMPLE is mmdet's FPN plus ``upsample_modules``: with parameter-free upsampling the layouts agree."""
    official = FPN(SMALL_IN, WIDTH, 6, add_extra_convs=extra)
    assert shapes_of(official.state_dict()) == fpn_upsample_neck(SMALL_IN, WIDTH, 6, None, extra)


def test_uper_head_table_equals_mmseg_uperhead():
    official = UPerHead(in_channels=SMALL_IN, in_index=[0, 1, 2, 3], channels=WIDTH, num_classes=5,
                        norm_cfg=dict(type='BN'))
    assert shapes_of(official.state_dict()) == uper_head_upsample(SMALL_IN, WIDTH, 5, None)


# ------------------------------------------------------------------------------------------------ module level
FIXTURE_SOURCES = {
    'carafe_g1_s2': (CARAFEPack, 'carafe_pack'), 'carafe_g2_s2': (CARAFEPack, 'carafe_pack'),
    'ddfup_mul_s2': (DDFUpPack, 'ddf_up_pack'), 'dlu_s2': (DLUPack, 'dlu_pack'), 'dlu_s4': (DLUPack, 'dlu_pack'),
    'dysample_lp_s2': (DySample, 'dysample'), 'dysample_lp_s3': (DySample, 'dysample'),
    'dysample_lp_dyscope_s2': (DySample, 'dysample'), 'dysample_pl_s2': (DySample, 'dysample'),
    'dysample_pl_dyscope_s2': (DySample, 'dysample'), 'lda_aqu_default': (LDA_AQU, 'lda_aqu'),
    'fade_gated': (FADE, 'fade'), 'fade_lite': (FADELite, 'fade'), 'sapa_base': (SAPA, 'sapa'),
    'frfu_default': (FRFU, 'frfu'), 'frfu_g8_k5': (FRFU, 'frfu'), 'frfu_s3_g2': (FRFU, 'frfu'),
}


@pytest.mark.parametrize('name', sorted(FIXTURE_SOURCES))
def test_official_module_state_dicts_convert_and_reproduce_outputs(name):
    """Each official module's state dict is recognised, converted (names unchanged), loads strictly, and the
    converted module reproduces the official output and input gradients (float64, 1e-8)."""
    fixture = load_official(name)
    cls, source = FIXTURE_SOURCES[name]
    module = cls(**fixture['init_args']).double()
    conversion = convert_and_load(fixture['state_dict'], module)
    assert [part.source for part in conversion.components] == [source]
    assert_landed(fixture['state_dict'], module)
    inputs = [fixture['inputs'][k].clone().requires_grad_() for k in fixture['forward_args']]
    # Guided officials take (guide, x); the plugin takes (x, guide).
    out = module(*inputs[::-1]) if len(inputs) == 2 else module(*inputs)
    torch.testing.assert_close(out, fixture['output'], rtol=0, atol=1e-8)
    grads = torch.autograd.grad((out * fixture['grad_weight']).sum(), inputs)
    for key, grad in zip(fixture['forward_args'], grads):
        torch.testing.assert_close(grad, fixture['input_grads'][key], rtol=0, atol=1e-8)


@pytest.mark.parametrize('name', ['freqfusion_default', 'freqfusion_nocomp_k3k5', 'freqfusion_resample_g4',
                                  'freqfusion_segnext_sim'])
def test_official_freqfusion_state_dicts_convert_and_reproduce_the_official_tuple(name):
    """FreqFusion's state dicts are recognised, loaded strictly into the module the reported config builds, and
    reproduce the official ``(mask_lr, hr_feat, lr_feat)`` and input gradients (float64, 1e-8)."""
    fixture = load_official(name)
    conversion = convert_state_dict(fixture['state_dict'])
    report = conversion.components[0]
    assert report.source == 'freqfusion' and report.renamed == {} and report.dropped == {}
    assert any('comp_feat_upsample' in note for note in report.notes)
    cfg = dict(report.plugin_cfg)
    assert cfg.pop('type') == 'freqfusion'
    # What the state dict cannot tell (the report's note): the flags without parameters, and the feature width.
    flags = {k: fixture['init_args'][k] for k in ('comp_feat_upsample', 'semi_conv', 'hr_residual')}
    module = FreqFusion(lr_channels=fixture['inputs']['lr_feat'].shape[1], **flags, **cfg).double()
    module.load_state_dict(conversion.state_dict, strict=True)
    assert_landed(fixture['state_dict'], module)
    check_official_tuple(module, fixture)


def test_fade_lite_and_dysample_copies_are_told_apart_for_the_plugin_config():
    """The reported plugin config builds the right class: FADE-Lite by its depthwise encoder, the tiny-smart
    DySample copy (biased scope) with scope_bias=True."""
    lite = convert_state_dict(load_official('fade_lite')['state_dict']).components[0]
    assert lite.plugin_cfg['type'] == 'fade_lite' and lite.plugin_cfg['gating'] is True
    copy = fill(dysample(WIDTH, dyscope=True, scope_bias=True))
    report = convert_state_dict(copy).components[0]
    assert report.plugin_cfg == dict(type='dysample', style='lp', groups=4, dyscope=True, scope_bias=True)
    assert any('scope_bias=True' in note for note in report.notes)
    module = DySample(WIDTH, dyscope=True, scope_bias=report.plugin_cfg['scope_bias'])
    convert_and_load(copy, module)
    assert_landed(copy, module)


def test_tiny_smart_pixelshuffle_is_renamed_to_pixel_shuffle_pack():
    """The one module whose names change: ``0.weight`` of the tiny-smart Sequential -> ``upsample_conv.weight``."""
    official = fill(pixelshuffle_sequential(WIDTH))
    module = upsample_plugin.build_upsampler(dict(type='pixel_shuffle'), WIDTH, 2)
    conversion = convert_and_load(official, module)
    renamed = {'0.weight': 'upsample_conv.weight', '0.bias': 'upsample_conv.bias'}
    assert conversion.components[0].renamed == renamed
    assert_landed(official, module, renamed)
    x = torch.randn(1, WIDTH, 3, 4)
    # The official Sequential's output, written out: conv then pixel shuffle.
    reference = torch.pixel_shuffle(torch.conv2d(x, official['0.weight'], official['0.bias'], padding=1), 2)
    torch.testing.assert_close(module(x), reference)


# ------------------------------------------------------------------------------------------------- neck level
def tiny_smart_upsampler(kind):
    """(official table at WIDTH, plugin upsample_cfg) for what the tiny-smart build_upsampler makes."""
    return {
        'dysample': (dysample(WIDTH), dict(type='dysample')),
        'dysample_ds': (dysample(WIDTH, dyscope=True, scope_bias=True),
                        dict(type='dysample', dyscope=True, scope_bias=True)),
        'dysample_pl': (dysample(WIDTH, style='pl', groups=8, dyscope=True, scope_bias=True),
                        dict(type='dysample', style='pl', groups=8, dyscope=True, scope_bias=True)),
        'carafe': (carafe_pack(WIDTH), dict(type='carafe')),
        'fade': (fade(WIDTH, gating=False), dict(type='fade')),
        'sapa': (sapa(WIDTH), dict(type='sapa')),
        'sapadeform': (sapa_deform(WIDTH), dict(type='sapadeform')),
        'pixelshuffle': (pixelshuffle_sequential(WIDTH), dict(type='pixel_shuffle')),
        'deconv': (conv_transpose(WIDTH), dict(type='deconv')),
    }[kind]


def pixelshuffle_renames(official):
    """The mapping for the tiny-smart Sequential pixel shuffle inside a neck/head."""
    return {k: k.replace('.0.weight', '.upsample_conv.weight').replace('.0.bias', '.upsample_conv.bias')
            for k in official if k.startswith('upsample_modules.')}


@pytest.mark.parametrize('kind', ['dysample', 'dysample_ds', 'dysample_pl', 'carafe', 'fade', 'sapa', 'sapadeform',
                                  'pixelshuffle', 'deconv'])
@pytest.mark.parametrize('extra', [False, 'on_input'])
def test_fpn_upsample_neck(kind, extra):
    """FPN_UPSAMPLE (the released DySample / FADE / SAPA detection neck) -> UpsampleFPN(topology='fpn'); with
    add_extra_convs its never-called extra upsampler is dropped."""
    table, plugin_cfg = tiny_smart_upsampler(kind)
    official = fill(fpn_upsample_neck(SMALL_IN, WIDTH, 5, table, extra))
    neck = UpsampleFPN(SMALL_IN, WIDTH, 5, add_extra_convs=extra, upsample_cfg=plugin_cfg, topology='fpn')
    conversion = convert_and_load(official, neck)
    report = conversion.components[0]
    assert report.source == 'fpn_upsample'
    assert report.plugin_cfg['topology'] == 'fpn' and report.plugin_cfg['in_channels'] == SMALL_IN
    assert report.plugin_cfg['upsample_cfg']['type'] == plugin_cfg['type']
    dropped = {k for k in official if k.startswith('upsample_modules.3.')} if extra else set()
    assert set(report.dropped) == dropped and (not extra or dropped)
    renamed = pixelshuffle_renames(official) if kind == 'pixelshuffle' else {}
    assert report.renamed == {k: v for k, v in renamed.items() if k not in dropped}
    assert_landed(official, neck, renamed, dropped)
    # The reported plugin config is enough to build a neck the converted state dict loads into.
    hinted = UpsampleFPN(**without_type(report.plugin_cfg), num_outs=5)
    hinted.load_state_dict(conversion.state_dict, strict=True)


@pytest.mark.parametrize('source,upsample_cfg,upsampler', [
    ('fpn_carafe', dict(type='nearest'), None),
    ('fpn_carafe', dict(type='carafe', compressed_channels=8), carafe_pack(WIDTH, compressed_channels=8)),
    ('fpn_carafe', dict(type='deconv', upsample_kernel=3), conv_transpose(WIDTH)),
    ('fpn_carafe', dict(type='pixel_shuffle', upsample_kernel=3), pixel_shuffle_pack(WIDTH)),
    ('unified_fpn', dict(type='dlu', compressed_channels=8), dlu_pack(WIDTH, compressed_channels=8)),
    ('fpn_lau', dict(type='lda_aqu'), lda_aqu(WIDTH)),
], ids=['fpn_carafe-nearest', 'fpn_carafe-carafe', 'fpn_carafe-deconv', 'fpn_carafe-pixel_shuffle',
        'unified_fpn-dlu', 'fpn_lau-lda_aqu'])
def test_fpn_carafe_layout_necks(source, upsample_cfg, upsampler):
    """FPN_CARAFE (mmdet), UNIFIED_FPN (DLU), FPN_LAU (LDA-AQU) -> UpsampleFPN(topology='fpn_carafe'), names
    unchanged; the source is told by the upsampler and the 3x3 stride-2 extra lateral."""
    official = fill(fpn_carafe_neck(SMALL_IN, WIDTH, 5, upsampler))
    neck = UpsampleFPN(SMALL_IN, WIDTH, 5, upsample_cfg=upsample_cfg, topology='fpn_carafe')
    conversion = convert_and_load(official, neck)
    report = conversion.components[0]
    assert report.source == source
    assert report.plugin_cfg['topology'] == 'fpn_carafe'
    assert report.plugin_cfg['upsample_cfg']['type'] == upsample_cfg['type']
    assert report.renamed == {} and report.dropped == {}
    assert_landed(official, neck)
    hinted = UpsampleFPN(**without_type(report.plugin_cfg), num_outs=5)
    hinted.load_state_dict(conversion.state_dict, strict=True)


@pytest.mark.parametrize('kind', ['freqfusion', 'frfu'])
def test_freqfusion_and_frfu_fpn_necks(kind):
    """FreqFusionCARAFEFPN (its four modules in ``alignment``) and FRFU's FPN_CARAFE_Upsample (mmdet's names)
    -> UpsampleFPN(topology='fpn_carafe'): ``alignment.N.`` becomes ``upsample_modules.N.``."""
    official = fill(fpn_carafe_neck(SMALL_IN, WIDTH, 5, None))
    if kind == 'freqfusion':
        module_table = freqfusion(WIDTH, compressed_channels=8)
        upsample_cfg = dict(type='freqfusion', compressed_channels=8, feature_resample=True)
        attr, source = 'alignment', 'freqfusion_carafe_fpn'
    else:
        module_table = frfu(WIDTH)
        upsample_cfg, attr, source = dict(type='frfu'), 'upsample_modules', 'fpn_carafe_upsample'
    for j in range(4):
        official.update(fill(prefixed(f'{attr}.{j}.', module_table), seed=j + 1))
    neck = UpsampleFPN(SMALL_IN, WIDTH, 5, upsample_cfg=upsample_cfg, topology='fpn_carafe')
    conversion = convert_and_load(official, neck)
    report = conversion.components[0]
    assert report.source == source and report.plugin_cfg['topology'] == 'fpn_carafe'
    assert report.plugin_cfg['upsample_cfg']['type'] == kind
    renamed = {k: 'upsample_modules.' + k[len('alignment.'):] for k in official if k.startswith('alignment.')}
    assert report.renamed == renamed and report.dropped == {}
    assert_landed(official, neck, renamed)
    hinted = UpsampleFPN(**without_type(report.plugin_cfg), num_outs=5)
    hinted.load_state_dict(conversion.state_dict, strict=True)


def test_frfu_segformer_head_upsample():
    """FRFU's SegformerHead_Upsample (ADE20K_segmentation/segformer_head_upsample.py: mmseg SegformerHead's names
    plus six ``upsample_modules``) -> UpsampleSegformerHead with ``type='frfu'``, names unchanged."""
    from mmseg.models.decode_heads import SegformerHead

    from upsample_plugin.models.seg_heads import UpsampleSegformerHead
    kwargs = dict(in_channels=[8, 16, 24, 40], in_index=[0, 1, 2, 3], channels=WIDTH, num_classes=5,
                  norm_cfg=dict(type='BN'))
    official = fill(shapes_of(SegformerHead(**kwargs).state_dict()))
    for j in range(6):
        official.update(fill(prefixed(f'upsample_modules.{j}.', frfu(WIDTH)), seed=j + 1))
    head = UpsampleSegformerHead(upsample_cfg=dict(type='frfu'), **kwargs)
    report = convert_and_load(official, head).components[0]
    assert report.source == 'segformer_head_upsample' and report.plugin_cfg['upsample_cfg']['type'] == 'frfu'
    assert report.renamed == {} and report.dropped == {}
    assert_landed(official, head)


def test_mmdet_fpn_neck_with_extra_convs():
    official = FPN(SMALL_IN, WIDTH, 6, add_extra_convs='on_input')
    official.load_state_dict(fill(shapes_of(official.state_dict())))
    neck = UpsampleFPN(SMALL_IN, WIDTH, 6, add_extra_convs='on_input', topology='fpn')
    report = convert_and_load(official.state_dict(), neck).components[0]
    assert report.source == 'fpn' and report.plugin_cfg['add_extra_convs'] == 'on_input'
    assert_landed(official.state_dict(), neck)
    inputs = [torch.randn(1, c, 32 >> i, 40 >> i) for i, c in enumerate(SMALL_IN)]
    for ours, theirs in zip(neck(inputs), official(inputs)):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize('num_outs', [4, 5])
def test_converted_fpn_carafe_reproduces_mmdet_outputs(monkeypatch, num_outs):
    """mmdet's FPN_CARAFE with CARAFE (mmcv's CUDA op routed to the plugin's portable one, the same math checked in
    tests/test_carafe_op.py): the converted plugin neck gives the same outputs at padded and odd sizes."""
    monkeypatch.setattr(mmcv_carafe, 'carafe', plugin_carafe)
    cfg = dict(type='carafe', up_kernel=5, up_group=1, encoder_kernel=3, encoder_dilation=1, compressed_channels=8)
    official = FPN_CARAFE(SMALL_IN, WIDTH, num_outs, upsample_cfg=cfg).eval()
    official.load_state_dict(fill(shapes_of(official.state_dict()), seed=3))
    neck = UpsampleFPN(SMALL_IN, WIDTH, num_outs, upsample_cfg=cfg, topology='fpn_carafe').eval()
    convert_and_load(official.state_dict(), neck)
    for sizes in ([(32, 48), (16, 24), (8, 12), (4, 6)], [(31, 45), (16, 23), (8, 12), (4, 6)]):
        inputs = [torch.randn(1, c, h, w) for c, (h, w) in zip(SMALL_IN, sizes)]
        with torch.no_grad():
            for ours, theirs in zip(neck(inputs), official(inputs)):
                torch.testing.assert_close(ours, theirs)


TINY_SMART_KINDS = ['dysample', 'dysample_ds', 'carafe', 'fade', 'sapa', 'sapadeform', 'pixelshuffle', 'deconv']
CARAFE_LAYOUT = {'carafe': (lambda: carafe_pack(WIDTH, compressed_channels=8),
                            dict(type='carafe', compressed_channels=8), 'fpn_carafe'),
                 'dlu': (lambda: dlu_pack(WIDTH, compressed_channels=8), dict(type='dlu', compressed_channels=8),
                         'unified_fpn'),
                 'lda_aqu': (lambda: lda_aqu(WIDTH), dict(type='lda_aqu'), 'fpn_lau'),
                 'nearest': (lambda: None, dict(type='nearest'), 'fpn_carafe')}


@settings(max_examples=8, deadline=None)
@given(levels=st.integers(2, 4), start=st.integers(0, 1), extra=st.integers(0, 2),
       extra_convs=st.sampled_from([False, 'on_input', 'on_output']), kind=st.sampled_from(TINY_SMART_KINDS),
       seed=st.integers(0, 2 ** 16))
def test_fpn_upsample_any_layout_loads_strictly(levels, start, extra, extra_convs, kind, seed):
    """Any FPN_UPSAMPLE layout (levels, extra levels, extra-conv source, upsampler) converts and loads."""
    in_channels = SMALL_IN[start:start + levels]
    levels = len(in_channels)
    table, plugin_cfg = tiny_smart_upsampler(kind)
    add_extra = extra_convs if extra else False
    official = fill(fpn_upsample_neck(in_channels, WIDTH, levels + extra, table, add_extra), seed)
    neck = UpsampleFPN(in_channels, WIDTH, levels + extra, add_extra_convs=add_extra, upsample_cfg=plugin_cfg)
    report = convert_and_load(official, neck).components[0]
    used = levels - 1  # upsample_modules.N with N >= used belong to extra levels and are never called
    dropped = {k for k in official if k.startswith('upsample_modules.') and int(k.split('.')[1]) >= used}
    assert set(report.dropped) == dropped
    assert_landed(official, neck, pixelshuffle_renames(official) if kind == 'pixelshuffle' else {}, dropped)


@settings(max_examples=8, deadline=None)
@given(levels=st.integers(2, 4), extra=st.integers(0, 2), kind=st.sampled_from(sorted(CARAFE_LAYOUT)),
       seed=st.integers(0, 2 ** 16))
def test_fpn_carafe_any_layout_loads_strictly(levels, extra, kind, seed):
    in_channels = SMALL_IN[:levels]
    make_table, plugin_cfg, source = CARAFE_LAYOUT[kind]
    official = fill(fpn_carafe_neck(in_channels, WIDTH, levels + extra, make_table()), seed)
    neck = UpsampleFPN(in_channels, WIDTH, levels + extra, upsample_cfg=plugin_cfg, topology='fpn_carafe')
    report = convert_and_load(official, neck).components[0]
    if extra or kind in ('dlu', 'lda_aqu'):
        # Without an extra level a parameter-free/CARAFE FPN_CARAFE is key-for-key an FPN_UPSAMPLE / FPN.
        assert report.source == source
    assert_landed(official, neck)


# ------------------------------------------------------------------------------------------------- head level
@pytest.mark.parametrize('kind', ['dysample_ds', 'fade', 'pixelshuffle', None])
def test_uper_head_upsample(kind):
    """UPerHead_Upsample (tiny-smart segmentation) -> UpsampleUPerHead; also stock mmseg UPerHead (None)."""
    table, plugin_cfg = tiny_smart_upsampler(kind) if kind else (None, dict(type='bilinear'))
    official = fill(uper_head_upsample(SMALL_IN, WIDTH, 5, table))
    head = UpsampleUPerHead(in_channels=SMALL_IN, in_index=[0, 1, 2, 3], channels=WIDTH, num_classes=5,
                            norm_cfg=dict(type='BN'), upsample_cfg=plugin_cfg)
    report = convert_and_load(official, head).components[0]
    assert report.source == 'uper_head_upsample'
    renamed = pixelshuffle_renames(official) if kind == 'pixelshuffle' else {}
    assert report.renamed == renamed
    assert_landed(official, head, renamed)


# ------------------------------------------------------------------------------------------------ whole models
def build_model(config, **overrides):
    cfg = Config.fromfile(str(config))
    cfg.model.pop('pretrained', None)
    cfg.model.backbone.init_cfg = None
    for dotted, value in overrides.items():
        cfg.merge_from_dict({dotted: value})
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        registry = importlib.import_module(f'{cfg.default_scope}.registry').MODELS
        return revert_sync_batchnorm(registry.build(cfg.model))


@pytest.mark.parametrize('official_config,plugin_config,parts', [
    ('carafe/faster-rcnn_r50_fpn-carafe_1x_coco.py', 'faster_rcnn/faster-rcnn_r50_fpn-p6conv_carafe_1x_coco.py',
     {'neck.': 'fpn_carafe'}),
    ('carafe/mask-rcnn_r50_fpn-carafe_1x_coco.py', 'mask_rcnn/mask-rcnn_r50_fpn-p6conv_carafe_1x_coco.py',
     {'neck.': 'fpn_carafe', 'roi_head.mask_head.upsample.': 'carafe_pack'}),
], ids=['faster_rcnn', 'mask_rcnn'])
def test_mmdet2_carafe_detector_checkpoint_loads_into_the_plugin_config(official_config, plugin_config, parts):
    """The mmdet CARAFE detectors (mmdet 3.x's configs/carafe use the mmdet v2.0 checkpoints unchanged, so this
    model's state dict has the mmdet 2.x names and shapes), saved as an mmcv 1.x checkpoint file with DDP
    prefixes, convert and load strictly into the plugin's config; every tensor lands in place."""
    official = build_model(MMDET_CONFIGS / official_config)
    state_dict = refill(official.state_dict(), seed=7)
    checkpoint = {'meta': dict(mmcv_version='1.0.0', mmdet_version='2.0.0', CLASSES=('person', 'car')),
                  'state_dict': OrderedDict((f'module.{k}', v) for k, v in state_dict.items()),
                  'optimizer': dict(state={}, param_groups=[])}
    converted, conversion = convert_checkpoint(checkpoint)
    assert {part.prefix: part.source for part in conversion.components} == parts
    assert conversion.passed_through == sum(not k.startswith(tuple(parts)) for k in state_dict)
    assert converted['meta']['CLASSES'] == ('person', 'car') and 'optimizer' not in converted
    plugin = build_model(ROOT / 'configs' / plugin_config)
    plugin.load_state_dict(converted['state_dict'], strict=True)
    assert_landed(state_dict, plugin)


def test_uper_head_upsample_segmentor_checkpoint_loads_into_the_plugin_config():
    """A UPerNet R50 with UPerHead_Upsample + the tiny-smart DySample+ copy (biased scope) at 512 channels: the
    stock mmseg UPerNet's names plus three upsamplers; it loads into configs/upernet/*dysample-lpg4ds* with
    scope_bias=True."""
    official = build_model(MMSEG_CONFIGS / 'upernet' / 'upernet_r50_4xb4-80k_ade20k-512x512.py')
    state_dict = OrderedDict(official.state_dict())
    for i in range(3):
        state_dict.update(fill(prefixed(f'decode_head.upsample_modules.{i}.',
                                        dysample(512, dyscope=True, scope_bias=True)), seed=i))
    state_dict = refill(state_dict, seed=11)
    conversion = convert_state_dict(state_dict)
    report = conversion.components[0]
    assert report.source == 'uper_head_upsample'
    assert report.plugin_cfg['upsample_cfg'] == dict(type='dysample', style='lp', groups=4, dyscope=True,
                                                     scope_bias=True)
    plugin = build_model(ROOT / 'configs' / 'upernet' / 'upernet_r50_4xb4-80k_dysample-lpg4ds_ade20k-512x512.py',
                         **{'model.decode_head.upsample_cfg.scope_bias': True})
    plugin.load_state_dict(conversion.state_dict, strict=True)
    assert_landed(state_dict, plugin)


# ------------------------------------------------------------------------------------------------------ errors
def test_unknown_state_dict_lists_its_keys():
    unknown = {'foo.weight': torch.zeros(2, 3), 'bar.bias': torch.zeros(2)}
    with pytest.raises(ValueError, match=r'foo\.weight') as info:
        convert_state_dict(unknown)
    assert 'bar.bias' in str(info.value)


def test_unmatched_official_key_of_a_neck_is_named():
    official = fill(fpn_carafe_neck(SMALL_IN, WIDTH, 5, carafe_pack(WIDTH)))
    official['lateral_convs.1.conv.weight_orig'] = torch.zeros(1)
    with pytest.raises(ValueError, match=r'lateral_convs\.1\.conv\.weight_orig'):
        convert_state_dict(official)
    with pytest.raises(ValueError, match=r'lateral_convs\.1\.conv\.weight_orig'):
        convert_state_dict(official, source='fpn_carafe')


def test_forced_source_checks_the_upsamplers_its_class_can_build():
    """FPN_CARAFE (mmdet) never holds a DySample: forcing it on an FPN_UPSAMPLE DySample neck fails, naming the
    upsampler's keys; auto-detection finds FPN_UPSAMPLE."""
    official = fill(fpn_upsample_neck(SMALL_IN, WIDTH, 5, dysample(WIDTH)))
    with pytest.raises(ValueError, match=r'offset\.weight'):
        convert_state_dict(official, source='fpn_carafe')
    assert convert_state_dict(official).components[0].source == 'fpn_upsample'


def test_whole_model_with_an_unknown_neck_is_rejected():
    state_dict = {'backbone.conv1.weight': torch.zeros(1), 'neck.downsample_convs.0.conv.weight': torch.zeros(1)}
    with pytest.raises(ValueError, match=r'downsample_convs'):
        convert_state_dict(state_dict)


@pytest.mark.parametrize('state_dict,match', [
    ({'norm_y.weight': torch.zeros(8), 'norm_y.bias': torch.zeros(8), 'norm_x.weight': torch.zeros(8),
      'norm_x.bias': torch.zeros(8), 'q.weight': torch.zeros(4, 8), 'k.weight': torch.zeros(4, 8)}, 'NeurIPS'),
], ids=['sapa_neurips'])
def test_recognised_but_unconvertible_sources_say_why(state_dict, match):
    with pytest.raises(UnsupportedSourceError, match=match):
        convert_state_dict(state_dict)


@pytest.mark.parametrize('upsample_cfg,upsampler', [
    (dict(type='bilinear'), None),
    (dict(type='fade', gating=True), fade(32)),
    (dict(type='fade_lite', gating=True), fade(32, lite=True)),
], ids=['bilinear', 'fade', 'fade_lite'])
def test_nvlabs_segformer_head_checkpoint_converts_and_loads(upsample_cfg, upsampler):
    """An NVlabs / poppinace/fade SegFormer head state dict (with mmseg 0.x's unused 128-channel conv_seg) is
    recognised, keeps every name, loads strictly into NVlabsSegFormerHead, and every tensor lands in place."""
    from upsample_plugin.models.seg_heads import NVlabsSegFormerHead
    official = fill(nvlabs_segformer_head([8, 16, 24, 40], 32, 5, upsampler), seed=3)
    conversion = convert_state_dict(official)
    report = conversion.components[0]
    assert report.source == 'segformer_head_fade' and report.plugin_cfg['type'] == 'NVlabsSegFormerHead'
    assert set(report.dropped) == {'conv_seg.weight', 'conv_seg.bias'}
    head = NVlabsSegFormerHead(in_channels=[8, 16, 24, 40], in_index=[0, 1, 2, 3], channels=32, num_classes=5,
                               norm_cfg=dict(type='BN', requires_grad=True), upsample_cfg=upsample_cfg)
    if upsampler:
        assert report.plugin_cfg['upsample_cfg']['type'] == upsample_cfg['type']
    head.load_state_dict(conversion.state_dict, strict=True)
    assert_landed(official, head, dropped=('conv_seg.weight', 'conv_seg.bias'))


@pytest.mark.parametrize('state_dict,source,match', [
    ({'offset.weight': torch.zeros(8, 4, 1, 1)}, 'not_a_source', 'source must be one of'),
    ({'neck.lateral_convs.0.conv.weight': torch.zeros(4, 4, 1, 1)}, 'dysample', 'names an upsampler module'),
    ({'neck.lateral_convs.0.conv.weight': torch.zeros(4, 4, 1, 1)}, 'uper_head_upsample', 'no decode_head'),
    ({'offset.weight': [1.0]}, None, 'to tensors'),
    ({}, None, 'non-empty'),
    ({'backbone.conv1.weight': torch.zeros(1)}, None, 'nothing of an official upsampler repository'),
])
def test_bad_arguments_raise_value_error(state_dict, source, match):
    with pytest.raises(ValueError, match=match):
        convert_state_dict(state_dict, source=source)


def test_every_source_is_listed():
    assert len(set(SOURCES)) == len(SOURCES)
    assert {'fpn_carafe', 'fpn_upsample', 'unified_fpn', 'fpn_lau', 'uper_head_upsample', 'carafe_pack',
            'dysample', 'dlu_pack', 'lda_aqu'} <= set(SOURCES)


# --------------------------------------------------------------------------------------------------------- CLI
def toy_fpn_upsample_checkpoint(path):
    """An FPN_UPSAMPLE Faster R-CNN on the toy R18 backbone (configs/toy): mmdet's Faster R-CNN names outside the
    neck (they do not depend on the neck), the official FPN_UPSAMPLE neck with the DySample+ copy and one
    'on_input' extra level (so one unused upsampler), saved as an mmengine-style checkpoint file."""
    host = build_model(ROOT / 'configs' / 'toy' / 'faster-rcnn_r18_fpn_toy.py')
    neck = prefixed('neck.', fpn_upsample_neck([16, 32, 64, 128], 64, 5,
                                               dysample(64, dyscope=True, scope_bias=True), 'on_input'))
    state_dict = OrderedDict((k, v) for k, v in host.state_dict().items() if not k.startswith('neck.'))
    state_dict.update(fill(neck, seed=5))
    state_dict = refill(state_dict, seed=9)
    torch.save(dict(meta=dict(mmdet_version='3.1.0', epoch=12), state_dict=state_dict), path)
    return state_dict


TOY_OPTIONS = ['model.neck.add_extra_convs=on_input', 'model.neck.upsample_cfg.type=dysample',
               'model.neck.upsample_cfg.dyscope=True', 'model.neck.upsample_cfg.scope_bias=True']


def test_cli_converts_and_checks_end_to_end(tmp_path):
    """``python tools/convert_checkpoint.py IN OUT --check-config CONFIG``: exit 0, the written file loads with
    mmengine's load_checkpoint(strict=True) and every tensor lands in place."""
    state_dict = toy_fpn_upsample_checkpoint(tmp_path / 'official.pth')
    config = ROOT / 'configs' / 'toy' / 'faster-rcnn_r18_fpn_toy.py'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    run = subprocess.run([sys.executable, str(TOOL), str(tmp_path / 'official.pth'), str(tmp_path / 'plugin.pth'),
                          '--check-config', str(config), '--cfg-options', *TOY_OPTIONS],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert 'neck.: fpn_upsample' in run.stdout
    assert 'dropped neck.upsample_modules.3.offset.weight' in run.stdout
    assert 'with strict=True' in run.stdout and 'NOT' not in run.stdout

    from mmengine.runner import load_checkpoint
    plugin = build_model(config, **{'model.neck.add_extra_convs': 'on_input',
                                    'model.neck.upsample_cfg': dict(type='dysample', dyscope=True, scope_bias=True)})
    load_checkpoint(plugin, str(tmp_path / 'plugin.pth'), map_location='cpu', strict=True)
    dropped = {k for k in state_dict if k.startswith('neck.upsample_modules.3.')}
    assert len(dropped) == 5
    assert_landed(state_dict, plugin, dropped=dropped)
    written = load_checkpoint_file(str(tmp_path / 'plugin.pth'))
    assert written['meta']['epoch'] == 12
    assert written['meta']['upsample_plugin_conversion'][0]['source'] == 'fpn_upsample'


def load_tool():
    spec = importlib.util.spec_from_file_location('convert_checkpoint_tool', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_cli_check_reports_missing_and_unexpected_keys(tmp_path, capsys):
    """Loaded into a config of the wrong layout (no scope bias, no extra conv), the check fails with status 1 and
    lists the keys."""
    toy_fpn_upsample_checkpoint(tmp_path / 'official.pth')
    status = load_tool().main([str(tmp_path / 'official.pth'), str(tmp_path / 'plugin.pth'), '--check-config',
                               str(ROOT / 'configs' / 'toy' / 'faster-rcnn_r18_fpn_toy.py'), '--cfg-options',
                               'model.neck.upsample_cfg.type=dysample', 'model.neck.upsample_cfg.dyscope=True'])
    out = capsys.readouterr().out
    assert status == 1
    assert 'does NOT load' in out
    assert 'unexpected keys' in out and 'neck.upsample_modules.0.scope.bias' in out
    assert 'neck.fpn_convs.4.conv.weight' in out


def test_cli_unknown_state_dict_exits_with_one_line_error(tmp_path):
    """The tool's entry point (run_tool around main, as under ``__main__``) ends an unconvertible checkpoint with
    ``error: ...`` naming the key, and writes nothing."""
    from upsample_plugin.runner import run_tool

    torch.save({'state_dict': {'foo.weight': torch.zeros(2)}, 'meta': {}}, tmp_path / 'unknown.pth')
    tool = load_tool()
    with pytest.raises(SystemExit) as info:
        run_tool(lambda: sys.exit(tool.main([str(tmp_path / 'unknown.pth'), str(tmp_path / 'out.pth')])))
    message = str(info.value.code)
    assert message.startswith('error: ') and 'foo.weight' in message and '\n' not in message
    assert not (tmp_path / 'out.pth').exists()
