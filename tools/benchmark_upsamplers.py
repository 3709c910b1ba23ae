#!/usr/bin/env python
"""Parameters, MACs, latency and peak memory of every upsampler at one setting; ``--check`` against spec/numbers.md.

Rows: nearest, bilinear, deconv, pixel_shuffle (the mmcv baselines of ``build_upsampler``), every plugin upsampler
with its defaults, and the DySample variants the paper compares (lp G4 = DySample, lp G4 dyscope = DySample+,
pl G4 = DySample-S, pl G8 dyscope = DySample-S+), FreqFusion in its FPN setting (C_m 64, offset generator G_r 4) and
FRFU. Guided upsamplers (FADE, FADE-Lite, SAPA-B, SAPA-D, FreqFusion) get a random
high-resolution guide with the same channels.

Default setting: the DySample Fig. 1 setting, one x2 upsampling of a 1x256x120x120 map. ``--dlu-setting``: CARAFE
vs DLU at x2, x4, x8, x16 with 256 channels on a smaller map (16x16 unless ``--size`` says otherwise).

Counting rule for MACs (upsample_plugin.complexity, mmengine's FlopAnalyzer with handles for the compiled ops):
convolutions, projections (matmul/einsum) and reassembly (carafe/dlu/ddf ops: k*k MACs per output value; DDF
'mul' also counts the k*k filter products) are counted; bilinear sampling (grid_sample, bilinear interpolation,
DLU's kernel sampling) counts 4 MACs per sampled value; softmax, sigmoid, normalisation layers, pooling, nearest
copies and other element-wise ops are not counted.

Latency: torch.utils.benchmark.Timer, one warm-up call excluded, then the median of blocked_autorange blocks
(``--min-run-time`` seconds); forward under no_grad, and forward+backward (``out.sum().backward()`` with the input
requiring grad). Peak memory, CPU: each (row, mode) cell runs in a fresh process (forked from a forkserver that
only imported the modules): it builds the module, runs it once on a tiny input, builds the full inputs, resets the
resident-set high-water mark (/proc/self/clear_refs "5"), runs once and reports VmHWM minus the RSS before the
call (helpers of tools/benchmark_ops.py). CUDA: torch.cuda.max_memory_allocated() minus the allocation before.

Bandwidth floor (issue 17, as in tools/benchmark_ops.py): each latency is also given as a multiple of the time the
module would take if it only moved its data once at the copy bandwidth measured right before its row: forward =
input (and guide) + parameters read once + output written once; forward+backward adds the incoming gradient read
and the gradients of the input and the parameters written. The ratio is what compares across machines. Below the
table: DySample's forward and its point sampling alone (``DySample.sample`` with fixed offsets) against a plain
bilinear ``F.interpolate`` to the same output size, timed in the same run.

    python tools/benchmark_upsamplers.py                      # default table, CPU (+ CUDA when present)
    python tools/benchmark_upsamplers.py --dlu-setting
    python tools/benchmark_upsamplers.py --check --no-timing  # parameters and MACs vs spec/numbers.md
    python tools/benchmark_upsamplers.py --csv out.csv --plot out.png --write-readme
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import multiprocessing
import os
import platform
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tools'))

import upsample_plugin  # noqa: E402,F401  (registers the upsamplers)
from upsample_plugin import build_upsampler  # noqa: E402

# The RSS helpers of the op benchmark: one measurement protocol for ops and upsamplers.
from benchmark_ops import copy_bandwidth, current_rss, reset_rss_high_water, rss_high_water  # noqa: E402

README = ROOT / 'README.md'
BENCH_MARKERS = ('<!-- upsampler-benchmark:start -->', '<!-- upsampler-benchmark:end -->')

#: (label, config) of the default rows. Labels are what --types selects (a type name selects all its rows).
ROWS: List[Tuple[str, dict]] = [
    ('nearest', dict(type='nearest')),
    ('bilinear', dict(type='bilinear')),
    ('deconv', dict(type='deconv')),
    ('pixel_shuffle', dict(type='pixel_shuffle')),
    ('carafe', dict(type='carafe')),
    ('dlu', dict(type='dlu')),
    ('ddf_up', dict(type='ddf_up')),
    ('lda_aqu', dict(type='lda_aqu')),
    ('fade', dict(type='fade')),
    ('fade_lite', dict(type='fade_lite')),
    ('sapa', dict(type='sapa')),
    ('sapadeform', dict(type='sapadeform')),
    ('dysample-lp', dict(type='dysample', style='lp', groups=4)),
    ('dysample-lp-ds', dict(type='dysample', style='lp', groups=4, dyscope=True)),
    ('dysample-pl', dict(type='dysample', style='pl', groups=4)),
    ('dysample-pl-g8-ds', dict(type='dysample', style='pl', groups=8, dyscope=True)),
    ('freqfusion', dict(type='freqfusion', compressed_channels=64, feature_resample=True)),
    ('frfu', dict(type='frfu')),
]

#: Paper names of the rows (table and plot labels).
PAPER_NAMES = {'nearest': 'Nearest', 'bilinear': 'Bilinear', 'deconv': 'Deconv', 'pixel_shuffle': 'PixelShuffle',
               'carafe': 'CARAFE', 'dlu': 'DLU', 'ddf_up': 'DDF-Up', 'lda_aqu': 'LDA-AQU', 'fade': 'FADE',
               'fade_lite': 'FADE-Lite', 'sapa': 'SAPA-B', 'sapadeform': 'SAPA-D', 'dysample-lp': 'DySample',
               'dysample-lp-ds': 'DySample+', 'dysample-pl': 'DySample-S', 'dysample-pl-g8-ds': 'DySample-S+',
               'freqfusion': 'FreqFusion', 'frfu': 'FRFU'}

#: SegFormer-B1 ADE20K mIoU (spec/numbers.md §4.1 = DySample Fig. 1, §9.3 tiny-smart/sapa, §9.1 poppinace/fade).
#: The four DySample points of Fig. 1 are not labelled per variant; only the highest (43.59) is attributed, to
#: DySample-S+, as spec §4.1 infers. FADE: 43.06 as in Fig. 1 / §9.3 (§9.1 reports 44.41 for another run).
PAPER_MIOU = {'bilinear': (41.68, '§4.1/§9.1'), 'deconv': (40.71, '§9.3'), 'pixel_shuffle': (41.50, '§4.1/§9.3'),
              'carafe': (42.82, '§9.1'), 'fade': (43.06, '§4.1/§9.3'), 'fade_lite': (43.49, '§9.1'),
              'sapa': (43.20, '§9.2'), 'sapadeform': (44.68, '§9.3'),
              'dysample-pl-g8-ds': (43.59, '§4.1 [figure, inferred variant]')}

COUNTING_RULE = ('MACs: convolutions, projections (matmul/einsum) and reassembly (k*k MACs per output value; DDF '
                 "'mul' adds its k*k filter products) counted by mmengine's FlopAnalyzer with upsample_plugin."
                 'complexity handles; bilinear sampling (grid_sample, bilinear interpolation, DLU kernel sampling) '
                 '= 4 MACs per sampled value; softmax/sigmoid, normalisation layers, pooling, nearest copies and '
                 "other element-wise ops not counted. LDA-AQU's attention products (q.k and the weighted sum of the "
                 'sampled values, element-wise code invisible to the tracer) are added analytically.')

#: Ops the tracer reports that the counting rule leaves out (normalisation, pooling, copies).
EXCLUDED_OPS = {'upsample_nearest2d', 'upsample_nearest1d', 'upsample_nearest3d', 'layer_norm', 'group_norm',
                'batch_norm', 'instance_norm', 'adaptive_avg_pool2d', 'avg_pool2d'}
#: Ops that are bilinear sampling (4 MACs per sampled value).
SAMPLING_OPS = {'grid_sampler', 'upsample_bilinear2d'}


# ----------------------------------------------------------------------------------------------------- building

def select_rows(types: Optional[List[str]]) -> List[Tuple[str, dict]]:
    if not types:
        return list(ROWS)
    rows = []
    for name in types:
        matched = [row for row in ROWS if row[0] == name] or [row for row in ROWS if row[1]['type'] == name]
        rows += matched or [(name, dict(type=name))]
    return rows


def make_inputs(module, channels: int, scale: int, size: Tuple[int, int], batch: int = 1,
                device: str = 'cpu', requires_grad: bool = False, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    height, width = size
    x = torch.randn(batch, channels, height, width, generator=gen).to(device).requires_grad_(requires_grad)
    inputs = [x]
    if getattr(module, 'needs_guide', False):
        inputs.append(torch.randn(batch, channels, height * scale, width * scale, generator=gen).to(device))
    return inputs


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------------- MACs

def traced_macs(module, inputs) -> Dict[str, int]:
    """MACs by operator (FlopAnalyzer + upsample_plugin.complexity handles), for one call on ``inputs``."""
    from upsample_plugin.complexity import flop_analyzer
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        analyzer = flop_analyzer(module.eval(), tuple(t.detach() for t in inputs))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return dict(analyzer.by_operator())


def dlu_sampling_macs(module, out_pixels: int) -> int:
    """The kernel-sampling part of a compiled ``dlu_forward`` node: 4 MACs x k*k taps x G per output pixel."""
    return 4 * module.up_kernel * module.up_kernel * module.up_group * out_pixels


def split_macs(module, by_op: Dict[str, int], out_pixels: int) -> Dict[str, int]:
    """``counted`` (the counting rule, sampling included), ``sampling`` (its bilinear-sampling part),
    ``excluded`` (normalisation/pooling/copies the tracer reported) and ``ops`` (the counted by-op dict)."""
    counted = {op: v for op, v in by_op.items() if op not in EXCLUDED_OPS}
    sampling = sum(v for op, v in counted.items() if op in SAMPLING_OPS)
    if 'dlu_forward' in counted:
        sampling += dlu_sampling_macs(module, out_pixels)
    return dict(counted=sum(counted.values()), sampling=sampling,
                excluded=sum(v for op, v in by_op.items() if op in EXCLUDED_OPS), ops=counted)


def macs_at(cfg: dict, channels: int, scale: int, size: Tuple[int, int]) -> Dict[str, int]:
    module = build_upsampler(cfg, channels, scale)
    inputs = make_inputs(module, channels, scale, size)
    return split_macs(module, traced_macs(module, inputs), size[0] * size[1] * scale * scale)


def macs_per_pixel(cfg: dict, channels: int, scale: int, sizes=((8, 8), (16, 16))) -> Dict[str, float]:
    """MACs per low-resolution pixel and per image: every count here is a*H*W + b, so two sizes give the
    per-pixel slope a exactly and the per-image constant b (e.g. DDF-Up's channel-branch MLPs on pooled features)."""
    (h1, w1), (h2, w2) = sizes
    m1, m2 = macs_at(cfg, channels, scale, sizes[0]), macs_at(cfg, channels, scale, sizes[1])
    p1, p2 = h1 * w1, h2 * w2
    out = {}
    for key in ('counted', 'sampling', 'excluded'):
        slope = (m2[key] - m1[key]) / (p2 - p1)
        out[key] = slope
        out[key + '_per_image'] = m1[key] - slope * p1
    out['ops'] = {op: (m2['ops'][op] - m1['ops'].get(op, 0)) / (p2 - p1) for op in m2['ops']}
    return out


# ----------------------------------------------------------------------------------------------------- timing

def median_ms(stmt: str, env: dict, args, device: str) -> float:
    """Median ms of single timed calls (torch.utils.benchmark.Timer.timeit(1)) after one untimed warm-up call:
    calls repeat until ``--min-run-time`` seconds and ``--min-repeats`` calls are done, or, for slow cells, stop
    after ``--max-seconds`` once at least one call is timed."""
    import statistics
    import time

    from torch.utils import benchmark
    if device == 'cuda':
        stmt = stmt + '; torch.cuda.synchronize()'
    timer = benchmark.Timer(stmt=stmt, globals=env, num_threads=torch.get_num_threads())
    timer.timeit(1)  # warm-up: first-call allocations and lazy initialisation are not timed
    times, start = [], time.perf_counter()
    while True:
        times.append(timer.timeit(1).median)
        elapsed = time.perf_counter() - start
        if (len(times) >= args.min_repeats and elapsed >= args.min_run_time) or elapsed >= args.max_seconds:
            break
    return statistics.median(times) * 1e3


def run_mode(module, inputs, mode: str):
    if mode == 'forward':
        with torch.no_grad():
            return module(*inputs)
    for t in list(inputs) + list(module.parameters()):
        t.grad = None
    out = module(*inputs)
    out.sum().backward()
    return out


def floor_bytes(module, inputs, scale: int) -> Dict[str, int]:
    """Bytes of the bandwidth floor (module docstring) of one call on ``inputs``."""
    x = inputs[0]
    out_bytes = x.nbytes * scale * scale
    param_bytes = sum(p.nbytes for p in module.parameters())
    forward = sum(t.nbytes for t in inputs) + param_bytes + out_bytes
    return {'forward': forward, 'forward+backward': forward + out_bytes + x.nbytes + param_bytes}


def time_row(cfg, args, device) -> Dict[str, float]:
    """Median ms of forward and forward+backward, and their ratios to the bandwidth floor (keys '... floor')."""
    module = build_upsampler(cfg, args.channels, args.scale).to(device)
    inputs = make_inputs(module, args.channels, args.scale, tuple(args.size), args.batch, device,
                         requires_grad=True)
    env = dict(module=module, inputs=inputs, run_mode=run_mode, torch=torch)
    bandwidth = copy_bandwidth(device, 64.0)
    moved = floor_bytes(module, inputs, args.scale)
    times = {mode: median_ms(f'run_mode(module, inputs, {mode!r})', env, args, device)
             for mode in ('forward', 'forward+backward')}
    times.update({f'{mode} floor': times[mode] / (moved[mode] / bandwidth * 1e3) for mode in list(times)})
    return times


def sampling_vs_interpolate(args, device) -> Dict[str, float]:
    """DySample (lp, G4) forward and its point sampling alone (fixed offsets) / bilinear F.interpolate to the same
    size, forward and forward+backward, timed in the same run."""
    import torch.nn.functional as F
    module = build_upsampler(dict(type='dysample', style='lp', groups=4), args.channels, args.scale).to(device)
    x = make_inputs(module, args.channels, args.scale, tuple(args.size), args.batch, device, requires_grad=True)[0]
    with torch.no_grad():
        offset = module._offsets(x)

    def sample(x):
        return module.sample(x, offset)

    def interpolate(x):
        return F.interpolate(x, scale_factor=args.scale, mode='bilinear', align_corners=False)

    env = dict(module=module, x=x, sample=sample, interpolate=interpolate, torch=torch)
    result = {}
    for mode in ('forward', 'forward+backward'):
        if mode == 'forward':
            stmt = 'with torch.no_grad(): {}(x)'
        else:
            stmt = 'x.grad = None; {}(x).sum().backward()'
        times = {name: median_ms(stmt.format(name), env, args, device) for name in ('module', 'sample', 'interpolate')}
        result[f'module {mode}'] = times['module'] / times['interpolate']
        result[f'sample {mode}'] = times['sample'] / times['interpolate']
        result[f'interpolate {mode} ms'] = times['interpolate']
    return result


# ----------------------------------------------------------------------------------------------------- memory

def peak_memory_here(cfg, channels, scale, size, batch, device, mode, threads) -> int:
    """Bytes one call allocates beyond its inputs and the module (see the module docstring)."""
    torch.set_num_threads(threads)
    module = build_upsampler(cfg, channels, scale).to(device)
    run_mode(module, make_inputs(module, channels, scale, (4, 4), batch, device, True), mode)  # lazy init
    for p in module.parameters():
        p.grad = None
    inputs = make_inputs(module, channels, scale, tuple(size), batch, device, requires_grad=True)
    if device == 'cuda':
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run_mode(module, inputs, mode)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    reset_rss_high_water()
    before = current_rss()
    run_mode(module, inputs, mode)
    return rss_high_water() - before


def memory_cells(rows, args, device, workers: int = 1) -> Dict[Tuple[str, str], int]:
    """Peak memory of every (row, mode); CPU cells each in a fresh forked process (forkserver)."""
    cells = [(label, cfg, mode) for label, cfg in rows for mode in ('forward', 'forward+backward')]
    common = (args.channels, args.scale, tuple(args.size), args.batch, device)
    if device == 'cuda':
        return {(label, mode): peak_memory_here(cfg, *common, mode, torch.get_num_threads())
                for label, cfg, mode in cells}
    ctx = multiprocessing.get_context('forkserver')
    ctx.set_forkserver_preload(['torch', 'upsample_plugin'])
    results = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                                max_tasks_per_child=1) as pool:
        futures = {pool.submit(peak_memory_here, cfg, *common, mode, torch.get_num_threads()): (label, mode)
                   for label, cfg, mode in cells}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
    return results


