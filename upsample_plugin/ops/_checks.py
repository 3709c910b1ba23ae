"""Argument checks shared by the op entry points: one clear ``ValueError`` naming the argument and the
expected shape, raised before any kernel runs (mmcv's CARAFE asserts, or crashes in CUDA, instead)."""
from __future__ import annotations

import contextlib
import os

import torch


def force_reference() -> bool:
    """True when ``UPSAMPLE_PLUGIN_FORCE_REFERENCE`` asks for the pure-PyTorch ops everywhere."""
    return os.environ.get('UPSAMPLE_PLUGIN_FORCE_REFERENCE', '0') not in ('', '0')


# While True (inside :func:`onnx_custom_ops`), an ONNX export keeps the compiled ops in the traced graph, for
# ``upsample_plugin.export.onnx_custom_translation_table()`` to turn them into ``upsample_plugin::*`` nodes.
_onnx_keep_compiled_ops = False


@contextlib.contextmanager
def onnx_custom_ops():
    """Within this context an ONNX export traces the compiled ops instead of their references (see
    :func:`auto_uses_reference`); the exporter then needs the plugin's custom translation table."""
    global _onnx_keep_compiled_ops
    previous, _onnx_keep_compiled_ops = _onnx_keep_compiled_ops, True
    try:
        yield
    finally:
        _onnx_keep_compiled_ops = previous


# Dynamo folds ``torch.onnx.is_in_onnx_export()`` to False while tracing (torch/_dynamo/variables/torch.py), so
# under the exporter's strict ``torch.export`` fallback the check must run eagerly: its result is a trace constant.
@torch.compiler.assume_constant_result
def auto_uses_reference() -> bool:
    """The one place where ``backend='auto'`` of every op decides for the pure-PyTorch reference before looking
    at kernels: when ``UPSAMPLE_PLUGIN_FORCE_REFERENCE`` is set, or while ``torch.onnx.export`` traces the model
    (``torch.onnx.is_in_onnx_export()`` is True under both the dynamo and the TorchScript exporter) outside
    :func:`onnx_custom_ops`, because the references are made of standard ONNX ops and the compiled ops have no
    standard translation. Plain ``torch.export`` (``torch.compiler.is_exporting()`` alone, e.g. for
    AOTInductor) keeps the compiled ops: they have fake kernels and run there."""
    return force_reference() or (torch.onnx.is_in_onnx_export() and not _onnx_keep_compiled_ops)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Reduced precision accumulates in float32: a k*k-tap weighted sum in fp16 loses ~3 significant bits."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def einsum_in_dtype(equation: str, *operands: torch.Tensor) -> torch.Tensor:
    """``torch.einsum`` in the operands' own dtype, also under autocast.

    einsum is on autocast's lower-precision list: inside ``torch.autocast`` the references' float32 contractions
    (:func:`compute_dtype`) would otherwise run as bfloat16/float16 matmuls. Autocast is switched off only when
    it is on, so traced graphs (export, compile) outside autocast carry no autocast region.
    """
    device_type = operands[0].device.type
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        with torch.autocast(device_type, enabled=False):
            return torch.einsum(equation, *operands)
    return torch.einsum(equation, *operands)


def check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')
    return value


def resolve_scale_alias(name: str, value: int, scale_factor, default: int = 2) -> int:
    """The ratio of a module whose official argument ``name`` (e.g. ``scale``) also answers to ``scale_factor``
    (the name the mmdet/mmseg integration copies and ``build_upsampler`` use). Giving both must agree."""
    if scale_factor is None:
        return value
    if value not in (default, scale_factor):  # `default` means "not given"
        raise ValueError(f'{name}={value} and scale_factor={scale_factor} disagree; give one of them')
    return scale_factor


def check_odd_kernel(name: str, value) -> int:
    check_int(name, value)
    if value % 2 == 0:
        raise ValueError(f'{name} must be odd (the kernel is centred on the source pixel), got {value}')
    return value


def check_4d(name: str, tensor, layout: str = '(N, C, H, W)') -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f'{name} must be a torch.Tensor of shape {layout}, got {type(tensor).__name__}')
    if tensor.dim() != 4:
        raise ValueError(f'{name} must be 4-D {layout}, got shape {tuple(tensor.shape)}')
    if not tensor.is_floating_point():
        raise ValueError(f'{name} must be a floating-point tensor (float16, bfloat16, float32 or float64) of '
                         f'shape {layout}, got dtype {tensor.dtype}')
    return tensor


