#!/usr/bin/env python
"""Draw where an upsampler reads from, for chosen output pixels, on an image (PNG).

DySample: the sampling position of each group and its 4 bilinear taps; LDA-AQU: the deformable points (marker
size = attention weight); CARAFE, DLU, FADE, FADE-Lite, SAPA-B: the k x k reassembly kernel around the parent pixel
as a heat patch; DDF-Up: the k x k spatial filter of the output pixel's phase. The geometry comes from
:mod:`upsample_plugin.visualize` (importable, returns data), this tool only wires inputs and files.

Input features: without a backbone the feature map is a stand-in (the image area-pooled to ``--feature-size``,
RGB + gradient magnitude mixed into C channels by a fixed random projection). A freshly built module is nearly
static (DySample/DLU/LDA-AQU sample on the regular grid, CARAFE's kernels are flat), so ``--randomize STD``
re-draws the conv weights to show content-dependent geometry of an *untrained* module; ``--checkpoint`` loads a
state dict of the upsampler (a plain state dict, or a checkpoint of tools/train.py; ``--prefix`` selects one module
of a full model checkpoint, e.g. ``neck.upsamplers.0``, and a wrong one lists the upsampler modules there).

    python tools/visualize_upsampler.py dysample --out docs/images/dysample.png --randomize 1
    python tools/visualize_upsampler.py carafe --image photo.jpg --pixels 10,12 40,41 --out carafe.png
    python tools/visualize_upsampler.py --write-readme   # dysample, carafe, dlu, lda_aqu, sapa, ddf_up pictures
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tools'))

from upsample_plugin import build_upsampler  # noqa: E402
from upsample_plugin import visualize as vis  # noqa: E402
from upsample_plugin.runner import checkpoint_mismatch, trust_mm_checkpoints  # noqa: E402

README = ROOT / 'README.md'
MARKERS = ('<!-- upsampler-pictures:start -->', '<!-- upsampler-pictures:end -->')
README_TYPES = ['dysample', 'carafe', 'dlu', 'lda_aqu', 'sapa', 'ddf_up']
DESCRIPTION = {
    'dysample': 'DySample (lp, G4): per group, the sampling position (dots) and its 4 bilinear taps (dotted)',
    'carafe': 'CARAFE: the 5x5 reassembly kernel around the parent pixel (heat patch, per-kernel colour scale)',
    'dlu': 'DLU: the 5x5 kernel around the parent pixel, sampled from the kernel space at parent + learned offset (cyan x)',
    'lda_aqu': 'LDA-AQU: the 3x3 deformable points per group (marker size = attention weight)',
    'sapa': 'SAPA-B: the 5x5 similarity kernel around the parent pixel (guided by the high-res map)',
    'fade': 'FADE: the 5x5 reassembly kernel (guided)',
    'fade_lite': 'FADE-Lite: the 5x5 reassembly kernel (guided)',
    'ddf_up': 'DDF-Up: the 3x3 spatial filter of the output pixel\'s phase (zero-mean, FilterNorm)',
}


def parse_pixels(texts, out_size, scale):
    if texts:
        return [tuple(int(v) for v in t.split(',')) for t in texts]
    out_h, out_w = out_size
    # A few pixels spread over the map, on different sub-pixel phases.
    fractions = [(0.3, 0.3), (0.3, 0.72), (0.68, 0.35), (0.55, 0.55), (0.8, 0.8)]
    return [(int(fy * out_h) + k % scale, int(fx * out_w) + (k // scale) % scale)
            for k, (fy, fx) in enumerate(fractions)]


def load_image(path):
    if path is None:
        return vis.demo_image(320, 320)
    import matplotlib.image as mpimg
    image = mpimg.imread(str(path))
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    return image[..., :3]


def build(args):
    cfg = dict(type=args.type)
    if args.config:
        text = Path(args.config).read_text() if Path(args.config).exists() else args.config
        cfg = json.loads(text)
    module = build_upsampler(cfg, args.channels, args.scale).eval()
    if args.randomize:
        vis.randomize_weights(module, args.randomize, args.seed)
    if args.checkpoint:
        state = load_upsampler_state(args.checkpoint, args.prefix)
        problem = checkpoint_mismatch(module, state)
        if problem is not None:
            where = f' under {args.prefix!r}' if args.prefix else ''
            raise SystemExit(f'--checkpoint {args.checkpoint}: the weights{where} do not fit '
                             f'{type(module).__name__} built from {cfg}: {problem}')
        module.load_state_dict(state)
    return module


def upsampler_prefixes(keys) -> list:
    """Module paths in a model's state-dict keys that hold upsamplers (a path part containing 'upsampl', with
    its list index), e.g. ``neck.upsamplers.0``."""
    found = []
    for key in keys:
        parts = key.split('.')
        for i, part in enumerate(parts[:-1]):
            if 'upsampl' in part:
                end = i + 2 if i + 1 < len(parts) - 1 and parts[i + 1].isdigit() else i + 1
                found.append('.'.join(parts[:end]))
                break
    return sorted(set(found))


def load_upsampler_state(path, prefix: str = '') -> dict:
    """The upsampler's state dict from ``path``: a plain state dict, or a checkpoint of the tools (mmengine's
    format, read with torch's safe ``weights_only`` loading like the tools do) whose keys under ``prefix`` (a module
    path, with or without the trailing dot) are taken."""
    trust_mm_checkpoints()
    state = torch.load(path, map_location='cpu')
    state = state.get('state_dict', state)
    if not prefix:
        return state
    prefix = prefix.rstrip('.') + '.'
    selected = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not selected:
        candidates = upsampler_prefixes(state)
        raise SystemExit(f'--prefix {prefix.rstrip(".")!r} matches no key of {path}; '
                         + (f'upsampler modules there: {", ".join(candidates)}' if candidates
                            else 'it holds no module whose path mentions an upsampler'))
    return selected


def visualize(args, out: Path):
    """Compute the geometry, draw it, save ``out``; returns (kind, geometry)."""
    torch.manual_seed(args.seed)
    image = load_image(args.image)
    module = build(args)
    size = tuple(args.feature_size)
    x = vis.image_features(image, args.channels, size, args.seed)
    guide = None
    if getattr(module, 'needs_guide', False):
        guide = vis.image_features(image, args.channels, (size[0] * args.scale, size[1] * args.scale),
                                   args.seed + 1)
    pixels = parse_pixels(args.pixels, (size[0] * args.scale, size[1] * args.scale), args.scale)
    kind, geom = vis.geometry(module, x, pixels, guide)
    title = args.type + (f', random weights (std {args.randomize})' if args.randomize and not args.checkpoint
                         else '')
    out.parent.mkdir(parents=True, exist_ok=True)
    vis.render(image, kind, geom, size, out, title=title)
    return kind, geom


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('type', nargs='?', default='dysample', help='upsampler type (build_upsampler name)')
    parser.add_argument('--config', help='JSON dict (or a file holding one) given to build_upsampler')
    parser.add_argument('--checkpoint', help='state dict of the upsampler (torch.save), or a tools/train.py checkpoint')
    parser.add_argument('--prefix', default='',
                        help='module path of the upsampler in a full-model checkpoint, e.g. neck.upsamplers.0')
    parser.add_argument('--image', help='image file (default: a generated picture of simple shapes)')
    parser.add_argument('--channels', type=int, default=64)
    parser.add_argument('--scale', type=int, default=2)
    parser.add_argument('--feature-size', type=int, nargs=2, default=(16, 16), metavar=('H', 'W'),
                        help='low-resolution feature size the image is pooled to')
    parser.add_argument('--pixels', nargs='+', help='output pixels as ROW,COL (default: 5 spread pixels)')
    parser.add_argument('--randomize', type=float, default=0.0,
                        help='re-draw conv weights ~N(0, STD^2/fan_in) (untrained, content-dependent geometry)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', type=Path, default=Path('upsampler.png'))
    parser.add_argument('--write-readme', action='store_true',
                        help=f'draw {", ".join(README_TYPES)} into docs/images/ and fill the README section')
    return parser.parse_args(argv)


def write_readme(args):
    images = ROOT / 'docs' / 'images'
    lines = ['Made by `python tools/visualize_upsampler.py --write-readme` (each picture: `python '
             'tools/visualize_upsampler.py TYPE --randomize 1 --feature-size 16 16 --channels 64`). Generated '
             'picture of shapes (320x320), stand-in features (the picture pooled to 16x16, RGB + gradient '
             'magnitude randomly projected to 64 channels), **untrained modules with random conv weights** '
             '(`--randomize 1`): the pictures show each method\'s geometry (where it reads from), not learned '
             'behaviour. Stars: output pixels (x2); one colour per output pixel.', '']
    from benchmark_upsamplers import machine_line
    lines[0] += f' Machine: {machine_line()}.'
    cells = []
    for name in README_TYPES:
        sub = argparse.Namespace(**{**vars(args), 'type': name, 'randomize': args.randomize or 1.0})
        out = images / f'upsampler_{name}.png'
        visualize(sub, out)
        cells.append((DESCRIPTION[name], f'![{name}]({out.relative_to(ROOT)})'))
        print(f'wrote {out}')
    for k in range(0, len(cells), 3):
        row = cells[k:k + 3]
        lines += ['| ' + ' | '.join(image for _, image in row) + ' |', '|' + '---|' * len(row),
                  '| ' + ' | '.join(text for text, _ in row) + ' |', '']
    text = README.read_text()  # re-read right before writing: others edit the README too
    start, end = MARKERS
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise SystemExit(f'{README}: markers {start} ... {end} not found')
    README.write_text(text[:i + len(start)] + '\n' + '\n'.join(lines).rstrip('\n') + '\n' + text[j:])


def main(argv=None):
    args = parse_args(argv)
    if args.write_readme:
        write_readme(args)
        return 0
    kind, geom = visualize(args, args.out)
    print(f'wrote {args.out} ({kind}, {len(geom)} output pixels)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
