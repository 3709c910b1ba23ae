"""Registration and building: mmcv's build_upsample_layer under every default scope, custom_imports in an mm
config, the plugin's build_upsampler for plugin and mmcv names, and no silent override of other packages."""
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import build_upsample_layer
from mmengine.registry import MODELS, DefaultScope
from upsample_test_utils import count_parameters

import upsample_plugin
from upsample_plugin import (FADE, FRFU, LDA_AQU, SAPA, CARAFEPack, DDFUpPack, DLUPack, DySample, FADELite,
                             FreqFusion, SAPADeform, build_upsampler, register_upsampler)

# Every plugin type with the constructor arguments a config gives it (official argument names).
PLUGIN_TYPES = {
    'dysample': (DySample, dict(in_channels=32, scale=2)),
    'portable_carafe': (CARAFEPack, dict(channels=32, scale_factor=2)),
    'dlu': (DLUPack, dict(channels=32, scale_factor=2)),
    'ddf_up': (DDFUpPack, dict(in_channels=32, scale_factor=2)),
    'lda_aqu': (LDA_AQU, dict(in_channels=32)),
    'fade': (FADE, dict(in_channels_en=32, in_channels_de=32, scale=2)),
    'fade_lite': (FADELite, dict(in_channels_en=32, in_channels_de=32, scale=2)),
    'sapa': (SAPA, dict(dim_y=32, dim_x=32, up_factor=2)),
    'sapadeform': (SAPADeform, dict(dim_y=32, dim_x=32, up_factor=2)),
    'freqfusion': (FreqFusion, dict(hr_channels=32, lr_channels=32, compressed_channels=8)),
    'frfu': (FRFU, dict(in_channels=32, scale_factor=2)),
}


def run(layer, x, scale=2):
    """Call an upsampler; guided ones get a random guide of the input's channels at the output size."""
    if not getattr(layer, 'needs_guide', False):
        return layer(x)
    return layer(x, torch.randn(x.shape[0], x.shape[1], scale * x.shape[2], scale * x.shape[3]))


def test_every_plugin_upsampler_is_listed():
    assert set(upsample_plugin.plugin_upsamplers()) == set(PLUGIN_TYPES)


def test_alias_is_mmengine_root_registry():
    assert upsample_plugin.UPSAMPLE_LAYERS is MODELS and MODELS.parent is None


@pytest.mark.parametrize('scope', [None, 'mmdet', 'mmseg'])
@pytest.mark.parametrize('name', sorted(PLUGIN_TYPES))
def test_build_upsample_layer_in_every_scope(scope, name):
    pytest.importorskip(f'{scope}.registry') if scope else None
    cls, kwargs = PLUGIN_TYPES[name]
    with DefaultScope.overwrite_default_scope(scope):
        layer = build_upsample_layer(dict(type=name, **kwargs))
        assert type(layer) is cls
        assert run(layer, torch.randn(1, 32, 5, 7)).shape == (1, 32, 10, 14)
        if scope:  # the scoped registries fall back to the root one
            scoped = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
            assert type(scoped.build(dict(type=name, **kwargs))) is cls


def test_mmcv_carafe_registration_is_kept():
    mmcv_ops = pytest.importorskip('mmcv.ops', reason='mmcv with compiled ops is not installed')
    assert MODELS.get('carafe') is mmcv_ops.CARAFEPack
    assert type(build_upsample_layer(dict(type='carafe', channels=16, scale_factor=2))) is mmcv_ops.CARAFEPack
    assert type(build_upsampler(dict(type='carafe'), 16, 2)) is CARAFEPack


@pytest.mark.parametrize('cfg,cls,params', [
    (dict(type='nearest'), nn.Upsample, 0),
    (dict(type='bilinear'), nn.Upsample, 0),
    (dict(type='deconv'), nn.ConvTranspose2d, 590_080),
    (dict(type='pixel_shuffle'), None, 2_360_320),
    (dict(type='carafe'), CARAFEPack, 74_148),
    (dict(type='portable_carafe'), CARAFEPack, 74_148),
    (dict(type='dysample'), DySample, 8_224),
    (dict(type='dysample', style='pl', groups=8, dyscope=True), DySample, 2_064),
    (None, nn.Upsample, 0),
])
def test_build_upsampler_fills_channels_and_scale(cfg, cls, params):
    layer = build_upsampler(cfg, in_channels=256, scale_factor=2)
    if cls is not None:
        assert type(layer) is cls
    assert count_parameters(layer) == params
    assert layer(torch.randn(1, 256, 5, 7)).shape == (1, 256, 10, 14)


