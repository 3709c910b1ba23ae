"""Fake and autograd registration of the compiled DLU ops (``upsample_plugin::dlu_forward`` / ``dlu_backward``,
sources ``ops/csrc/{cpu,cuda}/dlu_*``, schemas in ``ops/csrc/cpu/dlu_schema.cpp``).

* ``register_fake`` for both ops: shapes/dtypes for FakeTensor, meta tensors and ``torch.compile``.
* ``register_autograd`` on ``dlu_forward``: its backward is the compiled ``dlu_backward`` (gradients for
  features, kernel_space and offsets; deterministic).
* Double backward: ``dlu_backward`` is registered with autograd too, routed to the pure-PyTorch reference: the
  vector-Jacobian product of the reference's first-order gradients (``grid_sample`` + CARAFE autograd) at the
  same inputs. Second-order gradients are therefore exact but run at reference speed and memory; third and
  higher orders are not supported through this path (the result of the reference recomputation is detached).

Imported by :mod:`upsample_plugin.ops.dlu`; a no-op when the extension or these schemas are missing.
"""
from __future__ import annotations

import torch

from . import _library

_OPS = ('dlu_forward', 'dlu_backward')


def _registered() -> bool:
    if _library._C is None:
        return False
    try:
        return all(torch._C._dispatch_has_kernel_for_dispatch_key(f'upsample_plugin::{op}', 'CPU')
                   or torch._C._dispatch_has_kernel_for_dispatch_key(f'upsample_plugin::{op}', 'CUDA')
                   for op in _OPS)
    except RuntimeError:  # schema not defined (an extension built before the DLU kernels)
        return False


_KERNEL_DEVICES = frozenset(
    device for device, key in (('cpu', 'CPU'), ('cuda', 'CUDA'))
    if _registered() and all(torch._C._dispatch_has_kernel_for_dispatch_key(f'upsample_plugin::{op}', key)
                             for op in _OPS))


def dlu_compiled_available(device: torch.device | str | None = None) -> bool:
    """True when the compiled DLU ops are loaded (and, given a ``device``, have kernels for its type)."""
    if device is None:
        return bool(_KERNEL_DEVICES)
    return torch.device(device).type in _KERNEL_DEVICES


def _check_dlu_fake(features, kernel_space, offsets, kernel_size, group_size, scale_factor) -> None:
    torch._check(features.dim() == 4, lambda: f'features must be 4-D (N, C, H, W), got {tuple(features.shape)}')
    n, c, h, w = features.shape
    expected = (n, kernel_size * kernel_size * group_size, h, w)
    torch._check(kernel_space.dim() == 4 and tuple(kernel_space.shape) == expected,
                 lambda: f'kernel_space must have shape (N, kernel_size**2 * group_size, H, W) = {expected}, '
                         f'got {tuple(kernel_space.shape)}')
    expected_off = (n, group_size * 2 * scale_factor * scale_factor, h, w)
    torch._check(offsets.dim() == 4 and tuple(offsets.shape) == expected_off,
                 lambda: f'offsets must have shape (N, group_size * 2 * scale_factor**2, H, W) = {expected_off}, '
                         f'got {tuple(offsets.shape)}')
    for name, t in (('kernel_space', kernel_space), ('offsets', offsets)):
        torch._check(t.device == features.device,
                     lambda: f'{name} is on {t.device} but features is on {features.device}; put both on one device')
        torch._check(t.dtype == features.dtype, lambda: f'{name} has dtype {t.dtype} but features has {features.dtype}')


if _registered():
    @torch.library.register_fake('upsample_plugin::dlu_forward')
    def _dlu_forward_fake(features, kernel_space, offsets, kernel_size, group_size, scale_factor):
        _check_dlu_fake(features, kernel_space, offsets, kernel_size, group_size, scale_factor)
        n, c, h, w = features.shape
        return features.new_empty((n, c, h * scale_factor, w * scale_factor))

    @torch.library.register_fake('upsample_plugin::dlu_backward')
    def _dlu_backward_fake(grad_output, features, kernel_space, offsets, kernel_size, group_size, scale_factor):
        _check_dlu_fake(features, kernel_space, offsets, kernel_size, group_size, scale_factor)
        return (features.new_empty(features.shape), kernel_space.new_empty(kernel_space.shape),
                offsets.new_empty(offsets.shape))

    def _dlu_setup_context(ctx, inputs, output):
        features, kernel_space, offsets, kernel_size, group_size, scale_factor = inputs
        ctx.save_for_backward(features, kernel_space, offsets)
        ctx.args = (kernel_size, group_size, scale_factor)

    def _dlu_backward(ctx, grad_output):
        features, kernel_space, offsets = ctx.saved_tensors
        grads = torch.ops.upsample_plugin.dlu_backward(grad_output, features, kernel_space, offsets, *ctx.args)
        return (*grads, None, None, None)

    torch.library.register_autograd('upsample_plugin::dlu_forward', _dlu_backward, setup_context=_dlu_setup_context)

    def _dlu_backward_setup_context(ctx, inputs, output):
        grad_output, features, kernel_space, offsets, kernel_size, group_size, scale_factor = inputs
        ctx.save_for_backward(grad_output, features, kernel_space, offsets)
        ctx.args = (kernel_size, group_size, scale_factor)

    def _dlu_backward_backward(ctx, *grad_grads):
        """Backward of (dF, dK, dO) = dlu_backward(dy, F, K, O): the reference's vjp of its own first-order
        gradients (autograd through grid_sample and the CARAFE reference), recomputed at the saved inputs."""
        from .dlu import dlu_reassemble_reference
        saved = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_() for t in saved]
            grad_output, features, kernel_space, offsets = leaves
            out = dlu_reassemble_reference(features, kernel_space, offsets, *ctx.args)
            grads = torch.autograd.grad(out, (features, kernel_space, offsets), grad_output, create_graph=True)
            pairs = [(g, gg) for g, gg in zip(grads, grad_grads) if gg is not None]
            if not pairs:
                return (None,) * 7
            result = torch.autograd.grad([g for g, _ in pairs], leaves, [gg for _, gg in pairs], allow_unused=True)
        result = [torch.zeros_like(t) if r is None else r for r, t in zip(result, saved)]
        return (*result, None, None, None)

    torch.library.register_autograd('upsample_plugin::dlu_backward', _dlu_backward_backward,
                                    setup_context=_dlu_backward_setup_context)
