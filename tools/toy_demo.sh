#!/usr/bin/env bash
# The README's main job: generate the toy COCO set, train the toy Faster R-CNN (quarter-width ResNet-18, random
# init) with a learned upsampler in its FPN on CPU, then test the checkpoint with mmdet's COCO evaluator.
#   UPSAMPLER=carafe bash tools/toy_demo.sh     (default: dysample; any type of build_upsampler)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
UPSAMPLER=${UPSAMPLER:-dysample}
CONFIG=configs/toy/faster-rcnn_r18_fpn_toy.py
WORK=work_dirs/toy_faster-rcnn_${UPSAMPLER}

$PY tools/make_toy_data.py --out data/toy --train 128 --val 32
# --force: every demo run trains anew (the work dir may hold the previous demo's checkpoints).
$PY tools/train.py "$CONFIG" --work-dir "$WORK" --force --cfg-options "model.neck.upsample_cfg.type=${UPSAMPLER}"
CHECKPOINT=$(cat "$WORK/last_checkpoint")
$PY tools/test.py "$CONFIG" "$CHECKPOINT" --work-dir "$WORK/test" \
    --cfg-options "model.neck.upsample_cfg.type=${UPSAMPLER}"
$PY - "$WORK" <<'PY'
import sys
from upsample_plugin.run_logs import metrics, run_records, train_losses
work = sys.argv[1]
losses = train_losses(run_records(work))
result = metrics(run_records(work + '/test'))
print(f'\ntoy Faster R-CNN: training loss {losses[0]:.3f} -> {losses[-1]:.3f}; test '
      + ', '.join(f'{k} {v:.3f}' for k, v in result.items() if k.startswith('coco/')))
PY
