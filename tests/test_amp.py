"""Reduced precision for every upsampler (issue 8, "AMP"); the results are summarised in docs/determinism.md.

* Under ``torch.autocast('cpu', dtype)`` (bfloat16, and float16, which CPU autocast also supports and which runs
  the Python code paths CUDA float16 autocast takes) a float32 input gives a float32, finite output close to the
  float32 result, and float32 input gradients.
* A module and input cast to bfloat16/float16 (no autocast) return that dtype, close to a float32 computation
  on the same rounded values.
* Sub-pixel precision: the sampling grids of DySample, DLU, LDA-AQU and SAPA-D are built in float32, so a
  constant sub-pixel offset on a 256-pixel-wide map samples at the same positions under bfloat16 as in float32;
  each setup is also run with the grid rounded to bfloat16, to show the tolerance would catch such a grid.

This matrix extends the single-module autocast checks of the per-upsampler files (one configuration each,
dtype and finiteness only) to every upsampler, with accuracy bounds and gradients.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from upsample_test_utils import MATRIX_CASES, build_matrix_upsampler, smooth_inputs, use_op_backend

from upsample_plugin.ops._library_dlu import dlu_compiled_available
from upsample_plugin.upsamplers import LDA_AQU, DLUPack, DySample, SAPADeform

#: Unit roundoff u (half the spacing of numbers in [1, 2)): 8 significant bits for bfloat16, 11 for float16.
UNIT_ROUNDOFF = {torch.bfloat16: 2.0 ** -9, torch.float16: 2.0 ** -11}
LOW_PRECISION = list(UNIT_ROUNDOFF)
#: Output bound, relative L2 error in units of u. Measured over 6 seeds of this setup: at most 6.7 u (LDA-AQU in
#: bfloat16, whose offsets of up to 11 output pixels come from reduced-precision convs), 3.5 u for the others.
OUTPUT_BOUND_U = 16
#: Gradient bounds in units of u: relative L2 error, and the median of |error| / rms(gradient) over the elements.
GRADIENT_BOUND_U = 16
GRADIENT_MEDIAN_BOUND_U = 32
#: Upsamplers whose input gradients flow through learned sampling positions that often sit near a pixel border
#: (or the clamp of the map border). The gradient of a bilinear sample is piecewise constant in its position, so
#: a point that any rounding moves across a border changes a few gradient values by O(1): measured over 6 seeds
#: and two map sizes, relative L2 errors up to 89 u (DLU), 411 u (LDA-AQU), 32 u (SAPA-D), while the median element
#: stays within 15 u. FreqFusion's offset generator (positions from GroupNorm, cosine similarities and 3x3 convs of
#: the compressed maps): 95 u (bfloat16) and 242 u (float16) L2, median 29 u and 22 u on the matrix case; without
#: the generator 3.1 u and 1.6 u. For them the L2 bound only rules out a lost or sign-flipped gradient; the median
#: bound does the rest.
#: (In float64, perturbing DLU's offsets by a relative 2**-11 alone moves its input gradient by up to 66 u.)
POSITION_SENSITIVE = {'dlu': 0.5, 'lda_aqu': 0.5, 'sapadeform': 0.5, 'freqfusion': 0.5}


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """||got - expected|| / ||expected|| (L2 over all elements), in float64."""
    expected = expected.double()
    return ((got.double() - expected).norm() / expected.norm()).item()


def median_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """Median over the elements of |got - expected| / rms(expected), in float64."""
    expected = expected.double()
    return ((got.double() - expected).abs() / expected.square().mean().sqrt()).median().item()


def forward_and_grads(module, inputs, grad_weight, autocast_dtype=None):
    """Output and the gradients of ``sum(output * grad_weight)`` with respect to every input.

    The forward runs under ``torch.autocast('cpu', autocast_dtype)`` when given; the backward outside it, as the
    AMP recipe prescribes (backward ops run in the dtypes the forward chose).
    """
    leaves = [t.detach().requires_grad_() for t in inputs]
    with torch.autocast('cpu', dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        out = module(*leaves)
    grads = torch.autograd.grad((out * grad_weight.to(out.dtype)).sum(), leaves)
    return out, grads


def rounded_to(module, inputs, dtype):
    """A float32 copy of ``module`` and ``inputs`` holding the values rounded to ``dtype``."""
    return copy.deepcopy(module).to(dtype).float(), [t.to(dtype).float() for t in inputs]


def check_close(name, dtype, out, expected, grads, expected_grads):
    """The output and input-gradient bounds above (the gradients' dtype and finiteness are checked by callers)."""
    u = UNIT_ROUNDOFF[dtype]
    assert torch.isfinite(out).all()
    assert relative_error(out, expected) <= OUTPUT_BOUND_U * u
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.isfinite(grad).all()
        assert median_error(grad, expected_grad) <= GRADIENT_MEDIAN_BOUND_U * u
        assert relative_error(grad, expected_grad) <= POSITION_SENSITIVE.get(name, GRADIENT_BOUND_U * u)


def matrix_case(name):
    """A matrix module, inputs (2 x 8 x 9 low-res) and a fixed random weighting of its output for the gradients."""
    module = build_matrix_upsampler(name)
    inputs = smooth_inputs(module, 2, 8, 9)
    grad_weight = torch.randn(2, inputs[0].shape[1], 16, 18, generator=torch.Generator().manual_seed(2))
    return module, inputs, grad_weight


@pytest.mark.parametrize('name,backend', MATRIX_CASES)
@pytest.mark.parametrize('dtype', LOW_PRECISION, ids=str)
def test_autocast_returns_input_dtype_close_to_float32(dtype, name, backend, monkeypatch):
    use_op_backend(monkeypatch, backend)
    module, inputs, grad_weight = matrix_case(name)
    expected, expected_grads = forward_and_grads(module, inputs, grad_weight)
    out, grads = forward_and_grads(module, inputs, grad_weight, autocast_dtype=dtype)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    assert all(grad.dtype == torch.float32 for grad in grads)
    check_close(name, dtype, out, expected, grads, expected_grads)


@pytest.mark.parametrize('name,backend', MATRIX_CASES)
@pytest.mark.parametrize('dtype', LOW_PRECISION, ids=str)
def test_low_precision_module_returns_its_dtype(dtype, name, backend, monkeypatch):
    """Module and inputs in bfloat16/float16 (no autocast): output and gradients in that dtype, close to float32
    arithmetic on the same rounded values."""
    use_op_backend(monkeypatch, backend)
    module, inputs, grad_weight = matrix_case(name)
    grad_weight = grad_weight.to(dtype).float()  # representable, so both sides weigh the output alike
    expected, expected_grads = forward_and_grads(*rounded_to(module, inputs, dtype), grad_weight)
    out, grads = forward_and_grads(copy.deepcopy(module).to(dtype), [t.to(dtype) for t in inputs], grad_weight)
    assert out.dtype == dtype and out.shape == expected.shape
    assert all(grad.dtype == dtype for grad in grads)
    check_close(name, dtype, out, expected, grads, expected_grads)


# ---- sub-pixel precision of the sampling grids ------------------------------------------------------------------
# Each setup predicts one constant sub-pixel offset (offset conv weights zero, bias a bfloat16-exact value) on a map
# WIDE pixels wide, and is built so that every value feeding the sampling positions is exact in bfloat16. Then a
# float32 grid samples the same positions under bfloat16 as in float32, while a bfloat16 grid could not: bfloat16
# keeps 8 significant bits, so a normalised coordinate in [0.5, 1) is a multiple of 2**-8, which is 0.5 input
# pixel of a 256-pixel map (1 output pixel of LDA-AQU's 512-pixel output grid).
WIDE = 256
SUBPIXEL_CASES = ['dysample_lp', 'dysample_pl', 'dlu_compiled', 'dlu_reference', 'lda_aqu', 'sapadeform']
#: Tolerance, as a fraction of max|x|: two bfloat16 roundings of a value of the input's size. The positions are
#: exact, so what remains is the rounding of the output (bfloat16 inputs), of DLU's kernels (cast to the feature
#: dtype) and of the einsums of the pure-PyTorch ops (SAPA-D's aggregation, the CARAFE reference behind DLU's
#: reference), which autocast runs as bfloat16 matmuls. Measured: at most 0.48 of it; the same setups with a
#: bfloat16 grid miss it by 31x to 57x.
SUBPIXEL_TOLERANCE = 2.0 ** -7


def zero_weight_constant_bias(conv: torch.nn.Conv2d, bias: float) -> None:
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(bias)


def subpixel_case(case: str, monkeypatch):
    """(module, inputs) of a sub-pixel setup, inputs uniform in [-1, 1); ``monkeypatch`` selects DLU's backend."""
    generator = torch.Generator().manual_seed(0)

    def uniform(*shape):
        return torch.rand(*shape, generator=generator) * 2 - 1
    if case.startswith('dysample'):
        module = DySample(8, style=case[-2:], groups=2)
        zero_weight_constant_bias(module.offset, 0.5)  # x 0.25 (static scope): 0.125 px, plus the base grid
        return module, (uniform(1, 8, 2, WIDE),)
    if case.startswith('dlu'):
        if case == 'dlu_compiled' and not dlu_compiled_available('cpu'):
            pytest.skip('upsample_plugin._C has no DLU kernel (extension not built)')
        monkeypatch.setenv('UPSAMPLE_PLUGIN_FORCE_REFERENCE', '1' if case == 'dlu_reference' else '0')
        module = DLUPack(4, 2, encoder_kernel=1, compressed_channels=1)
        with torch.no_grad():
            # Compressed feature = x channel 0 (exact), logits = 8 * it on the centre tap only (exact): the kernel
            # space alternates between uniform and (almost) the centre tap alone from one column to the next, so a
            # position error shows in full.
            module.channel_compressor.weight.copy_(torch.tensor([1.0, 0, 0, 0]).view(1, 4, 1, 1))
            module.channel_compressor.bias.zero_()
            taps = torch.arange(module.up_kernel ** 2)
            centre_only = torch.where(taps == taps.numel() // 2, 8.0, 0.0)
            module.kernel_space_generator.weight.copy_(centre_only.view(-1, 1, 1, 1))
            module.kernel_space_generator.bias.zero_()
        zero_weight_constant_bias(module.conv_offset, 0.25)  # low-res pixels
        x = uniform(1, 4, 2, WIDE)
        x[:, 0] = (torch.arange(WIDE) % 2).float()
        return module, (x,)
    if case == 'lda_aqu':
        module = LDA_AQU(8)
        with torch.no_grad():
            module.proj_q.weight.zero_()  # zero queries: uniform attention (1/9 each), offsets from the bias only
        zero_weight_constant_bias(module.conv_offset[-1], 2.0 ** -5)  # tanh(2**-5) * 11 = 0.344 output px
        return module, (uniform(1, 8, 2, WIDE),)
    module = SAPADeform(8, groups=2, num_point=4, embedding_dim=8)
    zero_weight_constant_bias(module.q, 0.0)  # zero queries: uniform attention over the points
    zero_weight_constant_bias(module.offset, 0.25)  # low-res pixels
    return module, (uniform(1, 8, 2, WIDE), uniform(1, 8, 4, 2 * WIDE))


def run_low_precision(module, inputs, mode):
    """The output under autocast (float32 inputs) or with module and inputs in bfloat16."""
    if mode == 'autocast':
        with torch.autocast('cpu', dtype=torch.bfloat16):
            return module(*inputs)
    return copy.deepcopy(module).to(torch.bfloat16)(*(t.to(torch.bfloat16) for t in inputs))


@pytest.mark.parametrize('mode', ['autocast', 'bfloat16'])
@pytest.mark.parametrize('case', SUBPIXEL_CASES)
def test_sampling_grid_keeps_subpixel_precision(case, mode, monkeypatch):
    module, inputs = subpixel_case(case, monkeypatch)
    expected = module(*inputs)
    got = run_low_precision(module, inputs, mode)
    tolerance = SUBPIXEL_TOLERANCE * inputs[0].abs().max().item()
    torch.testing.assert_close(got.float(), expected, rtol=0, atol=tolerance)


def grid_sample_on_bfloat16_grid(original):
    """``F.grid_sample`` whose grid is first rounded to bfloat16: what a grid built in bfloat16 would sample."""
    def grid_sample(input, grid, *args, **kwargs):
        return original(input, grid.to(torch.bfloat16).to(grid.dtype), *args, **kwargs)
    return grid_sample


@pytest.mark.parametrize('case', [case for case in SUBPIXEL_CASES if case != 'dlu_compiled'])
def test_subpixel_setup_detects_a_bfloat16_grid(case, monkeypatch):
    """The same setups with the grid rounded to bfloat16 miss the tolerance above by far (> 10x), so the test
    above would fail for a grid built in bfloat16. (The fused DLU op samples without ``grid_sample``; its
    setup is the reference's.)"""
    module, inputs = subpixel_case(case, monkeypatch)
    expected = module(*inputs)
    monkeypatch.setattr(F, 'grid_sample', grid_sample_on_bfloat16_grid(F.grid_sample))
    got = module(*inputs)
    tolerance = SUBPIXEL_TOLERANCE * inputs[0].abs().max().item()
    assert (got - expected).abs().max().item() > 10 * tolerance


def _reference_op_cases():
    from upsample_plugin.ops.carafe import carafe
    from upsample_plugin.ops.ddf import ddf
    from upsample_plugin.ops.sapa import sapa_deform_aggregation, sapa_deform_similarity, sapa_similarity
    generator = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    feats, masks = randn(1, 8, 5, 6), torch.softmax(randn(1, 2 * 9, 10, 12), 1)
    offset = randn(1, 2 * 4 * 2, 10, 12)  # groups 2 x num_point 4 x 2 coords, at the high resolution
    return {
        'carafe': lambda: carafe(feats, masks, 3, 2, 2, backend='reference'),
        'ddf_mul': lambda: ddf(feats, randn(1, 8, 3, 3), randn(1, 9, 5, 6), 3, 1, 1, 'mul', backend='reference'),
        'ddf_add': lambda: ddf(feats, randn(1, 8, 3, 3), randn(1, 9, 5, 6), 3, 1, 1, 'add', backend='reference'),
        'sapa_similarity': lambda: sapa_similarity(randn(1, 8, 10, 12), feats, 3, 2),
        'sapa_deform_similarity': lambda: sapa_deform_similarity(randn(1, 8, 10, 12), feats, offset, 4, 2, 2),
        'sapa_deform_aggregation': lambda: sapa_deform_aggregation(randn(1, 2, 4, 10, 12), feats, offset,
                                                                        4, 2, 2),
    }


@pytest.mark.parametrize('op', list(_reference_op_cases()))
def test_reference_ops_contract_in_float32_under_autocast(op):
    """The references keep float32 contractions under autocast (einsum would otherwise run as a bf16 matmul):
    the autocast result equals the float32 one to float32 rounding, far below bfloat16's 2^-9."""
    expected = _reference_op_cases()[op]()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = _reference_op_cases()[op]()
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
