#!/usr/bin/env python
"""Latency, bandwidth-floor ratio and peak memory of the plugin's ops: pure-PyTorch reference vs compiled kernel
(upsample_plugin._C).

For each op, size and backend: forward and forward+backward latency (torch.utils.benchmark.Timer with all intra-op
threads, one warm-up call, then the median of ``--repeats`` timed calls), the ratio of each latency to the op's
memory-bandwidth floor, and peak memory. Output: a markdown table (stdout, and ``--output FILE``).

Bandwidth floor (issue 17): the time the op would take if it only moved its data once at the machine's copy
bandwidth. Bytes: forward = every input read once + the output written once; forward+backward = that + the
incoming gradient read once + every input's gradient written once. Copy bandwidth = 2 x bytes / time of
``dst.copy_(src)`` on preallocated float32 tensors of ``--copy-mb`` MB (read + write; beyond the last-level cache),
measured in the same process right before each row (median of 7), so that the ratio does not depend on how fast
or how loaded the machine is at the time. The ratio is what to quote; absolute milliseconds depend on the CPU,
its load and the thread count. Rows at the headline size are checked against the issue's targets (CPU only).
First touch: writing an op's fresh outputs costs page faults and the kernel's zero-filling of new pages on top of
the writes themselves (on the project's VM this varies from run to run); the table gives that cost, measured in
the same row (first_touch_seconds), and the ratio without it.

Peak memory, CPU: every (op, size, backend, mode) runs once in a fresh subprocess. It runs the op once on tiny
inputs to initialise threads and lazy state, builds its inputs, resets the RSS high-water mark (/proc/self/clear_refs)
and reads its resident set size (RSS, /proc/self/statm), runs the op once at full size and reads the high-water
mark (VmHWM, /proc/self/status). Peak = high-water mark - RSS before: everything the op allocates beyond its
inputs (outputs, saved tensors, workspaces, gradients), at page granularity. On CUDA:
torch.cuda.max_memory_allocated() minus the allocated memory before the call, in this process.

Ops are rows of OPS (CARAFE, fused DLU, DDF): each names its backends
and a function making its inputs for one size. On CUDA, CARAFE also runs mmcv's CUDA op (backend 'mmcv') when
mmcv with CUDA ops is importable.

``--json FILE`` writes every cell as a record (op, size, backend, mode, seconds, peak bytes) with the device and
versions; tools/gpu_check.sh uses it (and the markdown) on a GPU machine.

Example: python tools/benchmark_ops.py --output carafe_bench.md
         python tools/benchmark_ops.py --sizes 120x120 --repeats 3
         python tools/benchmark_ops.py --device cuda --json gpu.json --output gpu.md
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from upsample_plugin.ops import _library, carafe  # noqa: E402

# The headline size, then the FPN levels P2..P5 of an 800x1333 image (padded to 64: 832x1344 -> /4../32).
DEFAULT_SIZES = ['120x120', '200x336', '100x168', '50x84', '25x42']
HEADLINE = '120x120'
# Issue 17's targets for the compiled CPU kernels at the headline size: (forward, forward+backward) time / floor.
TARGETS = {'carafe': (5.0, 8.0), 'dlu_x2': (8.0, 12.0), 'ddf': (8.0, 12.0)}


def carafe_case(size: tuple[int, int], channels: int, device: str, requires_grad: bool):
    """Inputs of CARAFE k5 G1 x2 (mmdet FPN_CARAFE defaults) and the call, for one low-resolution size."""
    k, g, s = 5, 1, 2
    h, w = size
    gen = torch.Generator().manual_seed(0)
    features = torch.empty(1, channels, h, w).normal_(generator=gen).to(device)
    masks = torch.empty(1, k * k * g, h * s, w * s).uniform_(generator=gen).to(device)
    masks /= masks.sum(1, keepdim=True)  # normalised like the softmax output, without a full-size temporary
    grad_out = torch.empty(1, channels, h * s, w * s).normal_(generator=gen).to(device)
    features.requires_grad_(requires_grad)
    masks.requires_grad_(requires_grad)

    def call(backend):
        return carafe(features, masks, k, g, s, backend=backend)
    return call, (features, masks), grad_out


def ddf_case(size: tuple[int, int], channels: int, device: str, requires_grad: bool):
    """Inputs of one DDF call as DDF-Up makes it (k=3, 'mul', dilation 1, stride 1 on the low-resolution map; a
    DDFUpPack x2 makes 4 such calls) and the call, for one low-resolution size."""
    from upsample_plugin.ops.ddf import ddf
    k = 3
    h, w = size
    gen = torch.Generator().manual_seed(0)
    features = torch.empty(1, channels, h, w).normal_(generator=gen).to(device)
    channel_filter = torch.empty(1, channels, k, k).normal_(generator=gen).div_(k).to(device)
    spatial_filter = torch.empty(1, k * k, h, w).normal_(generator=gen).div_(k).to(device)
    grad_out = torch.empty(1, channels, h, w).normal_(generator=gen).to(device)
    for t in (features, channel_filter, spatial_filter):
        t.requires_grad_(requires_grad)

    def call(backend):
        return ddf(features, channel_filter, spatial_filter, k, 1, 1, 'mul', backend=backend)
    return call, (features, channel_filter, spatial_filter), grad_out


def dlu_case_for(s: int):
    """Inputs of the DLU reassembly (k=5, G=1, x``s``: kernel space + offsets of DLUPack) and the call. Offsets of
    about a pixel, so the sampled kernels differ from the parent's. The issue's target: fused DLU peak memory
    below CARAFE's at x2 and x4 (compare the 'carafe' rows; CARAFE x4 holds 25*16*H*W masks)."""
    from upsample_plugin.ops.dlu import dlu_reassemble

    def case(size: tuple[int, int], channels: int, device: str, requires_grad: bool):
        k, g = 5, 1
        h, w = size
        gen = torch.Generator().manual_seed(0)
        features = torch.empty(1, channels, h, w).normal_(generator=gen).to(device)
        space = torch.empty(1, k * k * g, h, w).uniform_(generator=gen)
        space = (space / space.sum(1, keepdim=True)).to(device)
        offsets = torch.empty(1, g * 2 * s * s, h, w).normal_(generator=gen).to(device)
        grad_out = torch.empty(1, channels, h * s, w * s).normal_(generator=gen).to(device)
        for t in (features, space, offsets):
            t.requires_grad_(requires_grad)

        def call(backend):
            return dlu_reassemble(features, space, offsets, k, g, s, backend=backend)
        return call, (features, space, offsets), grad_out
    return case


