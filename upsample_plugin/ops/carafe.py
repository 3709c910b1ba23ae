"""The CARAFE op (spec/carafe.md): the checked entry point ``carafe`` and its pure-PyTorch reference.

``carafe`` picks mmcv's CUDA kernel for CUDA tensors it supports, else the reference (the plugin's compiled
kernels slot in here). The reference is the ground truth of the tests: any device and dtype, autograd, and
memory traded for simplicity (it holds ``kernel_size**2`` shifted copies of the low-resolution map).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_carafe_args, compute_dtype, force_reference

# mmcv's fast CARAFE kernel caches one pixel's masks in 12288 floats of shared memory (32 pixels per block):
# more than 384 mask channels would overflow it, and mmcv does not check (spec/carafe.md).
_MMCV_MAX_MASK_CHANNELS = 384


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
    out = torch.einsum('ngcthw,ngthiwj->ngchiwj', patches, kernels)
    return out.reshape(out_shape).to(features.dtype)


def _mmcv_cuda_carafe():
    try:
        from mmcv.ops import carafe as mmcv_carafe
    except (ImportError, OSError):  # mmcv-lite, or an mmcv built without CUDA
        return None
    return mmcv_carafe


def carafe(features: torch.Tensor, masks: torch.Tensor, kernel_size: int, group_size: int,
           scale_factor: int) -> torch.Tensor:
    """Content-aware reassembly of features (CARAFE, Wang et al., ICCV 2019; spec/carafe.md).

    Args:
        features: (N, C, H, W) low-resolution map.
        masks: (N, kernel_size**2 * group_size, H*scale_factor, W*scale_factor) reassembly kernels; channel
            ``g*k*k + a*k + b`` weighs tap (a, b) for channel group g. Normalising them is the caller's job.
        kernel_size: odd reassembly kernel size k.
        group_size: channel groups G sharing one kernel; must divide C.
        scale_factor: integer upsampling ratio s.

    Returns:
        (N, C, H*s, W*s), same dtype as ``features`` (float16/bfloat16 accumulate in float32).
    """
    check_carafe_args(features, masks, kernel_size, group_size, scale_factor)
    if (features.is_cuda and not force_reference() and features.dtype != torch.bfloat16
            and kernel_size * kernel_size * group_size <= _MMCV_MAX_MASK_CHANNELS and features.numel() > 0):
        mmcv_carafe = _mmcv_cuda_carafe()
        if mmcv_carafe is not None:
            return mmcv_carafe(features.contiguous(), masks.contiguous(), kernel_size, group_size, scale_factor)
    return carafe_reference(features, masks, kernel_size, group_size, scale_factor)
