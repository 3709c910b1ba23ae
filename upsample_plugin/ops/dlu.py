"""The DLU reassembly op (spec/dlu.md, "Forward" steps 5-6): guided kernel sampling + CARAFE reassembly.

DLU (Dynamic Lightweight Upsampling, https://arxiv.org/abs/2410.22139) predicts one normalised k x k kernel per
*low-resolution* pixel (the kernel space) and, per sub-pixel, a 2-D offset in low-resolution pixel units. The
kernel of high-resolution pixel (p, q) is the kernel space bilinearly sampled at its parent pixel plus the
offset, position clamped to the map; the feature is then reassembled with it exactly as CARAFE does.

:func:`dlu_reassemble` is the checked entry point. It runs, in order of preference, the fused compiled op
``torch.ops.upsample_plugin.dlu_forward`` (ops/csrc/*/dlu_*: samples each output pixel's kernel on the fly in the
reassembly loop, never materialising the (N, k*k*G, s*H, s*W) kernel tensor; CPU, and CUDA in a CUDA build), else
the reference. ``backend=`` or ``UPSAMPLE_PLUGIN_FORCE_REFERENCE=1`` choose explicitly, as for CARAFE.
:func:`dlu_reassemble_reference` defines the math (the ground truth of the tests): it expands the kernels with
``grid_sample`` and calls :func:`upsample_plugin.ops.carafe`.

Layouts (G = ``group_size``, s = ``scale_factor``, k = ``kernel_size``):

* ``kernel_space`` (N, k*k*G, H, W): channel ``g*k*k + a*k + b`` is tap (a, b) of group g (CARAFE's mask layout).
* ``offsets`` (N, G*2*s*s, H, W), before pixel shuffle: channel ``(g*2 + xy)*s*s + i*s + j`` is the x (xy=0,
  width) or y (xy=1, height) displacement of sub-pixel (i, j) for group g, in low-resolution pixels. For G = 1
  this is the official layout (``pixel_shuffle`` then channel 0 = x, 1 = y); for G > 1 the official code cannot
  run (spec quirk 1) and this group-major layout is the one its ``pixel_shuffle`` implies when each group's
  shuffled channel pair (2g, 2g+1) is read as that group's (x, y).
"""
from __future__ import annotations

import torch

from . import _library
from ._checks import (auto_uses_reference, check_4d, check_all_finite, check_int, check_odd_kernel, is_tracing,
                      check_same_device_dtype, compute_dtype)
from ._library_dlu import dlu_compiled_available
from .carafe import carafe
from .sampling import finite_points, grid_sample, mark_nonfinite_

BACKENDS = ('auto', 'compiled', 'reference')


def _check_dlu_args(features, kernel_space, offsets, kernel_size, group_size, scale_factor) -> None:
    check_4d('features', features)
    check_4d('kernel_space', kernel_space, '(N, kernel_size**2 * group_size, H, W)')
    check_4d('offsets', offsets, '(N, group_size * 2 * scale_factor**2, H, W)')
    check_odd_kernel('kernel_size', kernel_size)
    check_int('group_size', group_size)
    check_int('scale_factor', scale_factor)
    check_same_device_dtype('features', features, 'kernel_space', kernel_space)
    check_same_device_dtype('features', features, 'offsets', offsets)
    n, c, h, w = features.shape
    if c % group_size:
        raise ValueError(f'group_size={group_size} must divide the channels of features ({c})')
    expected = (n, kernel_size * kernel_size * group_size, h, w)
    if tuple(kernel_space.shape) != expected:
        raise ValueError(f'kernel_space must have shape (N, kernel_size**2 * group_size, H, W) = {expected} for '
                         f'features of shape {tuple(features.shape)}, got {tuple(kernel_space.shape)}')
    expected = (n, group_size * 2 * scale_factor * scale_factor, h, w)
    if tuple(offsets.shape) != expected:
        raise ValueError(f'offsets must have shape (N, group_size * 2 * scale_factor**2, H, W) = {expected} for '
                         f'features of shape {tuple(features.shape)}, got {tuple(offsets.shape)}')
    for name, tensor in (('features', features), ('kernel_space', kernel_space), ('offsets', offsets)):
        check_all_finite(name, tensor)


