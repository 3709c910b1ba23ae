"""Run the plugin's CUDA kernels (``upsample_plugin/ops/csrc/cuda/*.cu``) on the CPU: a mechanical source transform
plus the runtime shim ``tests/cuda_emulation.h``, built with ``torch.utils.cpp_extension.load``.

The transform (:func:`transform_cuda_source`, no hand edits) makes four changes to each ``.cu`` file and nothing
else:

* ``kernel<<<grid, block, smem, stream>>>(args)`` becomes ``::cuda_emulation::launch(grid, block, smem, stream,
  "kernel", kernel, args)``: the shim's launcher checks the launch and runs every thread of every block;
* ``TORCH_LIBRARY_IMPL(upsample_plugin, CUDA, m)`` registers the kernels for CPU tensors in a separate op
  namespace (``torch.ops.<namespace>.carafe_forward`` ...), and the ``check_device_type(..., CUDA)`` guards of
  the host code accept the CPU tensors they are given (``c10::DeviceType::CUDA`` -> ``CPU``);
* ``at::empty`` becomes ``cuda_emulation::empty_poisoned`` (NaN-filled), so an element no thread writes fails a
  comparison;
* the ``c10/cuda`` includes are replaced by the shim, and a ``#define upsample_plugin <namespace>`` keeps the
  emulated C++ symbols apart from those of ``upsample_plugin._C``.

The op schemas are copied from ``ops.cpp`` and ``cpu/*_schema.cpp`` into the new namespace, with two test-only
ops: ``set_config(max_blocks, order, seed)`` and ``launches()`` (see the shim).

Script use (writes the transformed sources, e.g. to read them)::

    python tests/cuda_emulation.py OUT_DIR [--namespace NAME]
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / 'upsample_plugin' / 'ops' / 'csrc'
SHIM = Path(__file__).resolve().with_name('cuda_emulation.h')

#: Build flags. ``fma``: what nvcc does by default (``--fmad=true``): contract a*b + c into one rounding.
FLAGS = {
    'plain': ['-O2', '-ffp-contract=off'],
    'fma': ['-O2', '-mfma', '-ffp-contract=fast'],
}


def _matching(text: str, start: int, open_ch: str, close_ch: str) -> int:
    """Index just past the bracket that closes ``text[start]`` (an ``open_ch``); ignores brackets in strings."""
    depth, i, in_string = 0, start, False
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == '\\':
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f'unbalanced {open_ch}{close_ch} from offset {start}')


_LAUNCH = re.compile(r'([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\(', re.S)


def _replace_launches(src: str) -> tuple[str, int]:
    out, pos, count = [], 0, 0
    for match in _LAUNCH.finditer(src):
        if match.start() < pos:
            continue
        args_open = match.end() - 1
        args_close = _matching(src, args_open, '(', ')')
        kernel, config = match.group(1), ' '.join(match.group(2).split())
        parts = [p.strip() for p in _split_top_level(config)]
        if len(parts) != 4:
            raise ValueError(f'launch of {kernel} must give <<<grid, block, smem, stream>>>, got <<<{config}>>>')
        args = src[args_open + 1:args_close - 1]
        out.append(src[pos:match.start()])
        out.append(f'::cuda_emulation::launch({", ".join(parts)}, "{kernel}", {kernel}, {args})')
        pos = args_close
        count += 1
    out.append(src[pos:])
    return ''.join(out), count


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in '(<{[':
            depth += 1
        elif ch in ')>}]':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(''.join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append(''.join(cur))
    return parts


def transform_cuda_source(src: str, namespace: str, name: str = '<source>') -> str:
    """The emulation source of one ``.cu`` file (see the module docstring). Raises ValueError when a pattern the
    transform relies on is missing, so a kernel file that changes shape fails loudly instead of half-emulated."""
    body, launches = _replace_launches(src)
    if launches == 0:
        raise ValueError(f'{name}: no kernel launch <<<...>>> found')
    body, impls = re.subn(r'TORCH_LIBRARY_IMPL\(\s*upsample_plugin\s*,\s*CUDA\s*,', f'TORCH_LIBRARY_IMPL({namespace}, CPU,',
                          body)
    if impls == 0:
        raise ValueError(f'{name}: no TORCH_LIBRARY_IMPL(upsample_plugin, CUDA, m) found')
    body = body.replace('c10::DeviceType::CUDA', 'c10::DeviceType::CPU')
    body = re.sub(r'\bat::empty\(', '::cuda_emulation::empty_poisoned(', body)
    body = re.sub(r'^#include <c10/cuda/[^>]*>\n', '', body, flags=re.M)
    if '<<<' in body or 'c10/cuda/' in body:
        raise ValueError(f'{name}: untransformed CUDA syntax left')
    header = (f'// Generated by tests/cuda_emulation.py from {name}: do not edit.\n'
              f'#include "{SHIM}"\n#define upsample_plugin {namespace}\n#line 1 "{name}"\n')
    return header + body


def schema_source(namespace: str) -> str:
    """The op schemas of ops.cpp and cpu/*_schema.cpp in ``namespace``, plus the emulation's config ops."""
    defs = []
    for path in [CSRC / 'ops.cpp'] + sorted((CSRC / 'cpu').glob('*_schema.cpp')):
        text = path.read_text()
        for match in re.finditer(r'TORCH_LIBRARY(?:_FRAGMENT)?\(\s*upsample_plugin\s*,\s*m\s*\)\s*\{', text):
            block = text[match.end() - 1:_matching(text, match.end() - 1, '{', '}')]
            defs.append(f'  // from {path.name}\n  ' + block[1:-1].strip())
    if not defs:
        raise ValueError('no TORCH_LIBRARY(upsample_plugin, m) block found in ops.cpp / cpu/*_schema.cpp')
    body = '\n'.join(defs)
    return f'''// Generated by tests/cuda_emulation.py: the plugin's schemas in namespace {namespace}.
#include "{SHIM}"
#include <torch/library.h>

namespace {{
void set_config(int64_t max_blocks, int64_t order, int64_t seed) {{
  TORCH_CHECK(max_blocks >= 0, "max_blocks must be >= 0 (0: the launched grid), got ", max_blocks);
  TORCH_CHECK(order >= 0 && order <= 2, "order must be 0 (in order), 1 (reversed) or 2 (shuffled), got ", order);
  auto& st = ::cuda_emulation::state();
  st.max_blocks = max_blocks;
  st.order = order;
  st.seed = seed;
}}
int64_t launches() {{ return ::cuda_emulation::state().launches; }}

__global__ void noop_kernel(int64_t) {{}}

// Launches that must fail, to show the launcher's checks work: 'no_guard', 'default_stream', 'block', 'grid'.
void bad_launch(c10::string_view what) {{
  const cudaStream_t current = c10::cuda::getCurrentCUDAStream();
  if (what == "no_guard") {{
    ::cuda_emulation::launch(dim3(1), dim3(32), 0, current, "noop_kernel", noop_kernel, int64_t{{0}});
    return;
  }}
  const c10::cuda::CUDAGuard guard(c10::Device(c10::kCPU));
  if (what == "default_stream") {{
    ::cuda_emulation::launch(dim3(1), dim3(32), 0, cudaStream_t{{}}, "noop_kernel", noop_kernel, int64_t{{0}});
  }} else if (what == "block") {{
    ::cuda_emulation::launch(dim3(1), dim3(2048), 0, current, "noop_kernel", noop_kernel, int64_t{{0}});
  }} else if (what == "grid") {{
    ::cuda_emulation::launch(dim3(0), dim3(256), 0, current, "noop_kernel", noop_kernel, int64_t{{0}});
  }} else {{
    TORCH_CHECK(false, "unknown bad launch ", what);
  }}
}}
}}  // namespace

TORCH_LIBRARY({namespace}, m) {{
{body}
  m.def("set_config(int max_blocks, int order, int seed) -> ()", &set_config);
  m.def("launches() -> int", &launches);
  m.def("bad_launch(str what) -> ()", &bad_launch);
}}
'''


def write_sources(out_dir: Path, namespace: str) -> list[Path]:
    """Write the transformed ``.cu`` files, the schema file and a unity file including them into ``out_dir``; a
    file whose content is unchanged is not rewritten (keeps ninja's incremental build valid). Returns the file to
    compile (the unity file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {'schemas.cpp': schema_source(namespace)}
    sources = sorted((CSRC / 'cuda').glob('*.cu'))
    if not sources:
        raise ValueError(f'no .cu file under {CSRC / "cuda"}')
    for path in sources:
        files[path.stem + '_emu.cpp'] = transform_cuda_source(path.read_text(), namespace, str(path))
    # One translation unit: the torch headers are parsed once (about 20 s instead of 4 x 14 s on one core).
    files['emulation_unity.cpp'] = ''.join(f'#include "{fname}"\n' for fname in list(files))
    for fname, text in files.items():
        path = out_dir / fname
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return [out_dir / 'emulation_unity.cpp']


def build(kind: str, build_root: Path, verbose: bool = False) -> str:
    """Build the emulation library ``kind`` ('plain' or 'fma', see FLAGS) under ``build_root`` and load it (once
    per process: a namespace can be registered once). Returns the op namespace (``torch.ops.<namespace>``). The
    library's name carries a hash of the generated sources and headers, so after an edit the next session builds
    and loads the new code instead of a stale library (ninja recompiles only what changed)."""
    import torch
    from torch.utils.cpp_extension import load
    namespace = f'upsample_plugin_emu_{kind}'
    if _loaded.get(namespace):
        return namespace
    build_dir = build_root / kind
    paths = write_sources(build_dir, namespace)
    generated = sorted(build_dir.glob('*.cpp'))
    headers = sorted((CSRC / 'include').glob('*.h')) + [SHIM]
    digest = hashlib.sha1(''.join(p.read_text() for p in generated + headers).encode()).hexdigest()[:8]
    include = str(CSRC / 'include')
    load(f'{namespace}_{digest}', sources=[str(p) for p in paths], extra_include_paths=[include],
         extra_cflags=FLAGS[kind] + ['-w'], build_directory=str(build_dir), is_python_module=False, verbose=verbose)
    _loaded[namespace] = True
    return namespace


_loaded: dict[str, bool] = {}  # namespaces built and loaded in this process


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out_dir', type=Path)
    parser.add_argument('--namespace', default='upsample_plugin_emu')
    args = parser.parse_args(argv)
    write_sources(args.out_dir, args.namespace)
    for path in sorted(args.out_dir.glob('*.cpp')):
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
