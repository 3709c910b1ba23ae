"""The DDF CPU kernels (ops/csrc/cpu/ddf_cpu.cpp, include/cpu_ddf_loops.h) on every instruction-set build this CPU
runs (include/cpu_isa.h): forward and the three gradients are bitwise those of the baseline build (same signs of
zero too) and do not depend on the thread count, and every build matches the float64 reference within the
rounding of its dtype. The shapes cover the kernels' code paths: row tails and rows narrower than a vector
(including the half-width tail vectors), border columns whose taps leave the map, 1x1 maps, stride 2 and 3
(staged input phases, gathered gradient phases), dilation 2, channel counts around the channel blocks (4) and the
channel-gradient lanes and groups (4, 8, 16 and 64 channels), kernel sizes with a register build of the
channel-gradient sums (1, 3, 5) and without (7); inputs contiguous, channels_last or strided."""
import pytest
import torch

from upsample_plugin.ops import _library
from upsample_plugin.ops.ddf import ddf_reference

pytestmark = pytest.mark.skipif(not _library.compiled_available('cpu'),
                                reason='upsample_plugin._C is not built (pip install --no-build-isolation -e .)')
ops = torch.ops.upsample_plugin

SUPPORTED = _library.supported_cpu_isas()
_MISSING = {'avx2': 'this CPU has no AVX2', 'avx512': 'this CPU has no AVX-512'}
ISAS = [pytest.param(name, marks=pytest.mark.skipif(name not in SUPPORTED, reason=_MISSING.get(name, '')))
        for name in _library.CPU_ISAS]
WIDE_ISAS = ISAS[1:]  # compared against 'base'

# (n, c, h, w, k, d, s, combine)
CASES = [
    (1, 9, 7, 17, 3, 1, 1, 'mul'),     # the DDF-Up call, odd sizes: one vector + a tail per row
    (2, 5, 9, 33, 5, 2, 2, 'add'),     # stride 2, dilation 2
    (1, 3, 1, 1, 3, 1, 1, 'mul'),      # 1x1 map: every tap but the centre outside
    (1, 8, 6, 20, 1, 1, 2, 'mul'),     # k = 1
    (1, 6, 11, 13, 3, 2, 1, 'mul'),
    (2, 7, 10, 29, 3, 1, 2, 'mul'),    # odd width, stride 2: an input column no output reads
    (1, 4, 13, 22, 5, 1, 3, 'add'),    # stride 3: three phases
    (1, 17, 12, 12, 7, 1, 1, 'mul'),   # k = 7: channel-gradient sums in memory; 4 blocks + 1 channel
    (1, 70, 9, 23, 3, 1, 1, 'add'),    # two channel-gradient groups, a partial lane block
    (1, 2, 5, 3, 5, 3, 1, 'mul'),      # narrower than the taps: no interior column
]
IDS = ['x'.join(map(str, case[:4])) + f'-k{case[4]}d{case[5]}s{case[6]}-{case[7]}' for case in CASES]


def make_inputs(case, dtype, layout, seed=0):
    n, c, h, w, k, d, s, combine = case
    gen = torch.Generator().manual_seed(seed)
    shapes = [(n, c, h, w), (n, c, k, k), (n, k * k, h // s, w // s), (n, c, h // s, w // s)]
    tensors = [torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) for shape in shapes]
    if layout == 'channels_last':
        tensors = [t.contiguous(memory_format=torch.channels_last) for t in tensors]
    elif layout == 'strided':  # every other column of a wider tensor
        tensors = [torch.stack([t, torch.zeros_like(t)], dim=-1).flatten(-2)[..., ::2] for t in tensors]
    return tensors


def run_compiled(case, tensors, isa=None):
    """(output, grad_features, grad_channel_filter, grad_spatial_filter) of the compiled ops."""
    _n, _c, _h, _w, k, d, s, combine = case
    if isa is not None:
        _library.set_cpu_isa(isa)
    features, channel, spatial, grad_out = tensors
    out = ops.ddf_forward(features, channel, spatial, k, d, s, combine)
    return (out, *ops.ddf_backward(grad_out, features, channel, spatial, k, d, s, combine))


def run_reference(case, tensors):
    """The same four in float64, from the pure-PyTorch reference and autograd."""
    _n, _c, _h, _w, k, d, s, combine = case
    leaves = [t.detach().double().requires_grad_() for t in tensors[:3]]
    out = ddf_reference(*leaves, k, d, s, combine)
    return (out.detach(), *torch.autograd.grad(out, leaves, tensors[3].double()))


@pytest.fixture
def restore_isa():
    previous = _library.cpu_isa()
    threads = torch.get_num_threads()
    yield
    _library.set_cpu_isa(previous)
    torch.set_num_threads(threads)


def assert_same_bits(got, expected, what):
    for name, a, b in zip(('output', 'grad_features', 'grad_channel', 'grad_spatial'), got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape, (what, name)
        assert torch.equal(a, b), f'{what}: {name} differs in {int((a != b).sum())} of {a.numel()} values'
        assert torch.equal(torch.signbit(a), torch.signbit(b)), f'{what}: {name} signs of zero differ'


@pytest.mark.parametrize('isa', WIDE_ISAS)
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last', 'strided'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize('case', CASES, ids=IDS)
def test_builds_are_bitwise_equal_to_base(case, dtype, layout, isa, restore_isa):
    tensors = make_inputs(case, dtype, layout)
    expected = run_compiled(case, tensors, 'base')
    assert_same_bits(run_compiled(case, tensors, isa), expected, f'{isa} vs base')
    if layout != 'contiguous':  # the layout of the inputs does not change a bit either
        contiguous = [t.contiguous() for t in tensors]
        assert_same_bits(run_compiled(case, contiguous, isa), expected, f'{isa} {layout} vs contiguous')


@pytest.mark.parametrize('isa', ISAS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize('case', CASES, ids=IDS)
def test_builds_match_the_reference(case, dtype, isa, restore_isa):
    tensors = make_inputs(case, dtype, 'contiguous', seed=1)
    got = run_compiled(case, tensors, isa)
    expected = run_reference(case, tensors)
    # float64 sums differ from the reference's only by rounding; float32 and bfloat16 (float32 sums) by their
    # rounding of the result, relative to the largest value of each tensor.
    rel = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 1e-2}[dtype]
    for name, a, b in zip(('output', 'grad_features', 'grad_channel', 'grad_spatial'), got, expected):
        scale = b.abs().max().item() + 1.0
        torch.testing.assert_close(a.double(), b, rtol=rel, atol=rel * scale * 8,
                                   msg=lambda msg, name=name: f'{isa} {name}: {msg}')


@pytest.mark.parametrize('isa', ISAS)
def test_thread_count_does_not_change_a_bit(isa, restore_isa):
    # Work units (row tiles, channel groups) are sized by the thread count; the sums are not.
    case = (2, 70, 19, 37, 3, 1, 1, 'mul')
    tensors = make_inputs(case, torch.float32, 'contiguous', seed=2)
    torch.set_num_threads(1)
    expected = run_compiled(case, tensors, isa)
    for threads in (2, 3):
        torch.set_num_threads(threads)
        assert_same_bits(run_compiled(case, tensors, isa), expected, f'{isa}, {threads} threads vs 1')
