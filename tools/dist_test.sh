#!/usr/bin/env bash
# Data-parallel testing: tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py options]
#   CPUs:  bash tools/dist_test.sh CONFIG CHECKPOINT 2 --cfg-options env_cfg.dist_cfg.backend=gloo
# Environment: as tools/dist_train.sh (MASTER_PORT, MASTER_ADDR, NNODES, NODE_RANK, PYTHON).
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
PYTHON=${PYTHON:-python}
TOOLS="$(cd "$(dirname "$0")" && pwd)"

PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-${PORT:-29500}}" \
    --nproc_per_node="$NPROC" "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
