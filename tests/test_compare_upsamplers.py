"""tools/compare_upsamplers.py --seeds: the table of finished runs (each run's result.json is reused, nothing is
trained here): mean ± std over the seeds, every seed, and a difference to the baseline that is called resolved
only when it exceeds two standard errors."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
CONFIG = ROOT / 'configs' / 'toy' / 'faster-rcnn_r18_fpn_toy.py'
RESULTS = {'nearest': [0.20, 0.22, 0.21], 'dysample': [0.19, 0.23, 0.22], 'carafe': [0.30, 0.31, 0.29]}


def test_multi_seed_table_reports_spread_and_resolves_only_beyond_the_noise(tmp_path):
    for upsampler, values in RESULTS.items():
        for seed, value in enumerate(values):
            run = tmp_path / upsampler / f'seed{seed}'
            run.mkdir(parents=True)
            (run / 'result.json').write_text(json.dumps(dict(
                upsampler=upsampler, seed=seed, metric=value, seconds=100.0 + seed, first_loss=2.0, last_loss=0.5,
                environment=dict(cpu='Test CPU', cpu_capability='AVX2', torch_threads=2,
                                 num_workers=dict(train_dataloader=2), versions=dict(torch='t', mmcv='m')))))
    result = subprocess.run([sys.executable, str(ROOT / 'tools' / 'compare_upsamplers.py'), str(CONFIG), '--seeds', '3',
                             '--upsamplers', *RESULTS, '--out', str(tmp_path)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split(' | ')[0].strip('| '): line.split(' | ')
            for line in (tmp_path / 'results.md').read_text().splitlines() if line.startswith('| ')}
    assert 'mean ± std (3 seeds)' in rows['upsampler'][1]
    assert rows['nearest'][1:5] == ['0.2100 ± 0.0100', '0.2000, 0.2200, 0.2100', '—', '—']
    # dysample: +0.0033, within 2 SE = 2 * sqrt(0.01^2/3 + 0.0208^2/3) = 0.027 -> not resolved
    assert rows['dysample'][3] == '+0.0033 ± 0.0267' and rows['dysample'][4] == 'no'
    assert rows['carafe'][3].startswith('+0.0900 ± ') and rows['carafe'][4] == 'yes'
    assert rows['dysample'][5] == '1,783,828' and rows['dysample'][6] == '+6,240'
    assert 'Machine: Test CPU (AVX2), 2 torch threads, num_workers 2' in (tmp_path / 'results.md').read_text()
    assert len((tmp_path / 'results.csv').read_text().splitlines()) == 1 + 9
    assert (tmp_path / 'compare.png').stat().st_size > 0