def _shuffle_offsets(offsets: torch.Tensor, groups: int, s: int) -> torch.Tensor:
    """Pixel shuffle (N, G*2*s*s, H, W) -> (N*G, 2, sH, sW): channel (g*2 + xy)*s*s + i*s + j goes to group g,
    component xy, pixel (s*h + i, s*w + j). Written as view/permute: F.pixel_shuffle's backward fails on N=0."""
    n, _, height, width = offsets.shape
    shift = offsets.reshape(n * groups, 2, s, s, height, width).permute(0, 1, 4, 2, 5, 3)
    return shift.reshape(n * groups, 2, s * height, s * width)


def dlu_expand_kernels(kernel_space: torch.Tensor, offsets: torch.Tensor, scale_factor: int,
                       group_size: int) -> torch.Tensor:
    """The kernel-space expander: (N, k*k*G, H, W) low-res kernels -> (N, k*k*G, s*H, s*W) per-pixel kernels.

    Output pixel (p, q) of group g gets the kernel space of group g bilinearly interpolated at the low-res
    index position ``(p // s + dy, q // s + dx)`` clamped to ``[0, H-1] x [0, W-1]`` (``grid_sample``,
    ``align_corners=True``, ``padding_mode='border'``). Positions are built in index coordinates on the input's
    device and normalised with a guarded ``2 / (size - 1)``: a 1-pixel axis maps every position to its only
    pixel (exactly what clamping gives) instead of dividing by zero (spec quirks 2, 3, 5). Computed in float32
    for half-precision inputs, in the input dtype otherwise. Unchecked: see :func:`dlu_reassemble`.

    A NaN/Inf offset gives that pixel and group a NaN kernel (border padding would clamp it onto the map) and
    the backward finishes (CPU ``grid_sample``'s segfaults on a NaN point, pytorch/pytorch#24823):
    :func:`upsample_plugin.ops.sampling.grid_sample`.
        """
    n, channels, height, width = kernel_space.shape
    s, groups = scale_factor, group_size
    dtype = compute_dtype(kernel_space.dtype)
    device = kernel_space.device
    shift = _shuffle_offsets(offsets.to(dtype), groups, s)  # (N*G, 2, sH, sW)
    if height == 0 or width == 0:
        # grid_sample rejects empty maps; keep the graph so autograd still reaches both inputs.
        anchor = (kernel_space.sum() + offsets.sum()).to(dtype)
        return anchor.expand(n, channels, s * height, s * width).clone()
    # Parent low-res pixel of each output pixel: CARAFE's floor mapping (spec quirk 6, kept).
    cols = torch.arange(width, device=device, dtype=dtype).repeat_interleave(s)
    rows = torch.arange(height, device=device, dtype=dtype).repeat_interleave(s)
    x = cols + shift[:, 0]
    y = rows[:, None] + shift[:, 1]
    x_scale = 2.0 / (width - 1) if width > 1 else 0.0
    y_scale = 2.0 / (height - 1) if height > 1 else 0.0
    grid = torch.stack((x * x_scale - 1, y * y_scale - 1), dim=-1)  # (N*G, sH, sW, 2), last dim (x, y)
    taps = channels // groups
    kernels = grid_sample(kernel_space.to(dtype).reshape(n * groups, taps, height, width), grid,
                          mode='bilinear', padding_mode='border', align_corners=True)
    return kernels.reshape(n, channels, s * height, s * width)


def dlu_reassemble_reference(features: torch.Tensor, kernel_space: torch.Tensor, offsets: torch.Tensor,
                             kernel_size: int, group_size: int, scale_factor: int) -> torch.Tensor:
    """DLU reassembly, reference form: expand the kernels (:func:`dlu_expand_kernels`), then CARAFE.

    Materialises the (N, k*k*G, s*H, s*W) kernel tensor. float16/bfloat16 are computed in float32 and the
    result is cast back to ``features.dtype``. Unchecked: see :func:`dlu_reassemble`.
    """
    dtype = compute_dtype(features.dtype)
    kernels = dlu_expand_kernels(kernel_space, offsets, scale_factor, group_size)
    out = carafe(features.to(dtype), kernels.to(dtype), kernel_size, group_size, scale_factor)
    return out.to(features.dtype)


