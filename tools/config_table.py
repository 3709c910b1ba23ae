#!/usr/bin/env python
"""The README's results table: every config under configs/, the paper's number for it, and the measured
parameter delta over its family's baseline (models are built, parameters counted).

    python tools/config_table.py                 # print the markdown table
    python tools/config_table.py --write-readme  # replace the table between the README's markers

Paper numbers are quoted from ../shared/spec/numbers.md with their source; "—" where no paper reports the
combination. The deltas are measured here, not quoted.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

import upsample_plugin  # noqa: F401  (registers upsamplers, necks and heads)

ROOT = Path(__file__).resolve().parents[1]
START, END = '<!-- configs-table:start -->', '<!-- configs-table:end -->'

FAMILIES = {  # folder -> (title, metric, baseline upsampler)
    'faster_rcnn': ('Faster R-CNN R50, 1x COCO', 'box AP', 'nearest'),
    'mask_rcnn': ('Mask R-CNN R50, 1x COCO', 'box / mask AP', 'nearest'),
    'panoptic_fpn': ('Panoptic FPN R50, 1x COCO', 'PQ', 'nearest'),
    'upernet': ('UPerNet R50, ADE20K', 'mIoU', 'bilinear'),
    'segformer': ('SegFormer MiT-B1, ADE20K', 'mIoU', 'bilinear'),
    'lite_hrnet': ('Lite-HRNet + FCN head, fuse-layer upsampling', 'mIoU', 'nearest'),
}
DYSAMPLE = 'tiny-smart/dysample README'
FREQFUSION = 'Linwei-Chen/FreqFusion README'
SAPA_EXT = 'tiny-smart/sapa README'
# (folder, upsampler) -> (paper's number, source); spec/numbers.md sections 5-9.
PAPER = {
    ('faster_rcnn', 'nearest'): ('37.5', DYSAMPLE),
    ('faster_rcnn', 'carafe'): ('38.6', f'{DYSAMPLE}; mmdet configs/carafe'),
    ('faster_rcnn', 'dlu'): ('38.6', 'Fu0511/Dynamic-Lightweight-Upsampling README'),
    ('faster_rcnn', 'dysample-lpg4'): ('38.6', DYSAMPLE),
    ('faster_rcnn', 'dysample-lpg4ds'): ('38.7', DYSAMPLE),
    ('faster_rcnn', 'dysample-plg8ds'): ('38.6', FREQFUSION),
    ('faster_rcnn', 'lda-aqu'): ('≈39.2 (read off a plot)', 'duzw9311/LDA-AQU performance plot'),
    ('faster_rcnn', 'fade'): ('38.5', SAPA_EXT),
    ('faster_rcnn', 'sapa-b'): ('37.8', SAPA_EXT),
    ('mask_rcnn', 'nearest'): ('38.3 / 34.7', DYSAMPLE),
    ('mask_rcnn', 'carafe'): ('39.3 / 35.8', 'mmdet configs/carafe (CARAFE in neck and mask head)'),
    ('mask_rcnn', 'dysample-lpg4'): ('39.2 / 35.4', DYSAMPLE),
    ('mask_rcnn', 'dysample-lpg4ds'): ('39.6 / 35.7', DYSAMPLE),
    ('mask_rcnn', 'dysample-plg8ds'): ('39.3 / 35.5', FREQFUSION),
    ('mask_rcnn', 'fade'): ('39.1 / 35.1', FREQFUSION),
    ('mask_rcnn', 'sapa-b'): ('38.7 / 35.1', FREQFUSION),
    ('panoptic_fpn', 'nearest'): ('40.2', DYSAMPLE),
    ('panoptic_fpn', 'carafe'): ('40.8', FREQFUSION),
    ('panoptic_fpn', 'dysample-lpg4'): ('41.4', DYSAMPLE),
    ('panoptic_fpn', 'dysample-lpg4ds'): ('41.5', DYSAMPLE),
    ('panoptic_fpn', 'dysample-plg8ds'): ('41.1', FREQFUSION),
    ('panoptic_fpn', 'fade'): ('40.9', FREQFUSION),
    ('panoptic_fpn', 'sapa-b'): ('40.6', FREQFUSION),
    ('upernet', 'bilinear'): ('41.09', SAPA_EXT),
    ('upernet', 'carafe'): ('41.49', SAPA_EXT),
    ('upernet', 'fade'): ('41.83', SAPA_EXT),
    ('upernet', 'sapa-b'): ('41.47', SAPA_EXT),
    ('segformer', 'bilinear'): ('41.68', 'poppinace/fade README'),
    ('segformer', 'carafe'): ('42.82', 'poppinace/fade README'),
    ('segformer', 'fade'): ('44.41', 'poppinace/fade README'),
    ('segformer', 'sapa-b'): ('43.20', 'poppinace/sapa README'),
}


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
    init_default_scope(cfg.default_scope)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
        model = registry.build(cfg.model)
    return sum(p.numel() for p in model.parameters())


def table() -> str:
    lines = ['| config | paper | source | parameters | delta over baseline |', '|---|---|---|---:|---:|']
    for folder, (title, metric, baseline) in FAMILIES.items():
        settings = sorted({setting_of(p) for p in (ROOT / 'configs' / folder).glob('*.py')})
        for setting in settings:
            lines += setting_rows(folder, setting, title if len(settings) == 1 else f'{title}: `{setting}`',
                                  metric, baseline)
    return '\n'.join(lines)


def setting_rows(folder: str, setting: str, title: str, metric: str, baseline: str) -> list:
    """The table rows of one setting: its baseline first, then the other upsamplers with their deltas."""
    paths = sorted((p for p in (ROOT / 'configs' / folder).glob('*.py') if setting_of(p) == setting),
                   key=lambda p: (upsampler_of(p) != baseline, p))
    counts = {path: count_parameters(path) for path in paths}
    base = counts[paths[0]]
    lines = [f'| **{title}** ({metric}) | | | | |']
    for path in paths:
        value, source = PAPER.get((folder, upsampler_of(path)), ('—', ''))
        delta = counts[path] - base
        lines.append(f'| `{path.relative_to(ROOT)}` | {value} | {source} | {counts[path]:,} | '
                     f'{"baseline" if path == paths[0] else f"{delta:+,}"} |')
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
