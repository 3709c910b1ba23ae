"""What every neck and head of the plugin needs around an upsampler: one top-down step at any size.

Every upsampler returns exactly ``s`` times its input, but feature pyramids do not always have exact ratios
(unpadded test images, odd sizes, a stride-2 P6 on an odd C5). spec/necks.md, "Size handling":

* unguided: upsample, then fit the result to the lateral (top-left crop, mmdet ``slice_as`` semantics; a
  result smaller than the lateral, which rounding-up backbones never give, is replicate-padded);
* guided (FADE, SAPA): the guide must be exactly ``s`` times the input, so the guide is fitted to that size
  first (replicate-padded or cropped), and the result is fitted back to the guide's size;
* fusing (FreqFusion, ``replaces_lateral = True``): the same, but the upsampler's ``fuse`` returns the whole
  fused map that replaces the finer lateral (:func:`fuse_to`).

This module imports neither mmdet nor mmseg: the necks of both use it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops._checks import check_4d


def is_guided(upsampler: nn.Module) -> bool:
    """Whether ``upsampler`` takes a high-resolution guide (``forward(x, guide)``)."""
    return bool(getattr(upsampler, 'needs_guide', False))


def check_feature_levels(owner: str, inputs, in_channels: Sequence[int], name: str = 'inputs') -> None:
    """``inputs`` must be a list/tuple of ``len(in_channels)`` floating-point (N, in_channels[i], H_i, W_i) maps
    with one batch size, device and dtype: a clear ``ValueError`` instead of a failure inside a lateral conv
    (or a broadcast error in the top-down sum)."""
    expected = ', '.join(f'(N, {c}, H{i}, W{i})' for i, c in enumerate(in_channels))
    if not isinstance(inputs, (list, tuple)):
        raise ValueError(f'{owner}: {name} must be a list or tuple of {len(in_channels)} maps [{expected}], '
                         f'got {type(inputs).__name__}')
    if len(inputs) != len(in_channels):
        raise ValueError(f'{owner} was built for {len(in_channels)} input levels (in_channels={list(in_channels)}):'
                         f' {name} must be [{expected}], got {len(inputs)} maps')
    for i, (level, channels) in enumerate(zip(inputs, in_channels)):
        check_4d(f'{name}[{i}]', level, f'(N, {channels}, H{i}, W{i})')
        first = inputs[0]
        if level.shape[1] != channels or level.shape[0] != first.shape[0]:
            raise ValueError(f'{owner}: {name}[{i}] must have shape (N, {channels}, H{i}, W{i}) with '
                             f'in_channels[{i}]={channels} and N={first.shape[0]} as {name}[0], got '
                             f'{tuple(level.shape)}')
        if level.device != first.device or level.dtype != first.dtype:
            raise ValueError(f'{owner}: {name}[{i}] is a {level.dtype} tensor on {level.device} but {name}[0] is '
                             f'a {first.dtype} tensor on {first.device}; every level must share device and dtype')


def fit_to_size(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop ``x`` top-left, or replicate-pad it at the bottom/right, to ``height`` x ``width``."""
    x = x[..., :height, :width]
    pad_h, pad_w = height - x.shape[-2], width - x.shape[-1]
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
    return x


def replaces_lateral(upsampler: nn.Module) -> bool:
    """Whether ``upsampler`` fuses rather than upsamples: its ``fuse(x, guide)`` returns the map that replaces the
    finer lateral (FreqFusion: the AHPF-sharpened lateral plus the upsampled map, the official FPN sum)."""
    return bool(getattr(upsampler, 'replaces_lateral', False))


def _fitted_guide(upsampler: nn.Module, x: torch.Tensor, target: torch.Tensor,
                  scale_factor: Optional[int]) -> torch.Tensor:
    scale = scale_factor or getattr(upsampler, 'scale_factor', 2)
    guide_h, guide_w = x.shape[-2] * scale, x.shape[-1] * scale
    return target if (guide_h, guide_w) == tuple(target.shape[-2:]) else fit_to_size(target, guide_h, guide_w)


def fuse_to(upsampler: nn.Module, x: torch.Tensor, target: torch.Tensor,
            scale_factor: Optional[int] = None) -> torch.Tensor:
    """The fused map of a lateral-replacing upsampler (:func:`replaces_lateral`) at ``target``'s size:
    ``upsampler.fuse(x, guide)`` with ``target`` fitted to exactly ``s`` times ``x`` as the guide, the result
    fitted back to ``target``'s size (where ``target`` was larger, the replicate-padded rows are fused too)."""
    fused = upsampler.fuse(x, _fitted_guide(upsampler, x, target, scale_factor))
    return fit_to_size(fused, *target.shape[-2:])


def upsample_to(upsampler: nn.Module, x: torch.Tensor, target: torch.Tensor,
                scale_factor: Optional[int] = None) -> torch.Tensor:
    """Upsample the low-resolution ``x`` to ``target``'s spatial size.

    Guided upsamplers use ``target`` (the finer lateral, before the top-down sum) as the guide. Unguided ones
    ignore it except for its size. ``scale_factor`` defaults to the upsampler's own (attribute
    ``scale_factor``, else 2).
    """
    height, width = target.shape[-2:]
    if not is_guided(upsampler):
        return fit_to_size(upsampler(x), height, width)
    return fit_to_size(upsampler(x, _fitted_guide(upsampler, x, target, scale_factor)), height, width)
