#!/usr/bin/env python
"""The CUDA path of the compiled ops proven on a GPU machine, in one run (``bash tools/gpu_check.sh``).

Needs only torch (a CUDA build), nvcc and this checkout: no internet, no mm stack, pytest optional. Steps, each
with its own time limit, all recorded even when one fails:

1. ``environment``: torch, CUDA, GPU, nvcc, mmcv (optional).
2. ``build``: ``FORCE_CUDA=1 UPSAMPLE_PLUGIN_REQUIRE_EXT=1 pip install --no-build-isolation --no-deps --no-index -e
   .`` (``MAX_JOBS`` parallel nvcc jobs, default the CPU count), then checks that ``upsample_plugin._C`` has CUDA
   kernels for every op.
3. ``tests``: ``tests/test_devices.py`` (every upsampler on CUDA vs CPU, and the ops' CUDA kernels vs the
   references: dtypes, kernel sizes, determinism, streams, DLU at zero offsets, opcheck) plus the ``cuda`` tests
   of ``tests/test_compiled_*.py``, and ``tests/test_cpu_isa.py`` (every CPU instruction-set build the host CPU
   runs, usually AVX-512 there, bitwise equal to the baseline build), with pytest; without pytest,
   test_devices.py through a minimal runner.
4. ``benchmark``: ``tools/benchmark_ops.py --device cuda``: reference vs compiled (vs mmcv's CARAFE when mmcv is
   present), fwd and fwd+bwd latency and peak memory, at DySample's Fig. 1 setting (1x256x120x120, x2) and the
   FPN levels of an 800x1333 image.

Output in ``--out`` (default build/gpu_check): ``gpu_check.json`` (everything: environment, steps, test counts and
failures, benchmark records), ``gpu_check.md`` (the README's GPU table is made from it), ``benchmark.md``,
``tests.xml`` (JUnit, with pytest) and the log (gpu_check.sh). Exit status 0 only when every step passed.

``--device cpu`` is a dry run on a machine without a GPU (the test suite runs it): no build, the tests skip their
CUDA cases, a tiny CPU benchmark; it checks the plumbing, not the kernels.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FULL_SIZES = ['120x120', '200x336', '100x168', '50x84', '25x42']  # Fig. 1 of DySample, then FPN P2..P5
# Per-step limits (seconds); with the machine's start they keep the run under 8 minutes on 16 cores + 1 GPU.
LIMITS = dict(build=240, tests=110, benchmark=110)


def log(msg: str) -> None:
    print(f'[gpu_check {datetime.datetime.now():%H:%M:%S}] {msg}', flush=True)


def run(cmd, limit, env=None, **kwargs) -> subprocess.CompletedProcess:
    log('$ ' + ' '.join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, timeout=limit, env=env, text=True, **kwargs)


def environment(device: str) -> dict:
    import torch
    env = dict(python=sys.version.split()[0], torch=torch.__version__, torch_cuda=torch.version.cuda,
               cuda_available=torch.cuda.is_available(), cpus=os.cpu_count())
    if torch.cuda.is_available():
        env['gpu'] = torch.cuda.get_device_name()
        env['capability'] = '.'.join(map(str, torch.cuda.get_device_capability()))
    nvcc = shutil.which('nvcc') or ('/usr/local/cuda/bin/nvcc' if Path('/usr/local/cuda/bin/nvcc').exists() else None)
    if nvcc:
        env['nvcc'] = subprocess.run([nvcc, '--version'], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    for name in ('mmcv', 'pytest', 'numpy'):
        try:
            env[name] = importlib.import_module(name).__version__
        except ImportError:
            env[name] = None
    if device == 'cuda' and not env['cuda_available']:
        raise RuntimeError(f'no CUDA device visible to torch {torch.__version__} (CUDA {torch.version.cuda}); '
                           f'use --device cpu for a dry run')
    return env


def build(out: Path) -> dict:
    env = dict(os.environ, FORCE_CUDA='1', UPSAMPLE_PLUGIN_REQUIRE_EXT='1',
               MAX_JOBS=os.environ.get('MAX_JOBS', str(os.cpu_count() or 4)))
    result = run([sys.executable, '-m', 'pip', 'install', '--no-build-isolation', '--no-deps', '--no-index', '-e', '.'],
                 LIMITS['build'], env=env)
    if result.returncode:
        raise RuntimeError(f'pip install exited with {result.returncode}')
    check = run([sys.executable, '-c', 'from upsample_plugin.ops import _library, _library_dlu, _library_ddf; '
                 'import sys; ok = (_library.compiled_available("cuda") and _library_dlu.dlu_compiled_available("cuda")'
                 ' and _library_ddf.ddf_compiled_available("cuda")); print("cuda kernels:", ok); sys.exit(0 if ok else 1)'],
                60)
    if check.returncode:
        raise RuntimeError('upsample_plugin._C was built without CUDA kernels for every op')
    return {}


TEST_FILES = ['tests/test_devices.py', 'tests/test_compiled_ops.py', 'tests/test_compiled_dlu.py',
              'tests/test_compiled_ddf.py']


def tests(out: Path, device: str) -> dict:
    try:
        import pytest  # noqa: F401
    except ImportError:
        log('pytest is not installed: running tests/test_devices.py with the minimal runner')
        return minimal_runner(ROOT / 'tests' / 'test_devices.py')
    xml = out / 'tests.xml'
    # test_devices.py whole; of the op files the CUDA tests only (their CPU tests, and the CPU harnesses of the
    # CUDA element functions, run in CI). The dry run: test_devices.py only (its CUDA tests skip).
    files = TEST_FILES if device == 'cuda' else TEST_FILES[:1]
    selection = 'test_devices or (cuda and not element_functions)'
    try:
        import hypothesis  # noqa: F401
        # The CPU kernels' instruction-set builds on this machine's CPU: GPU hosts usually have AVX-512, which the
        # project's CI machine lacks, so this is where the AVX-512 build is compared with the baseline build.
        if device == 'cuda':
            files = files + ['tests/test_cpu_isa.py']
            selection += ' or test_cpu_isa'
        extra = []
    except ImportError:  # tests/conftest.py sets up hypothesis profiles; these files use neither
        log('hypothesis is not installed: running pytest without tests/conftest.py (and without test_cpu_isa.py)')
        extra = ['--noconftest']
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rfEs', f'--junitxml={xml}', *files,
           '-k', selection, *extra]
    result = run(cmd, LIMITS['tests'])
    counts = junit_counts(xml) if xml.exists() else {}
    if result.returncode not in (0, 5) or counts.get('failed') or counts.get('errors'):
        raise RuntimeError(f'pytest exited with {result.returncode}: {counts}')
    if device == 'cuda' and not counts.get('passed'):
        raise RuntimeError(f'no CUDA test ran: {counts}')
    return counts


def junit_counts(xml: Path) -> dict:
    import xml.etree.ElementTree as ET
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == 'testsuite' else list(root)
    total = {key: sum(int(s.get(key, 0)) for s in suites) for key in ('tests', 'failures', 'errors', 'skipped')}
    failures = [f'{case.get("classname")}::{case.get("name")}' for s in suites for case in s.iter('testcase')
                if case.find('failure') is not None or case.find('error') is not None]
    return dict(passed=total['tests'] - total['failures'] - total['errors'] - total['skipped'],
                failed=total['failures'], errors=total['errors'], skipped=total['skipped'], failures=failures)


class _Skip(Exception):
    pass


def minimal_runner(path: Path) -> dict:
    """Run a test module's test functions without pytest: a stub ``pytest`` (mark.parametrize / skipif, skip) that
    records the marks, then every parametrization called in turn. Enough for tests/test_devices.py."""
    import itertools
    import types

    def parametrize(names, values, ids=None):
        def mark(fn):
            fn.__dict__.setdefault('_params', []).insert(0, ([n.strip() for n in names.split(',')], list(values)))
            return fn
        return mark

    def skipif(condition, reason=''):
        def mark(fn):
            if condition:
                fn._skip = reason
            return fn
        return mark

    def skip(reason=''):
        raise _Skip(reason)

    stub = types.ModuleType('pytest')
    stub.mark = types.SimpleNamespace(parametrize=parametrize, skipif=skipif)
    stub.skip = skip
    sys.modules['pytest'] = stub
    sys.path.insert(0, str(path.parent))
    module = importlib.import_module(path.stem)
    counts = dict(passed=0, failed=0, errors=0, skipped=0, failures=[])
    for name, fn in vars(module).items():
        if not name.startswith('test_') or not callable(fn):
            continue
        grids = fn.__dict__.get('_params', [])
        for combo in itertools.product(*[values for _, values in grids]):
            kwargs = {}
            for (names, _), value in zip(grids, combo):
                kwargs.update(zip(names, value if len(names) > 1 else (value,)))
            label = f'{name}[{"-".join(str(v) for v in kwargs.values())}]'
            if getattr(fn, '_skip', None):
                counts['skipped'] += 1
                continue
            try:
                fn(**kwargs)
                counts['passed'] += 1
            except _Skip:
                counts['skipped'] += 1
            except Exception:  # noqa: BLE001 - a failing test is recorded, the others still run
                counts['failed'] += 1
                counts['failures'].append(label)
                log(f'FAILED {label}\n{traceback.format_exc()}')
    if counts['failed']:
        raise RuntimeError(f'{counts["failed"]} test(s) failed: {counts["failures"]}')
    return counts


def benchmark(out: Path, device: str) -> dict:
    bench_json, bench_md = out / 'benchmark.json', out / 'benchmark.md'
    if device == 'cuda':
        args = ['--device', 'cuda', '--sizes', *FULL_SIZES, '--repeats', '10', '--min-repeats', '5',
                '--max-seconds', '3']
    else:  # dry run: the plumbing only
        args = ['--device', 'cpu', '--ops', 'carafe', '--sizes', '6x7', '--channels', '8', '--repeats', '1',
                '--min-repeats', '1', '--no-memory']
    result = run([sys.executable, 'tools/benchmark_ops.py', *args, '--json', bench_json, '--output', bench_md],
                 LIMITS['benchmark'])
    if result.returncode:
        raise RuntimeError(f'benchmark_ops.py exited with {result.returncode}')
    return json.loads(bench_json.read_text())


def markdown(report: dict, out: Path) -> str:
    env = report['environment']
    lines = [f'# GPU check ({report["started"]})', '',
             f'{env.get("gpu", "no GPU")} (compute capability {env.get("capability", "-")}), {env.get("cpus")} CPUs; '
             f'torch {env.get("torch")} (CUDA {env.get("torch_cuda")}), nvcc: {env.get("nvcc", "-")}, '
             f'mmcv {env.get("mmcv") or "not installed"}.', '',
             '| step | status | seconds | detail |', '|---|---|---:|---|']
    for step in report['steps']:
        lines.append(f'| {step["name"]} | {step["status"]} | {step["seconds"]:.0f} | {step.get("detail", "")} |')
    tests_result = report.get('tests') or {}
    if tests_result:
        lines += ['', f'Tests: {tests_result.get("passed", 0)} passed, {tests_result.get("failed", 0)} failed, '
                      f'{tests_result.get("errors", 0)} errors, {tests_result.get("skipped", 0)} skipped.']
    bench_md = out / 'benchmark.md'
    if bench_md.exists():
        lines += ['', '## Ops: latency and peak memory', '', bench_md.read_text().strip()]
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, default=ROOT / 'build' / 'gpu_check')
    parser.add_argument('--device', default='cuda', choices=['cuda', 'cpu'],
                        help='cpu: dry run without a GPU (no build, CUDA tests skip, tiny CPU benchmark)')
    parser.add_argument('--skip-build', action='store_true', help='use the installed upsample_plugin._C')
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = dict(started=f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}', device=args.device,
                  environment={}, steps=[])
    steps = [('environment', lambda: environment(args.device))]
    if args.device == 'cuda' and not args.skip_build:
        steps.append(('build', lambda: build(args.out)))
    steps += [('tests', lambda: tests(args.out, args.device)), ('benchmark', lambda: benchmark(args.out, args.device))]
    for name, step in steps:
        log(f'--- {name}')
        start = time.perf_counter()
        entry = dict(name=name)
        try:
            result = step()
            entry['status'] = 'ok'
            if name in ('environment', 'tests', 'benchmark'):
                report[name] = result
            if name == 'tests':
                entry['detail'] = f'{result.get("passed", 0)} passed, {result.get("skipped", 0)} skipped'
        except subprocess.TimeoutExpired as err:
            entry.update(status='timeout', detail=f'over {err.timeout:.0f} s')
        except Exception as err:  # noqa: BLE001 - record the failure, run the remaining steps
            entry.update(status='failed', detail=f'{type(err).__name__}: {err}'.replace('|', '/')[:300])
            log(traceback.format_exc())
        entry['seconds'] = time.perf_counter() - start
        report['steps'].append(entry)
        log(f'{name}: {entry["status"]} ({entry["seconds"]:.0f} s) {entry.get("detail", "")}')
        if name == 'environment' and entry['status'] != 'ok':
            break  # nothing else can run
    (args.out / 'gpu_check.json').write_text(json.dumps(report, indent=1, default=str) + '\n')
    (args.out / 'gpu_check.md').write_text(markdown(report, args.out))
    failed = [s['name'] for s in report['steps'] if s['status'] != 'ok']
    log(f'report: {args.out / "gpu_check.json"}, {args.out / "gpu_check.md"}; '
        + (f'FAILED: {", ".join(failed)}' if failed else 'all steps passed'))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
