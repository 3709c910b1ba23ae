"""The CUDA kernels themselves (``upsample_plugin/ops/csrc/cuda/*.cu``: index decomposition, grid-stride loops,
host launch code, guards, streams, DLU's sort/bucket pipeline) run on the CPU through ``tests/cuda_emulation.py``
(a mechanical source transform + the runtime shim ``tests/cuda_emulation.h``), compared with the pure-PyTorch
references and the CPU kernels.

Two builds (one each per session, about 20 s on one core): ``plain`` (no FMA contraction) and ``fma``
(``-mfma -ffp-contract=fast``: what nvcc does by default, ``--fmad=true``), which is where rounding-sensitive
arithmetic (DLU's sample positions at the bilinear kinks) shows. Every launch is checked against CUDA's limits, an
active device guard and the current stream; outputs start NaN-filled, so an element no thread writes fails; the
grid is capped at 1 and 3 blocks and the (block, thread) order reversed and shuffled, with bitwise identical
results required.
"""
import os
from pathlib import Path

import pytest
import torch

import cuda_emulation
from op_cases import (NAMES, TOLERANCES, generator, assert_bitwise, assert_close_all, carafe_case, ddf_case, dlu_case,
                      grad_output_for, run_ops, run_reference)
from upsample_plugin.ops import _library

ROOT = Path(__file__).resolve().parents[1]
BUILD_ROOT = Path(os.environ.get('UPSAMPLE_PLUGIN_EMULATION_BUILD', ROOT / 'build' / 'cuda_emulation'))


def _cpu_has_fma() -> bool:
    try:
        return ' fma ' in Path('/proc/cpuinfo').read_text().replace('\n', ' ')
    except OSError:
        return False


@pytest.fixture(scope='session', params=['plain', 'fma'])
def emu(request):
    """torch.ops namespace of one emulation build; built once per session (cached on disk by ninja)."""
    if request.param == 'fma' and not _cpu_has_fma():
        pytest.skip('this CPU has no FMA instructions, so the -mfma build (nvcc-like contraction) cannot run')
    try:
        namespace = cuda_emulation.build(request.param, BUILD_ROOT)
    except Exception as err:  # noqa: BLE001 - e.g. no C++ compiler on this machine
        if os.environ.get('CI'):
            raise
        pytest.skip(f'cannot build the CUDA emulation: {type(err).__name__}: {err}')
    ns = getattr(torch.ops, namespace)
    ns.set_config(0, 0, 0)
    return ns


@pytest.fixture
def emu_config(emu):
    """Set the emulation's launch config for one test; restored to the launched grid, in order, afterwards."""
    yield emu.set_config
    emu.set_config(0, 0, 0)


def check_case(ns, case):
    """The emulated CUDA kernels against the reference and (when built) the CPU kernels."""
    op, tensors, _ = case
    dtype = tensors[0].dtype
    before = ns.launches()
    got = run_ops(ns, case)
    if got[0].numel() and tensors[0].numel():
        assert ns.launches() > before, 'no kernel was launched'
    assert_close_all(op, got, run_reference(case), dtype, 'vs reference:')
    if _library.compiled_available('cpu'):
        assert_close_all(op, got, run_ops(torch.ops.upsample_plugin, case), dtype, 'vs CPU kernels:')


# ---- the launcher's own checks ----------------------------------------------------------------------------------

@pytest.mark.parametrize('what,match', [('no_guard', 'without a device guard'), ('default_stream', 'current stream'),
                                        ('block', 'invalid block'), ('grid', 'invalid grid')])
def test_launcher_rejects_bad_launches(emu, what, match):
    with pytest.raises(RuntimeError, match=match):
        emu.bad_launch(what)


def test_transform_rejects_sources_it_does_not_understand():
    with pytest.raises(ValueError, match='no kernel launch'):
        cuda_emulation.transform_cuda_source('int main() {}', 'ns', 'x.cu')
    with pytest.raises(ValueError, match='TORCH_LIBRARY_IMPL'):
        cuda_emulation.transform_cuda_source('void f() { k<<<1, 2, 0, s>>>(a); }', 'ns', 'x.cu')
    with pytest.raises(ValueError, match='<<<grid, block, smem, stream>>>'):
        cuda_emulation.transform_cuda_source('void f() { k<<<1, 2>>>(a); }', 'ns', 'x.cu')


# ---- CARAFE -----------------------------------------------------------------------------------------------------