OPS = {
    # op: (description, case builder, backends)
    'carafe': ('CARAFE k=5, G=1, x2', carafe_case, ('reference', 'compiled')),
    'ddf': ('DDF (DDF-Up call) k=3, mul, stride 1', ddf_case, ('reference', 'compiled')),
    'dlu_x2': ('DLU k=5, G=1, x2', dlu_case_for(2), ('reference', 'compiled')),
    'dlu_x4': ('DLU k=5, G=1, x4', dlu_case_for(4), ('reference', 'compiled')),
}


def backends_for(op: str, device: str) -> tuple[str, ...]:
    """OPS[op]'s backends, plus mmcv's CUDA CARAFE on CUDA when it is importable (the baseline the plugin's
    CUDA kernels replace)."""
    backends = OPS[op][2]
    if op == 'carafe' and device == 'cuda':
        from upsample_plugin.ops.carafe import _mmcv_cuda_carafe
        if _mmcv_cuda_carafe() is not None:
            backends = backends + ('mmcv',)
    return backends


def environment(device: str) -> dict:
    """Device, versions, thread count and CPU kernels' instruction set of this run (recorded in the JSON)."""
    env = dict(device=device, torch=torch.__version__, cuda=torch.version.cuda, threads=torch.get_num_threads(),
               cpu_isa=_library.cpu_isa(), cpu=cpu_model())
    if device == 'cuda':
        env['gpu'] = torch.cuda.get_device_name()
    try:
        import mmcv
        env['mmcv'] = mmcv.__version__
    except ImportError:
        env['mmcv'] = None
    return env


def cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def copy_bandwidth(device: str, megabytes: float, repeats: int = 7) -> float:
    """Bytes per second of ``dst.copy_(src)`` (each byte read once and written once, so 2 x nbytes moved) on
    preallocated float32 tensors of ``megabytes`` MB, all intra-op threads; median of ``repeats`` after a warm-up."""
    n = int(megabytes * 2**20) // 4
    src = torch.ones(n, device=device)
    dst = torch.empty(n, device=device)
    dst.copy_(src)  # touches dst's pages
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * src.nbytes / statistics.median(times)


