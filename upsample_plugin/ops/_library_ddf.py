"""DDF's compiled ops (``torch.ops.upsample_plugin.ddf_forward`` / ``ddf_backward``, sources in
``ops/csrc/cpu/ddf_*.cpp`` and ``ops/csrc/cuda/ddf_cuda.cu``): availability, fake and autograd registration.

Kept apart from ``_library.py`` (which loads ``upsample_plugin._C`` and registers CARAFE); this module reuses its
loaded extension and adds, when the extension has the DDF schemas:

* ``torch.library.register_fake`` for both ops (FakeTensor, meta tensors, ``torch.compile``);
* ``register_autograd`` on ``ddf_forward``: its backward is ``ddf_backward``;
* ``register_autograd`` on ``ddf_backward`` (double backward, gradients of any order on the compiled kernels).
  DDF is multilinear: 'mul' is trilinear in (features, channel_filter, spatial_filter), 'add' is bilinear in
  (features, channel_filter + spatial_filter). So the backward of ``ddf_backward`` is again made of
  ``ddf_forward`` and ``ddf_backward`` calls (:func:`_ddf_backward_backward`).
"""
from __future__ import annotations

import torch

from ._library import _C

OPS = ('ddf_forward', 'ddf_backward')


def _kernel_devices() -> frozenset:
    """Device types ('cpu', 'cuda') with a kernel for both DDF ops; empty without the extension (or an extension
    built before DDF's kernels)."""
    if _C is None:
        return frozenset()
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    try:
        return frozenset(device for device, key in (('cpu', 'CPU'), ('cuda', 'CUDA'))
                         if all(has(f'upsample_plugin::{op}', key) for op in OPS))
    except RuntimeError:  # the schema is not registered at all
        return frozenset()


_KERNEL_DEVICES = _kernel_devices()


def ddf_compiled_available(device: torch.device | str | None = None) -> bool:
    """True when the compiled DDF ops are registered (and, given a ``device``, have kernels for its type)."""
    if device is None:
        return bool(_KERNEL_DEVICES)
    return torch.device(device).type in _KERNEL_DEVICES


