"""The compiled ops (``upsample_plugin._C``, sources in ``ops/csrc``): loading, fake and autograd registration.

The extension is optional. When it is present, importing it registers ``torch.ops.upsample_plugin.*`` with
CPU (and, in a CUDA build, CUDA) kernels; this module adds what the C++ side leaves to Python:

* ``torch.library.register_fake``: shape/dtype propagation for FakeTensor, meta tensors and ``torch.compile``.
* ``torch.library.register_autograd`` on each forward op: its backward calls the compiled backward op.
* Double backward: each backward op is registered with autograd too. CARAFE is bilinear in (features, masks),
  so the backward of ``carafe_backward`` is again made of ``carafe_forward`` and ``carafe_backward`` calls (see
  :func:`_carafe_backward_backward`); gradients of any order stay on the compiled kernels.

When the extension is missing (no compiler at install time, a failed build, a torch it was not built against)
the entry points fall back to the pure-PyTorch references and :func:`warn_unavailable` says so once.
"""
from __future__ import annotations

import importlib
import warnings

import torch

_LOAD_ERROR: Exception | None = None
if not hasattr(torch.library, 'register_autograd'):  # torch < 2.4: no Python autograd/fake registration
    _C = None
    _LOAD_ERROR = ImportError(f'the compiled ops need torch >= 2.4, this is {torch.__version__}')
else:
    try:
        _C = importlib.import_module('upsample_plugin._C')  # loading the library registers the ops
    except (ImportError, OSError) as err:  # not built, or built against another torch (undefined symbols)
        _C = None
        _LOAD_ERROR = err

_OPS = ('carafe_forward', 'carafe_backward')


def _kernel_devices() -> frozenset:
    """Device types ('cpu', 'cuda') with a kernel for every compiled op; empty when the extension is missing."""
    if _C is None:
        return frozenset()
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return frozenset(device for device, key in (('cpu', 'CPU'), ('cuda', 'CUDA'))
                     if all(has(f'upsample_plugin::{op}', key) for op in _OPS))


_KERNEL_DEVICES = _kernel_devices()


def compiled_available(device: torch.device | str | None = None) -> bool:
    """True when the compiled ops are loaded (and, given a ``device``, have kernels for its type)."""
    if device is None:
        return _C is not None
    return torch.device(device).type in _KERNEL_DEVICES


def load_error() -> Exception | None:
    """Why ``upsample_plugin._C`` could not be imported (None when it was)."""
    return _LOAD_ERROR


CPU_ISAS = ('base', 'avx2', 'avx512')


def cpu_isa() -> str | None:
    """The instruction set the compiled CPU kernels' hot loops run with: 'base' (baseline x86-64, or any other
    CPU), 'avx2' or 'avx512' (ops/csrc/include/cpu_isa.h); None without the extension. By default the best one
    the CPU supports, or ``UPSAMPLE_PLUGIN_CPU_ISA`` when set. Every choice gives bitwise identical results."""
    if _C is None:
        return None
    return torch.ops.upsample_plugin._cpu_isa('')


def supported_cpu_isas() -> tuple:
    """The instruction-set builds this CPU can run (:data:`CPU_ISAS` order; empty without the extension)."""
    if _C is None:
        return ()
    previous, supported = cpu_isa(), []
    for name in CPU_ISAS:
        try:
            torch.ops.upsample_plugin._cpu_isa(name)
            supported.append(name)
        except RuntimeError:
            pass
    torch.ops.upsample_plugin._cpu_isa(previous)
    return tuple(supported)


def set_cpu_isa(name: str) -> str:
    """Run the compiled CPU kernels with instruction set ``name`` (one of :data:`CPU_ISAS`, at most what the CPU
    supports: a RuntimeError otherwise); returns the previous one. For tests and benchmarks."""
    if _C is None:
        raise RuntimeError(f'upsample_plugin._C is not loaded ({_LOAD_ERROR}); there are no CPU kernels to set')
    if name not in CPU_ISAS:
        raise ValueError(f'name must be one of {CPU_ISAS}, got {name!r}')
    return torch.ops.upsample_plugin._cpu_isa(name)


class CompiledOpsUnavailableWarning(UserWarning):
    """The compiled ops are not available; the slower pure-PyTorch references run instead."""


_warned = False


