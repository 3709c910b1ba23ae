"""NaN safety on CPU (issue 14): a NaN or +Inf in any input of any upsampler or op runs forward *and* backward to
the end, with NaN in the output (so it reaches the loss, docs/input_validation.md), never a crash.

Why a child process: PyTorch's CPU ``grid_sample`` backward segfaults on a NaN sample coordinate with border
padding and on a NaN/Inf one with reflection padding (pytorch/pytorch#24823), and a NaN input of DySample, of
the DLU op or of any offset predictor turns into exactly such coordinates. A segfault would end the pytest run,
so every case runs in a child (this file run as a script, cases as JSON on stdin) that prints one result line
per finished case. If the child dies, the case it was running is recorded with the exit code and a new child
resumes after it, so one crash fails that case's test only. When nothing crashes, one child runs everything.

Cases: every upsampler the plugin registers (several variants, guided ones also with a poisoned guide, DDF-Up
also with a poisoned ``joint_x``) on both op backends, every tensor argument of every op on every backend, and
the shared sampler (``upsample_plugin.ops.sampling.grid_sample``) in every padding mode. Each case asserts: the
child finished it, the output is non-finite where the poisoned element is read, the loss is non-finite, the
backward finished and gave every input a gradient of its shape. In-process tests check the sanitised grid and
that the sampler equals ``F.grid_sample`` bit for bit on finite grids; a last, expected-to-crash case shows that
plain ``F.grid_sample`` still crashes here, i.e. that the guard is what keeps the cases above alive.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import torch

NAN, INF = float('nan'), float('inf')
VALUES = {'nan': NAN, 'inf': INF, '-inf': -INF}
ROOT = Path(__file__).resolve().parents[1]
RESULT = 'NAN_SAFETY_RESULT '

# ------------------------------------------------------------------------------------------------ the cases
C, H, W = 32, 6, 6  # upsampler width (a multiple of SAPA's GroupNorm(32, .) and of DySample 'pl''s s^2 * G)
POISON = (5, 2, 3)  # channel, row, column of the poisoned element of x (guide: row and column times s)
JOINT_CHANNELS = 8

#: Upsampler variants: name -> (build_upsampler cfg, scale, extra inputs {name: 'high' | 'joint'}).
UPSAMPLERS = {
    'portable_carafe': (dict(type='portable_carafe', compressed_channels=16), 2, {}),
    'dysample_lp': (dict(type='dysample', style='lp', groups=4), 2, {}),
    'dysample_lp_dyscope': (dict(type='dysample', style='lp', groups=4, dyscope=True), 2, {}),
    'dysample_pl': (dict(type='dysample', style='pl', groups=4), 2, {}),
    'dysample_lp_dyscope_x3': (dict(type='dysample', style='lp', groups=2, dyscope=True, scope_bias=True), 3, {}),
    'dlu': (dict(type='dlu', compressed_channels=16), 2, {}),
    'dlu_x3_g2': (dict(type='dlu', compressed_channels=8, up_group=2), 3, {}),
    'ddf_up': (dict(type='ddf_up'), 2, {}),
    'ddf_up_joint': (dict(type='ddf_up', joint_channels=JOINT_CHANNELS), 2, {'joint_x': 'joint'}),
    'lda_aqu': (dict(type='lda_aqu'), 2, {}),
    'lda_aqu_x3': (dict(type='lda_aqu', nh=2, rpb=False), 3, {}),
    'fade': (dict(type='fade'), 2, {'guide': 'high'}),
    'fade_lite': (dict(type='fade_lite'), 2, {'guide': 'high'}),
    'sapa': (dict(type='sapa'), 2, {'guide': 'high'}),
    'sapa_no_norm': (dict(type='sapa', norm=False), 2, {'guide': 'high'}),
    'sapadeform': (dict(type='sapadeform'), 2, {'guide': 'high'}),
    'sapadeform_low_offset_norm': (dict(type='sapadeform', high_offset=False, norm=True), 2, {'guide': 'high'}),
    'frfu': (dict(type='frfu'), 2, {}),
    'frfu_x3_g2_xavier': (dict(type='frfu', groups=2, sample_k=5, init='xavier'), 3, {}),
    'freqfusion': (dict(type='freqfusion', compressed_channels=16), 2, {'guide': 'high'}),
    'freqfusion_resample': (dict(type='freqfusion', compressed_channels=16, feature_resample=True), 2,
                            {'guide': 'high'}),
}
#: Variants whose forward calls a compiled op (CARAFE, DLU, DDF) when upsample_plugin._C is loaded.
COMPILED_OP_TYPES = ('portable_carafe', 'dlu', 'ddf_up', 'fade', 'fade_lite', 'sapa', 'frfu', 'freqfusion')


def upsampler_cases():
    cases = []
    for name, (cfg, _, extra) in UPSAMPLERS.items():
        backends = ('reference', 'compiled') if cfg['type'] in COMPILED_OP_TYPES else ('reference',)
        for where in ('x', *extra):
            for value in ('nan', 'inf'):
                for backend in backends:
                    cases.append(dict(kind='upsampler', id=f'{name}-{where}-{value}-{backend}', name=name,
                                      where=where, value=value, backend=backend))
    return cases


# Ops at N=1, C=4, H=4, W=5, s=2, k=3, G=2 (DDF: 5x6), P=2 points. Each poisoned argument names the element and
# the output elements that read it: op -> (backends, {argument: (poisoned index, output index that must be
# non-finite)}). Offsets are random (+-0.7 pixels) except where a feature or kernel is poisoned at a pixel that
# only a zero offset reads for sure ('zero_offsets').
OPS = {
    'carafe': (('reference', 'compiled'), {
        'features': ((0, 3, 2, 3), (0, 3, slice(4, 6), slice(6, 8))),  # its own 2x2 block reads it (centre tap)
        'masks': ((0, 9 + 4, 3, 5), (0, slice(2, 4), 3, 5)),  # group 1's centre tap of pixel (3, 5)
    }),
    'ddf': (('reference', 'compiled'), {
        'features': ((0, 1, 2, 3), (0, 1, 2, 3)),
        'channel_filter': ((0, 1, 1, 1), (0, 1)),  # the centre tap weighs every pixel of channel 1
        'spatial_filter': ((0, 4, 2, 3), (0, slice(None), 2, 3)),
    }),
    'dlu_reassemble': (('reference', 'compiled'), {
        'features': ((0, 3, 2, 3), (0, 3, slice(4, 6), slice(6, 8))),
        'kernel_space': ((0, 4, 2, 3), (0, slice(0, 2), slice(4, 6), slice(6, 8))),  # zero offsets
        'offsets': ((0, (1 * 2 + 0) * 4 + 1 * 2 + 0, 2, 3), (0, slice(2, 4), 5, 6)),  # group 1, x, sub-pixel (1, 0)
    }),
    'sapa_similarity': (('reference',), {
        'query': ((0, 1, 3, 5), (0, slice(None), 3, 5)),
        'key': ((0, 1, 2, 3), (0, 4, slice(4, 6), slice(6, 8))),
    }),
    'sapa_deform_similarity': (('reference',), {
        'query': ((0, 0, 3, 5), (0, 0, slice(None), 3, 5)),
        'key': ((0, 0, 2, 3), (0, 0, slice(None), slice(4, 6), slice(6, 8))),  # zero offsets
        'offset': ((0, 2 * 3 + 1, 3, 5), (0, 1, 1, 3, 5)),  # point 3 = group 1, point 1, height component
    }),
    'sapa_deform_aggregation': (('reference',), {
        'attn': ((0, 0, 1, 3, 5), (0, slice(0, 2), 3, 5)),
        'value': ((0, 0, 2, 3), (0, 0, slice(4, 6), slice(6, 8))),  # zero offsets
        'offset': ((0, 2 * 3 + 1, 3, 5), (0, slice(2, 4), 3, 5)),
    }),
}
ZERO_OFFSETS = {('dlu_reassemble', 'kernel_space'), ('sapa_deform_similarity', 'key'),
                ('sapa_deform_aggregation', 'value')}


def op_cases():
    cases = []
    for op, (backends, arguments) in OPS.items():
        for argument in arguments:
            for value in ('nan', 'inf'):
                for backend in backends:
                    cases.append(dict(kind='op', id=f'{op}-{argument}-{value}-{backend}', op=op, argument=argument,
                                      value=value, backend=backend))
    return cases


def sampler_cases():
    return [dict(kind='sampler', id=f'{padding}-{value}-{"ac" if corners else "noac"}', padding=padding,
                 value=value, align_corners=corners)
            for padding in ('zeros', 'border', 'reflection') for value in VALUES for corners in (False, True)]


#: The canary: plain F.grid_sample, border padding, one NaN point, backward. Last, as it is expected to crash.
RAW_CASE = dict(kind='raw_grid_sample', id='raw_grid_sample_border_nan')


def all_cases():
    return upsampler_cases() + op_cases() + sampler_cases() + [RAW_CASE]


# ------------------------------------------------------------------------------------------ the child's side
def _grads(tensors: dict) -> dict:
    """name -> [gradient shape or None, tensor shape]."""
    return {name: [list(t.grad.shape) if t.grad is not None else None, list(t.shape)] for name, t in tensors.items()}


def _finish(out: torch.Tensor, inputs: dict, expected: torch.Tensor, generator: torch.Generator) -> dict:
    """Loss, backward and the facts the parent asserts."""
    bad = ~torch.isfinite(out.detach())
    loss = (out * torch.rand(out.shape, generator=generator, dtype=out.dtype)).sum()
    loss.backward()
    return dict(out_shape=list(out.shape), expected_nonfinite=bool(bad[expected].all()),
                expected_count=int(expected.sum()), any_finite=bool((~bad).any()),
                loss_finite=bool(torch.isfinite(loss)), grads=_grads(inputs))


def run_upsampler(case: dict) -> dict:
    from upsample_plugin import build_upsampler
    cfg, s, extra = UPSAMPLERS[case['name']]
    os.environ['UPSAMPLE_PLUGIN_FORCE_REFERENCE'] = '1' if case['backend'] == 'reference' else '0'
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build_upsampler(cfg, C, s)
    with torch.no_grad():  # away from the near-identity inits: offsets, kernels and gates all carry signal
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    inputs = {'x': torch.randn(1, C, H, W, generator=generator)}
    for name, kind in extra.items():
        shape = (1, C, s * H, s * W) if kind == 'high' else (1, JOINT_CHANNELS, H, W)
        inputs[name] = torch.randn(shape, generator=generator)
    channel, row, col = POISON
    expected = torch.zeros(1, C, s * H, s * W, dtype=torch.bool)
    if case['where'] == 'guide':
        inputs['guide'][0, channel, s * row, s * col] = VALUES[case['value']]
        expected[0, channel, s * row, s * col] = True
    else:  # x (its pixel's s x s output block) or joint_x (DDF-Up's spatial filters of that pixel)
        inputs[case['where']][0, channel % inputs[case['where']].shape[1], row, col] = VALUES[case['value']]
        expected[0, channel, s * row:s * row + s, s * col:s * col + s] = True
    for tensor in inputs.values():
        tensor.requires_grad_()
    out = module(inputs['x'], **{name: tensor for name, tensor in inputs.items() if name != 'x'})
    result = _finish(out, inputs, expected, generator)
    params = [(p.grad is not None and p.grad.shape == p.shape) for p in module.parameters()]
    result['params_with_grad'], result['params'] = sum(params), len(params)
    return result


def _op_inputs(op: str, generator: torch.Generator) -> tuple:
    """(function, tensor arguments, other arguments) of ``op`` at the sizes of ``OPS``."""
    from upsample_plugin import ops

    def randn(*shape):
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    if op == 'carafe':
        return ops.carafe, dict(features=randn(1, 4, 4, 5), masks=randn(1, 18, 8, 10).softmax(1)), dict(
            kernel_size=3, group_size=2, scale_factor=2)
    if op == 'ddf':
        return ops.ddf, dict(features=randn(1, 4, 5, 6), channel_filter=randn(1, 4, 3, 3),
                             spatial_filter=randn(1, 9, 5, 6)), dict(kernel_size=3)
    if op == 'dlu_reassemble':
        return ops.dlu_reassemble, dict(features=randn(1, 4, 4, 5), kernel_space=randn(1, 18, 4, 5).softmax(1),
                                        offsets=randn(1, 16, 4, 5).tanh() * 0.7), dict(
            kernel_size=3, group_size=2, scale_factor=2)
    if op == 'sapa_similarity':
        return ops.sapa_similarity, dict(query=randn(1, 4, 8, 10), key=randn(1, 4, 4, 5)), dict(
            kernel_size=3, scale_factor=2)
    deform = dict(num_point=2, scale_factor=2, groups=2)
    offset = randn(1, 8, 8, 10).tanh() * 0.7
    if op == 'sapa_deform_similarity':
        return ops.sapa_deform_similarity, dict(query=randn(1, 4, 8, 10), key=randn(1, 4, 4, 5), offset=offset), deform
    return ops.sapa_deform_aggregation, dict(attn=randn(1, 2, 2, 8, 10).softmax(2), value=randn(1, 4, 4, 5),
                                             offset=offset), deform


def run_op(case: dict) -> dict:
    generator = torch.Generator().manual_seed(0)
    function, tensors, kwargs = _op_inputs(case['op'], generator)
    poisoned, reads = OPS[case['op']][1][case['argument']]
    if (case['op'], case['argument']) in ZERO_OFFSETS:
        tensors['offsets' if 'offsets' in tensors else 'offset'].zero_()
    tensors[case['argument']][poisoned] = VALUES[case['value']]
    if case['op'] in ('carafe', 'ddf', 'dlu_reassemble'):
        kwargs = dict(kwargs, backend=case['backend'])
    for tensor in tensors.values():
        tensor.requires_grad_()
    out = function(**tensors, **kwargs)
    expected = torch.zeros(out.shape, dtype=torch.bool)
    expected[reads] = True
    return _finish(out, tensors, expected, generator)


def run_sampler(case: dict) -> dict:
    """The shared sampler with three non-finite points: NaN in every channel there, finite elsewhere; the
    backward finishes with finite gradients and none through the non-finite points."""
    from upsample_plugin.ops.sampling import grid_sample
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 5, 6, generator=generator, requires_grad=True)
    grid = torch.rand(2, 7, 8, 2, generator=generator) * 2.4 - 1.2
    value = VALUES[case['value']]
    grid[0, 1, 2, 0] = value  # x only
    grid[1, 3, 4, 1] = value  # y only
    grid[1, 0, 0] = value  # both
    points = torch.zeros(2, 7, 8, dtype=torch.bool)
    points[0, 1, 2] = points[1, 3, 4] = points[1, 0, 0] = True
    grid.requires_grad_()
    out = grid_sample(features, grid, padding_mode=case['padding'], align_corners=case['align_corners'])
    expected = points.unsqueeze(1).expand(out.shape)
    result = _finish(out, dict(features=features, grid=grid), expected, generator)
    result.update(exactly_expected=bool(torch.equal(~torch.isfinite(out.detach()), expected)),
                  grads_finite=bool(torch.isfinite(features.grad).all() and torch.isfinite(grid.grad).all()),
                  no_grad_through_bad_points=bool((grid.grad[points] == 0).all()))
    return result


def run_raw(case: dict) -> dict:
    import torch.nn.functional as F
    features = torch.randn(1, 2, 4, 4, requires_grad=True)
    grid = torch.zeros(1, 3, 3, 2)
    grid[0, 1, 1, 0] = NAN
    grid.requires_grad_()
    F.grid_sample(features, grid, padding_mode='border', align_corners=False).sum().backward()
    return {}


RUNNERS = {'upsampler': run_upsampler, 'op': run_op, 'sampler': run_sampler, 'raw_grid_sample': run_raw}


def child_main() -> None:
    """Run the JSON cases from stdin in order; one ``RESULT`` line per finished case (flushed at once)."""
    torch.set_num_threads(1)  # tiny tensors: threads cost more than they save on shared cores
    cases = json.load(sys.stdin)
    for case in cases:
        try:
            result = dict(RUNNERS[case['kind']](case), status='ok')
        except Exception:  # reported to the parent: an exception fails the case, not the child
            result = dict(status='error', error=traceback.format_exc())
        result['id'] = case['id']
        print(RESULT + json.dumps(result), flush=True)


if __name__ == '__main__':
    sys.path.insert(0, str(ROOT))
    child_main()
    sys.exit(0)

# ------------------------------------------------------------------------------------------ the parent's side
import pytest  # noqa: E402  (the child above does not need pytest)

from upsample_plugin import ops, plugin_upsamplers  # noqa: E402
from upsample_plugin.ops.sampling import grid_sample, sanitize_grid  # noqa: E402

CHILD_TIMEOUT_S = 600


def run_in_children(cases: list) -> dict:
    """Run ``cases`` in child processes; id -> result. A child that dies takes down the case it was running
    (recorded as ``status='crashed'`` with the exit code and the end of stderr); the next child resumes after it."""
    env = {k: v for k, v in os.environ.items() if k != 'UPSAMPLE_PLUGIN_CHECK_FINITE'}  # the check would raise
    results, pending = {}, list(cases)
    while pending:
        proc = subprocess.run([sys.executable, __file__], input=json.dumps(pending), capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=CHILD_TIMEOUT_S)
        for line in proc.stdout.splitlines():
            if line.startswith(RESULT):
                result = json.loads(line[len(RESULT):])
                results[result['id']] = result
        pending = [case for case in pending if case['id'] not in results]
        if pending:  # the child died during pending[0]
            results[pending[0]['id']] = dict(status='crashed', returncode=proc.returncode, stderr=proc.stderr[-3000:])
            if proc.returncode == 0:  # exited cleanly without finishing: do not loop on it
                for case in pending[1:]:
                    results[case['id']] = dict(status='missing', returncode=0, stderr=proc.stderr[-3000:])
                break
            pending = pending[1:]
    return results


@pytest.fixture(scope='module')
def results():
    return run_in_children(all_cases())


def check_finished(result: dict) -> None:
    """The child finished the case: no crash (the point of this file) and no exception."""
    if result['status'] == 'crashed':
        pytest.fail(f'the child process died (exit code {result["returncode"]}) on this case; stderr:\n'
                    f'{result["stderr"]}')
    assert result['status'] == 'ok', result.get('error', result)


def check_nan_reaches_the_loss(result: dict, inputs, local: bool = True) -> None:
    """Non-finite where the poisoned element is read (and, for ``local`` cases, not everywhere, so a test that
    poisons the wrong element cannot pass by accident), a non-finite loss, a gradient of its shape per input."""
    assert result['expected_count'] > 0
    assert result['expected_nonfinite'], 'an output that reads the poisoned element came out finite'
    if local:
        assert result['any_finite'], 'the whole output is non-finite, not only where the poisoned element is read'
    assert not result['loss_finite'], 'the loss came out finite'
    for name in inputs:
        grad_shape, shape = result['grads'][name]
        assert grad_shape == shape, f'{name}: gradient of shape {grad_shape} for a tensor of shape {shape}'


def spreads_over_the_map(case: dict) -> bool:
    """One NaN poisons the whole (6 x 6 -> 12 x 12) output: DDF-Up's channel branches average-pool x; GroupNorm
    (SAPA-B's default, SAPA-D with norm=True, FreqFusion's resampler) takes statistics over the whole map of x and
    of the guide; FreqFusion's cascaded encoders and 5x5 CARAFE kernels carry a NaN of x about 6 low-res pixels
    (measured on 24 x 24), i.e. over all of this map."""
    cfg = UPSAMPLERS[case['name']][0]
    if cfg['type'] == 'freqfusion':
        return cfg.get('feature_resample', False) or case['where'] == 'x'
    return (cfg['type'] == 'ddf_up' and case['where'] == 'x') or cfg.get('norm', cfg['type'] == 'sapa')


def skip_without_compiled(backend: str) -> None:
    if backend == 'compiled' and not ops.compiled_available('cpu'):
        pytest.skip('upsample_plugin._C (compiled CPU ops) is not built here')


def test_every_registered_upsampler_is_covered():
    assert {cfg['type'] for cfg, _, _ in UPSAMPLERS.values()} == set(plugin_upsamplers())
    assert {cfg['type'] for cfg, _, extra in UPSAMPLERS.values() if 'guide' in extra} == {
        name for name, cls in plugin_upsamplers().items() if cls.needs_guide}


@pytest.mark.parametrize('case', upsampler_cases(), ids=lambda case: case['id'])
def test_upsampler_nan_input_runs_forward_and_backward(results, case):
    skip_without_compiled(case['backend'])
    result = results[case['id']]
    check_finished(result)
    _, s, extra = UPSAMPLERS[case['name']]
    assert result['out_shape'] == [1, C, s * H, s * W]
    check_nan_reaches_the_loss(result, ['x', *extra], local=not spreads_over_the_map(case))
    assert result['params_with_grad'] == result['params'], 'a parameter got no gradient of its shape'


@pytest.mark.parametrize('case', op_cases(), ids=lambda case: case['id'])
def test_op_nan_argument_runs_forward_and_backward(results, case):
    skip_without_compiled(case['backend'])
    result = results[case['id']]
    check_finished(result)
    check_nan_reaches_the_loss(result, result['grads'])
    assert set(result['grads']) == set(_op_inputs(case['op'], torch.Generator())[1])


@pytest.mark.parametrize('case', sampler_cases(), ids=lambda case: case['id'])
def test_sampler_marks_nonfinite_points_and_finishes_backward(results, case):
    result = results[case['id']]
    check_finished(result)
    check_nan_reaches_the_loss(result, ['features', 'grid'])
    assert result['exactly_expected'], 'NaN where the point is finite, or a finite value at a non-finite point'
    assert result['grads_finite'] and result['no_grad_through_bad_points']


def test_plain_grid_sample_still_crashes_so_the_guard_is_needed(results):
    """The reason for all of the above (pytorch/pytorch#24823): plain ``F.grid_sample`` with border padding and
    one NaN point crashes in its CPU backward. If a future torch fixes it, this test says so (skip)."""
    result = results[RAW_CASE['id']]
    if result['status'] == 'ok':
        pytest.skip(f'torch {torch.__version__}: F.grid_sample border backward survives a NaN point (fixed upstream)')
    assert result['status'] == 'crashed' and result['returncode'] != 0, result


@pytest.mark.parametrize('value', list(VALUES))
def test_sanitized_grid_is_finite_and_keeps_finite_points(value):
    grid = torch.rand(2, 4, 5, 2, dtype=torch.float64) * 2 - 1
    grid[0, 1, 2, 0] = grid[1, 3, 3, 1] = grid[1, 0, 0, :] = VALUES[value]
    safe, finite = sanitize_grid(grid)
    bad = torch.zeros(2, 4, 5, dtype=torch.bool)
    bad[0, 1, 2] = bad[1, 3, 3] = bad[1, 0, 0] = True
    assert torch.isfinite(safe).all()
    assert torch.equal(finite, ~bad)
    assert torch.equal(safe[~bad], grid[~bad]) and (safe[bad] == 0).all()


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits (tells -0.0 from 0.0, unlike torch.equal)."""
    return t.contiguous().view(torch.int64 if t.dtype == torch.float64 else torch.int32)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('padding', ['zeros', 'border', 'reflection'])
@pytest.mark.parametrize('align_corners', [False, True])
def test_sampler_equals_grid_sample_bit_for_bit_on_finite_grids(padding, align_corners, dtype):
    """Outputs and both gradients of the NaN-safe sampler are F.grid_sample's, bit for bit, when every point is
    finite (points inside and outside the map): the guard changes nothing for healthy inputs."""
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(2, 3, 5, 6, generator=generator, dtype=dtype)
    grid = torch.rand(2, 7, 8, 2, generator=generator, dtype=dtype) * 2.6 - 1.3
    grad_out = torch.randn(2, 3, 7, 8, generator=generator, dtype=dtype)
    runs = []
    for sample in (torch.nn.functional.grid_sample, grid_sample):
        f, g = features.clone().requires_grad_(), grid.clone().requires_grad_()
        out = sample(f, g, mode='bilinear', padding_mode=padding, align_corners=align_corners)
        out.backward(grad_out)
        runs.append((out.detach(), f.grad, g.grad))
    for name, expected, actual in zip(('output', 'features grad', 'grid grad'), *runs):
        assert torch.equal(bits(expected), bits(actual)), name
