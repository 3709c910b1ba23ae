"""The CPU kernels' instruction-set builds (ops/csrc/include/cpu_isa.h): every build this CPU can run gives
bitwise the same outputs and gradients as the baseline build, for every op, dtype and shape (vector widths 4, 8
and 16 floats: row tails, rows narrower than a vector, 1x1 maps, kernel taps outside the map); the choice can be
read, set and forced through the environment; asking for a build the CPU cannot run is an error."""
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from op_cases import carafe_case, ddf_case, dlu_case, run_ops
from upsample_plugin.ops import _library

pytestmark = pytest.mark.skipif(not _library.compiled_available('cpu'),
                                reason='upsample_plugin._C is not built (pip install --no-build-isolation -e .)')

SUPPORTED = _library.supported_cpu_isas()
ISA_PARAMS = [pytest.param(name, marks=pytest.mark.skipif(name not in SUPPORTED,
                                                          reason=f'this CPU cannot run the {name} build'))
              for name in _library.CPU_ISAS if name != 'base']


@pytest.fixture
def restore_isa():
    previous = _library.cpu_isa()
    yield
    _library.set_cpu_isa(previous)


def results_with(isa, case):
    _library.set_cpu_isa(isa)
    return run_ops(torch.ops.upsample_plugin, case)


def assert_same_bits(case, isa):
    expected = results_with('base', case)
    got = results_with(isa, case)
    for index, (a, b) in enumerate(zip(got, expected)):
        assert a.dtype == b.dtype and a.shape == b.shape
        same = (a == b) | (a.isnan() & b.isnan())
        assert bool(same.all()), (f'{case[0]} result {index}: {isa} differs from base in {int((~same).sum())} of '
                                  f'{a.numel()} values, max |diff| {(a - b).abs().max().item():.3g}')
        # and the same signs of zero: the builds run the same roundings, not merely equal values
        assert torch.equal(torch.signbit(a), torch.signbit(b))


# Widths around the vector lengths (4, 8, 16 floats; 2, 4, 8 doubles) after upsampling, and degenerate maps.
CASES = [
    ('carafe', dict(n=1, c=9, h=5, w=7, k=5, g=1, s=2)),
    ('carafe', dict(n=2, c=8, h=3, w=8, k=3, g=2, s=2)),
    ('carafe', dict(n=1, c=5, h=1, w=1, k=5, g=1, s=2)),
    ('carafe', dict(n=1, c=6, h=4, w=9, k=5, g=3, s=4)),
    ('carafe', dict(n=1, c=4, h=6, w=17, k=1, g=1, s=1)),
    ('carafe', dict(n=1, c=3, h=7, w=5, k=3, g=1, s=3)),
    ('dlu', dict(n=1, c=9, h=5, w=7, k=5, g=1, s=2)),
    ('dlu', dict(n=2, c=8, h=3, w=9, k=3, g=2, s=4)),
    ('dlu', dict(n=1, c=4, h=1, w=1, k=5, g=1, s=2)),
    ('dlu', dict(n=1, c=5, h=4, w=17, k=1, g=1, s=3)),
    ('ddf', dict(n=1, c=9, h=7, w=17, k=3, d=1, s=1, combine='mul')),
    ('ddf', dict(n=2, c=5, h=9, w=33, k=5, d=2, s=2, combine='add')),
    ('ddf', dict(n=1, c=3, h=1, w=1, k=3, d=1, s=1, combine='mul')),
    ('ddf', dict(n=1, c=8, h=6, w=20, k=1, d=1, s=2, combine='mul')),
]
BUILDERS = {'carafe': carafe_case, 'dlu': dlu_case, 'ddf': ddf_case}


@pytest.mark.parametrize('isa', ISA_PARAMS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize('op, shape', CASES, ids=[f'{op}-{"-".join(map(str, s.values()))}' for op, s in CASES])
def test_builds_give_the_same_bits(op, shape, dtype, isa, restore_isa):
    assert_same_bits(BUILDERS[op](**shape, dtype=dtype), isa)


@pytest.mark.parametrize('isa', ISA_PARAMS)
@settings(max_examples=30, deadline=None)
@given(op=st.sampled_from(['carafe', 'dlu']), n=st.integers(1, 2), c=st.integers(1, 9), h=st.integers(1, 6),
       w=st.integers(1, 21), k=st.sampled_from([1, 3, 5]), g=st.sampled_from([1, 2]), s=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_builds_give_the_same_bits_property(isa, op, n, c, h, w, k, g, s, seed):
    previous = _library.cpu_isa()
    try:
        assert_same_bits(BUILDERS[op](n, c * g, h, w, k, g, s, dtype=torch.float32, seed=seed), isa)
    finally:
        _library.set_cpu_isa(previous)


def test_default_is_the_best_build_the_cpu_runs():
    out = subprocess.run([sys.executable, '-c', 'from upsample_plugin.ops import cpu_isa; print(cpu_isa())'],
                         capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != 'UPSAMPLE_PLUGIN_CPU_ISA'})
    assert out.stdout.strip() == SUPPORTED[-1]


def test_environment_variable_chooses_the_build():
    code = ('import torch; from upsample_plugin.ops import carafe, cpu_isa; '
            'carafe(torch.randn(1, 2, 3, 3), torch.rand(1, 25, 6, 6), 5, 1, 2); print(cpu_isa())')
    env = dict(os.environ, UPSAMPLE_PLUGIN_CPU_ISA='base')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == 'base'
    env['UPSAMPLE_PLUGIN_CPU_ISA'] = 'sse9'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
    assert out.returncode != 0
    assert "UPSAMPLE_PLUGIN_CPU_ISA must be one of base, avx2, avx512; got 'sse9'" in out.stderr


def test_set_cpu_isa_checks_its_argument(restore_isa):
    with pytest.raises(ValueError, match="name must be one of"):
        _library.set_cpu_isa('avx')
    previous = _library.set_cpu_isa('base')
    assert _library.cpu_isa() == 'base' and previous in SUPPORTED
    unsupported = [name for name in _library.CPU_ISAS if name not in SUPPORTED]
    if unsupported:  # e.g. avx512 on this project's AMD EPYC (Zen 3)
        with pytest.raises(RuntimeError, match=f'isa={unsupported[0]}: this CPU supports up to {SUPPORTED[-1]}'):
            _library.set_cpu_isa(unsupported[0])
        assert _library.cpu_isa() == 'base'  # a refused request changes nothing
