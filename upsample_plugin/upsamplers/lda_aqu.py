"""LDA-AQU: Adaptive Query-guided Upsampling via Local Deformable Attention (Du et al., ACM MM 2024,
https://arxiv.org/abs/2411.19585).

Spec: ../shared/spec/lda_aqu.md. State-dict compatible with the official ``LDA_AQU`` of ``duzw9311/LDA-AQU``
(HEAD ebfb705, ``mmdet/models/necks/fpn_lau.py``): same constructor arguments, parameter names
(``layer_norm.norm.*``, ``proj_q``, ``proj_k``, ``conv_offset.{0,1.norm,3}.*``, ``relative_position_bias_table``)
and the non-persistent buffer ``base_offset``. Pure PyTorch, no custom op (the spec has none).

Difference from the official code: ``relative_position_bias_table`` is held as (heads, k_u^2, dim) instead of the
official 5-D (1, heads, 1, k_u^2, dim), because ``model.to(memory_format=torch.channels_last)`` rejects 5-D
tensors; ``state_dict()`` and ``load_state_dict()`` use the official shape, so checkpoints are unchanged.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops._checks import check_int, check_odd_kernel
from ..ops.sampling import grid_sample
from ..registry import register_upsampler
from .base import Upsampler


class LayerNormProxy(nn.Module):
    """``nn.LayerNorm(dim)`` over the channels of an (N, C, H, W) map (the official helper; its only child is
    ``norm``, so the official ``*.norm.weight`` / ``*.norm.bias`` keys load unchanged)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # NCHW -> NHWC -> normalise the last dim -> NCHW; contiguous like the official code, so the following
        # convolutions see the same memory layout (and round the same way).
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


