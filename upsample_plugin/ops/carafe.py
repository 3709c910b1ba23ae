"""The CARAFE op (spec/carafe.md): the checked entry point ``carafe`` and its pure-PyTorch reference.

``carafe`` runs, in order of preference: the plugin's compiled op ``torch.ops.upsample_plugin.carafe_forward``
(ops/csrc; CPU tensors, and CUDA tensors when the extension was built with CUDA), mmcv's CUDA kernel for CUDA
tensors it supports, else the reference. ``backend=`` or ``UPSAMPLE_PLUGIN_FORCE_REFERENCE=1`` choose explicitly.
The reference is the ground truth of the tests: any device and dtype, autograd, and memory traded for
simplicity (it holds ``kernel_size**2`` shifted copies of the low-resolution map).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _library
from ._checks import auto_uses_reference, check_carafe_args, compute_dtype, einsum_in_dtype

# mmcv's fast CARAFE kernel caches one pixel's masks in 12288 floats of shared memory (32 pixels per block):
# more than 384 mask channels would overflow it, and mmcv does not check (spec/carafe.md).
_MMCV_MAX_MASK_CHANNELS = 384

BACKENDS = ('auto', 'compiled', 'mmcv', 'reference')


def carafe_reference(features: torch.Tensor, masks: torch.Tensor, kernel_size: int, group_size: int,
                     scale_factor: int) -> torch.Tensor:
    """CARAFE reassembly (spec/carafe.md, "Forward math"), unfold form.

    ``out[n, c, p, q] = sum_{a,b} masks[n, g(c)*k*k + a*k + b, p, q] * features[n, c, p//s + a - r, q//s + b - r]``
    with ``r = (k - 1) / 2``, ``g(c) = c // (C / G)`` and zeros outside the map. Arguments are not checked here;
    :func:`upsample_plugin.ops.carafe` checks them.
    """
    n, channels, height, width = features.shape
    k, groups, s = kernel_size, group_size, scale_factor
    out_shape = (n, channels, height * s, width * s)
    if features.numel() == 0:
        # unfold rejects empty inputs; keep the graph so autograd still sees both inputs.
        return (features.sum() + masks.sum()).to(features.dtype).expand(out_shape).clone()
    dtype = compute_dtype(features.dtype)
    # (N, C*k*k, H*W): tap t = a*k + b of channel c at index c*k*k + t, zero padded.
    patches = F.unfold(features.to(dtype), k, padding=(k - 1) // 2)
    patches = patches.view(n, groups, channels // groups, k * k, height, width)
    # High-res pixel (s*h + i, s*w + j) reads the low-res neighbourhood of its parent (h, w).
    kernels = masks.to(dtype).reshape(n, groups, k * k, height, s, width, s)
    out = einsum_in_dtype('ngcthw,ngthiwj->ngchiwj', patches, kernels)
    return out.reshape(out_shape).to(features.dtype)


def _mmcv_cuda_carafe():
    try:
        from mmcv.ops import carafe as mmcv_carafe
    except (ImportError, OSError):  # mmcv-lite, or an mmcv built without CUDA
        return None
    return mmcv_carafe


def _mmcv_supports(features: torch.Tensor, kernel_size: int, group_size: int) -> bool:
    return (features.is_cuda and features.dtype != torch.bfloat16 and features.numel() > 0
            and kernel_size * kernel_size * group_size <= _MMCV_MAX_MASK_CHANNELS)


def _auto_backend(features: torch.Tensor, kernel_size: int, group_size: int) -> str:
    if auto_uses_reference():  # forced, or an ONNX export
        return 'reference'
    if _library.compiled_available(features.device):
        return 'compiled'
    if _mmcv_supports(features, kernel_size, group_size) and _mmcv_cuda_carafe() is not None:
        return 'mmcv'
    _library.warn_unavailable()
    return 'reference'


def carafe(features: torch.Tensor, masks: torch.Tensor, kernel_size: int, group_size: int,
           scale_factor: int, *, backend: str = 'auto') -> torch.Tensor:
    """Content-aware reassembly of features (CARAFE, Wang et al., ICCV 2019; spec/carafe.md).

    Args:
        features: (N, C, H, W) low-resolution map.
        masks: (N, kernel_size**2 * group_size, H*scale_factor, W*scale_factor) reassembly kernels; channel
            ``g*k*k + a*k + b`` weighs tap (a, b) for channel group g. Normalising them is the caller's job.
        kernel_size: odd reassembly kernel size k.
        group_size: channel groups G sharing one kernel; must divide C.
        scale_factor: integer upsampling ratio s.
        backend: ``'auto'`` (default): the compiled op when it has a kernel for the device, else mmcv's CUDA op
            on CUDA, else the reference; ``UPSAMPLE_PLUGIN_FORCE_REFERENCE=1`` and ONNX export
            (``ops._checks.auto_uses_reference``) turn ``'auto'`` into ``'reference'``. ``'compiled'``, ``'mmcv'``
            and ``'reference'`` force one (RuntimeError when it cannot run these inputs).

    Returns:
        (N, C, H*s, W*s), same dtype as ``features`` (float16/bfloat16 accumulate in float32).
        The compiled and reference backends support gradients of any order (double backward included).
    """
    check_carafe_args(features, masks, kernel_size, group_size, scale_factor)
    if backend == 'auto':
        backend = _auto_backend(features, kernel_size, group_size)
    if backend == 'compiled':
        if not _library.compiled_available(features.device):
            raise RuntimeError(f'backend="compiled": upsample_plugin._C has no CARAFE kernel for '
                               f'{features.device.type} tensors (loaded: {_library.compiled_available()})')
        return torch.ops.upsample_plugin.carafe_forward(features, masks, kernel_size, group_size, scale_factor)
    if backend == 'mmcv':
        mmcv_carafe = _mmcv_cuda_carafe() if _mmcv_supports(features, kernel_size, group_size) else None
        if mmcv_carafe is None:
            raise RuntimeError('backend="mmcv": mmcv\'s CARAFE needs mmcv with CUDA ops, non-empty CUDA '
                               f'float16/32/64 tensors and kernel_size**2 * group_size <= {_MMCV_MAX_MASK_CHANNELS}')
        return mmcv_carafe(features.contiguous(), masks.contiguous(), kernel_size, group_size, scale_factor)
    if backend != 'reference':
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    return carafe_reference(features, masks, kernel_size, group_size, scale_factor)
