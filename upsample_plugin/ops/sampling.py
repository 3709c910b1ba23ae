"""NaN-safe bilinear sampling: the one place where the plugin calls ``F.grid_sample`` (DySample, the DLU reference,
LDA-AQU, SAPA-D) and where the compiled DLU op marks its non-finite sample points.

Why: the NaN policy (docs/input_validation.md) wants a NaN/Inf input to reach the loss as NaN, so that a
training run can stop or skip the step. Two things in ``grid_sample`` get in the way when a sampling coordinate
is NaN or Inf, which is what a NaN anywhere upstream of an offset predictor produces:

* a crash: PyTorch's CPU ``grid_sample`` backward segfaults on a NaN coordinate with ``padding_mode='border'``
  and on a NaN or Inf coordinate with ``'reflection'`` (pytorch/pytorch#24823; it turns the unclamped NaN into
  an out-of-range index);
* finite garbage: border padding clamps a NaN/Inf coordinate onto the map and returns a finite border pixel.

:func:`grid_sample` therefore (1) replaces every sample point that has a non-finite component by the point
``(0, 0)`` (the map centre) before ``F.grid_sample`` sees it, so no kernel ever indexes with NaN, and (2) puts
NaN into every output value sampled at such a point (the NaN marker), so the NaN still propagates. The marker
is a ``masked_fill_``: its backward gives those outputs zero gradient, so the stand-in point sends no gradient
to the input map or to the coordinates (the derivative at a non-finite point does not exist). Points whose
coordinates are finite are sampled by the same ``F.grid_sample`` call on the same values: their outputs and
every gradient are unchanged bit for bit (``torch.where`` and ``masked_fill`` copy them exactly).

Everything is elementwise tensor code, with no host synchronisation and no value-dependent Python branch, so it
runs the same eagerly, under ``torch.compile(fullgraph=True)``, under autocast and in the ONNX exporters.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def finite_points(points: torch.Tensor, dim: int) -> torch.Tensor:
    """Boolean mask, ``dim`` reduced: True where every component of the point along ``dim`` is finite."""
    return torch.isfinite(points).all(dim)


def mark_nonfinite_(values: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """The NaN marker: ``values`` set to NaN in place where ``finite`` (broadcast to ``values``) is False.

    Its backward zeroes the gradient of the marked values (``masked_fill``); the other values and their
    gradients are untouched. In place because no sampler's backward needs its own output (``grid_sample`` and
    the compiled DLU op save their inputs only), so no second output-sized tensor is made in the forward.
    """
    return values.masked_fill_(~finite, float('nan'))


def sanitize_grid(grid: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(safe_grid, finite)`` for a ``grid_sample`` grid ``(N, H_out, W_out, 2)``: ``finite`` (N, H_out, W_out)
    says which points have two finite coordinates; ``safe_grid`` is ``grid`` there and ``(0, 0)`` elsewhere.

    ``safe_grid`` is always finite, which is what keeps the CPU ``grid_sample`` backward from crashing
    (pytorch/pytorch#24823). Gradients flow to ``grid`` through the kept points only.
    """
    finite = finite_points(grid, -1)
    return torch.where(finite.unsqueeze(-1), grid, 0.0), finite


def grid_sample(input: torch.Tensor, grid: torch.Tensor, *, mode: str = 'bilinear', padding_mode: str = 'zeros',
                align_corners: bool) -> torch.Tensor:
    """``F.grid_sample(input, grid, ...)`` that survives non-finite sample points and reports them as NaN.

    Same arguments and result as ``F.grid_sample`` (4-D ``input``, grid ``(N, H_out, W_out, 2)``), except at a
    point with a NaN/Inf coordinate: there every channel of the output is NaN (``F.grid_sample`` returns a
    finite border pixel with border padding and NaN with zero padding) and the backward finishes (CPU
    ``F.grid_sample`` segfaults with border/reflection padding, pytorch/pytorch#24823) and sends no gradient
    through that point. Elsewhere outputs and gradients equal ``F.grid_sample``'s bit for bit.
    """
    safe_grid, finite = sanitize_grid(grid)
    out = F.grid_sample(input, safe_grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    return mark_nonfinite_(out, finite.unsqueeze(1))