def check_same_device_dtype(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.device != b.device:
        raise ValueError(f'{name_b} is on {b.device} but {name_a} is on {a.device}; put both on one device')
    if a.dtype != b.dtype:
        raise ValueError(f'{name_b} has dtype {b.dtype} but {name_a} has {a.dtype}; cast one to the other')


def check_carafe_args(features, masks, kernel_size, group_size, scale_factor) -> None:
    """Validate the arguments of :func:`upsample_plugin.ops.carafe` (spec/carafe.md, "Op input constraints")."""
    check_4d('features', features)
    check_4d('masks', masks, '(N, kernel_size**2 * group_size, H * scale_factor, W * scale_factor)')
    check_odd_kernel('kernel_size', kernel_size)
    check_int('group_size', group_size)
    check_int('scale_factor', scale_factor)
    check_same_device_dtype('features', features, 'masks', masks)
    n, c, h, w = features.shape
    if c % group_size:
        raise ValueError(f'group_size={group_size} must divide the channels of features ({c})')
    expected = (n, kernel_size * kernel_size * group_size, h * scale_factor, w * scale_factor)
    if tuple(masks.shape) != expected:
        raise ValueError(f'masks must have shape (N, kernel_size**2 * group_size, H * scale_factor, '
                         f'W * scale_factor) = {expected} for features of shape {tuple(features.shape)}, '
                         f'got {tuple(masks.shape)}')
    check_all_finite('features', features)
    check_all_finite('masks', masks)


# ------------------------------------------------------------------------------------------ non-finite values
# The NaN/Inf policy (docs/input_validation.md): by default no entry point looks at the values, because a NaN
# test needs the result on the host (a device sync on every forward); non-finite inputs propagate to every
# output they feed instead. The opt-in check below raises a ValueError naming the argument.

#: Environment variable that turns the opt-in check on (any value but '' and '0').
CHECK_FINITE_ENV = 'UPSAMPLE_PLUGIN_CHECK_FINITE'
# set_check_finite / check_finite(); None = follow the environment variable.
_check_finite_setting = None


def check_finite_enabled() -> bool:
    """Whether the opt-in NaN/Inf check is on: the last :func:`set_check_finite` / innermost
    :func:`check_finite` if any, else ``UPSAMPLE_PLUGIN_CHECK_FINITE``."""
    if _check_finite_setting is not None:
        return _check_finite_setting
    return os.environ.get(CHECK_FINITE_ENV, '0') not in ('', '0')


def _check_bool_or_none(name: str, value, allow_none: bool) -> None:
    if not (isinstance(value, bool) or (allow_none and value is None)):
        raise ValueError(f'{name} must be True or False{" or None" if allow_none else ""}, got {value!r}')


def set_check_finite(enabled) -> None:
    """Turn the opt-in NaN/Inf check of every entry point on (``True``) or off (``False``) for the whole
    process; ``None`` hands the decision back to ``UPSAMPLE_PLUGIN_CHECK_FINITE``."""
    global _check_finite_setting
    _check_bool_or_none('enabled', enabled, allow_none=True)
    _check_finite_setting = enabled


@contextlib.contextmanager
def check_finite(enabled: bool = True):
    """Context manager: within it every entry point raises ``ValueError`` naming the argument ('x', 'guide',
    'masks', ...) that holds NaN or Inf (``enabled=False``: never). The previous setting comes back on exit."""
    global _check_finite_setting
    _check_bool_or_none('enabled', enabled, allow_none=False)
    previous, _check_finite_setting = _check_finite_setting, enabled
    try:
        yield
    finally:
        _check_finite_setting = previous


def is_tracing() -> bool:
    """True under ``torch.compile`` / ``torch.export`` (dynamo) and TorchScript tracing (the ONNX exporters
    use one of them): value-dependent checks cannot be traced, and checks of the module's own tensors are
    static there. Tested first, so dynamo never traces the checks behind it."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def check_all_finite(name: str, tensor) -> None:
    """With the opt-in check on: ``ValueError`` naming ``name`` when ``tensor`` holds NaN or Inf.

    A no-op when the check is off, while tracing (:func:`is_tracing`), and for tensors without data (meta).
    """
    if is_tracing() or not check_finite_enabled() or tensor is None or tensor.device.type == 'meta':
        return
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return
    first = tuple(int(i) for i in (~finite).nonzero()[0])
    raise ValueError(f'{name} contains {int(tensor.isnan().sum())} NaN and {int(tensor.isinf().sum())} Inf '
                     f'values (shape {tuple(tensor.shape)}, first at index {first}); {name} must be finite '
                     f'while the finite check is on (upsample_plugin.check_finite / {CHECK_FINITE_ENV})')