def _check_scale_factor(value) -> int:
    """The ratio as an int: ints and integer-valued floats (the official default is ``2.``) are accepted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f'scale_factor must be an integer ratio >= 1 (e.g. 2 or 2.0), got {value!r}')
    if not float(value).is_integer() or value < 1:
        raise ValueError(
            f'scale_factor must be an integer ratio >= 1 (e.g. 2 or 2.0), got {value!r}: the official module '
            f'would return int(H*{value}) x int(W*{value}), which no neck can add to its lateral map '
            f'(spec/lda_aqu.md quirk 7)')
    return int(value)


@register_upsampler('lda_aqu')
class LDA_AQU(Upsampler):  # noqa: N801 (official class name, kept for checkpoints and configs)
    """Local deformable attention upsampler: each output pixel attends to k_u*k_u learned points of the input.

    The input is layer-normalised and projected to queries and keys (1x1 convs, ``C // reduction_factor``
    channels). Queries are upsampled bilinearly (``align_corners=True``) to the output size; per channel group a
    small conv branch turns them into tanh-bounded offsets (``range_factor`` output pixels) around a regular
    k_u x k_u neighbourhood. Keys and values (the raw input) are sampled there with ``grid_sample``
    (``align_corners=True``, zero padding) and the output is the softmax(q.k/sqrt(d))-weighted sum of the
    sampled values (spec "Forward", steps 1-8).

    Args:
        in_channels: channels C of the input (and output).
        reduction_factor: r; queries and keys have ``hidden_dim = C // r`` channels (floor division, as in the
            official code: C itself need not be a multiple of r, only the splits below must be exact).
        nh: attention heads; must divide ``hidden_dim`` and C.
        scale_factor: integer upsampling ratio s (``2.`` / ``2`` in the official code; any integer >= 1 here).
        k_e: kernel of the offset predictor's last conv (odd).
        k_u: the sampled points form a k_u x k_u neighbourhood (odd).
        n_groups: offset groups G; each group of ``hidden_dim // G`` query channels predicts the points at
            which its key channels and its ``C // G`` value channels are sampled. Must divide ``hidden_dim``
            and C.
        range_factor: offsets are ``tanh(.) * range_factor`` output pixels around the regular grid.
        rpb: add the learned relative position bias ``relative_position_bias_table`` to the sampled keys.

    Parameters: 39,410 at C=256 with the defaults, 10,250 with ``reduction_factor=16`` (spec/numbers.md).

    Deliberate differences from the official code (spec "Official-code quirks"); none changes float32/float64
    results, which match the official module to ~1e-15 in float64:

    * registered as ``lda_aqu`` and built from a plain config dict with every argument (quirk 1); bad
      arguments raise ``ValueError`` instead of failing in a reshape;
    * no ``timm`` / ``einops`` dependency (quirk 2);
    * the sampling grid is computed out of place (quirk 5) and without ``torch.meshgrid`` (quirk 6);
    * ``scale_factor`` must be an integer ratio (quirk 7). ``2.0`` and ``4.0`` are accepted as 2 and 4. The
      official code would also run with a non-integer ratio s: it returns ``int(s*H) x int(s*W)`` maps, still
      with the align_corners geometry below (output row r reads input row ``r*(H-1)/(int(s*H)-1)``). Such a
      map does not have the size ``s*H`` that necks expect, so this implementation raises ``ValueError``;
    * the constructor calls :meth:`init_weights` (official: only ``FPN_LAU.init_weights`` does), so a freshly
      built module starts with the offsets exactly on the regular grid;
    * coordinates (offsets, grid) are float32 for half-precision inputs and float64 for float64 ones; keys and
      values are sampled and the attention is computed in that dtype, then the output is cast back to the
      input's dtype. The official code builds them in the input dtype, so fp16 offsets of up to +-12 pixels
      would be rounded to ~0.008 pixel;
    * the queries are regrouped with ``reshape``: the official ``q.view(B * n_groups, ...)`` raises for a 1x1
      input on CPU (the 1x1 conv returns channels-last strides there, which ``interpolate`` keeps), so the
      official module cannot upsample a 1-pixel map; this one can;
    * when the output has a single row (or column) (only for a 1-pixel input at ``scale_factor=1``) the official
      normalisation divides by ``H_out - 1 = 0``; here the divisor is 1, which is exact because a 1-pixel
      input maps every coordinate to 0 anyway;
    * keys and values are sampled with :func:`upsample_plugin.ops.sampling.grid_sample`: a NaN/Inf point
      (from a NaN/Inf input) samples NaN, as zero-padded ``grid_sample`` does, but never reaches the kernel as
      a coordinate, so the CPU backward cannot crash on it (pytorch/pytorch#24823), and it sends no gradient.

    Kept on purpose, documented here:

    * **align_corners=True geometry** (quirk 3) for both the query interpolation and the sampling: output
      coordinate P maps to input coordinate ``P*(H-1)/(H_out-1)``, so output pixel r (zero offset) reads input
      row ``r*(H-1)/(2H-1)``, not the half-pixel-aligned ``(r+0.5)/2-0.5`` of bilinear ``align_corners=False``,
      DySample and mmdet's FPN interpolation (at s=2 the two differ by r/(2(2H-1)) - 1/4 input pixel: a
      quarter pixel at the borders, zero in the middle). A 1-pixel input is therefore copied to every output
      pixel;
    * **zero padding** (quirk 4): points outside the input sample zero keys and values, yet still receive
      attention weight (their logit is q.rpb);
    * **memory** (quirk 8): the k_u^2 sampled values are materialised per output pixel, k_u^2 * C floats (9x the
      output at k_u=3), plus k_u^2 * hidden_dim for the keys.
    """

    channel_args = ('in_channels',)
    scale_arg = 'scale_factor'
    scale_aliases = ('scale_factor',)

    def __init__(self, in_channels: int, reduction_factor: int = 4, nh: int = 1, scale_factor=2., k_e: int = 3,
                 k_u: int = 3, n_groups: int = 2, range_factor=11, rpb: bool = True):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        self.reduction_factor = check_int('reduction_factor', reduction_factor)
        self.num_head = check_int('nh', nh)
        self.scale_factor = _check_scale_factor(scale_factor)
        self.k_e = check_odd_kernel('k_e', k_e)  # even k_e would change the offset map's size
        self.k_u = check_odd_kernel('k_u', k_u)  # the neighbourhood is centred on the output pixel
        self.n_groups = check_int('n_groups', n_groups)
        if isinstance(range_factor, bool) or not isinstance(range_factor, numbers.Real) or range_factor < 0:
            raise ValueError(f'range_factor must be a real number >= 0 (offset bound in output pixels), '
                             f'got {range_factor!r}')
        self.offset_range_factor = range_factor
        if not isinstance(rpb, bool):
            raise ValueError(f'rpb must be True or False, got {rpb!r}')
        self.rpb = rpb

        # Integer divisions as in the official code; the checks below are exactly what its reshapes need.
        self.hidden_dim = in_channels // reduction_factor
        if self.hidden_dim < 1:
            raise ValueError(f'reduction_factor={reduction_factor} must be <= in_channels={in_channels} '
                             f'(hidden_dim = in_channels // reduction_factor would be 0)')
        if self.hidden_dim % n_groups:
            raise ValueError(f'n_groups={n_groups} must divide hidden_dim = in_channels // reduction_factor = '
                             f'{self.hidden_dim} (the queries and keys are split into groups)')
        if in_channels % n_groups:
            raise ValueError(f'n_groups={n_groups} must divide in_channels={in_channels} (the values are split '
                             f'into groups)')
        if self.hidden_dim % nh:
            raise ValueError(f'nh={nh} must divide hidden_dim = in_channels // reduction_factor = '
                             f'{self.hidden_dim} (the queries and keys are split into heads)')
        if in_channels % nh:
            raise ValueError(f'nh={nh} must divide in_channels={in_channels} (the values are split into heads)')
        self.attn_dim = self.hidden_dim // nh
        self.scale = self.attn_dim ** -0.5  # attention temperature (official name), not the upsampling ratio
        self.group_channel = self.hidden_dim // n_groups
        self.pad = (k_u - 1) // 2

        self.proj_q = nn.Conv2d(in_channels, self.hidden_dim, 1, bias=False)
        self.proj_k = nn.Conv2d(in_channels, self.hidden_dim, 1, bias=False)
        gc = self.group_channel
        self.conv_offset = nn.Sequential(
            nn.Conv2d(gc, gc, 3, 1, 1, groups=gc, bias=False),
            LayerNormProxy(gc),
            nn.GELU(),
            nn.Conv2d(gc, 2 * k_u * k_u, k_e, 1, k_e // 2),
        )
        self.layer_norm = LayerNormProxy(in_channels)
        # Not in the official state dicts: rebuilt here.
        self.register_buffer('base_offset', self._base_offset(), persistent=False)
        if rpb:
            # Held 3-D, (heads, k_u^2, hidden/heads): the official 5-D (1, heads, 1, k_u^2, hidden/heads) would make
            # model.to(memory_format=torch.channels_last) raise for any model containing this module (only 4-D
            # tensors have that format and Module.to converts every 4-D and 5-D one). State dicts keep the official
            # 5-D shape (hooks below), so official checkpoints load strictly and saved ones load officially.
            self.relative_position_bias_table = nn.Parameter(torch.zeros(nh, k_u * k_u, self.hidden_dim // nh))
            self.register_state_dict_post_hook(_rpb_table_to_official_shape)
            self.register_load_state_dict_pre_hook(_rpb_table_from_official_shape)
        self.init_weights()

    def _base_offset(self) -> torch.Tensor:
        """Regular k_u x k_u grid, (1, 2*k_u^2, 1, 1): tap t = ty*k_u + tx (row-major) has channel 2t = ty (dy)
        and 2t+1 = tx (dx), with ty, tx in [-pad, pad]."""
        taps = torch.arange(-self.pad, self.pad + 1, dtype=torch.float32)
        ty = taps.repeat_interleave(self.k_u)
        tx = taps.repeat(self.k_u)
        return torch.stack((ty, tx), dim=1).reshape(1, -1, 1, 1)

    def init_weights(self) -> None:
        """The official init: Xavier-uniform convs (gain 1, bias 0), LayerNorms at identity, then the last offset
        conv zeroed so the points start on the regular grid; the bias table gets a truncated N(0, 0.02^2) (the
        official constructor's ``trunc_normal_``, bounds +-2)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight, gain=1)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.conv_offset[-1].weight)
        nn.init.zeros_(self.conv_offset[-1].bias)
        if self.rpb:
            nn.init.trunc_normal_(self.relative_position_bias_table, std=.02)

    def key_position_bias(self, dtype: torch.dtype) -> torch.Tensor:
        """The learned relative position bias as (1, hidden, k_u^2, 1, 1): table[h, t, c] (official
        ``[0, h, 0, t, c]``) is the bias of key channel h*dim + c at tap t."""
        table = self.relative_position_bias_table.to(dtype).permute(0, 2, 1)  # (heads, dim, taps)
        return table.reshape(1, self.hidden_dim, self.k_u * self.k_u, 1, 1)

    @staticmethod
    def coordinate_dtype(dtype: torch.dtype) -> torch.dtype:
        """float32 at least: fp16 steps are ~0.008 pixel at 12 pixels; float64 stays float64."""
        return torch.promote_types(dtype, torch.float32)

    def queries_keys(self, x: torch.Tensor):
        """Steps 1-2: the upsampled queries (N, hidden, sH, sW) and the low-res keys (N, hidden, H, W)."""
        xn = self.layer_norm(x)
        q = self.proj_q(xn)
        k = self.proj_k(xn)
        out_size = (x.shape[2] * self.scale_factor, x.shape[3] * self.scale_factor)
        q = F.interpolate(q, out_size, mode='bilinear', align_corners=True)
        return q, k

    def offsets(self, q: torch.Tensor) -> torch.Tensor:
        """Step 3: per-group point offsets in output pixels, (N*G, 2*k_u^2, sH, sW), regular grid included.

        Channel 2t is dy, 2t+1 dx of tap t; batch-group index n*G + g. Returned in :meth:`coordinate_dtype`.
        """
        n, _, out_h, out_w = q.shape
        pred = self.conv_offset(q.reshape(n * self.n_groups, self.group_channel, out_h, out_w))
        dtype = self.coordinate_dtype(pred.dtype)
        return pred.to(dtype).tanh() * self.offset_range_factor + self.base_offset.to(dtype)

    def sampling_grid(self, offset: torch.Tensor) -> torch.Tensor:
        """Step 5: ``grid_sample`` grid (N*G, k_u^2 * sH, sW, 2), row ``t*sH + r``, from the offsets.

        Point P = (r + dy, c + dx) is normalised for ``align_corners=True`` on the *output* grid,
        2P/(sH-1) - 1, so that ``grid_sample`` on the low-res map reads input coordinate P*(H-1)/(sH-1).
        """
        bg, _, out_h, out_w = offset.shape
        taps = self.k_u * self.k_u
        offset = offset.view(bg, taps, 2, out_h, out_w)
        rows = torch.arange(out_h, dtype=offset.dtype, device=offset.device).view(out_h, 1)
        cols = torch.arange(out_w, dtype=offset.dtype, device=offset.device).view(1, out_w)
        # A single output row only happens for a 1-pixel input, where every coordinate maps to 0: any divisor
        # works, 1 avoids the official 0/0.
        grid_y = 2 * (offset[:, :, 0] + rows) / max(out_h - 1, 1) - 1
        grid_x = 2 * (offset[:, :, 1] + cols) / max(out_w - 1, 1) - 1
        return torch.stack((grid_x, grid_y), dim=-1).view(bg, taps * out_h, out_w, 2)

    def sample(self, feat: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """Bilinear, zero-padded samples of the low-res (N, Cf, H, W) ``feat`` at the k_u^2 points of every output
        pixel: (N, Cf, k_u^2, sH, sW). Group g's channels [g*Cf/G, (g+1)*Cf/G) use group g's points; a NaN/Inf
        point samples NaN (NaN-safe sampling, :mod:`upsample_plugin.ops.sampling`)."""
        n, channels, height, width = feat.shape
        taps = self.k_u * self.k_u
        out_h, out_w = grid.shape[1] // taps, grid.shape[2]
        feat = feat.to(grid.dtype).reshape(n * self.n_groups, channels // self.n_groups, height, width)
        out = grid_sample(feat, grid, mode='bilinear', padding_mode='zeros', align_corners=True)
        # (N*G, Cf/G, K*sH, sW) -> (N, Cf, K, sH, sW): channel g*Cf/G + c, the official "(g c)" order.
        return out.view(n, channels, taps, out_h, out_w)

    def attend(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Steps 6-8: per output pixel and head, softmax over the k_u^2 points of (scale*q).(k + rpb), then the
        weighted sum of the sampled values. ``keys`` (N, hidden, K, sH, sW), ``values`` (N, C, K, sH, sW)."""
        n, _, taps, out_h, out_w = keys.shape
        heads, dim = self.num_head, self.attn_dim
        if self.rpb:
            keys = keys + self.key_position_bias(keys.dtype)
        q = (q.to(keys.dtype) * self.scale).view(n, heads, dim, 1, out_h, out_w)
        logits = (q * keys.view(n, heads, dim, taps, out_h, out_w)).sum(dim=2)  # (N, nh, K, sH, sW)
        attn = logits.softmax(dim=2).unsqueeze(2)  # one weight per point, shared by the head's value channels
        values = values.view(n, heads, self.in_channels // heads, taps, out_h, out_w)
        # Accumulate tap by tap: no second K*C-per-pixel temporary next to the sampled values.
        out = attn[:, :, :, 0] * values[:, :, :, 0]
        for t in range(1, taps):
            out = out + attn[:, :, :, t] * values[:, :, :, t]
        return out.reshape(n, self.in_channels, out_h, out_w)

    def forward(self, x: torch.Tensor, guide: torch.Tensor = None) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, s*H, s*W). ``guide`` is ignored (unguided)."""
        self.check_input(x, self.in_channels)
        q, k = self.queries_keys(x)
        grid = self.sampling_grid(self.offsets(q))
        out = self.attend(q, self.sample(k, grid), self.sample(x, grid))
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, hidden_dim={self.hidden_dim}, nh={self.num_head}, '
                f'scale_factor={self.scale_factor}, k_e={self.k_e}, k_u={self.k_u}, n_groups={self.n_groups}, '
                f'range_factor={self.offset_range_factor}, rpb={self.rpb}')


def _rpb_table_to_official_shape(module, state_dict, prefix, local_metadata) -> None:
    """state_dict() hook: the bias table in the official (1, heads, 1, k_u^2, dim) shape.

    Not for ``state_dict(keep_vars=True)``, whose values must be the parameters themselves (tracers such as the
    TorchScript ONNX exporter find the module's parameters that way); the pre-hook accepts both shapes."""
    key = prefix + 'relative_position_bias_table'
    if key in state_dict and not isinstance(state_dict[key], nn.Parameter):
        state_dict[key] = state_dict[key].unsqueeze(1).unsqueeze(0)


def _rpb_table_from_official_shape(module, state_dict, prefix, local_metadata, strict, missing_keys,
                                   unexpected_keys, error_msgs) -> None:
    """load_state_dict() pre-hook: an official 5-D table (1, heads, 1, k_u^2, dim) back to (heads, k_u^2, dim);
    any other shape is left for load_state_dict's own shape check (and its error message)."""
    key = prefix + 'relative_position_bias_table'
    table = state_dict.get(key)
    if table is not None and table.dim() == 5 and table.shape[0] == 1 and table.shape[2] == 1:
        state_dict[key] = table[0, :, 0]