CARAFE_SHAPES = [  # n, c, h, w, k, g, s
    (2, 6, 3, 5, 3, 3, 2),
    (1, 4, 1, 1, 5, 1, 2),     # 1x1 map: every tap but the centre is padding
    (2, 8, 5, 7, 5, 4, 3),     # odd sizes, groups > 1
    (1, 6, 4, 3, 3, 6, 4),     # one channel per group, scale 4
    (1, 3, 2, 9, 7, 1, 1),     # scale 1, kernel wider than the map
    (1, 5, 6, 4, 1, 1, 3),     # k = 1
    (2, 16, 9, 11, 7, 2, 2),   # k = 7 on a larger map
]


@pytest.mark.parametrize('shape', CARAFE_SHAPES)
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_carafe_matches_reference(emu, shape, dtype):
    check_case(emu, carafe_case(*shape, dtype=dtype))


@pytest.mark.parametrize('k', [1, 3, 5, 7, 9])  # 3, 5: per-pixel kernels; 1, 7, 9: one thread per value
@pytest.mark.parametrize('s', [1, 2, 3, 4])
def test_carafe_every_kernel_size_and_scale(emu, k, s):
    check_case(emu, carafe_case(1, 4, 3, 4, k, 2, s))


# ---- DLU --------------------------------------------------------------------------------------------------------

DLU_SHAPES = [  # n, c, h, w, k, g, s
    (2, 4, 5, 7, 5, 1, 2),     # the official configuration (k=5, G=1, x2), odd sizes
    (1, 6, 4, 3, 3, 2, 2),     # G = 2
    (2, 4, 3, 5, 3, 2, 3),     # G = 2, x3
    (1, 3, 5, 4, 5, 1, 4),     # x4
    (1, 4, 3, 3, 5, 2, 4),     # G = 2, x4, kernel wider than the map
    (1, 4, 1, 5, 3, 2, 2),     # H = 1
    (2, 2, 4, 1, 5, 1, 3),     # W = 1
    (1, 2, 1, 1, 3, 1, 3),     # 1 x 1 map
    (1, 3, 6, 5, 1, 1, 2),     # k = 1
    (1, 4, 2, 3, 3, 1, 1),     # scale 1
]


@pytest.mark.parametrize('shape', DLU_SHAPES)
@pytest.mark.parametrize('offset_scale', [0.0, 1.5, 4.0])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_dlu_matches_reference(emu, shape, offset_scale, dtype):
    check_case(emu, dlu_case(*shape, offset_scale=offset_scale, dtype=dtype))


@pytest.mark.parametrize('k', [1, 3, 5, 7, 9])
@pytest.mark.parametrize('s', [1, 2, 3, 4])
def test_dlu_every_kernel_size_and_scale(emu, k, s):
    check_case(emu, dlu_case(1, 2, 4, 5, k, 1, s, dtype=torch.float32))


def test_dlu_offset_gradient_at_zero_offsets(emu):
    """DLU starts with zero offsets: every sample point is an integer position, on a bilinear kink. The CUDA
    kernels must take the reference's side of the kink there, also when nvcc contracts a*b + c into an FMA
    (the fma build); a 1-ulp different position selects the neighbouring cell's slope (differences of ~3.5)."""
    case = dlu_case(1, 4, 20, 26, 5, 1, 2, offset_scale=0.0, dtype=torch.float32)
    got, expected = run_ops(emu, case), run_reference(case)
    diff = (got[3] - expected[3]).abs().max().item()
    assert diff < 1e-4, f'grad_offsets at zero offsets differs from the reference by {diff}'
    assert_close_all('dlu', got, expected, torch.float32, 'zero offsets:')


def test_dlu_integer_positions_pick_the_reference_cell(emu):
    """Zero offsets on 1-row maps of many widths: every sample point is an integer position, and the x offset's
    gradient is the kernel-space slope of the cell the kernel picks. It must be the reference's cell at every
    position of every width (with an FMA-contracted position, ~9% of them were the neighbouring cell)."""
    widths = list(range(2, 260)) + [509, 1021, 1024, 2047, 2048]
    gen = generator(5)
    for width in widths:
        case = ('dlu', [torch.ones(1, 1, 1, width), torch.randn(1, 1, 1, width, generator=gen),
                        torch.zeros(1, 2, 1, width)], (1, 1, 1))
        got, expected = run_ops(emu, case)[3], run_reference(case)[3]
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=lambda msg: f'width {width}: {msg}')


# ---- DDF --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('k', [1, 3, 5])
@pytest.mark.parametrize('d', [1, 2])
@pytest.mark.parametrize('s', [1, 2])
@pytest.mark.parametrize('combine', ['mul', 'add'])
def test_ddf_matches_reference(emu, k, d, s, combine):
    check_case(emu, ddf_case(2, 3, 7, 6, k, d, s, combine))