@pytest.mark.parametrize('name', sorted(set(PLUGIN_TYPES) | {'carafe', 'nearest', 'bilinear', 'deconv',
                                                               'pixel_shuffle'}))
def test_build_upsampler_fills_every_type(name):
    layer = build_upsampler(dict(type=name), in_channels=32, scale_factor=2)
    if name in PLUGIN_TYPES:
        assert type(layer) is PLUGIN_TYPES[name][0]
    assert run(layer, torch.randn(2, 32, 3, 5)).shape == (2, 32, 6, 10)


@pytest.mark.parametrize('name', ['deconv', 'dysample', 'carafe', 'pixel_shuffle', 'bilinear', 'dlu', 'ddf_up',
                                  'lda_aqu', 'sapa'])
def test_build_upsampler_other_scales(name):
    layer = build_upsampler(dict(type=name), in_channels=32, scale_factor=4)
    assert run(layer, torch.randn(2, 32, 3, 5), scale=4).shape == (2, 32, 12, 20)


def test_build_upsampler_bilinear_is_align_corners_false():
    x = torch.randn(1, 4, 5, 7)
    torch.testing.assert_close(build_upsampler(dict(type='bilinear'), 4, 2)(x),
                               nn.functional.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False))


def test_build_upsampler_config_values_win():
    assert build_upsampler(dict(type='dysample', scale_factor=3), 16, 2).scale == 3
    assert build_upsampler(dict(type='dysample', scale=4), 16, 2).scale == 4
    assert build_upsampler(dict(type='carafe', up_kernel=3), 16, 2).up_kernel == 3


def test_build_upsampler_accepts_a_class():
    assert type(build_upsampler(dict(type=DySample, groups=2), 16, 2)) is DySample


@pytest.mark.parametrize('cfg,error,match', [
    (dict(type='no_such_upsampler'), KeyError, 'not a registered upsampler'),
    (dict(scale_factor=2), ValueError, 'must be a dict with a "type" key'),
    ('dysample', ValueError, 'must be a dict with a "type" key'),
])
def test_build_upsampler_bad_config(cfg, error, match):
    with pytest.raises(error, match=match):
        build_upsampler(cfg, 16, 2)


def test_name_taken_by_another_package_is_not_overridden():
    name = 'upsample_plugin_test_taken_name'

    class TheirUpsampler(nn.Upsample):
        pass

    MODELS.register_module(name=name, module=TheirUpsampler)
    try:
        with pytest.warns(UserWarning, match=f'{name!r} is already registered'):
            @register_upsampler(name)
            class OurUpsampler(DySample):
                pass
        assert MODELS.get(name) is TheirUpsampler
        assert type(build_upsampler(dict(type=name), 16, 2)) is OurUpsampler
    finally:
        MODELS.module_dict.pop(name)
        upsample_plugin.registry._PLUGIN_UPSAMPLERS.pop(name)


def test_registering_the_same_class_again_is_silent():
    """A module reload re-runs the decorators: that is not a conflict."""
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        register_upsampler('dysample')(DySample)
    assert MODELS.get('dysample') is DySample


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_custom_imports_in_a_config(tmp_path, scope):
    """A fresh interpreter that only reads an mm config finds the plugin through custom_imports."""
    pytest.importorskip(f'{scope}.registry')
    config = tmp_path / 'upsampler_config.py'
    config.write_text(textwrap.dedent("""
        custom_imports = dict(imports=['upsample_plugin'], allow_failed_imports=False)
        default_scope = '%s'
        upsampler = dict(type='dysample', in_channels=16, scale=2, style='pl', groups=4)
    """ % scope))
    script = textwrap.dedent(f"""
        import sys
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        assert 'upsample_plugin' not in sys.modules
        cfg = Config.fromfile({str(config)!r})
        init_default_scope(cfg.default_scope)
        from {scope}.registry import MODELS
        from mmcv.cnn import build_upsample_layer
        print(type(MODELS.build(cfg.upsampler)).__name__, type(build_upsample_layer(cfg.upsampler)).__name__)
    """)
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['DySample', 'DySample']
