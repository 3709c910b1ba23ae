#!/usr/bin/env python
"""Train one toy config with several upsamplers and several seeds on the same schedule; write a table and a plot.

For each upsampler and seed: ``tools/train.py CONFIG --cfg-options <key>=<type> randomness.seed=<seed>`` in its
own work dir (``<out>/<upsampler>/seed<seed>``), then the final validation metric, the model's parameters, the
training wall time. One seed says little on a toy set: the table gives each upsampler's mean ± standard
deviation over the seeds (and every seed's value), and its difference to the first upsampler with ± two
standard errors of that difference; only a difference larger than that is resolved ("yes" in the last column).
Output: a markdown table (stdout and ``<out>/results.md``), ``<out>/results.csv`` (one row per run) and
``<out>/compare.png`` (metric vs parameters, error bars = standard deviation over the seeds).

A finished run (``<out>/<upsampler>/seed<seed>/result.json``) is reused, so an interrupted comparison continues
where it stopped; ``--rerun`` trains everything again.

    python tools/compare_upsamplers.py configs/toy/faster-rcnn_r18_fpn_toy.py \
        --upsamplers nearest bilinear dysample carafe dlu --seeds 3 --out work_dirs/compare_det
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from upsample_plugin.run_logs import metrics, run_environment, run_records, train_losses  # noqa: E402

DEFAULT_METRIC = {'mmdet': 'coco/bbox_mAP', 'mmseg': 'mIoU', 'panoptic': 'coco_panoptic/PQ'}
README = ROOT / 'README.md'
README_MARKERS = ('<!-- toy-compare:start -->', '<!-- toy-compare:end -->')
README_PLOT = ROOT / 'docs' / 'images' / 'toy_compare_det.png'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--upsamplers', nargs='+', default=['nearest', 'bilinear', 'dysample', 'carafe', 'dlu'],
                        help='the first one is the baseline of the difference column')
    parser.add_argument('--seeds', type=int, default=1, help='runs per upsampler, with seeds 0 .. N-1')
    parser.add_argument('--key', help='config key of the upsampler type (default: model.neck.upsample_cfg.type '
                                      'for mmdet, model.decode_head.upsample_cfg.type for mmseg)')
    parser.add_argument('--metric', help='metric to compare (default by library)')
    parser.add_argument('--out', default='work_dirs/compare')
    parser.add_argument('--cfg-options', nargs='*', default=[], help='passed on to every training run')
    parser.add_argument('--rerun', action='store_true', help='train again even where a finished run exists')
    parser.add_argument('--write-readme', action='store_true',
                        help=f'put the table and the plot into README.md between {README_MARKERS[0]} and '
                             f'{README_MARKERS[1]} (the plot as {README_PLOT.relative_to(ROOT)})')
    return parser.parse_args(argv)


def model_parameters(config: str, options) -> int:
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import upsample_plugin  # noqa: F401
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options)
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    return sum(p.numel() for p in registry.build(cfg.model).parameters())


def options_dict(pairs):
    from mmengine.config import DictAction
    parsed = {}
    for pair in pairs:
        key, value = pair.split('=', 1)
        parsed[key] = DictAction._parse_iterable(value)
    return parsed


def train_once(args, upsampler: str, seed: int, options) -> dict:
    """One training run (or the result of a finished one): metric, losses, wall time, machine."""
    work_dir = Path(args.out) / upsampler / f'seed{seed}'
    result_file = work_dir / 'result.json'
    if result_file.is_file() and not args.rerun:
        return json.loads(result_file.read_text())
    if work_dir.exists():
        shutil.rmtree(work_dir)  # an interrupted or --rerun run: start it afresh
    command = [sys.executable, str(ROOT / 'tools' / 'train.py'), args.config, '--work-dir', str(work_dir),
               '--cfg-options', *options, f'randomness.seed={seed}']
    print('+', ' '.join(command), flush=True)
    work_dir.mkdir(parents=True)
    start = time.time()
    with open(work_dir / 'train.log', 'w') as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    records = run_records(str(work_dir))
    losses = train_losses(records)
    result = dict(upsampler=upsampler, seed=seed, metric=metrics(records)[args.metric_name],
                  seconds=time.time() - start, first_loss=losses[0], last_loss=losses[-1],
                  environment=run_environment(str(work_dir)))
    result_file.write_text(json.dumps(result, indent=1))
    return result


def summarize(runs: list) -> dict:
    values = [r['metric'] for r in runs]
    return dict(mean=statistics.fmean(values), std=statistics.stdev(values) if len(values) > 1 else float('nan'),
                values=values, n=len(values))


def difference(a: dict, b: dict) -> tuple:
    """(mean of b - mean of a, two standard errors of that difference; NaN with one run each)."""
    se = math.sqrt(a['std'] ** 2 / a['n'] + b['std'] ** 2 / b['n']) if min(a['n'], b['n']) > 1 else float('nan')
    return b['mean'] - a['mean'], 2 * se


def machine_line(runs: list) -> str:
    """The machines and settings the runs had (README "Reproducibility": results depend on them)."""
    described = set()
    for r in runs:
        env = r.get('environment') or {}
        versions = env.get('versions', {})
        described.add(f"{env.get('cpu', '?')} ({env.get('cpu_capability', '?')}), {env.get('torch_threads', '?')} "
                      f"torch threads, num_workers {env.get('num_workers', {}).get('train_dataloader', '?')}, "
                      f"torch {versions.get('torch', '?')}, mmcv {versions.get('mmcv', '?')}")
    return '; '.join(sorted(described))


def table(rows: list, metric_name: str, seeds: int) -> str:
    base = rows[0]
    head = (f'| upsampler | {metric_name}, mean ± std ({seeds} seed{"s" if seeds > 1 else ""}) | per seed | '
            f'Δ vs {base["upsampler"]} (± 2 SE) | resolved | parameters | delta | train loss first → last (mean) | '
            'wall time (s, mean) |')
    lines = [head, '|---|---:|---|---:|---|---:|---:|---|---:|']
    for r in rows:
        s = r['summary']
        spread = f' ± {s["std"]:.4f}' if s['n'] > 1 else ''
        per_seed = ', '.join(f'{v:.4f}' for v in s['values'])
        if r is base:
            delta, resolved = '—', '—'
        else:
            diff, noise = difference(base['summary'], s)
            delta = f'{diff:+.4f}' + (f' ± {noise:.4f}' if not math.isnan(noise) else '')
            resolved = '—' if math.isnan(noise) else ('yes' if abs(diff) > noise else 'no')
        lines.append(f"| {r['upsampler']} | {s['mean']:.4f}{spread} | {per_seed} | {delta} | {resolved} | "
                     f"{r['params']:,} | {r['params'] - base['params']:+,} | {r['first_loss']:.3f} → "
                     f"{r['last_loss']:.3f} | {r['seconds']:.0f} |")
    return '\n'.join(lines)


def plot(rows, metric, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        s = r['summary']
        x = r['params'] / 1e6
        ax.errorbar(x, s['mean'], yerr=0 if s['n'] < 2 else s['std'], fmt='o', capsize=4, alpha=0.8)
        ax.scatter([x] * s['n'], s['values'], s=10, color='grey', alpha=0.6, zorder=3)
        ax.annotate(r['upsampler'], (x, s['mean']), textcoords='offset points', xytext=(6, 4))
    ax.set_xlabel('parameters (M)')
    ax.set_ylabel(metric)
    ax.set_title(f'same toy schedule per upsampler: mean ± std over {rows[0]["summary"]["n"]} seeds (grey: runs)',
                 fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_readme(text: str, plot_file: Path) -> None:
    readme = README.read_text()  # re-read right before writing: others edit the README too
    start, end = README_MARKERS
    i, j = readme.find(start), readme.find(end)
    if i < 0 or j < i:
        raise SystemExit(f'{README}: markers {start} ... {end} not found')
    README.write_text(readme[:i + len(start)] + '\n' + text.rstrip('\n') + '\n' + readme[j:])
    shutil.copyfile(plot_file, README_PLOT)
    print(f'wrote {README} and {README_PLOT}')


def main(argv=None):
    args = parse_args(argv)
    if args.seeds < 1:
        raise SystemExit('--seeds must be >= 1')
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    scope = cfg.default_scope
    kind = 'panoptic' if cfg.model.type == 'PanopticFPN' else scope
    key = args.key or ('model.decode_head.upsample_cfg.type' if scope == 'mmseg' else 'model.neck.upsample_cfg.type')
    args.metric_name = args.metric or DEFAULT_METRIC[kind]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, runs = [], []
    for upsampler in args.upsamplers:
        options = list(args.cfg_options) + [f'{key}={upsampler}']
        mine = [train_once(args, upsampler, seed, options) for seed in range(args.seeds)]
        runs += mine
        summary = summarize(mine)
        rows.append(dict(upsampler=upsampler, summary=summary,
                         params=model_parameters(args.config, options_dict(options)),
                         seconds=statistics.fmean(r['seconds'] for r in mine),
                         first_loss=statistics.fmean(r['first_loss'] for r in mine),
                         last_loss=statistics.fmean(r['last_loss'] for r in mine)))
        print(f'  {upsampler}: {args.metric_name} {summary["mean"]:.4f} over seeds {summary["values"]}', flush=True)
    command = ' '.join(['python tools/compare_upsamplers.py', args.config, '--upsamplers', *args.upsamplers,
                        '--seeds', str(args.seeds)] + (['--cfg-options', *args.cfg_options] if args.cfg_options
                                                       else []) + (['--key', args.key] if args.key else []))
    text = (table(rows, args.metric_name, args.seeds) + '\n\n'
            f'Made by `{command}`. Machine: {machine_line(runs)}.\n')
    readme_text = text + f'\n![toy comparison]({README_PLOT.relative_to(ROOT)})\n'
    print(text)
    (out / 'results.md').write_text(text)
    with open(out / 'results.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['upsampler', 'seed', 'metric', 'seconds', 'first_loss', 'last_loss'],
                                extrasaction='ignore')
        writer.writeheader()
        writer.writerows(runs)
    plot(rows, args.metric_name, out / 'compare.png')
    print(f'wrote {out / "results.md"}, {out / "results.csv"}, {out / "compare.png"}')
    if args.write_readme:
        write_readme(readme_text, out / 'compare.png')
    return 0


if __name__ == '__main__':
    sys.exit(main())