# ----------------------------------------------------------------------------------------------------- report

def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return (f'CPU {cpu}, {os.cpu_count()} logical CPUs visible, torch {torch.__version__} with '
            f'{torch.get_num_threads()} intra-op threads')


def benchmark(rows, args) -> List[dict]:
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() and not args.cpu_only else [])
    height, width = args.size
    results = []
    memory = {}
    for label, cfg in rows:
        module = build_upsampler(cfg, args.channels, args.scale)
        # Exact by linearity (every count is a*H*W + b, see macs_per_pixel); avoids a full-size traced forward.
        per = macs_per_pixel(cfg, args.channels, args.scale)
        if cfg['type'] == 'lda_aqu':  # its reassembly is element-wise code the tracer cannot see: add it
            per['counted'] += _lda_attention_macs(module, args.scale)
        macs = {key: per[key] * height * width + per[key + '_per_image'] for key in ('counted', 'sampling')}
        row = dict(label=label, name=PAPER_NAMES.get(label, label), config=cfg, cls=type(module).__name__,
                   params=n_params(module), macs=macs['counted'], sampling_macs=macs['sampling'],
                   macs_per_pixel=per['counted'])
        results.append(row)
        if not args.no_timing:
            for device in devices:
                times = time_row(cfg, args, device)
                row[f'{device}_fwd_ms'] = times['forward']
                row[f'{device}_fwdbwd_ms'] = times['forward+backward']
                row[f'{device}_fwd_floor'] = times['forward floor']
                row[f'{device}_fwdbwd_floor'] = times['forward+backward floor']
                print(f'  {label} {device}: fwd {times["forward"]:.2f} ms, fwd+bwd {times["forward+backward"]:.2f} ms',
                      file=sys.stderr, flush=True)
    if not args.no_timing and not args.no_memory:
        for device in devices:
            memory = memory_cells(rows, args, device, workers=args.memory_workers)
            for row in results:
                row[f'{device}_fwd_mb'] = memory[(row['label'], 'forward')] / 2 ** 20
                row[f'{device}_fwdbwd_mb'] = memory[(row['label'], 'forward+backward')] / 2 ** 20
    return results