def warn_unavailable(stacklevel: int = 4) -> None:
    """Warn once per process that the compiled extension is missing (called by the entry points on fallback;
    the default ``stacklevel`` points at the caller of ``entry point -> _auto_backend -> here``)."""
    global _warned
    if _warned or _C is not None or getattr(torch.compiler, 'is_compiling', lambda: False)():
        return
    _warned = True
    warnings.warn(
        f'upsample_plugin: compiled ops unavailable ({type(_LOAD_ERROR).__name__}: {_LOAD_ERROR}); using the '
        f'pure-PyTorch reference ops (slower, more memory). Build them with `pip install --no-build-isolation '
        f'-e .` in the checkout (needs a C++ compiler; see setup.py).', CompiledOpsUnavailableWarning,
        stacklevel=stacklevel)


# ---- CARAFE -----------------------------------------------------------------------------------------------

def _check_carafe_fake(features, masks, kernel_size, group_size, scale_factor) -> None:
    torch._check(features.dim() == 4, lambda: f'features must be 4-D (N, C, H, W), got {tuple(features.shape)}')
    n, c, h, w = features.shape
    expected = (n, kernel_size * kernel_size * group_size, h * scale_factor, w * scale_factor)
    torch._check(masks.dim() == 4 and tuple(masks.shape) == expected,
                 lambda: f'masks must have shape (N, kernel_size**2 * group_size, H * scale_factor, '
                         f'W * scale_factor) = {expected}, got {tuple(masks.shape)}')
    torch._check(masks.device == features.device,
                 lambda: f'masks is on {masks.device} but features is on {features.device}; put both on one device')
    torch._check(masks.dtype == features.dtype,
                 lambda: f'masks has dtype {masks.dtype} but features has {features.dtype}')


if _C is not None:
    @torch.library.register_fake('upsample_plugin::carafe_forward')
    def _carafe_forward_fake(features, masks, kernel_size, group_size, scale_factor):
        _check_carafe_fake(features, masks, kernel_size, group_size, scale_factor)
        n, c, h, w = features.shape
        return features.new_empty((n, c, h * scale_factor, w * scale_factor))

    @torch.library.register_fake('upsample_plugin::carafe_backward')
    def _carafe_backward_fake(grad_output, features, masks, kernel_size, group_size, scale_factor):
        _check_carafe_fake(features, masks, kernel_size, group_size, scale_factor)
        return features.new_empty(features.shape), masks.new_empty(masks.shape)

    def _carafe_setup_context(ctx, inputs, output):
        features, masks, kernel_size, group_size, scale_factor = inputs
        ctx.save_for_backward(features, masks)
        ctx.args = (kernel_size, group_size, scale_factor)

    def _carafe_backward(ctx, grad_output):
        features, masks = ctx.saved_tensors
        grad_features, grad_masks = torch.ops.upsample_plugin.carafe_backward(grad_output, features, masks,
                                                                              *ctx.args)
        return grad_features, grad_masks, None, None, None

    torch.library.register_autograd('upsample_plugin::carafe_forward', _carafe_backward,
                                    setup_context=_carafe_setup_context)

    def _carafe_backward_setup_context(ctx, inputs, output):
        grad_output, features, masks, kernel_size, group_size, scale_factor = inputs
        ctx.save_for_backward(grad_output, features, masks)
        ctx.args = (kernel_size, group_size, scale_factor)

    def _carafe_backward_backward(ctx, grad_grad_features, grad_grad_masks):
        """Backward of (dF, dM) = carafe_backward(dy, F, M). With y = carafe(F, M) bilinear:

        * d/d dy = carafe(ggF, M) + carafe(F, ggM)
        * d/dF = carafe_backward(dy, F, ggM)[0]   (dM is linear in F; dF does not depend on F)
        * d/dM = carafe_backward(dy, ggF, M)[1]   (dF is linear in M; dM does not depend on M)
        """
        grad_output, features, masks = ctx.saved_tensors
        ops = torch.ops.upsample_plugin
        need_dy, need_f, need_m = ctx.needs_input_grad[:3]
        gg_f = grad_grad_features if grad_grad_features is not None else torch.zeros_like(features)
        gg_m = grad_grad_masks if grad_grad_masks is not None else torch.zeros_like(masks)
        d_dy = d_f = d_m = None
        if need_dy:
            d_dy = ops.carafe_forward(gg_f, masks, *ctx.args) + ops.carafe_forward(features, gg_m, *ctx.args)
        if need_f:
            d_f = ops.carafe_backward(grad_output, features, gg_m, *ctx.args)[0]
        if need_m:
            d_m = ops.carafe_backward(grad_output, gg_f, masks, *ctx.args)[1]
        return d_dy, d_f, d_m, None, None, None

    torch.library.register_autograd('upsample_plugin::carafe_backward', _carafe_backward_backward,
                                    setup_context=_carafe_backward_setup_context)
