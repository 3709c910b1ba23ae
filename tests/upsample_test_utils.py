"""Helpers shared by the tests (``tests/`` is deliberately not a package: the mmsegmentation wheel installs a
top-level ``tests`` package, so this module is imported by its own name)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / 'data'


def load_official(name: str) -> dict:
    """An official-numerics fixture (format: data/official/README.md)."""
    return torch.load(DATA / 'official' / f'{name}.pt')


def load_mmcv_carafe(name: str, shape) -> torch.Tensor:
    return torch.from_numpy(np.fromfile(DATA / 'mmcv_carafe' / f'carafe_{name}.bin', dtype=np.float32)).view(shape)


def check_official(module: torch.nn.Module, fixture: dict, atol: float = 1e-8) -> None:
    """Load the official state dict strictly and compare outputs and input gradients in float64."""
    module = module.double()
    module.load_state_dict(fixture['state_dict'], strict=True)
    inputs = [fixture['inputs'][k].clone().requires_grad_() for k in fixture['forward_args']]
    out = module(*inputs)
    torch.testing.assert_close(out, fixture['output'], rtol=0, atol=atol)
    grads = torch.autograd.grad((out * fixture['grad_weight']).sum(), inputs)
    for key, grad in zip(fixture['forward_args'], grads):
        torch.testing.assert_close(grad, fixture['input_grads'][key], rtol=0, atol=atol)


def carafe_loop(features: torch.Tensor, masks: torch.Tensor, kernel_size: int, group_size: int,
                scale_factor: int) -> torch.Tensor:
    """CARAFE straight from the formula of spec/carafe.md, one output pixel and one tap at a time.

    Vectorised only over batch and channels; differentiable (autograd), so it is the reference for the
    gradients too. Slow: keep shapes small.
    """
    n, channels, height, width = features.shape
    k, s, r = kernel_size, scale_factor, (kernel_size - 1) // 2
    group_of_channel = torch.arange(channels) // (channels // group_size)
    rows = []
    for p in range(height * s):
        row = []
        for q in range(width * s):
            acc = features.new_zeros(n, channels)
            for a in range(k):
                for b in range(k):
                    y, x = p // s + a - r, q // s + b - r
                    if 0 <= y < height and 0 <= x < width:
                        weight = masks[:, group_of_channel * k * k + a * k + b, p, q]
                        acc = acc + weight * features[:, :, y, x]
            row.append(acc)
        rows.append(torch.stack(row, dim=-1))
    return torch.stack(rows, dim=-2)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