def _advise_huge_pages(t: torch.Tensor) -> None:
    """What the compiled kernels do with their large outputs (ops/csrc/include/cpu_memory.h): advise the 2 MB-aligned
    part as transparent huge pages before the first write (Linux; a no-op elsewhere)."""
    import ctypes
    huge = 2 << 20
    first = (t.data_ptr() + huge - 1) & ~(huge - 1)
    last = (t.data_ptr() + t.nbytes) & ~(huge - 1)
    if sys.platform.startswith('linux') and last - first >= 2 * huge:
        ctypes.CDLL(None).madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 14)  # MADV_HUGEPAGE


def first_touch_seconds(sizes_bytes, device: str, repeats: int = 5) -> float:
    """Seconds that writing fresh outputs of these sizes costs beyond writing memory already touched: for each
    size, the median of (torch.empty + huge-page advice + fill_) minus the median of fill_ on a touched tensor.
    On Linux that is the kernel's page faults and zero-filling of new pages, which every op returning a new
    tensor pays and no kernel can avoid; it depends on the OS, the allocator and (in a VM) the hypervisor."""
    if device != 'cpu':
        return 0.0
    total = 0.0
    for nbytes in sizes_bytes:
        n = nbytes // 4
        touched = torch.zeros(n)
        fresh_times, touched_times = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            t = torch.empty(n)
            _advise_huge_pages(t)
            t.fill_(0)
            fresh_times.append(time.perf_counter() - start)
            del t
            start = time.perf_counter()
            touched.fill_(0)
            touched_times.append(time.perf_counter() - start)
        total += max(0.0, statistics.median(fresh_times) - statistics.median(touched_times))
    return total


def bytes_moved(inputs, grad_out) -> dict:
    """Bytes of the floor (module docstring): forward = inputs + output; forward+backward adds the incoming
    gradient and one gradient per input. The output has grad_out's shape and dtype."""
    inputs_bytes = sum(t.nbytes for t in inputs)
    forward = inputs_bytes + grad_out.nbytes
    return {'forward': forward, 'forward+backward': forward + grad_out.nbytes + inputs_bytes}


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split('x')
    return int(h), int(w)


def run_once(call, backend, inputs, grad_out, mode):
    if mode == 'forward':
        with torch.no_grad():
            return call(backend)
    for t in inputs:
        t.grad = None
    out = call(backend)
    out.backward(grad_out)
    return out


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def time_case(op, size, backend, mode, args) -> float:
    """Median seconds of one call (forward, or forward + backward)."""
    _, builder, _ = OPS[op]
    call, inputs, grad_out = builder(size, args.channels, args.device, mode == 'forward+backward')
    run_once(call, backend, inputs, grad_out, mode)  # warm-up
    sync(args.device)
    timer = benchmark.Timer(stmt='run_once(call, backend, inputs, grad_out, mode); sync(device)',
                            globals=dict(run_once=run_once, call=call, backend=backend, inputs=inputs,
                                         grad_out=grad_out, mode=mode, sync=sync, device=args.device),
                            num_threads=torch.get_num_threads())
    times, start = [], time.perf_counter()
    while len(times) < args.repeats:
        times.append(timer.timeit(1).median)
        if len(times) >= args.min_repeats and time.perf_counter() - start > args.max_seconds:
            break
    return statistics.median(times)


def current_rss() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def rss_high_water() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over from the parent across exec."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_rss_high_water() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0); without it the high-water mark since exec is kept."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass


def peak_memory_here(op, size, backend, mode, args) -> int:
    """Bytes the call allocates beyond its inputs (see the module docstring); run in a fresh process on CPU."""
    _, builder, _ = OPS[op]
    tiny, tiny_inputs, tiny_grad = builder((4, 4), 8, args.device, mode == 'forward+backward')
    run_once(tiny, backend, tiny_inputs, tiny_grad, mode)
    del tiny, tiny_inputs, tiny_grad
    call, inputs, grad_out = builder(size, args.channels, args.device, mode == 'forward+backward')
    if args.device == 'cuda':
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run_once(call, backend, inputs, grad_out, mode)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    reset_rss_high_water()
    before = current_rss()
    run_once(call, backend, inputs, grad_out, mode)
    return rss_high_water() - before


