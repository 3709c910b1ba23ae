"""Every upsampler on a CUDA device against the same module on the CPU: outputs, input and parameter gradients,
and float16 autocast. Skipped on machines without a CUDA device (this project's CI has none; the compiled CUDA
kernels are compile-checked there by tools/check_cuda_compile.sh and their per-element arithmetic, shared with
the CPU kernels, is tested by the ``test_cuda_element_functions_match_reference`` tests)."""
import pytest
import torch

from upsample_test_utils import UPSAMPLER_MATRIX, build_matrix_upsampler, smooth_inputs

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device on this machine')


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