def markdown_table(results, args) -> str:
    devices = [d for d in ('cpu', 'cuda') if results and f'{d}_fwd_ms' in results[0]]
    head = ['upsampler', 'config', 'params', 'GMACs', 'MACs / low-res px']
    for d in devices:
        head += [f'{d} fwd ms', f'{d} fwd+bwd ms', f'{d} fwd x floor', f'{d} fwd+bwd x floor']
        if f'{d}_fwd_mb' in results[0]:
            head += [f'{d} fwd peak MB', f'{d} fwd+bwd peak MB']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '|'.join(['---', '---'] + ['---:'] * (len(head) - 2)) + '|']
    for r in results:
        cfg = ', '.join(f'{k}={v}' for k, v in r['config'].items() if k != 'type') or '-'
        cells = [r['name'], f"`{r['config']['type']}` {cfg}", f"{r['params']:,}", f"{r['macs'] / 1e9:.3f}",
                 f"{r['macs_per_pixel']:,.0f}"]
        for d in devices:
            cells += [f"{r[f'{d}_fwd_ms']:.1f}", f"{r[f'{d}_fwdbwd_ms']:.1f}", f"{r[f'{d}_fwd_floor']:.1f}",
                      f"{r[f'{d}_fwdbwd_floor']:.1f}"]
            if f'{d}_fwd_mb' in r:
                cells += [f"{r[f'{d}_fwd_mb']:,.0f}", f"{r[f'{d}_fwdbwd_mb']:,.0f}"]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def header(args) -> str:
    height, width = args.size
    text = (f'Input {args.batch}x{args.channels}x{height}x{width}, x{args.scale}, float32. {machine_line()}. '
            f'{COUNTING_RULE}')
    if not args.no_timing:
        text += (f' Latency: median of single timed calls (torch.utils.benchmark.Timer) after one untimed warm-up '
                 f'call; at least {args.min_repeats} calls and {args.min_run_time} s, but slow cells stop after '
                 f'{args.max_seconds} s (then fewer calls, down to 1); the CPU is shared with other jobs, so '
                 f'timings are noisy.')
        if not args.no_memory:
            text += (' Peak memory (CPU): resident-set high-water mark minus RSS before the call, fresh process '
                     'per cell (includes outputs, saved tensors and, for fwd+bwd, gradients).')
    return text


