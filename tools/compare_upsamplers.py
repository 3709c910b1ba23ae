#!/usr/bin/env python
"""Train one toy config with several upsamplers for the same schedule; write a table and a plot.

For each upsampler: ``tools/train.py CONFIG --cfg-options <key>=<type>`` in its own work dir, then the final
validation metric, the model's parameters, the training wall time. Output: a markdown table (stdout and
``<out>/results.md``), a CSV, and ``<out>/compare.png`` (metric vs parameters, circle area ~ wall time), as the
papers' figures do.

    python tools/compare_upsamplers.py configs/toy/faster-rcnn_r18_fpn_toy.py \
        --upsamplers nearest bilinear dysample carafe dlu --out work_dirs/compare_det
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from upsample_plugin.run_logs import metrics, run_records, train_losses  # noqa: E402

DEFAULT_METRIC = {'mmdet': 'coco/bbox_mAP', 'mmseg': 'mIoU', 'panoptic': 'coco_panoptic/PQ'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--upsamplers', nargs='+', default=['nearest', 'bilinear', 'dysample', 'carafe', 'dlu'])
    parser.add_argument('--key', help='config key of the upsampler type (default: model.neck.upsample_cfg.type '
                                      'for mmdet, model.decode_head.upsample_cfg.type for mmseg)')
    parser.add_argument('--metric', help='metric to compare (default by library)')
    parser.add_argument('--out', default='work_dirs/compare')
    parser.add_argument('--cfg-options', nargs='*', default=[], help='passed on to every training run')
    return parser.parse_args(argv)


def model_parameters(config: str, options) -> int:
    from mmengine.config import Config, DictAction  # noqa: F401
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


def plot(rows, metric, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    longest = max(r['seconds'] for r in rows)
    for r in rows:
        ax.scatter(r['params'] / 1e6, r['metric'], s=60 + 600 * r['seconds'] / longest, alpha=0.6)
        ax.annotate(r['upsampler'], (r['params'] / 1e6, r['metric']), textcoords='offset points', xytext=(6, 4))
    ax.set_xlabel('parameters (M)')
    ax.set_ylabel(metric)
    ax.set_title('same toy schedule per upsampler (circle area ~ training time)')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    scope = cfg.default_scope
    kind = 'panoptic' if cfg.model.type == 'PanopticFPN' else scope
    key = args.key or ('model.decode_head.upsample_cfg.type' if scope == 'mmseg' else 'model.neck.upsample_cfg.type')
    metric_name = args.metric or DEFAULT_METRIC[kind]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for upsampler in args.upsamplers:
        work_dir = out / upsampler
        options = list(args.cfg_options) + [f'{key}={upsampler}']
        command = [sys.executable, str(ROOT / 'tools' / 'train.py'), args.config, '--work-dir', str(work_dir),
                   '--cfg-options', *options]
        print('+', ' '.join(command), flush=True)
        start = time.time()
        with open(out / f'{upsampler}.log', 'w') as log:
            subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
        seconds = time.time() - start
        records = run_records(str(work_dir))
        losses = train_losses(records)
        rows.append(dict(upsampler=upsampler, metric=metrics(records)[metric_name],
                         params=model_parameters(args.config, options_dict(options)), seconds=seconds,
                         first_loss=losses[0], last_loss=losses[-1]))
        print(f'  {upsampler}: {metric_name} {rows[-1]["metric"]:.4f}, {seconds:.0f} s', flush=True)
    base = rows[0]['params']
    lines = [f'| upsampler | {metric_name} | parameters | delta | train loss first → last | wall time (s) |',
             '|---|---:|---:|---:|---|---:|']
    for r in rows:
        lines.append(f"| {r['upsampler']} | {r['metric']:.4f} | {r['params']:,} | {r['params'] - base:+,} | "
                     f"{r['first_loss']:.3f} → {r['last_loss']:.3f} | {r['seconds']:.0f} |")
    table = '\n'.join(lines)
    print(table)
    (out / 'results.md').write_text(table + '\n')
    with open(out / 'results.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, metric_name, out / 'compare.png')
    print(f'wrote {out / "results.md"}, {out / "results.csv"}, {out / "compare.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
