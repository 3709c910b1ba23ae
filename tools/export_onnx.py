#!/usr/bin/env python
"""Export one upsampler to ONNX, run the file with onnxruntime and print the max abs error against PyTorch.

The upsampler is a type name (``dysample``) or a config dict in JSON (``'{"type": "dysample", "style": "pl"}'``),
built with ``upsample_plugin.build_upsampler`` for ``--channels`` and ``--scale``; guided upsamplers (FADE, SAPA)
get a random guide of ``--guide-channels`` at the output size. The check runs on the export size and on every
``--check-size`` (different sizes prove the dynamic height/width of the graph). Exit status 1 when a check
fails. See :mod:`upsample_plugin.export` for what is exported and how.

    python tools/export_onnx.py dysample --out work_dirs/onnx/dysample.onnx
    python tools/export_onnx.py '{"type": "carafe", "up_kernel": 3}' --channels 64 --opset 16 --legacy
    python tools/export_onnx.py dlu --custom-ops     # upsample_plugin::DLU node, checked with onnx.reference
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from upsample_plugin import build_upsampler  # noqa: E402
from upsample_plugin.export import check_onnx, custom_nodes, export_onnx  # noqa: E402


def parse_config(text: str) -> dict:
    """A type name or a JSON config dict."""
    if not text.lstrip().startswith('{'):
        return dict(type=text)
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f'upsampler: not valid JSON ({err}): {text}')
    if not isinstance(config, dict) or 'type' not in config:
        raise SystemExit(f'upsampler: a JSON config must be an object with a "type" key, got {text}')
    return config


def make_inputs(module: torch.nn.Module, channels: int, guide_channels: int, scale: int, height: int,
                width: int) -> tuple:
    x = torch.randn(1, channels, height, width)
    if getattr(module, 'needs_guide', False):
        return x, torch.randn(1, guide_channels, scale * height, scale * width)
    return (x,)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('upsampler', help='type name or JSON config dict')
    parser.add_argument('--channels', type=int, default=64)
    parser.add_argument('--guide-channels', type=int, default=None, help='guided upsamplers (default: --channels)')
    parser.add_argument('--scale', type=int, default=2)
    parser.add_argument('--size', type=int, nargs=2, default=(16, 16), metavar=('H', 'W'),
                        help='low-resolution size of the export example')
    parser.add_argument('--check-size', type=int, nargs=2, action='append', metavar=('H', 'W'),
                        help='further low-resolution sizes to check (repeatable; default: 11 13 unless --static)')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--legacy', action='store_true', help='TorchScript exporter (dynamo=False)')
    parser.add_argument('--static', action='store_true', help='fixed height/width instead of dynamic ones')
    parser.add_argument('--custom-ops', action='store_true',
                        help='compiled ops as upsample_plugin::* nodes (dynamo exporter)')
    parser.add_argument('--randomize', type=float, default=0.0, metavar='STD',
                        help='re-draw all parameters from N(0, STD^2) first (a fresh module is nearly static)')
    parser.add_argument('--rtol', type=float, default=1e-4)
    parser.add_argument('--atol', type=float, default=1e-5)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', type=Path, default=None, help='default: work_dirs/onnx/<type>.onnx')
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    config = parse_config(args.upsampler)
    module = build_upsampler(config, args.channels, args.scale).eval()
    if args.randomize:
        with torch.no_grad():
            for param in module.parameters():
                param.normal_(0, args.randomize)
    guide_channels = args.guide_channels or args.channels
    out = args.out or ROOT / 'work_dirs' / 'onnx' / f'{config["type"]}.onnx'
    sizes = [tuple(args.size)] + [tuple(s) for s in (args.check_size or ([] if args.static else [(11, 13)]))]
    inputs = [make_inputs(module, args.channels, guide_channels, args.scale, h, w) for h, w in sizes]

    export_onnx(module, inputs[0], out, opset=args.opset, dynamic_hw=not args.static, dynamo=not args.legacy,
                custom_ops=args.custom_ops)
    custom = sorted({node.op_type for node in custom_nodes(out)})
    print(f'exported {type(module).__name__} to {out} (opset {args.opset}, '
          f'{"TorchScript" if args.legacy else "dynamo"} exporter, '
          f'{"static" if args.static else "dynamic"} H/W, custom nodes: {", ".join(custom) or "none"})')
    failed = False
    for (height, width), call_inputs in zip(sizes, inputs):
        try:
            error = check_onnx(out, module, call_inputs, rtol=args.rtol, atol=args.atol)
        except RuntimeError as err:
            print(f'input {height}x{width}: FAILED: {err}')
            failed = True
        else:
            print(f'input {height}x{width}: max abs error {error:.3e}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
