"""What every plugin upsampler shares: the calling convention necks rely on and the input check."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn

from ..ops._checks import check_4d, check_all_finite, check_same_device_dtype, is_tracing


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type autocast does not know (e.g. 'meta'): no autocast there
        return False


class Upsampler(nn.Module):
    """Base of the plugin's upsamplers.

    Calling convention (spec/necks.md, "upsampler call contract"): ``forward(x, guide=None)`` with ``x`` the
    low-resolution (N, C, H, W) map; ``guide`` is the high-resolution map that guided methods (FADE, SAPA)
    require and unguided ones ignore. The output is (N, C, s*H, s*W).

    Class attributes tell :func:`upsample_plugin.build_upsampler` how to fill the constructor:
    ``channel_args`` (names taking the neck width), ``scale_arg`` (the name taking the ratio) and
    ``scale_aliases`` (names that, when given, mean the ratio is already set).
    """

    needs_guide: bool = False
    channel_args: Tuple[str, ...] = ('in_channels',)
    scale_arg: Optional[str] = 'scale_factor'
    scale_aliases: Tuple[str, ...] = ('scale_factor',)

    def check_input(self, x: torch.Tensor, channels: int) -> None:
        """``x`` must be the floating-point (N, channels, H, W) map, H, W >= 1 (N = 0 is fine), on the device of
        the module's parameters and, outside autocast, in their dtype. With the opt-in finite check on
        (``upsample_plugin.check_finite``), NaN/Inf in ``x`` raise too (docs/input_validation.md)."""
        check_4d('x', x)
        if x.shape[1] != channels:
            raise ValueError(f'{type(self).__name__} was built for {channels} channels; x must have shape '
                             f'(N, {channels}, H, W), got {tuple(x.shape)}')
        if x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f'x must have a non-empty spatial size: shape (N, {channels}, H, W) with H, W >= 1, '
                             f'got {tuple(x.shape)}')
        if not is_tracing():  # static under tracing; dynamo need not see the parameter walk
            self._check_matches_parameters(x)
        check_all_finite('x', x)

    def _check_matches_parameters(self, x: torch.Tensor) -> None:
        """x must live where the weights live: otherwise torch fails deep inside the first conv (or, with x on
        'meta', silently returns a shape-only result). The dtype may differ only under autocast, which casts."""
        param = next(self.parameters(), None)
        if param is None:
            return
        name = type(self).__name__
        if x.device != param.device:
            raise ValueError(f'x is on {x.device} but the parameters of {name} are on {param.device}; move the '
                             f'module (.to(device)) or x to one device')
        if x.dtype != param.dtype and param.is_floating_point() and not _autocast_enabled(x.device.type):
            raise ValueError(f'x has dtype {x.dtype} but the parameters of {name} have {param.dtype}; cast the '
                             f'module (.to(dtype)) or x, or run under torch.autocast')

    def check_guide(self, x: torch.Tensor, guide: Optional[torch.Tensor], guide_channels: int,
                    scale_factor: int) -> None:
        """Guided upsamplers: ``guide`` must be the (N, guide_channels, s*H, s*W) map on x's device and dtype."""
        name = type(self).__name__
        if guide is None:
            raise ValueError(f'{name} is a guided upsampler: call it as forward(x, guide) with guide the '
                             f'high-resolution (N, {guide_channels}, {scale_factor}*H, {scale_factor}*W) map')
        check_4d('guide', guide)
        expected = (x.shape[0], guide_channels, x.shape[2] * scale_factor, x.shape[3] * scale_factor)
        if tuple(guide.shape) != expected:
            raise ValueError(f'{name}: guide must have shape (N, {guide_channels}, {scale_factor}*H, '
                             f'{scale_factor}*W) = {expected} for x of shape {tuple(x.shape)}, '
                             f'got {tuple(guide.shape)}')
        check_same_device_dtype('x', x, 'guide', guide)
        check_all_finite('guide', guide)
