"""Reading what mmengine's Runner writes into a work dir: a training run's ``<work_dir>/<timestamp>/vis_data/
scalars.json`` holds one JSON record per logged step (train losses, lr, time; metrics after validation); a
test run writes its metrics to ``<work_dir>/<timestamp>/<timestamp>.json``; runs of the plugin's tools also write
``<work_dir>/<timestamp>/environment.json`` (machine, threads, workers, versions)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List


def run_records(work_dir: str) -> List[dict]:
    """The records of the most recent run in ``work_dir`` (a resumed run starts a new timestamp folder)."""
    runs = sorted(p for p in Path(work_dir).glob('*/vis_data') if p.is_dir())
    for run in reversed(runs):  # the newest run that logged anything
        for log in (run / 'scalars.json', run.parent / f'{run.parent.name}.json'):
            if log.is_file() and log.stat().st_size:
                with open(log) as f:
                    return [json.loads(line) for line in f if line.strip()]
    raise FileNotFoundError(f'no mmengine run log (*/vis_data/scalars.json or */<timestamp>.json) under '
                            f'{work_dir!r}')


def train_losses(records: List[dict]) -> List[float]:
    return [r['loss'] for r in records if 'loss' in r]


def metrics(records: List[dict]) -> Dict[str, float]:
    """The last evaluation's metrics (keys like ``coco/bbox_mAP``, ``mIoU``, ``coco_panoptic/PQ``)."""
    evaluated = [r for r in records if 'loss' not in r and 'lr' not in r]
    if not evaluated:
        raise ValueError('the run log has no evaluation record (did validation/testing run?)')
    return {k: v for k, v in evaluated[-1].items() if isinstance(v, (int, float)) and k not in ('step',)}


def run_environment(work_dir: str) -> dict:
    """The ``environment.json`` of the most recent run in ``work_dir`` (upsample_plugin.runner writes one per run:
    CPU model, threads, data loader workers, library versions), or ``{}`` if there is none."""
    found = sorted(Path(work_dir).glob('*/environment.json'))
    if not found:
        return {}
    with open(found[-1]) as f:
        return json.load(f)
