"""MAC counting of the plugin's modules (upsample_plugin.complexity, tools/get_flops.py) against the papers'
derived numbers (spec/numbers.md section 3: one x2 upsampling of 256x120x120)."""
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from upsample_plugin import CARAFEPack, DySample
from upsample_plugin.complexity import flop_analyzer

ROOT = Path(__file__).parents[1]


def macs(module, *inputs):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        analyzer = flop_analyzer(module.eval(), inputs)
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analyzer.total()


def test_carafe_macs_per_pixel():
    # 16,384 compressor + 57,600 encoder + 25,600 reassembly per low-res pixel, plus the biases' nothing.
    x = torch.randn(1, 256, 12, 10)
    assert macs(CARAFEPack(256, 2), x) == 99_584 * 12 * 10


@pytest.mark.parametrize('style,groups,dyscope,per_pixel', [('lp', 4, False, 8_192), ('lp', 4, True, 16_384),
                                                           ('pl', 4, False, 2_048), ('pl', 8, True, 8_192)])
def test_dysample_macs_per_pixel(style, groups, dyscope, per_pixel):
    x = torch.randn(1, 256, 12, 10)
    sampling = 4 * 256 * 24 * 20  # bilinear: 4 MACs per sampled output value
    assert macs(DySample(256, 2, style, groups, dyscope), x) == per_pixel * 12 * 10 + sampling


def test_get_flops_runs_on_a_config():
    config = ROOT / 'configs' / 'upernet' / 'upernet_r50_4xb4-80k_dysample-lpg4_ade20k-512x512.py'
    result = subprocess.run([sys.executable, str(ROOT / 'tools' / 'get_flops.py'), str(config), '--shape', '64',
                             '64'], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    # 3 DySample modules at 512 channels on the 8x8, 4x4, 2x2 low-res maps of a 64x64 input.
    low_res_pixels = 8 * 8 + 4 * 4 + 2 * 2
    expected = 16_384 * low_res_pixels + 4 * 512 * 4 * low_res_pixels
    assert f'upsamplers: 3 x DySample, {expected:,} MACs' in result.stdout and '49,248 parameters' in result.stdout