def peak_memory(op, size, backend, mode, args) -> int:
    if args.device == 'cuda':
        return peak_memory_here(op, size, backend, mode, args)
    cmd = [sys.executable, __file__, '--measure-memory', json.dumps([op, list(size), backend, mode]),
           '--channels', str(args.channels), '--device', args.device, '--threads', str(torch.get_num_threads())]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1])


def mb(nbytes: float) -> str:
    return f'{nbytes / 2**20:,.0f}'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--ops', nargs='+', default=list(OPS), choices=list(OPS))
    parser.add_argument('--sizes', nargs='+', default=DEFAULT_SIZES, help='low-resolution HxW, e.g. 120x120')
    parser.add_argument('--channels', type=int, default=256)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--repeats', type=int, default=5, help='timed calls per case (after one warm-up)')
    parser.add_argument('--min-repeats', type=int, default=3, help='timed calls even when slow')
    parser.add_argument('--max-seconds', type=float, default=20.0,
                        help='stop timing a case after this long once --min-repeats calls are done')
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory subprocesses')
    parser.add_argument('--copy-mb', type=float, default=64.0,
                        help='size of the copy that measures the bandwidth (default: 64 MB, beyond the L3 cache)')
    parser.add_argument('--isa', choices=_library.CPU_ISAS,
                        help="CPU kernels' instruction set (default: the best this CPU supports)")
    parser.add_argument('--output', type=Path, help='also write the markdown table here')
    parser.add_argument('--json', type=Path, help='also write every cell as a JSON record here')
    parser.add_argument('--write-readme', action='store_true',
                        help='put the table into README.md between <!-- op-benchmark:start --> and '
                             '<!-- op-benchmark:end -->')
    parser.add_argument('--measure-memory', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.isa:
        _library.set_cpu_isa(args.isa)

    if args.measure_memory:  # child process of peak_memory()
        op, size, backend, mode = json.loads(args.measure_memory)
        print(peak_memory_here(op, tuple(size), backend, mode, args))
        return

    if not _library.compiled_available(args.device):
        sys.exit(f'upsample_plugin._C has no {args.device} kernels ({_library.load_error()}); build it with '
                 f'`pip install --no-build-isolation --no-deps -e .`')
    modes = ('forward', 'forward+backward')
    isa = f', CPU kernels: {_library.cpu_isa()}' if args.device == 'cpu' else ''
    lines = [f'Device {args.device} ({environment(args.device).get("gpu") or cpu_model()}), '
             f'{torch.get_num_threads()} threads{isa}, torch {torch.__version__}, float32, batch 1, '
             f'{args.channels} channels. Latency: median of {args.repeats} calls (at least {args.min_repeats}) after '
             f'one warm-up. x floor: latency / (bytes moved once / copy bandwidth measured before the row). First touch: '
             f'what writing the fresh outputs costs beyond writing touched memory (page faults), measured in the same '
             f'row; the last ratio leaves it out. Peak memory: '
             + ('RSS high-water mark minus RSS before the call, fresh process per cell.'
                if args.device == 'cpu' else 'max_memory_allocated minus memory_allocated before the call.'),
             '',
             '| op | size (low-res) | backend | copy GB/s | fwd ms | fwd x floor | fwd+bwd ms | fwd+bwd x floor '
             '| first touch ms (fwd / fwd+bwd) | x floor without first touch | fwd peak MB | fwd+bwd peak MB |',
             '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    summary, records, targets = [], [], []
    for op in args.ops:
        description, backends = OPS[op][0], backends_for(op, args.device)
        for size_text in args.sizes:
            size = parse_size(size_text)
            _, builder, _ = OPS[op]
            _, shape_inputs, shape_grad = builder(size, args.channels, 'meta' if args.device == 'cpu' else args.device,
                                                  False)
            moved = bytes_moved(shape_inputs, shape_grad)
            row = {}
            for backend in backends:
                bandwidth = copy_bandwidth(args.device, args.copy_mb)
                cell = {mode: time_case(op, size, backend, mode, args) for mode in modes}
                floor = {mode: moved[mode] / bandwidth for mode in modes}
                fresh = {'forward': [shape_grad.nbytes],
                         'forward+backward': [shape_grad.nbytes] + [t.nbytes for t in shape_inputs]}
                touch = {mode: first_touch_seconds(fresh[mode], args.device) for mode in modes}
                if not args.no_memory:
                    cell.update({f'{mode} memory': peak_memory(op, size, backend, mode, args) for mode in modes})
                row[backend] = cell
                for mode in modes:
                    records.append(dict(op=op, description=description, channels=args.channels, size=list(size),
                                        backend=backend, mode=mode, seconds=cell[mode],
                                        bytes_moved=moved[mode], copy_bytes_per_second=bandwidth,
                                        floor_seconds=floor[mode], floor_ratio=cell[mode] / floor[mode],
                                        first_touch_seconds=touch[mode],
                                        peak_bytes=cell.get(f'{mode} memory')))
                memory = (f'{mb(cell["forward memory"])} | {mb(cell["forward+backward memory"])}'
                          if not args.no_memory else '- | -')
                lines.append(f'| {description} | {args.channels}x{size[0]}x{size[1]} | {backend} | '
                             f'{bandwidth / 1e9:.1f} | {cell["forward"] * 1e3:,.1f} | '
                             f'{cell["forward"] / floor["forward"]:,.1f} | {cell["forward+backward"] * 1e3:,.1f} | '
                             f'{cell["forward+backward"] / floor["forward+backward"]:,.1f} | '
                             f'{touch["forward"] * 1e3:,.1f} / {touch["forward+backward"] * 1e3:,.1f} | '
                             f'{(cell["forward"] - touch["forward"]) / floor["forward"]:,.1f} / '
                             f'{(cell["forward+backward"] - touch["forward+backward"]) / floor["forward+backward"]:,.1f}'
                             f' | {memory} |')
                print(lines[-1], file=sys.stderr, flush=True)
                if (args.device == 'cpu' and backend == 'compiled' and op in TARGETS and size_text == HEADLINE
                        and args.channels == 256):
                    ratios = [cell[mode] / floor[mode] for mode in modes]
                    met = all(r <= t for r, t in zip(ratios, TARGETS[op]))
                    targets.append(f'- {description} at {args.channels}x{size[0]}x{size[1]}: fwd '
                                   f'{ratios[0]:.1f}x floor (target <= {TARGETS[op][0]:g}), fwd+bwd {ratios[1]:.1f}x '
                                   f'(target <= {TARGETS[op][1]:g}): {"met" if met else "NOT met"}')
            ref, fast = row['reference'], row['compiled']
            ratios = (f'{ref["forward"] / fast["forward"]:.1f}x / '
                      f'{ref["forward+backward"] / fast["forward+backward"]:.1f}x')
            if not args.no_memory:
                ratios += (f' faster; {ref["forward memory"] / fast["forward memory"]:.1f}x / '
                           f'{ref["forward+backward memory"] / fast["forward+backward memory"]:.1f}x less memory')
            summary.append(f'- {description} at {args.channels}x{size[0]}x{size[1]}: compiled vs reference '
                           f'(fwd / fwd+bwd): {ratios}')
            if 'mmcv' in row:
                summary[-1] += (f'; compiled vs mmcv: {row["mmcv"]["forward"] / fast["forward"]:.2f}x / '
                                f'{row["mmcv"]["forward+backward"] / fast["forward+backward"]:.2f}x faster')
    if targets:
        summary += ['', 'Issue 17 targets (compiled CPU kernels, time / bandwidth floor):'] + targets
    text = '\n'.join(lines + [''] + summary) + '\n'
    print(text)
    if args.output:
        args.output.write_text(text)
    if args.write_readme:
        from benchmark_upsamplers import README, replace_between_markers
        command = 'python tools/benchmark_ops.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
        replace_between_markers(README, ('<!-- op-benchmark:start -->', '<!-- op-benchmark:end -->'),
                                f'Made by `{command}`.\n\n' + text)
    if args.json:
        args.json.write_text(json.dumps(dict(environment=environment(args.device), repeats=args.repeats,
                                             copy_megabytes=args.copy_mb, records=records, summary=summary),
                                        indent=1) + '\n')


if __name__ == '__main__':
    main()
