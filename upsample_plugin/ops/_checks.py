"""Argument checks shared by the op entry points: one clear ``ValueError`` naming the argument and the
expected shape, raised before any kernel runs (mmcv's CARAFE asserts, or crashes in CUDA, instead)."""
from __future__ import annotations

import os

import torch


def force_reference() -> bool:
    """True when ``UPSAMPLE_PLUGIN_FORCE_REFERENCE`` asks for the pure-PyTorch ops everywhere."""
    return os.environ.get('UPSAMPLE_PLUGIN_FORCE_REFERENCE', '0') not in ('', '0')


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Reduced precision accumulates in float32: a k*k-tap weighted sum in fp16 loses ~3 significant bits."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


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
        raise ValueError(f'{name} must be a floating-point tensor, got {tensor.dtype}')
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
