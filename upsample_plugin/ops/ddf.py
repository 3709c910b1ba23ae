"""The DDF op (decoupled dynamic filtering, spec/ddf.md "Custom op"): the checked entry point ``ddf`` and its
pure-PyTorch reference ``ddf_reference``.

``ddf`` runs, in order of preference: the plugin's compiled op ``torch.ops.upsample_plugin.ddf_forward``
(ops/csrc/cpu/ddf_cpu.cpp, cuda/ddf_cuda.cu; CPU tensors, and CUDA tensors when the extension was built with CUDA),
else the reference. ``backend=`` or ``UPSAMPLE_PLUGIN_FORCE_REFERENCE=1`` choose explicitly. The compiled op is
differentiable to any order (its double backward is again made of compiled calls, see ``_library_ddf.py``).
The reference is the ground truth of the tests: any device and dtype, autograd (twice differentiable), and memory
traded for simplicity (it holds ``kernel_size**2`` shifted copies of the output-sized map, like the unfold form of
the spec).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _library
from ._checks import (auto_uses_reference, check_4d, check_all_finite, check_int, check_odd_kernel,
                      check_same_device_dtype, compute_dtype, einsum_in_dtype)
from ._library_ddf import ddf_compiled_available

COMBINES = ('mul', 'add')
BACKENDS = ('auto', 'compiled', 'reference')


def check_ddf_args(features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine) -> None:
    """Validate the arguments of :func:`ddf` (spec/ddf.md, "Op constraints"); ValueError names the argument."""
    check_4d('features', features)
    check_4d('channel_filter', channel_filter, '(N, C, kernel_size, kernel_size)')
    check_4d('spatial_filter', spatial_filter, '(N, kernel_size**2, H // stride, W // stride)')
    check_odd_kernel('kernel_size', kernel_size)
    check_int('dilation', dilation)
    check_int('stride', stride)
    if combine not in COMBINES:
        raise ValueError(f"combine must be 'mul' or 'add', got {combine!r}")
    check_same_device_dtype('features', features, 'channel_filter', channel_filter)
    check_same_device_dtype('features', features, 'spatial_filter', spatial_filter)
    n, c, h, w = features.shape
    k = kernel_size
    expected = (n, c, k, k)
    if tuple(channel_filter.shape) != expected:
        raise ValueError(f'channel_filter must have shape (N, C, kernel_size, kernel_size) = {expected} for '
                         f'features of shape {tuple(features.shape)}, got {tuple(channel_filter.shape)}')
    expected = (n, k * k, h // stride, w // stride)
    if tuple(spatial_filter.shape) != expected:
        raise ValueError(f'spatial_filter must have shape (N, kernel_size**2, H // stride, W // stride) = '
                         f'{expected} for features of shape {tuple(features.shape)} and stride={stride}, '
                         f'got {tuple(spatial_filter.shape)}')
    for name, tensor in (('features', features), ('channel_filter', channel_filter),
                         ('spatial_filter', spatial_filter)):
        check_all_finite(name, tensor)


def ddf_reference(features: torch.Tensor, channel_filter: torch.Tensor, spatial_filter: torch.Tensor,
                  kernel_size: int, dilation: int = 1, stride: int = 1, combine: str = 'mul') -> torch.Tensor:
    """Decoupled dynamic filtering (spec/ddf.md, "Forward math"), unfold form.

    ``out[b, c, y, x] = sum_{iy, ix} F[b, c, iy, ix, y, x] * features[b, c, y*s + (iy - r)*d, x*s + (ix - r)*d]``
    with ``r = (k - 1) / 2``, zeros outside the map, and ``F = spatial[b, iy*k + ix, y, x] * channel[b, c, iy, ix]``
    (``'mul'``) or ``spatial[...] + channel[...]`` (``'add'``). Arguments are not checked here; :func:`ddf` does.
    """
    n, channels, height, width = features.shape
    k, d, s = kernel_size, dilation, stride
    out_h, out_w = height // s, width // s
    out_shape = (n, channels, out_h, out_w)
    if n * channels * out_h * out_w == 0:
        # unfold rejects empty inputs; keep the graph so autograd still reaches all three inputs.
        anchor = features.sum() + channel_filter.sum() + spatial_filter.sum()
        return anchor.to(features.dtype).expand(out_shape).clone()
    dtype = compute_dtype(features.dtype)
    # (N, C*k*k, L): tap t = iy*k + ix of channel c at index c*k*k + t. With padding r*d the unfold grid has
    # ceil(H/s) rows centred on rows y*s; the op (like the official CUDA kernels) keeps the first H//s of them.
    patches = F.unfold(features.to(dtype), k, dilation=d, padding=(k - 1) // 2 * d, stride=s)
    patches = patches.view(n, channels, k * k, (height - 1) // s + 1, (width - 1) // s + 1)
    patches = patches[..., :out_h, :out_w].reshape(n, channels, k * k, out_h * out_w)
    spatial = spatial_filter.to(dtype).reshape(n, k * k, out_h * out_w)
    channel = channel_filter.to(dtype).reshape(n, channels, k * k)
    if combine == 'mul':
        # Weigh the taps by the spatial filter first (shared by all channels), then contract with the channel
        # filter: one broadcast product and one batched matmul, never the full (N, C, k*k, H*W) filter.
        weighted = patches * spatial.unsqueeze(1)
        out = einsum_in_dtype('bctp,bct->bcp', weighted, channel)
    else:
        # sum_t patch * (spatial + channel) = sum_t patch * spatial + sum_t patch * channel.
        out = (einsum_in_dtype('bctp,btp->bcp', patches, spatial)
               + einsum_in_dtype('bctp,bct->bcp', patches, channel))
    return out.reshape(out_shape).to(features.dtype)


def _auto_backend(features: torch.Tensor) -> str:
    if auto_uses_reference():  # forced, or an ONNX export
        return 'reference'
    if ddf_compiled_available(features.device):
        return 'compiled'
    _library.warn_unavailable()
    return 'reference'


def ddf(features: torch.Tensor, channel_filter: torch.Tensor, spatial_filter: torch.Tensor, kernel_size: int,
        dilation: int = 1, stride: int = 1, combine: str = 'mul', *, backend: str = 'auto') -> torch.Tensor:
    """Decoupled dynamic filter (DDF, Zhou et al., CVPR 2021, https://arxiv.org/abs/2104.14107; spec/ddf.md).

    A per-sample, per-position depthwise k x k filter decoupled into a spatial filter (one per output position,
    shared by the channels) and a channel filter (one per channel, shared by the positions).

    Args:
        features: (N, C, H, W) input map.
        channel_filter: (N, C, k, k) per-channel taps.
        spatial_filter: (N, k*k, H // stride, W // stride) per-position taps; channel ``iy*k + ix`` is tap
            (iy, ix).
        kernel_size: odd filter size k.
        dilation: tap spacing d.
        stride: output stride s; output pixel (y, x) is centred on input pixel (y*s, x*s).
        combine: ``'mul'`` (filter = spatial * channel) or ``'add'`` (filter = spatial + channel).
        backend: ``'auto'`` (default): the compiled op when it has a kernel for the device, else the reference;
            ``UPSAMPLE_PLUGIN_FORCE_REFERENCE=1`` and ONNX export (``ops._checks.auto_uses_reference``) turn
            ``'auto'`` into ``'reference'``. ``'compiled'`` and ``'reference'`` force one (RuntimeError when the
            compiled op has no kernel for the device).

    Returns:
        (N, C, H // stride, W // stride), same dtype as ``features`` (float16/bfloat16 accumulate in float32,
        as the official wrapper computes half inputs in float32). Both backends support gradients of any order
        (double backward included); the compiled backward is deterministic (gathers, no atomics).
    """
    check_ddf_args(features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine)
    if backend == 'auto':
        backend = _auto_backend(features)
    if backend == 'compiled':
        if not ddf_compiled_available(features.device):
            raise RuntimeError(f'backend="compiled": upsample_plugin._C has no DDF kernel for '
                               f'{features.device.type} tensors (loaded: {_library.compiled_available()})')
        return torch.ops.upsample_plugin.ddf_forward(features, channel_filter, spatial_filter, kernel_size,
                                                     dilation, stride, combine)
    if backend != 'reference':
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    return ddf_reference(features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine)