def dlu_reassemble(features: torch.Tensor, kernel_space: torch.Tensor, offsets: torch.Tensor, kernel_size: int,
                   group_size: int, scale_factor: int, *, backend: str = 'auto') -> torch.Tensor:
    """Reassemble ``features`` with kernels sampled from a low-resolution kernel space (DLU; spec/dlu.md).

    ``out[n, c, p, q] = sum_{a,b} K'[n, g*k*k + a*k + b, p, q] * features[n, c, p//s + a - r, q//s + b - r]``
    (zero outside the map, ``r = (k-1)/2``, ``g = c // (C/G)``), where ``K'(p, q)`` is ``kernel_space`` of group
    g bilinearly sampled at ``(p//s + dy, q//s + dx)`` clamped to the map, ``(dx, dy)`` the offsets of
    sub-pixel ``(p % s, q % s)``, group g, at low-res pixel ``(p//s, q//s)``.

    Args:
        features: (N, C, H, W) low-resolution map.
        kernel_space: (N, kernel_size**2 * group_size, H, W) normalised low-res kernels, channel
            ``g*k*k + a*k + b``. Normalising is the caller's job (DLU: softmax per kernel); bilinear sampling
            keeps a kernel's sum.
        offsets: (N, group_size * 2 * scale_factor**2, H, W) displacements in low-res pixels, channel
            ``(g*2 + xy)*s*s + i*s + j`` (xy = 0: x/width, 1: y/height), the layout before pixel shuffle.
        kernel_size: odd reassembly kernel size k.
        group_size: channel groups G, each with its own kernel space and offsets; must divide C.
        scale_factor: integer upsampling ratio s.
        backend: ``'auto'`` (default): the fused compiled op when it has a kernel for the device, else the
            reference; ``UPSAMPLE_PLUGIN_FORCE_REFERENCE=1`` and ONNX export (``ops._checks.auto_uses_reference``)
            turn ``'auto'`` into ``'reference'``. ``'compiled'`` and ``'reference'`` force one (RuntimeError when
            the compiled op cannot run here).

    Returns:
        (N, C, s*H, s*W) in ``features.dtype`` (float16/bfloat16 computed in float32). Any H, W >= 1.
        Both backends support first and second order gradients; the compiled op's second order runs through
        the reference (see ``ops/_library_dlu.py``). A NaN/Inf offset makes its output pixel NaN in its group
        (not a kernel clamped to the border) and sends no gradient through that sample point; the backward
        finishes on both backends (:mod:`upsample_plugin.ops.sampling`, pytorch/pytorch#24823).
    """
    _check_dlu_args(features, kernel_space, offsets, kernel_size, group_size, scale_factor)
    if backend == 'auto':
        if auto_uses_reference():  # forced, or an ONNX export
            backend = 'reference'
        elif dlu_compiled_available(features.device):
            backend = 'compiled'
        else:
            _library.warn_unavailable()
            backend = 'reference'
    if backend == 'compiled':
        if not dlu_compiled_available(features.device):
            raise RuntimeError(f'backend="compiled": upsample_plugin._C has no DLU kernel for '
                               f'{features.device.type} tensors (loaded: {_library.compiled_available()})')
        out = torch.ops.upsample_plugin.dlu_forward(features, kernel_space, offsets, kernel_size, group_size,
                                                    scale_factor)
        # The fused kernel maps a NaN/Inf position onto the map itself (dlu_common.h axis_position: no NaN
        # index, so no crash); the NaN marker then makes the pixels of that position and group NaN, with no
        # gradient through them, as the reference's grid_sample does (NaN policy, docs/input_validation.md).
        # Checked on the (small) offsets first: the output-sized masked fill costs more than the x2 kernel itself,
        # and with finite offsets it changes nothing. Traced (torch.compile, export) it always runs: no
        # data-dependent branch in the graph.
        if is_tracing() or not bool(torch.isfinite(offsets).all()):
            n, c, out_h, out_w = out.shape
            finite = finite_points(_shuffle_offsets(offsets, group_size, scale_factor), 1)  # (N*G, sH, sW)
            # unflatten only splits the channel dimension: always a view, whatever the output's strides.
            mark_nonfinite_(out.unflatten(1, (group_size, c // group_size)),
                            finite.view(n, group_size, 1, out_h, out_w))
        return out
    if backend != 'reference':
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    return dlu_reassemble_reference(features, kernel_space, offsets, kernel_size, group_size, scale_factor)
