"""The core of the plugin needs torch only: ``import upsample_plugin``, every upsampler (built through
``build_upsampler``, forward and backward) and every op work when mmengine, mmcv, mmdet and mmseg cannot be
imported (plain PyTorch users, other detection frameworks). Checked in a subprocess whose ``sys.modules`` maps
those packages to None, so any import of them raises ImportError there, installed or not."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import sys
    MM = ('mmengine', 'mmcv', 'mmdet', 'mmseg')
    for name in MM:
        sys.modules[name] = None  # "import mmcv" now raises ImportError

    import torch
    import upsample_plugin
    from upsample_plugin import UPSAMPLE_LAYERS, build_upsampler, plugin_upsamplers, ops

    assert UPSAMPLE_LAYERS is None, UPSAMPLE_LAYERS
    assert not hasattr(upsample_plugin, 'models'), 'the mm integration was imported without mmengine/mmcv'
    names = sorted(plugin_upsamplers())
    assert len(names) >= 9, names
    torch.manual_seed(0)
    # 32 channels: SAPA's default GroupNorm(32) needs a multiple of 32 (its own constraint, mm or not).
    for name in names + ['carafe', 'nearest', 'bilinear', 'deconv']:
        module = build_upsampler(dict(type=name), 32, 2)
        x = torch.randn(1, 32, 5, 6, requires_grad=True)
        args = (x, torch.randn(1, 32, 10, 12)) if getattr(module, 'needs_guide', False) else (x,)
        out = module(*args)
        assert out.shape == (1, 32, 10, 12), (name, out.shape)
        out.square().mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), name
    try:
        build_upsampler(dict(type='pixel_shuffle'), 16, 2)
    except ImportError as err:
        assert 'mmcv' in str(err), err
    else:
        raise AssertionError('pixel_shuffle (mmcv) built without mmcv')
    f = torch.randn(1, 4, 3, 3)
    ops.carafe(f, torch.randn(1, 9, 6, 6).softmax(1), 3, 1, 2)
    ops.dlu_reassemble(f, torch.randn(1, 9, 3, 3).softmax(1), torch.zeros(1, 8, 3, 3), 3, 1, 2)
    ops.ddf(f, torch.randn(1, 4, 3, 3), torch.randn(1, 9, 3, 3), 3)
    leaked = [name for name in sys.modules if name.split('.')[0] in MM and sys.modules[name] is not None]
    assert not leaked, leaked
    print('OK', len(names))
''')


def test_core_works_without_the_mm_packages():
    result = subprocess.run([sys.executable, '-c', SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f'stdout:\n{result.stdout}\nstderr:\n{result.stderr}'
    assert result.stdout.startswith('OK'), result.stdout
