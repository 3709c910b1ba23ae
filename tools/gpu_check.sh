#!/usr/bin/env bash
# Prove the compiled CUDA kernels on a GPU machine in one command, then write the numbers the README's GPU table
# is made from. Needs a CUDA build of torch, nvcc and this checkout only (no internet, no mm stack; pytest and
# mmcv optional); about 5 minutes on 16 cores + 1 GPU, at most 8 (each step has its own limit, the whole run one
# too).
#
#   bash tools/gpu_check.sh                  # build with CUDA, run the CUDA tests, benchmark on the GPU
#   bash tools/gpu_check.sh --skip-build     # reuse the installed upsample_plugin._C
#   bash tools/gpu_check.sh --device cpu     # dry run without a GPU: no build, CUDA tests skip, tiny benchmark
#
# Steps (tools/gpu_check.py): environment -> build (FORCE_CUDA=1 pip install --no-build-isolation --no-index -e .)
# -> tests (tests/test_devices.py + the cuda tests of tests/test_compiled_*.py) -> benchmark (tools/benchmark_ops.py
# --device cuda: reference vs compiled vs mmcv's CARAFE when present, 1x256x120x120 x2 and the FPN levels of an
# 800x1333 image, fwd and fwd+bwd latency and peak memory).
#
# Output in $OUT_DIR (default build/gpu_check): gpu_check.json (environment, steps with status and seconds, test
# counts and failures, benchmark records), gpu_check.md (the same as tables), benchmark.{json,md}, tests.xml and
# gpu_check.log (everything printed). Exit status 0 only when every step passed.
#
# Env: PYTHON (default python), OUT_DIR, MAX_JOBS (nvcc jobs, default the CPU count), GPU_CHECK_TIMEOUT (whole
# run, default 470 s).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT_DIR:-build/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
echo "[gpu_check] log: $LOG" >&2
status=0
timeout --kill-after=15 "${GPU_CHECK_TIMEOUT:-470}" "$PY" tools/gpu_check.py --out "$OUT" "$@" 2>&1 | tee -a "$LOG" \
    || status=${PIPESTATUS[0]}
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "[gpu_check] stopped after ${GPU_CHECK_TIMEOUT:-470} s (GPU_CHECK_TIMEOUT); partial results in $OUT" | tee -a "$LOG"
fi
exit "$status"
