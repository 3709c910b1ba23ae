"""Op cases shared by the CUDA tests (test_cuda_emulation.py on CPU, test_devices.py on a GPU): random inputs of
CARAFE, DLU and DDF, their outputs and gradients through the ``torch.ops`` schemas of a namespace (the compiled
ops, or an emulation build), the pure-PyTorch references through autograd, and comparisons.

A case is ``(op, tensors, args)``: ``torch.ops.<ns>.<op>_forward(*tensors, *args)`` and
``<op>_backward(grad_output, *tensors, *args)``."""
import torch

from upsample_plugin.ops import carafe_reference, ddf_reference, dlu_reassemble_reference


def generator(seed):
    return torch.Generator().manual_seed(seed)


def carafe_case(n, c, h, w, k, g, s, dtype=torch.float64, seed=0):
    gen = generator(seed)
    features = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    masks = torch.randn(n, k * k * g, h * s, w * s, generator=gen, dtype=torch.float64)
    return 'carafe', [features.to(dtype), masks.to(dtype)], (k, g, s)


def dlu_case(n, c, h, w, k, g, s, offset_scale=1.5, dtype=torch.float64, seed=0):
    gen = generator(seed)
    features = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    space = torch.randn(n, g, k * k, h, w, generator=gen, dtype=torch.float64).softmax(2).view(n, g * k * k, h, w)
    offsets = torch.randn(n, g * 2 * s * s, h, w, generator=gen, dtype=torch.float64) * offset_scale
    return 'dlu', [features.to(dtype), space.to(dtype), offsets.to(dtype)], (k, g, s)


def ddf_case(n, c, h, w, k, d=1, s=1, combine='mul', dtype=torch.float64, seed=0):
    gen = generator(seed)
    features = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    channel = torch.randn(n, c, k, k, generator=gen, dtype=torch.float64)
    spatial = torch.randn(n, k * k, h // s, w // s, generator=gen, dtype=torch.float64)
    return 'ddf', [features.to(dtype), channel.to(dtype), spatial.to(dtype)], (k, d, s, combine)


REFERENCES = {'carafe': carafe_reference, 'dlu': dlu_reassemble_reference, 'ddf': ddf_reference}
NAMES = {'carafe': ('output', 'grad_features', 'grad_masks'),
         'dlu': ('output', 'grad_features', 'grad_kernel_space', 'grad_offsets'),
         'ddf': ('output', 'grad_features', 'grad_channel_filter', 'grad_spatial_filter')}
# (rtol, atol). float32: DDF's channel-filter gradient sums up to ~1,500 products per value in another order than
# the reference; float64 cases keep the comparisons tight.
TOLERANCES = {torch.float64: (0, 1e-10), torch.float32: (1e-4, 1e-4), torch.float16: (1e-2, 1e-2),
              torch.bfloat16: (4e-2, 4e-2)}  # (rtol, atol)


def grad_output_for(out):
    return torch.randn(out.shape, generator=generator(1), dtype=torch.float64).to(out.device, out.dtype)


def run_ops(ns, case, grad_output=None):
    """(output, *input gradients) of torch.ops.<ns>.<op>_forward / _backward."""
    op, tensors, args = case
    out = getattr(ns, f'{op}_forward')(*tensors, *args)
    grad = grad_output_for(out) if grad_output is None else grad_output
    return (out, *getattr(ns, f'{op}_backward')(grad, *tensors, *args))


def run_reference(case):
    """(output, *input gradients) of the op's pure-PyTorch reference, in the inputs' dtype, through autograd."""
    op, tensors, args = case
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = REFERENCES[op](*leaves, *args)
    if out.numel() == 0:
        return (out.detach(), *[torch.zeros_like(t) for t in tensors])
    grads = torch.autograd.grad(out, leaves, grad_output_for(out), allow_unused=True)
    return (out.detach(), *[torch.zeros_like(t) if g is None else g for g, t in zip(grads, tensors)])


def assert_close_all(op, got, expected, dtype, what, tolerances=None):
    rtol, atol = (tolerances or TOLERANCES)[dtype]
    for name, a, b in zip(NAMES[op], got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape, f'{what} {name}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}'
        assert not a.isnan().any(), f'{what} {name}: NaN left in the output (an element no thread wrote)'
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda msg: f'{what} {name}: {msg}')


def assert_bitwise(op, got, expected, what):
    for name, a, b in zip(NAMES[op], got, expected):
        assert torch.equal(a, b), f'{what} {name}: max |diff| {(a.double() - b.double()).abs().max().item()}'


def on_device(case, device):
    op, tensors, args = case
    return op, [t.to(device) for t in tensors], args
