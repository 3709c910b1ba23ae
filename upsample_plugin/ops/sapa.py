"""SAPA's similarity op ``qk`` (spec/sapa.md, "Custom op"): the checked entry point ``sapa_similarity`` and its
pure-PyTorch reference ``sapa_similarity_reference``.

SAPA's second op, ``av`` (reassemble the low-res values with the normalised similarities), is exactly the
CARAFE op with one group, so SAPA calls :func:`upsample_plugin.ops.carafe` for it instead of duplicating it.

The official ``qk`` (``tiny-smart/sapa`` ``sapa/sapa/src/cuda/qk_cuda_kernel.cu``) is CUDA-only, does not build on
PyTorch >= 1.11 (``THC/THCAtomics.cuh``) and has a non-deterministic atomic-add backward (spec quirks 3, 4). The
reference here runs on any device and dtype, is deterministic, and its gradients come from autograd; compiled
kernels will slot into :func:`sapa_similarity`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import (check_4d, check_all_finite, check_int, check_odd_kernel, check_same_device_dtype, compute_dtype,
                      einsum_in_dtype)
from .sampling import grid_sample


def check_sapa_similarity_args(query, key, kernel_size, scale_factor) -> None:
    """Validate the arguments of :func:`sapa_similarity` (the official op's asserts, plus equal channels)."""
    check_4d('query', query, '(N, C, H * scale_factor, W * scale_factor)')
    check_4d('key', key)
    check_odd_kernel('kernel_size', kernel_size)
    check_int('scale_factor', scale_factor)
    check_same_device_dtype('query', query, 'key', key)
    n, c, h, w = key.shape
    # The official op does not check the channels: its kernel would read past the key's channels.
    expected = (n, c, h * scale_factor, w * scale_factor)
    if tuple(query.shape) != expected:
        raise ValueError(f'query must have shape (N, C, H * scale_factor, W * scale_factor) = {expected} for '
                         f'key of shape {tuple(key.shape)}, got {tuple(query.shape)}')
    check_all_finite('query', query)
    check_all_finite('key', key)


def sapa_similarity_reference(query: torch.Tensor, key: torch.Tensor, kernel_size: int,
                              scale_factor: int) -> torch.Tensor:
    """SAPA similarities (spec/sapa.md, Forward step 3), unfold form.

    ``sim[n, a*k + b, p, q] = sum_c query[n, c, p, q] * key[n, c, p//s + a - r, q//s + b - r]`` with
    ``r = (k - 1) / 2``; a neighbour outside the key map contributes 0, so its similarity is 0 (not -inf:
    spec quirk 1). Arguments are not checked here; :func:`sapa_similarity` checks them.
    """
    n, channels, height, width = key.shape
    k, s = kernel_size, scale_factor
    out_shape = (n, k * k, height * s, width * s)
    if query.numel() == 0 or key.numel() == 0:
        # unfold rejects empty inputs; keep the graph so autograd still sees both inputs.
        return (query.sum() + key.sum()).to(query.dtype).expand(out_shape).clone()
    dtype = compute_dtype(query.dtype)
    # (N, C*k*k, H*W): tap t = a*k + b of channel c at index c*k*k + t, zero padded.
    patches = F.unfold(key.to(dtype), k, padding=(k - 1) // 2).view(n, channels, k * k, height, width)
    # High-res pixel (s*h + i, s*w + j) is compared with the low-res neighbourhood of its parent (h, w).
    queries = query.to(dtype).reshape(n, channels, height, s, width, s)
    sim = einsum_in_dtype('ncthw,nchiwj->nthiwj', patches, queries)
    return sim.reshape(out_shape).to(query.dtype)


def sapa_similarity(query: torch.Tensor, key: torch.Tensor, kernel_size: int, scale_factor: int) -> torch.Tensor:
    """Query-key similarities of SAPA over each output pixel's k x k low-res neighbourhood (op ``qk``).

    Lu et al., "SAPA: Similarity-Aware Point Affiliation for Feature Upsampling", NeurIPS 2022,
    https://arxiv.org/abs/2209.12866; spec/sapa.md.

    Args:
        query: (N, C, H*scale_factor, W*scale_factor) high-resolution queries.
        key: (N, C, H, W) low-resolution keys.
        kernel_size: odd neighbourhood size k.
        scale_factor: integer upsampling ratio s.

    Returns:
        (N, k*k, H*s, W*s) in ``query``'s dtype (float16/bfloat16 accumulate in float32): channel ``a*k + b``
        is the dot product with the key at ``(p//s + a - r, q//s + b - r)``, ``r = (k - 1) / 2``, and 0 where
        that neighbour lies outside the map. No ``1/sqrt(C)`` scaling (spec quirk 2).
    """
    check_sapa_similarity_args(query, key, kernel_size, scale_factor)
    return sapa_similarity_reference(query, key, kernel_size, scale_factor)


# --------------------------------------------------------------------------------------------- SAPA-D
# The extension's deformable variant (spec/sapa.md, "SAPA-D" and "deform_qk / deform_av"): each output pixel
# compares its query with P points per channel group, sampled bilinearly around its parent pixel at learned
# offsets, and reassembles the raw values sampled at the same points.


def _check_deform_offset(offset, n, height, width, num_point, scale_factor, groups) -> None:
    expected = (n, groups * num_point * 2, height * scale_factor, width * scale_factor)
    if tuple(offset.shape) != expected:
        raise ValueError(f'offset must have shape (N, groups * num_point * 2, H * scale_factor, W * scale_factor) '
                         f'= {expected}, got {tuple(offset.shape)}')


def check_sapa_deform_similarity_args(query, key, offset, num_point, scale_factor, groups) -> None:
    """Validate the arguments of :func:`sapa_deform_similarity` (the official op's asserts, as ValueErrors)."""
    check_4d('query', query, '(N, C, H * scale_factor, W * scale_factor)')
    check_4d('key', key)
    check_4d('offset', offset, '(N, groups * num_point * 2, H * scale_factor, W * scale_factor)')
    check_int('num_point', num_point)
    check_int('scale_factor', scale_factor)
    check_int('groups', groups)
    check_same_device_dtype('query', query, 'key', key)
    check_same_device_dtype('query', query, 'offset', offset)
    n, c, h, w = key.shape
    if c % groups:
        raise ValueError(f'groups={groups} must divide the channels of key and query ({c})')
    expected = (n, c, h * scale_factor, w * scale_factor)
    if tuple(query.shape) != expected:
        raise ValueError(f'query must have shape (N, C, H * scale_factor, W * scale_factor) = {expected} for '
                         f'key of shape {tuple(key.shape)}, got {tuple(query.shape)}')
    _check_deform_offset(offset, n, h, w, num_point, scale_factor, groups)
    for name, tensor in (('query', query), ('key', key), ('offset', offset)):
        check_all_finite(name, tensor)


def check_sapa_deform_aggregation_args(attn, value, offset, num_point, scale_factor, groups) -> None:
    """Validate the arguments of :func:`sapa_deform_aggregation`."""
    check_4d('value', value)
    check_4d('offset', offset, '(N, groups * num_point * 2, H * scale_factor, W * scale_factor)')
    check_int('num_point', num_point)
    check_int('scale_factor', scale_factor)
    check_int('groups', groups)
    if not isinstance(attn, torch.Tensor) or attn.dim() != 5:
        raise ValueError(f'attn must be a 5-D tensor (N, groups, num_point, H * scale_factor, W * scale_factor), '
                         f'got {tuple(attn.shape) if isinstance(attn, torch.Tensor) else type(attn).__name__}')
    check_same_device_dtype('value', value, 'attn', attn)
    check_same_device_dtype('value', value, 'offset', offset)
    n, c, h, w = value.shape
    # The official op does not check this: with C % G != 0 its kernel reads attention of a group that
    # does not exist.
    if c % groups:
        raise ValueError(f'groups={groups} must divide the channels of value ({c})')
    expected = (n, groups, num_point, h * scale_factor, w * scale_factor)
    if tuple(attn.shape) != expected:
        raise ValueError(f'attn must have shape (N, groups, num_point, H * scale_factor, W * scale_factor) = '
                         f'{expected} for value of shape {tuple(value.shape)}, got {tuple(attn.shape)}')
    _check_deform_offset(offset, n, h, w, num_point, scale_factor, groups)
    for name, tensor in (('attn', attn), ('value', value), ('offset', offset)):
        check_all_finite(name, tensor)


def sapa_deform_sample(features: torch.Tensor, offset: torch.Tensor, num_point: int, scale_factor: int,
                       groups: int) -> torch.Tensor:
    """Bilinear samples of ``features`` at the deformable points, (N, G, C/G, P, H*s, W*s), in the compute dtype.

    Point ``m = g*P + p`` of output pixel (i, j) sits at low-res index coordinates
    ``(i//s + offset[:, 2m + 1, i, j], j//s + offset[:, 2m, i, j])`` (row, column): no base grid (spec quirk 5).
    Corners outside the map read 0, and a point outside (-1, H) x (-1, W) is 0 altogether (as the official
    kernels, which also give it no gradient). A point with a NaN/Inf offset samples NaN (0 would hide it) and
    the backward finishes: :func:`upsample_plugin.ops.sampling.grid_sample` (pytorch/pytorch#24823).
    """
    n, channels, height, width = features.shape
    out_h, out_w = height * scale_factor, width * scale_factor
    dtype = compute_dtype(features.dtype)
    offset = offset.to(dtype).view(n, groups, num_point, 2, out_h, out_w)
    parent_rows = torch.div(torch.arange(out_h, device=features.device), scale_factor, rounding_mode='floor')
    parent_cols = torch.div(torch.arange(out_w, device=features.device), scale_factor, rounding_mode='floor')
    rows = parent_rows.to(dtype).view(out_h, 1) + offset[:, :, :, 1]  # (N, G, P, sH, sW)
    cols = parent_cols.to(dtype).view(1, out_w) + offset[:, :, :, 0]
    inside = ((rows > -1) & (rows < height) & (cols > -1) & (cols < width)).to(dtype)
    # grid_sample with align_corners=False maps index u to (2u + 1) / size - 1: valid for size 1 too, where
    # align_corners=True would collapse every coordinate to the single pixel. Zero padding = zero corners.
    grid = torch.stack(((2 * cols + 1) / width - 1, (2 * rows + 1) / height - 1), dim=-1)
    grid = grid.reshape(n * groups, num_point * out_h, out_w, 2)
    samples = grid_sample(features.to(dtype).reshape(n * groups, channels // groups, height, width), grid,
                          mode='bilinear', padding_mode='zeros', align_corners=False)
    samples = samples.view(n, groups, channels // groups, num_point, out_h, out_w)
    # A NaN/Inf point is not `inside` (comparisons with NaN are False): 0 * NaN keeps its sample NaN.
    return samples * inside.unsqueeze(2)


def sapa_deform_similarity_reference(query: torch.Tensor, key: torch.Tensor, offset: torch.Tensor,
                                     num_point: int, scale_factor: int, groups: int) -> torch.Tensor:
    """SAPA-D similarities (op ``deform_qk``), unchecked: ``S[n, g, p] = <query group g, sampled key group g>``."""
    n, channels, height, width = key.shape
    out_shape = (n, groups, num_point, height * scale_factor, width * scale_factor)
    if query.numel() == 0 or key.numel() == 0:
        return (query.sum() + key.sum() + offset.sum()).to(query.dtype).expand(out_shape).clone()
    dtype = compute_dtype(query.dtype)
    samples = sapa_deform_sample(key, offset, num_point, scale_factor, groups)
    queries = query.to(dtype).view(n, groups, channels // groups, *out_shape[-2:])
    return einsum_in_dtype('ngcphw,ngchw->ngphw', samples, queries).to(query.dtype)


def sapa_deform_aggregation_reference(attn: torch.Tensor, value: torch.Tensor, offset: torch.Tensor,
                                      num_point: int, scale_factor: int, groups: int) -> torch.Tensor:
    """SAPA-D reassembly (op ``deform_av``), unchecked: ``out[n, c] = sum_p attn[n, g(c), p] * sampled value``."""
    n, channels, height, width = value.shape
    out_shape = (n, channels, height * scale_factor, width * scale_factor)
    if attn.numel() == 0 or value.numel() == 0:
        return (attn.sum() + value.sum() + offset.sum()).to(value.dtype).expand(out_shape).clone()
    dtype = compute_dtype(value.dtype)
    samples = sapa_deform_sample(value, offset, num_point, scale_factor, groups)
    return einsum_in_dtype('ngcphw,ngphw->ngchw', samples, attn.to(dtype)).reshape(out_shape).to(value.dtype)


def sapa_deform_similarity(query: torch.Tensor, key: torch.Tensor, offset: torch.Tensor, num_point: int,
                           scale_factor: int, groups: int) -> torch.Tensor:
    """Query-key similarities at P deformable points per channel group (op ``deform_qk`` of SAPA-D).

    Args:
        query: (N, C, H*s, W*s) high-resolution queries; channel group g = channels ``[g*C/G, (g+1)*C/G)``.
        key: (N, C, H, W) low-resolution keys.
        offset: (N, G*P*2, H*s, W*s) point offsets in low-res pixels; channel ``2m`` moves point ``m = g*P + p``
            along the width, ``2m + 1`` along the height, from the parent pixel ``(i//s, j//s)``.
        num_point: points P per group; scale_factor: integer ratio s; groups: G, must divide C.

    Returns:
        (N, G, P, H*s, W*s) in ``query``'s dtype (float16/bfloat16 accumulate in float32); 0 for points outside
        (-1, H) x (-1, W), which still take softmax mass downstream (as in SAPA-B).
    """
    check_sapa_deform_similarity_args(query, key, offset, num_point, scale_factor, groups)
    return sapa_deform_similarity_reference(query, key, offset, num_point, scale_factor, groups)


def sapa_deform_aggregation(attn: torch.Tensor, value: torch.Tensor, offset: torch.Tensor, num_point: int,
                            scale_factor: int, groups: int) -> torch.Tensor:
    """Reassemble the raw values sampled at the deformable points (op ``deform_av`` of SAPA-D).

    Args:
        attn: (N, G, P, H*s, W*s) weights (normalising them is the caller's job).
        value: (N, C, H, W) low-resolution values; G must divide C.
        offset, num_point, scale_factor, groups: as for :func:`sapa_deform_similarity`.

    Returns:
        (N, C, H*s, W*s) in ``value``'s dtype (float16/bfloat16 accumulate in float32).
    """
    check_sapa_deform_aggregation_args(attn, value, offset, num_point, scale_factor, groups)
    return sapa_deform_aggregation_reference(attn, value, offset, num_point, scale_factor, groups)
