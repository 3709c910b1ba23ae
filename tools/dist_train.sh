#!/usr/bin/env bash
# Data-parallel training, one process per GPU (or per CPU share): tools/dist_train.sh CONFIG NPROC [train.py options]
#   GPUs:  bash tools/dist_train.sh CONFIG 8
#   CPUs:  bash tools/dist_train.sh CONFIG 2 --cfg-options env_cfg.dist_cfg.backend=gloo
# Environment: MASTER_PORT (default 29500; PORT is read too, for mmdet's scripts), MASTER_ADDR, NNODES,
# NODE_RANK, PYTHON (the interpreter whose torch.distributed.run -- torchrun -- launches the processes).
set -euo pipefail
CONFIG=$1
NPROC=$2
PYTHON=${PYTHON:-python}
TOOLS="$(cd "$(dirname "$0")" && pwd)"

PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-${PORT:-29500}}" \
    --nproc_per_node="$NPROC" "$TOOLS/train.py" "$CONFIG" --launcher pytorch "${@:3}"
