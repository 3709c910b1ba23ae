#!/usr/bin/env python
"""The README's results table, made from the configs themselves: every paper config under configs/ carries its
provenance as data (a top-level ``paper`` dict: the published number, its source, the official config it mirrors
and how it differs), and the parameter delta over its setting's baseline is measured on the built model.

    python tools/config_table.py                 # print the markdown table
    python tools/config_table.py --write-readme  # replace the table between the README's markers

``paper`` keys (all required, every config defines its own: an inherited one would describe its base):

* ``metric``: what the number measures (``'box AP'``, ``'box / mask AP'``, ``'PQ'``, ``'mIoU'``);
* ``number``: the published value as printed (a string), or ``None`` where no paper reports the combination;
* ``source``: where that number is printed (``None`` with ``number=None``);
* ``printed_params``: the parameter count or increment printed next to it (a string), or ``None``;
* ``mirrors``: the official config this one reproduces, or why there is none;
* ``deviations``: list of the ways this config differs from that official config (empty: none);
* ``note``: anything else a reader comparing numbers must know (best vs final evaluation, other sources' values).
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path
from typing import Any, Dict

from mmengine.config import Config
from mmengine.registry import DefaultScope

import upsample_plugin  # noqa: F401  (registers upsamplers, necks and heads)

ROOT = Path(__file__).resolve().parents[1]
START, END = '<!-- configs-table:start -->', '<!-- configs-table:end -->'

FAMILIES = {  # folder -> (title, baseline upsampler)
    'faster_rcnn': ('Faster R-CNN, 1x COCO', 'nearest'),
    'mask_rcnn': ('Mask R-CNN, 1x COCO', 'nearest'),
    'panoptic_fpn': ('Panoptic FPN, 1x COCO panoptic', 'nearest'),
    'upernet': ('UPerNet, ADE20K 512x512, 80k iterations', 'bilinear'),
    'segformer': ('SegFormer MiT-B1, ADE20K 512x512, 160k iterations (8xb2: NVlabs head, 256 channels; 2xb16: mmseg '
                  "head, 128 channels, FRFU's setting)", 'bilinear'),
    'lite_hrnet': ('Lite-HRNet + FCN head, fuse-layer upsampling', 'nearest'),
}
#: Folders of configs that are not paper experiments (no ``paper`` dict).
NOT_PAPER_CONFIGS = ('toy',)
PROVENANCE_KEYS = ('metric', 'number', 'source', 'printed_params', 'mirrors', 'deviations', 'note')


def paper_configs():
    """Every config that reproduces (or extends) a paper's experiment: all under configs/ except the toy ones."""
    return sorted(p for p in (ROOT / 'configs').rglob('*.py')
                  if p.relative_to(ROOT / 'configs').parts[0] not in NOT_PAPER_CONFIGS)


def provenance(path: Path) -> Dict[str, Any]:
    """The config's ``paper`` dict, checked: defined in the file itself (not inherited from its base), with
    exactly :data:`PROVENANCE_KEYS` of the documented types. A ``ValueError`` names the file and the problem."""
    tree = ast.parse(path.read_text(), filename=str(path))
    if not any(isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == 'paper'
                                                    for t in node.targets) for node in tree.body):
        raise ValueError(f'{path.relative_to(ROOT)}: no top-level "paper = dict(...)" (its provenance: the '
                         f'published number, source, mirrored official config and deviations; see '
                         f'tools/config_table.py)')
    paper = Config.fromfile(str(path)).get('paper')
    problems = []
    if not isinstance(paper, dict):
        raise ValueError(f'{path.relative_to(ROOT)}: "paper" must be a dict, got {type(paper).__name__}')
    if sorted(paper) != sorted(PROVENANCE_KEYS):
        problems.append(f'keys must be {list(PROVENANCE_KEYS)}, got {sorted(paper)}')
    for key in ('metric', 'mirrors', 'note'):
        if not isinstance(paper.get(key), str):
            problems.append(f'{key} must be a str')
    for key in ('number', 'printed_params'):
        if paper.get(key) is not None and not isinstance(paper.get(key), str):
            problems.append(f'{key} must be a str (as printed) or None')
    if paper.get('number') is None and paper.get('source') is not None:
        problems.append('source is set but number is None')
    if paper.get('number') is not None and not (isinstance(paper.get('source'), str) and paper['source']):
        problems.append('a number needs its source')
    deviations = paper.get('deviations')
    if not isinstance(deviations, list) or not all(isinstance(d, str) and d for d in deviations):
        problems.append('deviations must be a list of non-empty str')
    if not paper.get('mirrors'):
        problems.append('mirrors must name the official config (or say why there is none)')
    if problems:
        raise ValueError(f'{path.relative_to(ROOT)}: paper: ' + '; '.join(problems))
    return dict(paper)


