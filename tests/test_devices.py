"""Every upsampler on a CUDA device against the same module on the CPU (outputs, input and parameter gradients,
float16 autocast), and the compiled ops' CUDA kernels against the references (dtypes, kernel sizes, determinism,
streams, DLU at zero offsets, opcheck). Skipped on machines without a CUDA device: this project's CI has none; there
the CUDA kernels are compile-checked by tools/check_cuda_compile.sh and run on the CPU by
test_cuda_emulation.py. tools/gpu_check.sh runs this file on a GPU machine."""
import pytest
import torch

from op_cases import assert_bitwise, assert_close_all, carafe_case, ddf_case, dlu_case, on_device, run_ops, run_reference
from upsample_test_utils import UPSAMPLER_MATRIX, build_matrix_upsampler, smooth_inputs

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason='no CUDA device on this machine (the CUDA kernels run on the CPU in test_cuda_emulation.py)')


def forward_backward(module, inputs):
    inputs = [t.clone().requires_grad_() for t in inputs]
    out = module(*inputs)
    weight = torch.linspace(-1, 1, out.numel(), device=out.device, dtype=out.dtype).view_as(out)
    (out * weight).sum().backward()
    return out.detach(), [t.grad for t in inputs], [p.grad for p in module.parameters()]


@requires_cuda
@pytest.mark.parametrize('name', list(UPSAMPLER_MATRIX))
def test_cuda_matches_cpu(name):
    module = build_matrix_upsampler(name)
    inputs = smooth_inputs(module, n=2, height=9, width=11)
    cpu_out, cpu_input_grads, cpu_param_grads = forward_backward(module, inputs)
    module.zero_grad()
    cuda_out, cuda_input_grads, cuda_param_grads = forward_backward(module.cuda(), [t.cuda() for t in inputs])
    torch.testing.assert_close(cuda_out.cpu(), cpu_out, rtol=1e-4, atol=1e-4)
    for cuda_grad, cpu_grad in zip(cuda_input_grads + cuda_param_grads, cpu_input_grads + cpu_param_grads):
        torch.testing.assert_close(cuda_grad.cpu(), cpu_grad, rtol=1e-3, atol=1e-3)


@requires_cuda
@pytest.mark.parametrize('name', list(UPSAMPLER_MATRIX))
def test_cuda_float16_autocast(name):
    module = build_matrix_upsampler(name).cuda()
    inputs = [t.cuda() for t in smooth_inputs(module, n=2, height=9, width=11)]
    reference = module(*inputs)
    with torch.autocast('cuda', dtype=torch.float16):
        out = module(*inputs)
    assert out.dtype == inputs[0].dtype
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, reference, rtol=2e-2, atol=2e-2)


# ---- the compiled CUDA kernels of the ops (the same cases run on CPU in test_cuda_emulation.py) ----------------

OP_CASES = {
    'carafe-k5': carafe_case(2, 64, 9, 11, 5, 1, 2), 'carafe-g4-s3': carafe_case(2, 16, 5, 7, 3, 4, 3),
    'carafe-k1': carafe_case(1, 8, 6, 5, 1, 2, 4), 'carafe-k9': carafe_case(1, 8, 6, 5, 9, 2, 2),
    'dlu-k5': dlu_case(2, 64, 9, 11, 5, 1, 2), 'dlu-g2-s4': dlu_case(1, 8, 5, 6, 3, 2, 4),
    'dlu-zero-offsets': dlu_case(1, 8, 9, 10, 5, 1, 2, offset_scale=0.0), 'dlu-k1': dlu_case(1, 4, 4, 1, 1, 1, 3),
    'ddf-k3': ddf_case(2, 64, 15, 140, 3), 'ddf-add-s2-d2': ddf_case(1, 8, 9, 10, 5, 2, 2, 'add'),
    'ddf-k1': ddf_case(1, 4, 5, 5, 1),
}


def _cuda_kernels(op):
    from upsample_plugin.ops import _library
    if not _library.compiled_available('cuda'):
        pytest.skip('upsample_plugin._C was built without CUDA kernels (FORCE_CUDA=1 pip install ... builds them)')
    return torch.ops.upsample_plugin


@requires_cuda
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('name', list(OP_CASES))
def test_cuda_ops_match_reference(name, dtype):
    op, tensors, args = OP_CASES[name]
    case = (op, [t.to(dtype) for t in tensors], args)
    got = run_ops(_cuda_kernels(op), on_device(case, 'cuda'))
    expected = run_reference(case)
    assert_close_all(op, [t.cpu() for t in got], expected, dtype, f'{name} cuda vs reference:')


@requires_cuda
@pytest.mark.parametrize('name', list(OP_CASES))
def test_cuda_ops_deterministic_and_on_the_current_stream(name):
    """Bitwise identical results on a repeated call and on a non-default stream (the kernels launch on the
    current stream; a launch on another one would race with the stream's producers)."""
    op = OP_CASES[name][0]
    case = on_device(OP_CASES[name], 'cuda')
    case = (op, [t.float() for t in case[1]], case[2])
    first = run_ops(_cuda_kernels(op), case)
    assert_bitwise(op, run_ops(_cuda_kernels(op), case), first, f'{name} repeated')
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        on_stream = run_ops(_cuda_kernels(op), case)
    torch.cuda.current_stream().wait_stream(stream)
    assert_bitwise(op, on_stream, first, f'{name} on a side stream')


@requires_cuda
def test_cuda_dlu_offset_gradient_at_zero_offsets():
    """issue 15: nvcc's FMA contraction moved integer sample positions across the bilinear kink."""
    case = dlu_case(1, 4, 20, 26, 5, 1, 2, offset_scale=0.0, dtype=torch.float32)
    got = run_ops(_cuda_kernels('dlu'), on_device(case, 'cuda'))
    diff = (got[3].cpu() - run_reference(case)[3]).abs().max().item()
    assert diff < 1e-4, f'grad_offsets at zero offsets differs from the reference by {diff}'


@requires_cuda
@pytest.mark.parametrize('name', ['carafe-k5', 'dlu-g2-s4', 'ddf-add-s2-d2'])
def test_cuda_opcheck(name):
    op, tensors, args = on_device(OP_CASES[name], 'cuda')
    _cuda_kernels(op)
    torch.library.opcheck(getattr(torch.ops.upsample_plugin, f'{op}_forward').default,
                          (*[t.detach().clone().requires_grad_() for t in tensors], *args))
