"""The fused DLU CPU kernels under every instruction set this CPU supports (ops/csrc/include/cpu_isa.h): the
AVX2 and AVX-512 builds of the hot loops (cpu_reassembly_loops.h run on kernels sampled by cpu_dlu_loops.h) give
the output and all three gradients bitwise equal to the baseline build's, on odd sizes, 1x1 maps, k = 1/3/5/7,
G = 1/2, s = 1..4, non-contiguous inputs, float64, float32, float16 and bfloat16, several dK' chunks, and offsets
that are zero (integer positions: bilinear kinks), small, or far outside the map (clamping); every build matches
the pure-PyTorch reference; and the results do not depend on the thread count."""
import pytest
import torch

from upsample_plugin.ops import cpu_isa, set_cpu_isa
from upsample_plugin.ops._library_dlu import dlu_compiled_available
from upsample_plugin.ops.dlu import dlu_reassemble_reference

pytestmark = pytest.mark.skipif(not dlu_compiled_available('cpu'),
                                reason='upsample_plugin._C without the DLU kernels; build it with '
                                       '`pip install --no-build-isolation --no-deps -e .`')
ops = torch.ops.upsample_plugin

CASES = [  # n, c, h, w, k, g, s, dtype, layout, offset scale
    (2, 5, 7, 9, 5, 1, 2, torch.float32, 'contiguous', 0.7),    # the official configuration, odd sizes
    (1, 9, 13, 11, 5, 1, 2, torch.float32, 'contiguous', 0.0),   # zero offsets (DLU's init): integer positions
    (1, 6, 6, 5, 3, 2, 3, torch.float32, 'strided', 1.5),        # G = 2, x3, non-contiguous
    (1, 4, 5, 4, 5, 2, 4, torch.float32, 'channels_last', 4.0),  # x4, mostly clamped, channels_last
    (2, 3, 1, 1, 3, 1, 2, torch.float32, 'contiguous', 0.7),     # 1 x 1 map
    (1, 2, 1, 1, 1, 1, 3, torch.float32, 'contiguous', 0.7),     # 1 x 1 map, k = 1
    (1, 7, 4, 6, 1, 1, 2, torch.float32, 'contiguous', 0.7),     # k = 1
    (1, 4, 3, 5, 3, 1, 1, torch.float32, 'contiguous', 0.7),     # scale 1
    (1, 3, 1, 17, 5, 1, 2, torch.float32, 'contiguous', 1.5),    # H = 1
    (1, 3, 11, 1, 3, 1, 3, torch.float32, 'contiguous', 1.5),    # W = 1
    (1, 5, 4, 4, 7, 1, 2, torch.float32, 'contiguous', 0.7),     # kernel wider than the map
    (1, 10, 9, 19, 5, 2, 2, torch.float64, 'contiguous', 0.7),   # float64
    (1, 6, 5, 7, 3, 2, 3, torch.float64, 'strided', 4.0),        # float64, non-contiguous
    (1, 8, 5, 7, 5, 2, 2, torch.bfloat16, 'contiguous', 0.7),    # bfloat16 (float32 accumulation)
    (1, 5, 6, 9, 3, 1, 4, torch.float16, 'contiguous', 0.7),     # float16
    (1, 2, 24, 200, 5, 1, 4, torch.float32, 'contiguous', 1.5),  # several dK' chunks (9 rows a chunk)
]


def case_id(case):
    n, c, h, w, k, g, s, dtype, layout, scale = case
    return f'{n}x{c}x{h}x{w}-k{k}-g{g}-s{s}-{str(dtype)[6:]}-{layout}-off{scale}'