def write_csv(results, path: Path) -> None:
    keys = sorted({k for r in results for k in r if k != 'config'})
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['label', 'name', 'config'] + [k for k in keys
                                                                             if k not in ('label', 'name')])
        writer.writeheader()
        for r in results:
            writer.writerow({**r, 'config': repr(r['config'])})


def plot(results, path: Path, args) -> None:
    """DySample Fig. 1 style: x = forward latency; left: y = paper mIoU (SegFormer-B1, spec/numbers.md §4.1/§9);
    right: y = MACs for every row. Circle area proportional to MACs; each point labelled."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    device = 'cuda' if results and 'cuda_fwd_ms' in results[0] else 'cpu'
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    max_macs = max(r['macs'] for r in results) or 1
    for ax, with_miou in zip(axes, (True, False)):
        for r in results:
            if with_miou and r['label'] not in PAPER_MIOU:
                continue
            x = r[f'{device}_fwd_ms']
            y = PAPER_MIOU[r['label']][0] if with_miou else r['macs'] / 1e9
            area = 30 + 2500 * r['macs'] / max_macs
            ax.scatter([x], [y], s=area, alpha=0.45, edgecolors='k')
            ax.annotate(r['name'], (x, y), textcoords='offset points', xytext=(5, 5), fontsize=8)
        ax.set_xlabel(f'forward latency on {device} (ms, this machine, log scale)')
        ax.set_xscale('log')
        ax.margins(0.15)
        ax.grid(alpha=0.3, which='both')
    axes[0].set_ylabel('SegFormer-B1 ADE20K mIoU (paper, spec/numbers.md §4.1/§9)')
    axes[0].set_title('latency vs paper mIoU (circle area = MACs)')
    axes[1].set_ylabel('GMACs (counting rule in the table header)')
    axes[1].set_yscale('symlog', linthresh=0.01)
    axes[1].set_title('latency vs MACs, all rows')
    height, width = args.size
    fig.suptitle(f'x{args.scale} upsampling of {args.batch}x{args.channels}x{height}x{width}')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replace_between_markers(path: Path, markers: Tuple[str, str], body: str) -> None:
    """Replace the text between the two markers of ``path`` (re-read right before writing)."""
    text = path.read_text()
    start, end = markers
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise SystemExit(f'{path}: markers {start} ... {end} not found')
    path.write_text(text[:i + len(start)] + '\n' + body.rstrip('\n') + '\n' + text[j:])


# ----------------------------------------------------------------------------------------------------- --check

#: spec/numbers.md §1 (parameters, s=2 unless stated): (label, config, channels, scale, expected).
EXPECTED_PARAMS = [
    ('CARAFE k5 C_m64', dict(type='carafe'), 256, 2, 74_148),
    ('CARAFE C=128', dict(type='carafe'), 128, 2, 65_956),
    ('CARAFE C=512', dict(type='carafe'), 512, 2, 90_532),
    ('CARAFE s=4', dict(type='carafe'), 256, 4, 247_248),
    ('CARAFE s=8', dict(type='carafe'), 256, 8, 939_648),
    ('CARAFE s=16', dict(type='carafe'), 256, 16, 3_709_248),
    ('DLU', dict(type='dlu'), 256, 2, 35_489),
    ('DLU s=4', dict(type='dlu'), 256, 4, 49_337),
    ('DLU s=8', dict(type='dlu'), 256, 8, 104_729),
    ('DLU s=16', dict(type='dlu'), 256, 16, 326_297),
    ('DySample lp G4', dict(type='dysample'), 256, 2, 8_224),
    ('DySample lp G4 C=64', dict(type='dysample'), 64, 2, 2_080),
    ('DySample lp G4 C=512', dict(type='dysample'), 512, 2, 16_416),
    ('DySample lp G4 dyscope', dict(type='dysample', dyscope=True), 256, 2, 16_416),
    ('DySample lp G4 dyscope + scope bias', dict(type='dysample', dyscope=True, scope_bias=True), 256, 2, 16_448),
    ('DySample lp G4 dyscope C=512', dict(type='dysample', dyscope=True), 512, 2, 32_800),
    ('DySample pl G4', dict(type='dysample', style='pl'), 256, 2, 520),
    ('DySample pl G4 dyscope', dict(type='dysample', style='pl', dyscope=True), 256, 2, 1_032),
    ('DySample pl G4 C=512', dict(type='dysample', style='pl'), 512, 2, 1_032),
    ('DySample pl G4 dyscope C=512', dict(type='dysample', style='pl', dyscope=True), 512, 2, 2_056),
    ('DySample pl G8', dict(type='dysample', style='pl', groups=8), 256, 2, 1_040),
    ('DySample pl G8 dyscope', dict(type='dysample', style='pl', groups=8, dyscope=True), 256, 2, 2_064),
    ('DySample pl G8 C=512', dict(type='dysample', style='pl', groups=8), 512, 2, 2_064),
    ('DySample pl G8 dyscope C=512', dict(type='dysample', style='pl', groups=8, dyscope=True), 512, 2, 4_112),
    ('DDF-Up k3 head1 se0.2', dict(type='ddf_up'), 256, 2, 560_368),
    ('DDF-Up guided (joint_channels=256)', dict(type='ddf_up', joint_channels=256), 256, 2, 550_128),
    ('LDA-AQU r4 G2', dict(type='lda_aqu'), 256, 2, 39_410),
    ('LDA-AQU r16', dict(type='lda_aqu', reduction_factor=16), 256, 2, 10_250),
    ('FADE gate', dict(type='fade'), 256, 2, 47_514),
    ('FADE no gate', dict(type='fade', gating=False), 256, 2, 47_257),
    ('FADE gate C=512', dict(type='fade'), 512, 2, 80_538),
    ('FADE no gate C=512', dict(type='fade', gating=False), 512, 2, 80_025),
    ('FADE-Lite gate', dict(type='fade_lite'), 256, 2, 13_332),
    ('FADE-Lite no gate', dict(type='fade_lite', gating=False), 256, 2, 13_075),
    ('FADE-Lite gate C=512', dict(type='fade_lite'), 512, 2, 26_388),
    ('FADE-Lite no gate C=512', dict(type='fade_lite', gating=False), 512, 2, 25_875),
    ('SAPA-B E32 GN', dict(type='sapa'), 256, 2, 17_472),
    ('SAPA-B C=512', dict(type='sapa'), 512, 2, 34_880),
    ('SAPA-D G4 P9 E32', dict(type='sapadeform'), 256, 2, 139_808),
    ('SAPA-D C=512', dict(type='sapadeform'), 512, 2, 279_072),
    ('Deconv 3x3 s2', dict(type='deconv'), 256, 2, 590_080),
    ('Deconv C=512', dict(type='deconv'), 512, 2, 2_359_808),
    ('PixelShuffle 3x3 C->4C', dict(type='pixel_shuffle'), 256, 2, 2_360_320),
    ('PixelShuffle C=512', dict(type='pixel_shuffle'), 512, 2, 9_439_232),
    # spec/numbers.md §13.1 (FreqFusion: FPN setting C_m = 2C/8, sampler G_r 4 with GroupNorm, unless stated)
    ('FreqFusion FPN C=128', dict(type='freqfusion', compressed_channels=32, feature_resample=True), 128, 2, 47_090),
    ('FreqFusion FPN', dict(type='freqfusion', compressed_channels=64, feature_resample=True), 256, 2, 104_690),
    ('FreqFusion FPN C=512', dict(type='freqfusion', compressed_channels=128, feature_resample=True), 512, 2,
     269_042),
    ('FreqFusion FPN no GroupNorm', dict(type='freqfusion', feature_resample=True, feature_resample_norm=False), 256,
     2, 104_434),
    ('FreqFusion FPN G_r 8', dict(type='freqfusion', feature_resample=True, feature_resample_group=8), 256, 2,
     156_610),
    ('FreqFusion defaults', dict(type='freqfusion'), 256, 2, 52_514),
    ('FreqFusion defaults C=512', dict(type='freqfusion'), 512, 2, 85_282),
    ('FRFU C=128', dict(type='frfu'), 128, 2, 10_578),
    ('FRFU G4 k3', dict(type='frfu'), 256, 2, 21_074),
    ('FRFU C=512', dict(type='frfu'), 512, 2, 42_066),
    ('FRFU G8', dict(type='frfu', groups=8), 256, 2, 37_522),
    ('FRFU s=4', dict(type='frfu'), 256, 4, 70_418),
    ('FRFU k5', dict(type='frfu', sample_k=5), 256, 2, 29_298),
]


def _lda_attention_macs(module, scale: int) -> int:
    """LDA-AQU's attention products per low-res pixel, which the tracer cannot see (element-wise mul + sum):
    q.k over hidden_dim channels and the weighted sum over C value channels, k_u^2 points per output pixel."""
    return (module.hidden_dim + module.in_channels) * module.k_u * module.k_u * scale * scale


#: spec/numbers.md §3 (MACs per low-res pixel, C=256): (label, config, scale, expected, convention, approx, note).
#: convention 'nosampling' = counted MACs minus bilinear sampling; 'sampling' = counted MACs (rule above).
EXPECTED_MACS = [
    ('CARAFE', dict(type='carafe'), 2, 99_584, 'nosampling', False, ''),
    ('DLU', dict(type='dlu'), 2, 60_992, 'nosampling', False, ''),
    ('DLU incl. kernel sampling', dict(type='dlu'), 2, 60_992 + 400, 'sampling', False, 'spec "+400 kernel sampling"'),
    ('DySample lp G4', dict(type='dysample'), 2, 8_192, 'nosampling', False, ''),
    ('DySample lp G4 incl. sampling', dict(type='dysample'), 2, 8_192 + 4_096, 'sampling', False,
     'spec "+0.059 G sampling" per 120x120 = 4,096 per pixel'),
    ('DySample lp G4 dyscope', dict(type='dysample', dyscope=True), 2, 16_384, 'nosampling', False, ''),
    ('DySample pl G4', dict(type='dysample', style='pl'), 2, 2_048, 'nosampling', False, ''),
    ('DySample pl G8 dyscope', dict(type='dysample', style='pl', groups=8, dyscope=True), 2, 8_192, 'nosampling',
     False, ''),
    ('FADE (gate)', dict(type='fade'), 2, 179_776, 'nosampling', False,
     'nearest copies of kernels/gate (104/px) not counted'),
    ('FADE-Lite (gate)', dict(type='fade_lite'), 2, 58_981, 'nosampling', False,
     'nearest copies (104/px) not counted'),
    ('SAPA-B', dict(type='sapa'), 2, 69_760, 'nosampling', False, 'GroupNorm (6,400/px) not counted'),
    ('LDA-AQU', dict(type='lda_aqu'), 2, 88_064, 'nosampling+attention', False,
     'tracer counts convs; the attention products (q.k and weighted sum, element-wise in the code, invisible to '
     'the tracer) are added analytically: (hidden + C) * k_u^2 * s^2 = 11,520'),
    ('LDA-AQU incl. sampling + query interp.', dict(type='lda_aqu'), 2, 135_000, 'sampling+attention', True,
     'spec "≈135k"; ours = 88,064 + grid_sample keys/values 46,080 + bilinear query interpolation 1,024'),
    ('DDF-Up (+ filter products)', dict(type='ddf_up'), 2, 27_648 + 9_216, 'nosampling', True,
     'spec "≈27,648 (+9,216 filter products)"; per-pixel part; the channel branches (SE MLP on pooled '
     'features) add a per-image constant reported separately'),
    ('SAPA-D', dict(type='sapadeform'), 2, 251_000, 'nosampling', True, 'spec "≈251k"'),
    ('SAPA-D incl. sampling', dict(type='sapadeform'), 2, 293_000, 'sampling', True,
     'spec "≈293k" (its sampling term ≈42k is not itemised); ours samples 128 key (G*E) + 256 value channels at '
     '9 points per output pixel: 4 * 9 * 384 * 4 = 55,296'),
    # spec/numbers.md §13.3
    ('FreqFusion FPN', dict(type='freqfusion', compressed_channels=64, feature_resample=True), 2, 303_304,
     'nosampling', False, 'cosine similarities (≈2,560/px) and GroupNorm not counted, as the spec'),
    ('FreqFusion FPN incl. sampling', dict(type='freqfusion', compressed_channels=64, feature_resample=True), 2,
     303_304 + 4_096, 'sampling', False, 'spec "≈4,096 for bilinear resampling"'),
    ('FreqFusion, no offset generator', dict(type='freqfusion'), 2, 220_360, 'nosampling', False, ''),
    ('FreqFusion FPN G_r 8', dict(type='freqfusion', feature_resample=True, feature_resample_group=8), 2, 386_248,
     'nosampling', False, ''),
    ('FRFU G4 k3', dict(type='frfu'), 2, 44_032, 'nosampling', False, ''),
    ('FRFU incl. sampling', dict(type='frfu'), 2, 44_032 + 4_096, 'sampling', False, 'spec "+4,096 bilinear"'),
    ('CARAFE s=16', dict(type='carafe'), 16, 5_341_184, 'nosampling', False, ''),
    ('DLU s=16', dict(type='dlu'), 16, 1_964_096, 'nosampling', False, 'spec convention: kernel sampling not counted'),
]

#: Compiled ops the counts rely on: the tracer sees them as single nodes counted by complexity.py's handles.
REQUIRED_OPS = {'carafe': 'carafe_forward', 'fade': 'carafe_forward', 'fade_lite': 'carafe_forward',
                'freqfusion': 'carafe_forward', 'frfu': 'carafe_forward',
                'sapa': 'carafe_forward', 'dlu': 'dlu_forward', 'ddf_up': 'ddf_forward'}


def check(args) -> Tuple[int, str]:
    """Compare parameters (exact) and MACs (1% where the spec is exact; approximate figures: print the
    difference, fail only beyond 5%). Returns (number of failures, markdown report)."""
    from upsample_plugin.ops import _library
    lines = ['### Parameters (spec/numbers.md §1, §13.1; exact)', '', '| module | C | s | expected | measured | ok |',
             '|---|---:|---:|---:|---:|---|']
    failures = 0
    for label, cfg, channels, scale, expected in EXPECTED_PARAMS:
        measured = n_params(build_upsampler(cfg, channels, scale))
        ok = measured == expected
        failures += not ok
        lines.append(f'| {label} | {channels} | {scale} | {expected:,} | {measured:,} | {"✓" if ok else "✗ MISMATCH"} |')

    problems = []
    if not _library.compiled_available():
        problems.append(f'upsample_plugin._C is not loaded ({_library.load_error()})')
    for op in sorted(set(REQUIRED_OPS.values())):
        if not hasattr(torch.ops.upsample_plugin, op):
            problems.append(f'torch.ops.upsample_plugin.{op} is not compiled in')
    lines += ['', '### MACs per low-resolution pixel, C=256 (spec/numbers.md §3, §13.3)', '',
              'Per-pixel slope from two input sizes (8x8 and 16x16): every count is a*H*W + b. Convention '
              '"nosampling" = counted MACs without bilinear sampling (the spec §3 convention), "sampling" = with it '
              '(4 MACs per sampled value). Exact spec figures must match within 1%; approximate (≈) ones print the '
              'difference (fail only beyond 5%).', '',
              '| module | s | convention | expected | measured | diff | ok | note |', '|---|---:|---|---:|---:|---:|---|---|']
    cache = {}
    measured_by_label = {}
    for label, cfg, scale, expected, convention, approx, note in EXPECTED_MACS:
        key = (repr(cfg), scale)
        if key not in cache:
            cache[key] = macs_per_pixel(cfg, 256, scale)
        m = cache[key]
        required = REQUIRED_OPS.get(cfg['type'])
        if required and required not in m['ops']:
            problems.append(f'{label}: the trace has no upsample_plugin::{required} node (ops traced: '
                            f'{sorted(m["ops"])}); the compiled op is missing or the module fell back to the '
                            f'pure-PyTorch reference (the tracer counts CARAFE\'s einsum reference but not the '
                            f'element-wise products of the DDF reference; the check requires the compiled ops)')
        value = m['counted'] if convention.startswith('sampling') else m['counted'] - m['sampling']
        if convention.endswith('+attention'):
            value += _lda_attention_macs(build_upsampler(cfg, 256, scale), scale)
        measured_by_label[label] = value
        diff = (value - expected) / expected
        ok = abs(diff) <= (0.05 if approx else 0.01)
        failures += not ok
        extra = note
        if m['counted_per_image']:
            extra += f'; per-image constant {m["counted_per_image"]:,.0f} MACs not included'
        status = ('≈ ok' if approx else '✓') if ok else '✗ MISMATCH'
        lines.append(f'| {label} | {scale} | {convention} | {"≈" if approx else ""}{expected:,} | {value:,.0f} | '
                     f'{diff:+.2%} | {status} | {extra} |')
    carafe16, dlu16 = measured_by_label['CARAFE s=16'], measured_by_label['DLU s=16']
    dlu16_sampling = cache[(repr(dict(type='dlu')), 16)]['counted']
    reduction = 1 - dlu16 / carafe16
    ok = reduction >= 0.63
    failures += not ok
    lines += ['', f'DLU vs CARAFE at s=16 (spec: −63.2%, "at least 63% fewer"): {-reduction:+.1%} without kernel '
              f'sampling ({"✓" if ok else "✗ FAIL"}); with DLU\'s kernel sampling counted (4 MACs per sampled value): '
              f'{dlu16_sampling:,.0f} MACs, {-(1 - dlu16_sampling / carafe16):+.1%} (informative: the spec and the '
              f'paper do not count sampling).']
    if problems:
        failures += len(problems)
        lines += ['', '**Compiled ops missing — the MAC check cannot be trusted:**', '']
        lines += [f'- {p}' for p in problems]
        lines.append('- Build the extension in place: `pip install --no-build-isolation --no-deps -e .` (or '
                     '`python setup.py build_ext --inplace`), and unset UPSAMPLE_PLUGIN_FORCE_REFERENCE.')
    lines += ['', f'{"FAILED: " + str(failures) + " problem(s)" if failures else "All checks passed."}']
    return failures, '\n'.join(lines)


# ----------------------------------------------------------------------------------------------------- main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--channels', type=int, default=256)
    parser.add_argument('--size', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help='low-res input size (default 120 120; 16 16 with --dlu-setting)')
    parser.add_argument('--scale', type=int, default=2)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--types', nargs='+', help='row labels or type names (default: all rows)')
    parser.add_argument('--dlu-setting', action='store_true',
                        help='CARAFE vs DLU at x2, x4, x8, x16 (256 channels, 16x16 map unless --size)')
    parser.add_argument('--min-run-time', type=float, default=0.3,
                        help='time calls for at least this many seconds per figure (and --min-repeats calls)')
    parser.add_argument('--min-repeats', type=int, default=3, help='timed calls per figure (unless slow)')
    parser.add_argument('--max-seconds', type=float, default=3.0,
                        help='stop timing a figure after this long once one call is timed')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--no-timing', action='store_true', help='parameters and MACs only')
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory processes')
    parser.add_argument('--memory-workers', type=int, default=2, help='peak-memory processes run at once')
    parser.add_argument('--cpu-only', action='store_true', help='skip CUDA even when present')
    parser.add_argument('--csv', type=Path, help='write the rows as CSV')
    parser.add_argument('--plot', type=Path, help='write a DySample Fig. 1 style scatter (PNG)')
    parser.add_argument('--check', action='store_true',
                        help='compare parameters and MACs with spec/numbers.md; non-zero exit on a mismatch')
    parser.add_argument('--write-readme', action='store_true',
                        help='replace the README upsampler-benchmark section with the default table, the '
                             '--dlu-setting table and the plot (runs both)')
    args = parser.parse_args(argv)
    if args.size is None:
        args.size = [16, 16] if args.dlu_setting else [120, 120]
    return args


def run_table(args) -> Tuple[List[dict], str]:
    if args.dlu_setting:
        results = []
        for scale in (2, 4, 8, 16):
            sub = argparse.Namespace(**{**vars(args), 'scale': scale})
            for row in benchmark(select_rows(args.types or ['carafe', 'dlu']), sub):
                row['name'] = f"{row['name']} x{scale}"
                results.append(row)
        args_for_header = argparse.Namespace(**{**vars(args), 'scale': '2/4/8/16'})
        return results, header(args_for_header) + '\n\n' + markdown_table(results, args)
    results = benchmark(select_rows(args.types), args)
    text = header(args) + '\n\n' + markdown_table(results, args)
    if not args.no_timing and (not args.types or 'dysample' in args.types):
        devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() and not args.cpu_only else [])
        for device in devices:
            r = sampling_vs_interpolate(args, device)
            text += (f'\n\nDySample (lp, G4) against bilinear `F.interpolate` to the same output size, same run, '
                     f'{device} (time / interpolate time; interpolate: fwd {r["interpolate forward ms"]:.1f} ms, '
                     f'fwd+bwd {r["interpolate forward+backward ms"]:.1f} ms): the module fwd '
                     f'{r["module forward"]:.2f}x, fwd+bwd {r["module forward+backward"]:.2f}x; its point sampling '
                     f'alone (fixed offsets) fwd {r["sample forward"]:.2f}x, fwd+bwd '
                     f'{r["sample forward+backward"]:.2f}x.')
    return results, text


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.check:
        failures, report = check(args)
        print(report)
        return 1 if failures else 0
    if args.write_readme:
        images = ROOT / 'docs' / 'images'
        images.mkdir(parents=True, exist_ok=True)
        plot_path = args.plot or images / 'upsampler_benchmark.png'
        results, table = run_table(args)
        plot(results, plot_path, args)
        if args.csv:
            write_csv(results, args.csv)
        # The preset's cells are short (ms): time them longer, their medians are then less exposed to other jobs.
        dlu_args = parse_args(['--dlu-setting', '--min-run-time', str(max(args.min_run_time, 1.0)), '--min-repeats',
                               '5', '--threads', str(args.threads)] + (['--no-memory'] if args.no_memory else []))
        _, dlu_table = run_table(dlu_args)
        failures, check_report = check(args)
        command = 'python tools/benchmark_upsamplers.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
        body = '\n'.join([
            f'Made by `{command}` (default setting: DySample Fig. 1, one x2 upsampling of 1x256x120x120; '
            f'then `--dlu-setting`; then `--check`). Machine: {machine_line()}. Timings on a CPU shared with other '
            f'jobs: noisy, compare orders of magnitude, not single milliseconds. The --dlu-setting table is timed '
            f'with min_run_time {dlu_args.min_run_time} s and at least 5 calls per cell.', '',
            table, '',
            f'![latency vs mIoU and MACs]({plot_path.resolve().relative_to(ROOT)})', '',
            'CARAFE vs DLU at larger ratios (`--dlu-setting`):', '', dlu_table, '',
            '<details><summary>Parameter and MAC check against spec/numbers.md (<code>--check</code>)</summary>',
            '', check_report, '', '</details>'])
        replace_between_markers(README, BENCH_MARKERS, body)
        print(table + '\n\n' + dlu_table)
        return 0
    results, table = run_table(args)
    print(table)
    if args.csv:
        write_csv(results, args.csv)
    if args.plot:
        if args.no_timing:
            raise SystemExit('--plot needs latencies: drop --no-timing')
        plot(results, args.plot, args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