def upsampler_of(path: Path) -> str:
    # <model>_<backbone>_<neck/schedule>_<upsampler>_<schedule/dataset>.py
    return path.stem.split('_')[3]


def setting_of(path: Path) -> str:
    """The config name without its upsampler: configs of one setting share a baseline (a folder may hold several
    settings, e.g. lite_hrnet: two depths x two datasets)."""
    parts = path.stem.split('_')
    return '_'.join(parts[:3] + ['*'] + parts[4:])


def count_parameters(path: Path) -> int:
    cfg = Config.fromfile(str(path))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
        model = registry.build(cfg.model)
    return sum(p.numel() for p in model.parameters())


def table() -> str:
    lines = ['| config | paper | source and notes | mirrors | differs from the official config | parameters | '
             'delta over baseline (printed) |',
             '|---|---|---|---|---|---:|---:|']
    for folder, (title, baseline) in FAMILIES.items():
        paths = [p for p in paper_configs() if p.parent.name == folder]
        # R50 (the papers' main rows) before R101.
        settings = sorted({setting_of(p) for p in paths}, key=lambda s: ('_r101_' in s, s))
        for setting in settings:
            lines += setting_rows(folder, setting, f'{title}: `{setting}`', baseline)
    return '\n'.join(lines)


def _cell(text: str) -> str:
    return text.replace('|', '\\|')


def setting_rows(folder: str, setting: str, title: str, baseline: str) -> list:
    """The table rows of one setting: its baseline first, then the other upsamplers with their deltas."""
    paths = sorted((p for p in (ROOT / 'configs' / folder).glob('*.py') if setting_of(p) == setting),
                   key=lambda p: (upsampler_of(p) != baseline, p))
    if upsampler_of(paths[0]) != baseline:
        raise ValueError(f'setting {setting} has no {baseline} baseline config')
    counts = {path: count_parameters(path) for path in paths}
    base = counts[paths[0]]
    metric = provenance(paths[0])['metric']
    lines = [f'| **{title}** ({metric}) | | | | | | |']
    for path in paths:
        paper = provenance(path)
        source = '; '.join(part for part in (paper['source'], paper['note']) if part)
        deviations = '; '.join(paper['deviations']) or 'none'
        delta = 'baseline' if path == paths[0] else f'{counts[path] - base:+,}'
        if paper['printed_params']:
            delta += f' ({paper["printed_params"]})'
        lines.append(f'| `{path.relative_to(ROOT)}` | {paper["number"] or "—"} | {_cell(source)} | '
                     f'{_cell(paper["mirrors"])} | {_cell(deviations)} | {counts[path]:,} | {delta} |')
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--write-readme', action='store_true', help='replace the table in README.md')
    args = parser.parse_args(argv)
    markdown = table()
    if not args.write_readme:
        print(markdown)
        return 0
    readme = ROOT / 'README.md'
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f'README.md has no {START} ... {END} markers')
    block = f'{START}\n<!-- made by: python tools/config_table.py --write-readme -->\n{markdown}\n{END}'
    readme.write_text(re.sub(re.escape(START) + '.*?' + re.escape(END), lambda _: block, text, flags=re.S))
    return 0


if __name__ == '__main__':
    sys.exit(main())
