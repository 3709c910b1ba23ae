#!/usr/bin/env bash
# Install the whole stack upsample_plugin runs on: torch (a CUDA torch already present is kept), mmcv 2.1.0 with
# ops built from source, mmengine, mmdet, mmsegmentation, the test tools and the plugin itself (editable).
# Idempotent: every step checks first and returns at once when its package is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PIP_ROOT_USER_ACTION=ignore
PIP="$PY -m pip --disable-pip-version-check"

log() { printf '[install] %s\n' "$*"; }

# 1. Build tools. mmcv's setup.py and mmengine's `mmdet::` config bases import pkg_resources: setuptools < 82.
if ! $PY - <<'PY' 2>/dev/null
import setuptools, wheel, ninja  # noqa: F401
major = int(setuptools.__version__.split('.')[0])
raise SystemExit(0 if 77 <= major < 82 else 1)
PY
then
    log "build tools"
    $PIP install -q "setuptools>=77,<82" wheel ninja
fi

# 2. torch: keep any torch already installed (a user's CUDA build); otherwise the CPU wheel.
if ! $PY -c "import torch" 2>/dev/null; then
    log "torch ${TORCH_VERSION:=2.13.0}"
    $PIP install -q "torch==${TORCH_VERSION}"
fi
TORCH_INSTALLED=$($PY -c "import torch; print(torch.__version__.split('+')[0])")
# Pin that torch for every later step: mmdet/mmseg extras must never pull another (multi-GB CUDA) torch.
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
# numpy < 2: mmcv 2.1.0, mmdet 3.3.0 and mmseg 1.2.2 were built against numpy 1.x (and so must opencv be).
printf 'torch==%s\nnumpy<2\n' "${TORCH_INSTALLED}" > "$CONSTRAINTS"
log "torch ${TORCH_INSTALLED} (pinned)"

# 3. mmcv 2.1.0 with compiled ops (mmdet needs RoIAlign and nms; mmcv-lite is not enough).
if ! $PY -c "import mmcv, mmcv.ops; from mmcv.ops import nms; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
    log "mmcv 2.1.0 with ops (about 18 minutes on 2 cores the first time; pip caches the wheel)"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} $PIP install --no-build-isolation -c "$CONSTRAINTS" "mmcv==2.1.0"
fi

# 4. The OpenMMLab libraries and test tools.
if ! $PY - <<'PY' 2>/dev/null
import importlib.metadata as md
want = {'mmengine': '0.10.7', 'mmdet': '3.3.0', 'mmsegmentation': '1.2.2'}
for name, version in want.items():
    assert md.version(name) == version, name
import numpy, ftfy, regex, panopticapi, pycocotools, hypothesis, pytest, matplotlib  # noqa: F401
import onnx, onnxruntime, onnxscript  # noqa: F401  (ONNX export and its check)
assert int(numpy.__version__.split('.')[0]) < 2
PY
then
    log "mmengine, mmdet, mmsegmentation, test and export tools"
    # ml_dtypes < 0.6 (pulled by onnx): 0.6 asks for numpy 2.
    $PIP install -q -c "$CONSTRAINTS" mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 "numpy<2" \
        ftfy regex panopticapi-lite pycocotools hypothesis pytest matplotlib \
        onnx onnxruntime onnxscript "ml_dtypes<0.6"
fi

# 5. The plugin (editable) and its compiled ops upsample_plugin._C (setup.py, upsample_plugin/ops/csrc).
# (Re)installed when the plugin is not importable from this checkout, or when a C++ compiler is here and the
# extension is missing, fails to load (e.g. built against another torch) or is older than its sources. The build
# takes about 20 s on 2 cores (CPU kernels); without a compiler the plugin installs with its pure-PyTorch ops.
# With a compiler, a failed build is an error (UPSAMPLE_PLUGIN_REQUIRE_EXT=0 installs without the extension).
# Checked from outside the checkout: inside it, `import upsample_plugin` would find the source tree itself.
REPO=$(pwd)
HAVE_CXX=0
if command -v "${CXX:-c++}" >/dev/null 2>&1; then HAVE_CXX=1; fi
plugin_state() {
    (cd / && $PY - "$REPO" "$HAVE_CXX" <<'PY'
import os, sys
repo, have_cxx = sys.argv[1], sys.argv[2] == '1'
try:
    import upsample_plugin as p
except Exception:
    print('missing'); raise SystemExit
if os.path.dirname(p.__file__) != os.path.join(repo, 'upsample_plugin'):
    print('missing'); raise SystemExit
if not have_cxx:
    print('ok'); raise SystemExit
from upsample_plugin.ops import _library
if not _library.compiled_available('cpu'):
    print('extension missing or not loadable'); raise SystemExit
sources = [os.path.join(repo, 'setup.py')] + [os.path.join(d, f) for d, _, files in
                                              os.walk(os.path.join(repo, 'upsample_plugin', 'ops', 'csrc'))
                                              for f in files]
built = os.path.getmtime(_library._C.__file__)
print('extension older than its sources' if max(map(os.path.getmtime, sources)) > built else 'ok')
PY
    ) 2>/dev/null || echo "missing"
}
STATE=$(plugin_state)
if [ "$STATE" != "ok" ]; then
    log "upsample_plugin (editable): $STATE"
    if [ "$HAVE_CXX" = 1 ]; then export UPSAMPLE_PLUGIN_REQUIRE_EXT=${UPSAMPLE_PLUGIN_REQUIRE_EXT:-1}; fi
    $PIP install -q --no-build-isolation --no-deps -c "$CONSTRAINTS" -e .
fi
log "done"
