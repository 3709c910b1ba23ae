"""tools/gpu_check.sh, the one command that proves the CUDA kernels on a GPU machine, checked here without a GPU:
its dry run (``--device cpu``: no build, the CUDA tests skip, a tiny CPU benchmark) must produce the report it
documents, and its pytest-free runner must run tests/test_devices.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_writes_the_documented_report(tmp_path):
    env = dict(os.environ, OUT_DIR=str(tmp_path), PYTHON=sys.executable)
    result = subprocess.run(['bash', 'tools/gpu_check.sh', '--device', 'cpu'], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert [(s['name'], s['status']) for s in report['steps']] == [
        ('environment', 'ok'), ('tests', 'ok'), ('benchmark', 'ok')]
    assert report['environment']['torch'] and report['tests']['failed'] == 0 and report['tests']['skipped'] > 0
    records = report['benchmark']['records']
    assert {(r['backend'], r['mode']) for r in records} == {
        (b, m) for b in ('reference', 'compiled') for m in ('forward', 'forward+backward')}
    assert all(r['seconds'] > 0 for r in records)
    text = (tmp_path / 'gpu_check.md').read_text()
    assert '| step | status |' in text and '| op | size (low-res) | backend |' in text
    assert 'all steps passed' in (tmp_path / 'gpu_check.log').read_text()


def test_runs_test_devices_without_pytest():
    """A GPU machine may have torch and nvcc only: the minimal runner stands in for pytest there."""
    script = ('import sys; sys.modules["pytest"] = None; sys.path.insert(0, "tools"); import gpu_check, json; '
              'from pathlib import Path; print(json.dumps(gpu_check.minimal_runner(Path("tests/test_devices.py"))))')
    result = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    # Without a GPU every test of test_devices.py skips; with one they run (and must pass).
    assert counts['failed'] == 0 and counts['passed'] + counts['skipped'] >= 80, counts