@pytest.mark.parametrize('shape', [(1, 2, 1, 1, 3, 1, 1), (1, 3, 1, 9, 5, 2, 1), (2, 2, 5, 3, 3, 1, 2),
                                   (1, 4, 9, 9, 7, 3, 1), (1, 2, 3, 3, 3, 1, 3),
                                   # wide maps: the channel-filter gradient sums several row tiles, then the tiles
                                   (1, 2, 11, 130, 3, 1, 1), (2, 2, 23, 260, 3, 2, 2), (1, 1, 9, 600, 1, 1, 1)])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_ddf_edge_shapes(emu, shape, dtype):
    n, c, h, w, k, d, s = shape
    check_case(emu, ddf_case(n, c, h, w, k, d, s, 'mul', dtype=dtype))


# ---- every op: dtypes, empty inputs, layouts, grid size and thread order ---------------------------------------

def all_ops(dtype=torch.float64, seed=0):
    return [carafe_case(2, 6, 5, 7, 5, 2, 2, dtype=dtype, seed=seed),
            dlu_case(2, 4, 5, 6, 5, 2, 2, dtype=dtype, seed=seed),
            ddf_case(2, 5, 9, 8, 3, 1, 2, 'mul', dtype=dtype, seed=seed)]


def generic_ops(dtype=torch.float32, seed=0):
    """Kernel sizes without per-pixel CUDA kernels (one thread per value), and DDF with several row tiles."""
    return [carafe_case(1, 4, 4, 6, 9, 2, 2, dtype=dtype, seed=seed),
            dlu_case(1, 3, 4, 5, 1, 1, 3, dtype=dtype, seed=seed),
            ddf_case(1, 3, 10, 140, 1, 1, 1, 'add', dtype=dtype, seed=seed)]


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('index', [0, 1, 2], ids=['carafe', 'dlu', 'ddf'])
def test_reduced_precision(emu, dtype, index):
    check_case(emu, all_ops(dtype)[index])


@pytest.mark.parametrize('case', [
    carafe_case(0, 4, 3, 3, 3, 1, 2), carafe_case(1, 0, 3, 3, 3, 1, 2), carafe_case(1, 4, 0, 3, 3, 1, 2),
    dlu_case(0, 4, 3, 3, 3, 1, 2), dlu_case(1, 0, 3, 3, 3, 1, 2), dlu_case(1, 4, 3, 0, 3, 1, 2),
    ddf_case(0, 4, 3, 3, 3), ddf_case(1, 0, 3, 3, 3), ddf_case(1, 4, 1, 3, 3, 1, 2)],
    ids=lambda case: f'{case[0]}-{"x".join(map(str, case[1][0].shape))}')
def test_empty(emu, case):
    op, tensors, _ = case
    got = run_ops(emu, case)
    for name, value, like in zip(NAMES[op][1:], got[1:], tensors):
        assert value.shape == like.shape and not value.isnan().any() and not value.abs().sum(), name
    assert got[0].numel() == 0 or not got[0].abs().sum()


def _layout(t, layout):
    if layout == 'channels_last':
        return t.to(memory_format=torch.channels_last)
    return torch.stack([t, torch.full_like(t, float('nan'))], -1).flatten(-2)[..., ::2]  # every other column


@pytest.mark.parametrize('layout', ['channels_last', 'strided'])
@pytest.mark.parametrize('index', [0, 1, 2], ids=['carafe', 'dlu', 'ddf'])
def test_layouts_equal_contiguous(emu, layout, index):
    op, tensors, args = all_ops(torch.float32)[index]
    expected = run_ops(emu, (op, tensors, args))
    grad = _layout(grad_output_for(expected[0]), layout)
    got = run_ops(emu, (op, [_layout(t, layout) for t in tensors], args), grad_output=grad)
    assert_bitwise(op, [t.contiguous() for t in got], expected, layout)


@pytest.mark.parametrize('max_blocks,order,seed', [(1, 0, 0), (3, 0, 0), (0, 1, 0), (0, 2, 0), (3, 2, 1), (1, 1, 0)],
                         ids=['1-block', '3-blocks', 'reversed', 'shuffled', '3-blocks-shuffled', '1-block-reversed'])
@pytest.mark.parametrize('index', range(6), ids=['carafe', 'dlu', 'ddf', 'carafe-k9', 'dlu-k1', 'ddf-tiles'])
def test_grid_size_and_thread_order_do_not_change_results(emu, emu_config, max_blocks, order, seed, index):
    """Grid-stride loops must cover every element whatever the grid, and no result may depend on the order the
    threads run in (no races, no atomics): bitwise identical to the full grid run in order."""
    case = (all_ops(torch.float32, seed=3) + generic_ops(seed=3))[index]
    expected = run_ops(emu, case)
    emu_config(max_blocks, order, seed)
    assert_bitwise(case[0], run_ops(emu, case), expected, f'grid {max_blocks}, order {order}')
