"""tools/benchmark_upsamplers.py --check (parameters and MACs vs spec/numbers.md) and the geometry of
upsample_plugin.visualize / tools/visualize_upsampler.py."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from upsample_plugin import CARAFEPack, DySample, build_upsampler
from upsample_plugin import visualize as vis

ROOT = Path(__file__).parents[1]


def test_check_mode_passes():
    result = subprocess.run([sys.executable, str(ROOT / 'tools' / 'benchmark_upsamplers.py'), '--check',
                             '--no-timing'], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'All checks passed.' in result.stdout
    assert '| CARAFE | 2 | nosampling | 99,584 | 99,584 |' in result.stdout
    assert 'MISMATCH' not in result.stdout


@pytest.mark.parametrize('groups', [1, 4])
def test_dysample_points_with_known_offsets(groups):
    s, channels, height, width = 2, 16, 5, 6
    module = DySample(channels, s, 'lp', groups)
    bias = torch.linspace(-1.0, 1.0, 2 * groups * s * s)
    with torch.no_grad():
        module.offset.weight.zero_()
        module.offset.bias.copy_(bias)
    pixels = [(0, 0), (3, 4), (7, 9), (9, 11)]
    geom = vis.dysample_geometry(module, torch.randn(1, channels, height, width), pixels)
    assert len(geom) == len(pixels)
    for item, (p, q) in zip(geom, pixels):
        h, i, w, j = p // s, p % s, q // s, q % s
        assert item['parent'] == (h, w) and len(item['points']) == groups
        for g, point in enumerate(item['points']):
            # spec/dysample.md: offset = 0.25 * conv + init_pos, init_pos x = (j - (s-1)/2)/s, y = (i - (s-1)/2)/s;
            # channel xy*G*s*s + g*s*s + i*s + j; position (w + 0.5 + dx, h + 0.5 + dy) in input pixels.
            ch = g * s * s + i * s + j
            dx = 0.25 * bias[ch].item() + (j - (s - 1) / 2) / s
            dy = 0.25 * bias[groups * s * s + ch].item() + (i - (s - 1) / 2) / s
            assert point['pos'] == pytest.approx((w + 0.5 + dx, h + 0.5 + dy), abs=1e-6)
            assert len(point['taps']) == 4
            assert sum(t['weight'] for t in point['taps']) == pytest.approx(1.0)
            # The taps' weighted mean is the (border-clamped) sampling position in index coordinates.
            row = min(max(h + dy, 0), height - 1)
            col = min(max(w + dx, 0), width - 1)
            assert sum(t['weight'] * t['row'] for t in point['taps']) == pytest.approx(row, abs=1e-6)
            assert sum(t['weight'] * t['col'] for t in point['taps']) == pytest.approx(col, abs=1e-6)


def test_dysample_points_match_the_module_output():
    """The geometry is what the module computes: resampling x at the taps reproduces the forward output."""
    module = vis.randomize_weights(DySample(8, 2, 'lp', 2), 1.0)
    x = torch.randn(1, 8, 4, 5)
    out = module(x)
    pixels = [(0, 0), (5, 3), (7, 9)]
    for item in vis.dysample_geometry(module, x, pixels):
        p, q = item['pixel']
        for point in item['points']:
            block = slice(point['group'] * 4, point['group'] * 4 + 4)
            value = sum(t['weight'] * x[0, block, t['row'], t['col']] for t in point['taps'])
            assert torch.allclose(value, out[0, block, p, q], atol=1e-5)


def test_carafe_kernel_centred_and_normalised():
    module = vis.randomize_weights(CARAFEPack(16, 2), 1.0)
    x = torch.randn(1, 16, 7, 8)
    pixels = [(0, 0), (5, 6), (13, 15)]
    for item, (p, q) in zip(vis.kernel_geometry(module, x, pixels), pixels):
        kernel = item['kernel']
        assert kernel.shape == (5, 5) and kernel.sum() == pytest.approx(1.0) and (kernel > 0).all()
        assert item['parent'] == (p // 2, q // 2)
        assert len(item['taps']) == 25
        centre = item['taps'][12]
        assert (centre['row'], centre['col']) == (p // 2, q // 2)
        assert {(t['row'] - p // 2, t['col'] - q // 2) for t in item['taps']} == {
            (a, b) for a in range(-2, 3) for b in range(-2, 3)}
        # The kernel is the one the module reassembles with.
        inside = [t for t in item['taps'] if t['inside']]
        value = sum(t['weight'] * x[0, :, t['row'], t['col']] for t in inside)
        assert torch.allclose(value, module(x)[0, :, p, q], atol=1e-5)


def test_frfu_points_reproduce_the_offset_reconstruction():
    """The drawn taps of each group, weighted, give the module's resampled map x_r at that output pixel."""
    module = vis.randomize_weights(build_upsampler(dict(type='frfu'), 8, 2), 0.5).double()
    x = torch.randn(1, 8, 5, 6, dtype=torch.float64)
    x_r = module.sample(x, module.displacements(x))
    kind, geom = vis.geometry(module, x, [(0, 0), (3, 8), (9, 11)])
    assert kind == 'points'
    for item in geom:
        p, q = item['pixel']
        assert len(item['points']) == module.groups
        for point in item['points']:
            channels = slice(point['group'] * 2, point['group'] * 2 + 2)
            value = sum(t['weight'] * x[0, channels, t['row'], t['col']] for t in point['taps'])
            torch.testing.assert_close(value, x_r[0, channels, p, q], rtol=0, atol=1e-12)


@pytest.mark.parametrize('name', ['dlu', 'sapa', 'fade_lite', 'ddf_up', 'lda_aqu', 'freqfusion'])
def test_other_geometries(name):
    module = vis.randomize_weights(build_upsampler(dict(type=name), 32, 2), 0.5)  # SAPA's GroupNorm(32)
    x = torch.randn(1, 32, 6, 6)
    guide = torch.randn(1, 32, 12, 12) if getattr(module, 'needs_guide', False) else None
    kind, geom = vis.geometry(module, x, [(1, 2), (11, 10)], guide)
    assert len(geom) == 2
    if name == 'lda_aqu':
        assert kind == 'points' and len(geom[0]['points']) == module.n_groups * 9
        assert sum(pt['weight'] for pt in geom[0]['points'] if pt['group'] == 0) == pytest.approx(1.0)
    else:
        assert kind == 'kernel' and geom[0]['kernel'].shape in ((5, 5), (3, 3))
        if name == 'dlu':  # where the kernel space was sampled: inside the map
            assert 0 <= geom[0]['source'][0] <= 6 and 0 <= geom[0]['source'][1] <= 6
        if name != 'ddf_up':  # DDF's FilterNorm-ed spatial filters are zero-mean, not normalised
            assert geom[0]['kernel'].sum() == pytest.approx(1.0, abs=1e-5)


def test_visualizer_writes_png_of_the_image_size(tmp_path):
    import matplotlib.image as mpimg
    image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    image_path = tmp_path / 'in.png'
    mpimg.imsave(image_path, image)
    for name in ('dysample', 'carafe'):
        out = tmp_path / f'{name}.png'
        result = subprocess.run([sys.executable, str(ROOT / 'tools' / 'visualize_upsampler.py'), name, '--image',
                                 str(image_path), '--feature-size', '12', '16', '--channels', '16', '--randomize',
                                 '1', '--pixels', '3,4', '20,30', '--out', str(out)],
                                capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-3000:]
        assert mpimg.imread(out).shape[:2] == (96, 128)
