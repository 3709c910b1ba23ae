#!/usr/bin/env python
"""The README's capability table: per upsampler, each capability with the test that proves it.

    python tools/capability_table.py                 # print the markdown table
    python tools/capability_table.py --write-readme  # replace the table between the README's markers
    python tools/capability_table.py --check         # every cited test exists (pytest --collect-only)

A cell cites pytest node ids by a short alias (``amp[fade-reference]``); the legend under the table spells out
each alias's file and test function. ``tests/test_capability_table.py`` checks that the README holds this table
and that every cited node id is collected, so a renamed or deleted test breaks the build, not the README.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
START, END = '<!-- capability-table:start -->', '<!-- capability-table:end -->'

#: alias -> (test file, test function)
TESTS: Dict[str, Tuple[str, str]] = {
    'official': ('tests/test_checkpoint_convert.py', 'test_official_module_state_dicts_convert_and_reproduce_outputs'),
    'official_kernels': ('tests/test_sapa.py', 'test_deform_ops_match_loop_of_the_official_kernels'),
    'official_tuple': ('tests/test_checkpoint_convert.py',
                       'test_official_freqfusion_state_dicts_convert_and_reproduce_the_official_tuple'),
    'layouts': ('tests/test_properties_upsamplers.py', 'test_memory_layouts_give_the_contiguous_output'),
    'backends': ('tests/test_properties_upsamplers.py', 'test_compiled_and_reference_paths_agree'),
    'cuda': ('tests/test_devices.py', 'test_cuda_matches_cpu'),
    'cuda_fp16': ('tests/test_devices.py', 'test_cuda_float16_autocast'),
    'carafe_math': ('tests/test_compiled_ops.py', 'test_cuda_element_functions_match_reference'),
    'dlu_math': ('tests/test_compiled_dlu.py', 'test_cuda_element_functions_match_reference'),
    'ddf_math': ('tests/test_compiled_ddf.py', 'test_cuda_element_functions_match_reference'),
    'amp': ('tests/test_amp.py', 'test_autocast_returns_input_dtype_close_to_float32'),
    'grid': ('tests/test_amp.py', 'test_sampling_grid_keeps_subpixel_precision'),
    'compile': ('tests/test_compile.py', 'test_fullgraph_aot_eager_matches_eager'),
    'onnx': ('tests/test_onnx_export.py', 'test_dynamo_export_opset17_matches_pytorch'),
    'onnx_ts': ('tests/test_onnx_export.py', 'test_torchscript_export_opset17_matches_pytorch'),
    'determinism': ('tests/test_determinism.py', 'test_cpu_bitwise_reproducible_under_deterministic_algorithms'),
    'neck_ckpt': ('tests/test_checkpoint_convert.py', 'test_fpn_upsample_neck'),
    'carafe_neck_ckpt': ('tests/test_checkpoint_convert.py', 'test_fpn_carafe_layout_necks'),
    'ff_neck_ckpt': ('tests/test_checkpoint_convert.py', 'test_freqfusion_and_frfu_fpn_necks'),
}

CAPABILITIES = ('CPU', 'CUDA', 'fp16 / bf16', 'torch.compile', 'ONNX', 'deterministic', 'official checkpoint')

#: README row title -> (matrix id of tests/upsample_test_utils.py, official fixture, CUDA element test,
#: CUDA behaviour under torch.use_deterministic_algorithms (docs/determinism.md), neck checkpoint test ids).
ROWS: Dict[str, dict] = {
    'CARAFE': dict(matrix='portable_carafe', fixture='carafe_g2_s2', math='carafe_math',
                   cuda_det='deterministic', neck=('carafe_neck_ckpt', 'fpn_carafe-carafe')),
    'DySample': dict(matrix='dysample_lp_dyscope', fixture='dysample_pl_dyscope_s2',
                     grid='dysample_lp-autocast', cuda_det='error in backward', neck=('neck_ckpt', 'False-dysample')),
    'DLU': dict(matrix='dlu', fixture='dlu_s4', math='dlu_math', grid='dlu_compiled-autocast',
                cuda_det='deterministic (compiled op)', neck=('carafe_neck_ckpt', 'unified_fpn-dlu')),
    'DDF-Up': dict(matrix='ddf_up', fixture='ddfup_mul_s2', math='ddf_math',
                   cuda_det='deterministic'),
    'LDA-AQU': dict(matrix='lda_aqu', fixture='lda_aqu_default', grid='lda_aqu-autocast',
                    cuda_det='error in backward', neck=('carafe_neck_ckpt', 'fpn_lau-lda_aqu')),
    'FADE': dict(matrix='fade', fixture='fade_gated', math='carafe_math', cuda_det='deterministic',
                 neck=('neck_ckpt', 'False-fade')),
    'FADE-Lite': dict(matrix='fade_lite', fixture='fade_lite', math='carafe_math',
                      cuda_det='deterministic'),
    'SAPA-B': dict(matrix='sapa', fixture='sapa_base', math='carafe_math', cuda_det='deterministic',
                   neck=('neck_ckpt', 'False-sapa')),
    'SAPA-D': dict(matrix='sapadeform', official_ops=True, grid='sapadeform-autocast',
                   cuda_det='error in backward', neck=('neck_ckpt', 'False-sapadeform')),
    # FreqFusion's official forward returns a tuple: its fixtures are checked through official_forward.
    'FreqFusion': dict(matrix='freqfusion', fixture='freqfusion_resample_g4', official_alias='official_tuple',
                       math='carafe_math', cuda_det='error in backward (offset generator)',
                       neck=('ff_neck_ckpt', 'freqfusion')),
    'FRFU': dict(matrix='frfu', fixture='frfu_default', math='carafe_math', cuda_det='error in backward',
                 neck=('ff_neck_ckpt', 'frfu')),
}

#: Upsamplers with a compiled op: their matrix tests also run with backend 'compiled'.
COMPILED = {'portable_carafe', 'dlu', 'ddf_up', 'fade', 'fade_lite', 'sapa', 'freqfusion', 'frfu'}


def cite(alias: str, param: str = '') -> str:
    return f'`{alias}[{param}]`' if param else f'`{alias}`'


def cells(row: dict) -> List[Tuple[str, List[Tuple[str, str]]]]:
    """(text, cited (alias, param) pairs) per capability."""
    name = row['matrix']
    backends = ['compiled', 'reference'] if name in COMPILED else ['reference']
    official = ([(row.get('official_alias', 'official'), row['fixture'])] if 'fixture' in row
                else [('official_kernels', '')])
    family = name.split('_')[0] if name.startswith('dysample') else name
    cpu = ('✓ ', official + [('layouts', family)] + ([('backends', family)] if name in COMPILED else []))
    cuda_refs = [('cuda', name)] + ([(row['math'], '')] if 'math' in row else [])
    cuda = ('not run here (no GPU); shared math tested on CPU: ' if 'math' in row else 'not run here (no GPU): ',
            cuda_refs)
    amp_refs = [('amp', f'torch.bfloat16-{name}-{b}') for b in backends] + [('cuda_fp16', name)]
    if 'grid' in row:
        amp_refs.append(('grid', row['grid']))
    compile_refs = [('compile', f'{name}-{b}') for b in backends]
    onnx_refs = [('onnx', name), ('onnx_ts', name)]
    det_refs = [('determinism', f'{name}-{b}') for b in backends]
    ckpt_refs = official + ([row['neck']] if 'neck' in row else [])
    return [cpu, cuda, ('✓ ', amp_refs), ('✓ fullgraph ', compile_refs), ('✓ opset 16-17 ', onnx_refs),
            (f'CPU ✓; CUDA: {row["cuda_det"]}. ', det_refs),
            ('✓ ' if 'fixture' in row else '✓ neck: ', ckpt_refs if 'fixture' in row else [row['neck']])]
    # (official_kernels for SAPA-D: no released module checkpoint is in the fixtures; its neck keys are tested.)


def node_ids() -> List[str]:
    ids = []
    for row in ROWS.values():
        for _, refs in cells(row):
            for alias, param in refs:
                path, function = TESTS[alias]
                ids.append(f'{path}::{function}' + (f'[{param}]' if param else ''))
    return sorted(set(ids))


def table() -> str:
    lines = ['<!-- made by: python tools/capability_table.py --write-readme -->', '',
             '| upsampler | ' + ' | '.join(CAPABILITIES) + ' |', '|---' * (len(CAPABILITIES) + 1) + '|']
    for title, row in ROWS.items():
        texts = [text + ', '.join(cite(alias, param) for alias, param in refs) for text, refs in cells(row)]
        lines.append(f'| {title} | ' + ' | '.join(texts) + ' |')
    lines += ['', 'Tests cited (`alias[parameters]` = `file::function[parameters]`; a test without parameters '
              'means all its cases):', '']
    lines += [f'- `{alias}`: `{path}::{function}`' for alias, (path, function) in TESTS.items()]
    return '\n'.join(lines)


def missing_node_ids() -> List[str]:
    """Cited node ids that pytest does not collect (a test without parameters: any of its cases counts)."""
    files = sorted({path for path, _ in TESTS.values()})
    collected = subprocess.run([sys.executable, '-m', 'pytest', '--collect-only', '-q', '-p', 'no:cacheprovider',
                                *files], cwd=ROOT, capture_output=True, text=True).stdout.splitlines()
    collected = set(collected) | {line.split('[')[0] for line in collected}
    return [node for node in node_ids() if node not in collected]


def write_readme(path: Path = ROOT / 'README.md') -> None:
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f'{path} has no {START} ... {END} markers')
    pattern = re.compile(re.escape(START) + '.*?' + re.escape(END), re.S)
    path.write_text(pattern.sub(lambda _: f'{START}\n{table()}\n{END}', text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--write-readme', action='store_true', help='replace the table in README.md')
    parser.add_argument('--check', action='store_true', help='fail when a cited test is not collected')
    args = parser.parse_args()
    if args.check:
        missing = missing_node_ids()
        for node in missing:
            print(f'not collected: {node}', file=sys.stderr)
        if missing:
            return 1
        print(f'all {len(node_ids())} cited tests are collected')
    if args.write_readme:
        write_readme()
    elif not args.check:
        print(table())
    return 0


if __name__ == '__main__':
    sys.exit(main())