def _check_ddf_fake(features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine) -> None:
    torch._check(features.dim() == 4, lambda: f'features must be 4-D (N, C, H, W), got {tuple(features.shape)}')
    n, c, h, w = features.shape
    k = kernel_size
    torch._check(k >= 1 and k % 2 == 1, lambda: f'kernel_size must be odd and >= 1, got {k}')
    torch._check(dilation >= 1, lambda: f'dilation must be an integer >= 1, got {dilation}')
    torch._check(stride >= 1, lambda: f'stride must be an integer >= 1, got {stride}')
    torch._check(combine in ('mul', 'add'), lambda: f"combine must be 'mul' or 'add', got {combine!r}")
    expected = (n, c, k, k)
    torch._check(channel_filter.dim() == 4 and tuple(channel_filter.shape) == expected,
                 lambda: f'channel_filter must have shape (N, C, kernel_size, kernel_size) = {expected}, '
                         f'got {tuple(channel_filter.shape)}')
    expected_s = (n, k * k, h // stride, w // stride)
    torch._check(spatial_filter.dim() == 4 and tuple(spatial_filter.shape) == expected_s,
                 lambda: f'spatial_filter must have shape (N, kernel_size**2, H // stride, W // stride) = '
                         f'{expected_s}, got {tuple(spatial_filter.shape)}')
    for name, t in (('channel_filter', channel_filter), ('spatial_filter', spatial_filter)):
        torch._check(t.device == features.device,
                     lambda: f'{name} is on {t.device} but features is on {features.device}')
        torch._check(t.dtype == features.dtype, lambda: f'{name} has dtype {t.dtype} but features has '
                                                        f'{features.dtype}')


if _C is not None and _KERNEL_DEVICES:
    @torch.library.register_fake('upsample_plugin::ddf_forward')
    def _ddf_forward_fake(features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine):
        _check_ddf_fake(features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine)
        n, c, h, w = features.shape
        return features.new_empty((n, c, h // stride, w // stride))

    @torch.library.register_fake('upsample_plugin::ddf_backward')
    def _ddf_backward_fake(grad_output, features, channel_filter, spatial_filter, kernel_size, dilation, stride,
                           combine):
        _check_ddf_fake(features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine)
        return (features.new_empty(features.shape), channel_filter.new_empty(channel_filter.shape),
                spatial_filter.new_empty(spatial_filter.shape))

    def _ddf_setup_context(ctx, inputs, output):
        features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine = inputs
        ctx.save_for_backward(features, channel_filter, spatial_filter)
        ctx.args = (kernel_size, dilation, stride, combine)

    def _ddf_backward(ctx, grad_output):
        features, channel_filter, spatial_filter = ctx.saved_tensors
        grads = torch.ops.upsample_plugin.ddf_backward(grad_output, features, channel_filter, spatial_filter,
                                                       *ctx.args)
        return (*grads, None, None, None, None)

    torch.library.register_autograd('upsample_plugin::ddf_forward', _ddf_backward, setup_context=_ddf_setup_context)

    def _ddf_backward_setup_context(ctx, inputs, output):
        grad_output, features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine = inputs
        ctx.save_for_backward(grad_output, features, channel_filter, spatial_filter)
        ctx.args = (kernel_size, dilation, stride, combine)

    def _ddf_backward_backward(ctx, gg_f, gg_c, gg_s):
        """Backward of (dF, dC, dS) = ddf_backward(dy, F, C, S), with y = ddf(F, C, S) multilinear.

        The loss of the second pass is L = <ggF, dF> + <ggC, dC> + <ggS, dS> = <dy, J(ggF, ggC, ggS)>, where J is
        the directional derivative of y: for 'mul' J = ddf(ggF, C, S) + ddf(F, ggC, S) + ddf(F, C, ggS), for 'add'
        J = ddf(ggF, C, S) + ddf(F, ggC, ggS) (F times (ggS + ggC)). Hence:

        * d/d dy = J;
        * 'mul': dL/dF = bwd(dy, F, ggC, S)[0] + bwd(dy, F, C, ggS)[0], dL/dC = bwd(dy, ggF, C, S)[1] +
          bwd(dy, F, C, ggS)[1], dL/dS = bwd(dy, ggF, C, S)[2] + bwd(dy, F, ggC, S)[2];
        * 'add': dL/dF = bwd(dy, F, ggC, ggS)[0], dL/dC = bwd(dy, ggF, C, S)[1], dL/dS = bwd(dy, ggF, C, S)[2].

        Terms whose incoming gradient is None (zero) are skipped.
        """
        dy, f, c, s = ctx.saved_tensors
        args = ctx.args
        mul = args[3] == 'mul'
        ops = torch.ops.upsample_plugin
        need_dy, need_f, need_c, need_s = ctx.needs_input_grad[:4]
        d_dy = d_f = d_c = d_s = None

        def add(total, term):
            return term if total is None else total + term

        if need_dy:
            if gg_f is not None:
                d_dy = add(d_dy, ops.ddf_forward(gg_f, c, s, *args))
            if mul:
                if gg_c is not None:
                    d_dy = add(d_dy, ops.ddf_forward(f, gg_c, s, *args))
                if gg_s is not None:
                    d_dy = add(d_dy, ops.ddf_forward(f, c, gg_s, *args))
            elif gg_c is not None or gg_s is not None:
                d_dy = add(d_dy, ops.ddf_forward(f, gg_c if gg_c is not None else torch.zeros_like(c),
                                                 gg_s if gg_s is not None else torch.zeros_like(s), *args))
            if d_dy is None:
                d_dy = torch.zeros_like(dy)
        if need_c or need_s:  # bwd(dy, ggF, C, S) serves both filters
            if gg_f is not None:
                _, from_f_c, from_f_s = ops.ddf_backward(dy, gg_f, c, s, *args)
                if need_c:
                    d_c = from_f_c
                if need_s:
                    d_s = from_f_s
        if mul:
            if gg_c is not None and (need_f or need_s):
                from_c_f, _, from_c_s = ops.ddf_backward(dy, f, gg_c, s, *args)
                if need_f:
                    d_f = add(d_f, from_c_f)
                if need_s:
                    d_s = add(d_s, from_c_s)
            if gg_s is not None and (need_f or need_c):
                from_s_f, from_s_c, _ = ops.ddf_backward(dy, f, c, gg_s, *args)
                if need_f:
                    d_f = add(d_f, from_s_f)
                if need_c:
                    d_c = add(d_c, from_s_c)
        elif need_f and (gg_c is not None or gg_s is not None):
            d_f = ops.ddf_backward(dy, f, gg_c if gg_c is not None else torch.zeros_like(c),
                                   gg_s if gg_s is not None else torch.zeros_like(s), *args)[0]
        # Gradients that were asked for but have no contribution are zero.
        d_f = d_f if d_f is not None or not need_f else torch.zeros_like(f)
        d_c = d_c if d_c is not None or not need_c else torch.zeros_like(c)
        d_s = d_s if d_s is not None or not need_s else torch.zeros_like(s)
        return d_dy, d_f, d_c, d_s, None, None, None, None

    torch.library.register_autograd('upsample_plugin::ddf_backward', _ddf_backward_backward,
                                    setup_context=_ddf_backward_setup_context)
