#!/usr/bin/env python
"""Parameters and latency of every upsampler at one setting, as a markdown table.

Default: the DySample paper's figure setting, one x2 upsampling of a 1x256x120x120 map. Latency is the median
of timed repeats after warm-up (torch.utils.benchmark), forward alone and forward+backward (gradient of the
output sum w.r.t. the input and the parameters).

    python tools/benchmark_upsamplers.py --channels 256 --size 120 120 --scale 2
"""
from __future__ import annotations

import argparse
import platform
import sys

import torch
from torch.utils import benchmark

import upsample_plugin
from upsample_plugin import build_upsampler, plugin_upsamplers

BASELINES = ['nearest', 'bilinear', 'deconv', 'pixel_shuffle', 'carafe']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--channels', type=int, default=256)
    parser.add_argument('--size', type=int, nargs=2, default=(120, 120), metavar=('H', 'W'))
    parser.add_argument('--scale', type=int, default=2)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--types', nargs='+', help='upsampler type names (default: mmcv baselines + all plugin ones)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--min-run-time', type=float, default=1.0, help='seconds of timed repeats per figure')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    return parser.parse_args(argv)


def median_ms(stmt, globals_, min_run_time, threads):
    timer = benchmark.Timer(stmt=stmt, globals=globals_, num_threads=threads)
    timer.timeit(1)  # warm-up: first-call allocations and lazy initialisation are not timed
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def measure(name, args):
    module = build_upsampler(dict(type=name), args.channels, args.scale).to(args.device)
    height, width = args.size
    x = torch.randn(args.batch, args.channels, height, width, device=args.device, requires_grad=True)
    inputs = [x]
    if getattr(module, 'needs_guide', False):
        inputs.append(torch.randn(args.batch, args.channels, height * args.scale, width * args.scale,
                                  device=args.device))
    env = dict(module=module, inputs=inputs, torch=torch)
    with torch.no_grad():
        forward = median_ms('module(*inputs)', env, args.min_run_time, args.threads)
    both = median_ms('module(*inputs).sum().backward()', env, args.min_run_time, args.threads)
    return dict(type=name, cls=type(module).__name__, params=sum(p.numel() for p in module.parameters()),
                forward_ms=forward, forward_backward_ms=both)


def main(argv=None):
    args = parse_args(argv)
    names = args.types or BASELINES + sorted(set(plugin_upsamplers()) - {'portable_carafe'})
    rows = [measure(name, args) for name in names]
    height, width = args.size
    print(f'upsample_plugin {upsample_plugin.__version__}, torch {torch.__version__}, {args.device} '
          f'({platform.processor() or platform.machine()}, {args.threads} threads); input '
          f'{args.batch}x{args.channels}x{height}x{width}, x{args.scale}\n')
    print('| type | class | params | forward (ms) | forward+backward (ms) |')
    print('|---|---|---:|---:|---:|')
    for row in rows:
        print(f"| {row['type']} | {row['cls']} | {row['params']:,} | {row['forward_ms']:.1f} | "
              f"{row['forward_backward_ms']:.1f} |")
    return 0


if __name__ == '__main__':
    sys.exit(main())
