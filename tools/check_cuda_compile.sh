#!/usr/bin/env bash
# Compile-check every CUDA source of the compiled ops (upsample_plugin/ops/csrc/**/*.cu) with nvcc against the
# headers of a CUDA torch, on a machine without a GPU or a CUDA torch: catches CUDA-only compile errors before
# a GPU machine does. Objects go to /dev/null; nothing is linked or run.
#
# Headers: torch/include/* of the CUDA torch wheel TORCH_WHEEL (default: torch 2.14.1 cu130 for this Python),
# extracted once into build/torch-cuda-include and reused. Without the wheel on disk it is fetched with
# `pip download torch==$TORCH_CUDA_VERSION --no-deps`.
#
# Env: NVCC (default /usr/local/cuda/bin/nvcc, else nvcc on PATH), CUDA_ARCH (default sm_80), TORCH_WHEEL,
# TORCH_CUDA_VERSION (default 2.14.1), CACHE_DIR (default build/torch-cuda-include), PYTHON.
# Exit status: non-zero when any .cu file fails to compile (or none is found, or the toolchain is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
TORCH_CUDA_VERSION=${TORCH_CUDA_VERSION:-2.14.1}
CUDA_ARCH=${CUDA_ARCH:-sm_80}
CACHE_DIR=${CACHE_DIR:-build/torch-cuda-include}
CSRC=upsample_plugin/ops/csrc

log() { printf '[check_cuda_compile] %s\n' "$*"; }

NVCC=${NVCC:-}
if [ -z "$NVCC" ]; then
    if [ -x /usr/local/cuda/bin/nvcc ]; then NVCC=/usr/local/cuda/bin/nvcc; else NVCC=$(command -v nvcc || true); fi
fi
[ -n "$NVCC" ] && [ -x "$NVCC" ] || { log "nvcc not found (set NVCC=...)"; exit 2; }

# 1. CUDA torch headers, extracted once.
if [ ! -f "$CACHE_DIR/.complete" ]; then
    PYTAG=$($PY -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    WHEEL=${TORCH_WHEEL:-/opt/pypi-more/files/torch-${TORCH_CUDA_VERSION}-${PYTAG}-${PYTAG}-manylinux_2_28_x86_64.whl}
    if [ ! -f "$WHEEL" ]; then
        DL=build/torch-cuda-wheel
        WHEEL=$(ls "$DL"/torch-"${TORCH_CUDA_VERSION}"-*.whl 2>/dev/null | head -n1 || true)
        if [ -z "$WHEEL" ]; then
            log "downloading the torch ${TORCH_CUDA_VERSION} wheel (headers only are kept)"
            $PY -m pip download -q "torch==${TORCH_CUDA_VERSION}" --no-deps -d "$DL"
            WHEEL=$(ls "$DL"/torch-"${TORCH_CUDA_VERSION}"-*.whl | head -n1)
        fi
    fi
    log "extracting torch/include from $WHEEL into $CACHE_DIR"
    rm -rf "$CACHE_DIR"
    $PY - "$WHEEL" "$CACHE_DIR" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    members = [m for m in zf.namelist() if m.startswith('torch/include/') or m == 'torch/version.py']
    zf.extractall(dest, members)
print(f'{len(members)} files')
PY
    basename "$WHEEL" > "$CACHE_DIR/.complete"
fi
TORCH_INC=$CACHE_DIR/torch/include
TORCH_VER=$(sed -n "s/^__version__ = '\(.*\)'/\1/p" "$CACHE_DIR/torch/version.py")
PY_INC=$($PY -c "import sysconfig; print(sysconfig.get_paths()['include'])")

# 2. The flags torch.utils.cpp_extension gives nvcc for a CUDAExtension (COMMON_NVCC_FLAGS), plus setup.py's.
FLAGS=(-std=c++20 -O3 "-arch=$CUDA_ARCH" -c -o /dev/null
       -I"$TORCH_INC" -I"$TORCH_INC/torch/csrc/api/include" -I"$PY_INC" -I"$CSRC/include"
       -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__
       -D__CUDA_NO_HALF2_OPERATORS__ --expt-relaxed-constexpr -DWITH_CUDA
       -DTORCH_API_INCLUDE_EXTENSION_H -DTORCH_EXTENSION_NAME=_C -D_GLIBCXX_USE_CXX11_ABI=1
       --compiler-options -fPIC)

mapfile -t SOURCES < <(find "$CSRC" -name '*.cu' | sort)
[ "${#SOURCES[@]}" -gt 0 ] || { log "no .cu file under $CSRC"; exit 1; }
log "nvcc: $("$NVCC" --version | tail -n1); torch headers: $TORCH_VER; arch: $CUDA_ARCH"

failed=()
for src in "${SOURCES[@]}"; do
    start=$(date +%s)
    if "$NVCC" "${FLAGS[@]}" "$src"; then
        log "OK    $src ($(( $(date +%s) - start ))s)"
    else
        log "FAIL  $src"
        failed+=("$src")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    log "${#failed[@]} of ${#SOURCES[@]} CUDA source(s) failed: ${failed[*]}"
    exit 1
fi
log "all ${#SOURCES[@]} CUDA source(s) compiled"