def make_inputs(case, seed=0):
    n, c, h, w, k, g, s, dtype, layout, scale = case
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    space = torch.randn(n, g, k * k, h, w, generator=gen, dtype=torch.float64).softmax(2).view(n, g * k * k, h, w)
    offsets = torch.randn(n, g * 2 * s * s, h, w, generator=gen, dtype=torch.float64) * scale
    grad_out = torch.randn(n, c, h * s, w * s, generator=gen, dtype=torch.float64)
    tensors = [t.to(dtype) for t in (features, space, offsets, grad_out)]
    if layout == 'channels_last':
        tensors = [t.to(memory_format=torch.channels_last) for t in tensors]
    elif layout == 'strided':
        tensors = [torch.stack([t, torch.zeros_like(t)], -1).flatten(-2)[..., ::2] for t in tensors]
        assert not tensors[0].is_contiguous()
    return tensors


def run_compiled(case, inputs):
    k, g, s = case[4:7]
    features, space, offsets, grad_out = inputs
    out = ops.dlu_forward(features, space, offsets, k, g, s)
    return (out, *ops.dlu_backward(grad_out, features, space, offsets, k, g, s))


def run_reference(case, inputs):
    k, g, s = case[4:7]
    features, space, offsets, grad_out = inputs
    leaves = [t.detach().clone().requires_grad_() for t in (features, space, offsets)]
    out = dlu_reassemble_reference(*leaves, k, g, s)
    return (out.detach(), *torch.autograd.grad(out, leaves, grad_out))


@pytest.fixture
def isa_restored():
    previous = cpu_isa()
    yield
    set_cpu_isa(previous)


def use_isa(name):
    """set_cpu_isa(name), or skip when this CPU lacks it."""
    try:
        set_cpu_isa(name)
    except RuntimeError:
        pytest.skip('this CPU has no AVX-512' if name == 'avx512' else f'this CPU has no {name.upper()}')


NAMES = ('output', 'grad_features', 'grad_kernel_space', 'grad_offsets')


@pytest.mark.usefixtures('isa_restored')
@pytest.mark.parametrize('isa', ['avx2', 'avx512'])
@pytest.mark.parametrize('case', CASES, ids=case_id)
def test_isa_bitwise_equal_to_base(isa, case):
    inputs = make_inputs(case)
    use_isa(isa)
    got = run_compiled(case, inputs)
    set_cpu_isa('base')
    expected = run_compiled(case, inputs)
    for name, a, b in zip(NAMES, got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.equal(a, b), f'{name}: {isa} differs from base, max |diff| {(a.double() - b.double()).abs().max()}'


@pytest.mark.usefixtures('isa_restored')
@pytest.mark.parametrize('isa', ['base', 'avx2', 'avx512'])
@pytest.mark.parametrize('case', CASES, ids=case_id)
def test_isa_matches_reference(isa, case):
    dtype = case[7]
    inputs = make_inputs(case, seed=1)
    use_isa(isa)
    got = run_compiled(case, inputs)
    expected = run_reference(case, inputs)
    for name, a, b in zip(NAMES, got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        if dtype in (torch.float16, torch.bfloat16):  # the final roundings differ (test_compiled_dlu.py)
            atol, rtol = 4 * torch.finfo(dtype).eps * max(1.0, b.double().abs().max().item()), 0
        elif dtype == torch.float32:
            atol, rtol = 1e-5, 1e-5
        else:
            atol, rtol = 1e-10, 0
        torch.testing.assert_close(a.double(), b.double(), rtol=rtol, atol=atol, msg=lambda msg: f'{name}: {msg}')


@pytest.mark.usefixtures('isa_restored')
@pytest.mark.parametrize('isa', ['base', 'avx2', 'avx512'])
def test_isa_thread_independent(isa):
    case = (2, 14, 13, 10, 5, 2, 2, torch.float32, 'contiguous', 1.5)  # 7 channels a group
    inputs = make_inputs(case)
    use_isa(isa)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(run_compiled(case, inputs))
    finally:
        torch.set_num_threads(previous)
    for other in results[1:]:
        for name, a, b in zip(NAMES, results[0], other):
            assert torch.equal(a, b), name
