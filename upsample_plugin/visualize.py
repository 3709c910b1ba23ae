"""Where an upsampler reads from: sampling points and reassembly kernels of chosen output pixels.

Geometry functions return plain data (testable), :func:`render` draws it. Coordinates are in *input-pixel units*
with the low-resolution map spanning ``[0, W] x [0, H]``: input pixel (h, w) covers ``[w, w+1] x [h, h+1]`` and
its centre is ``(w + 0.5, h + 0.5)``; ``(x, y)`` order (x = column). Output pixel (P, Q) of an ``s``x upsampling
has its centre at ``((Q + 0.5) / s, (P + 0.5) / s)``. Multiply by the image/feature ratio to draw on an image.

* :func:`dysample_geometry` — DySample: per output pixel and group, the sampling position
  ``(w + 0.5 + dx, h + 0.5 + dy)`` (spec/dysample.md: offsets include the sub-pixel base grid ``init_pos``)
  and its 4 bilinear taps (clamped to the map: border padding) with their weights.
* :func:`lda_aqu_geometry` — LDA-AQU: the k_u x k_u deformable points per group (align_corners=True geometry)
  with their attention weights (one head).
* :func:`kernel_geometry` — CARAFE, DLU, FADE, FADE-Lite, SAPA-B, FreqFusion (its ALPF kernels; the offset
  generator's resampling is not drawn): the k x k reassembly weights around the parent pixel ``(P // s, Q // s)``;
  for DLU also ``source``, where its kernel was sampled from the kernel space.
* :func:`frfu_geometry` — FRFU: per group, the offset-reconstruction sampling position and its 4 bilinear taps (the
  3x3 dynamic filter that follows is applied at high resolution).
* :func:`ddf_geometry` — DDF-Up: the k x k spatial filter of the output pixel's phase at its parent pixel.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

Pixel = Tuple[int, int]


def _scale_of(module: nn.Module) -> int:
    for name in ('scale', 'scale_factor', 'up_factor'):
        value = getattr(module, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f'cannot tell the upsampling ratio of {type(module).__name__}')


def _bilinear_taps(row: float, col: float, height: int, width: int) -> List[dict]:
    """The 4 corners of a bilinear sample at index coordinates (row, col), clamped (border padding)."""
    row = min(max(row, 0.0), height - 1.0)
    col = min(max(col, 0.0), width - 1.0)
    r0, c0 = int(math.floor(row)), int(math.floor(col))
    ly, lx = row - r0, col - c0
    taps = []
    for dr, wy in ((0, 1 - ly), (1, ly)):
        for dc, wx in ((0, 1 - lx), (1, lx)):
            taps.append(dict(row=min(r0 + dr, height - 1), col=min(c0 + dc, width - 1), weight=wy * wx))
    return taps


@torch.no_grad()
def dysample_geometry(module, x: torch.Tensor, pixels: Sequence[Pixel]) -> List[dict]:
    """Per output pixel (P, Q): ``groups`` points, each ``dict(group, pos=(x, y), taps=[dict(row, col, weight)])``.

    ``pos`` = ``(w + 0.5 + dx, h + 0.5 + dy)`` (unclamped), with (dx, dy) the offset of group g, sub-pixel
    (i, j) = (P % s, Q % s) at the parent (h, w) = (P // s, Q // s), base grid included.
    """
    s, groups = module.scale, module.groups
    offsets = module._offsets(x)[0].double()  # (2*G*s*s, H, W), channel xy*G*s*s + g*s*s + i*s + j
    height, width = x.shape[-2:]
    out = []
    for p, q in pixels:
        h, i, w, j = p // s, p % s, q // s, q % s
        points = []
        for g in range(groups):
            ch = g * s * s + i * s + j
            dx, dy = offsets[ch, h, w].item(), offsets[groups * s * s + ch, h, w].item()
            points.append(dict(group=g, pos=(w + 0.5 + dx, h + 0.5 + dy),
                               taps=_bilinear_taps(h + dy, w + dx, height, width)))
        out.append(dict(pixel=(p, q), centre=((q + 0.5) / s, (p + 0.5) / s), parent=(h, w), points=points))
    return out


@torch.no_grad()
def frfu_geometry(module, x: torch.Tensor, pixels: Sequence[Pixel]) -> List[dict]:
    """FRFU: per output pixel (P, Q), ``groups`` points ``dict(group, pos=(x, y), taps)``: the bilinear sample of the
    offset reconstruction at ``((Q + 0.5 + dx) / s, (P + 0.5 + dy) / s)`` in input-pixel units, (dx, dy) the group's
    displacement in output pixels (spec/frfu.md, channel ``((g*s + i)*s + j)*2 + d``), taps clamped (border)."""
    s, groups = module.scale_factor, module.groups
    delta = module.displacements(x)[0].double()  # (2*G*s*s, H, W)
    height, width = x.shape[-2:]
    out = []
    for p, q in pixels:
        h, i, w, j = p // s, p % s, q // s, q % s
        points = []
        for g in range(groups):
            ch = ((g * s + i) * s + j) * 2
            dx, dy = delta[ch, h, w].item(), delta[ch + 1, h, w].item()
            col, row = (q + 0.5 + dx) / s, (p + 0.5 + dy) / s
            points.append(dict(group=g, pos=(col, row), taps=_bilinear_taps(row - 0.5, col - 0.5, height, width)))
        out.append(dict(pixel=(p, q), centre=((q + 0.5) / s, (p + 0.5) / s), parent=(h, w), points=points))
    return out


@torch.no_grad()
def lda_aqu_geometry(module, x: torch.Tensor, pixels: Sequence[Pixel]) -> List[dict]:
    """Per output pixel: ``n_groups * k_u**2`` points ``dict(group, tap, pos=(x, y), weight)``; ``weight`` is the
    softmax attention of the tap (head 0; shared by the groups' points of the same tap)."""
    s = module.scale_factor
    height, width = x.shape[-2:]
    out_h, out_w = height * s, width * s
    q, k = module.queries_keys(x)
    offsets = module.offsets(q)  # (G, 2*K, sH, sW) for N=1, in output pixels, base grid included
    grid = module.sampling_grid(offsets)
    keys = module.sample(k, grid)  # (1, hidden, K, sH, sW)
    taps = module.k_u * module.k_u
    if module.rpb:
        keys = keys + module.key_position_bias(keys.dtype)
    dim = module.attn_dim
    qs = (q.to(keys.dtype) * module.scale)[:, :dim]
    attn = (qs.unsqueeze(2) * keys[:, :dim]).sum(1).softmax(dim=1)[0]  # (K, sH, sW), head 0
    offsets = offsets.view(module.n_groups, taps, 2, out_h, out_w).double()
    ry = (height - 1) / max(out_h - 1, 1)
    rx = (width - 1) / max(out_w - 1, 1)
    out = []
    for p, c in pixels:
        points = []
        for g in range(module.n_groups):
            for t in range(taps):
                dy, dx = offsets[g, t, 0, p, c].item(), offsets[g, t, 1, p, c].item()
                # align_corners=True: output coordinate P maps to input index P*(H-1)/(sH-1).
                row, col = (p + dy) * ry, (c + dx) * rx
                points.append(dict(group=g, tap=t, pos=(col + 0.5, row + 0.5), weight=attn[t, p, c].item()))
        out.append(dict(pixel=(p, c), centre=((c + 0.5) / s, (p + 0.5) / s), parent=(p // s, c // s),
                        points=points))
    return out


@torch.no_grad()
def reassembly_kernels(module, x: torch.Tensor, guide: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, int]:
    """The normalised per-output-pixel kernels (N, G*k*k, sH, sW) of a reassembly upsampler, and k."""
    name = type(module).__name__
    if name == 'CARAFEPack':
        mask = module.content_encoder(module.channel_compressor(x))
        return module.kernel_normalizer(mask), module.up_kernel
    if name == 'DLUPack':
        compressed = module.channel_compressor(x)
        offset = module.conv_offset(compressed)
        mask = module.kernel_space_normalizer(module.kernel_space_generator(compressed))
        return module.kernel_space_expander(offset, mask), module.up_kernel
    if name in ('FADE', 'FADELite'):
        return module.generate_kernels(x, guide), module.up_kernel_size
    if name == 'SAPA':
        return module.attention_weights(x, guide), module.up_kernel_size
    if name == 'FreqFusion':
        return module.official_forward(guide, x)[0], module.lowpass_kernel
    raise ValueError(f'{name} is not a reassembly upsampler (CARAFE, DLU, FADE, FADE-Lite, SAPA, FreqFusion)')


@torch.no_grad()
def kernel_geometry(module, x: torch.Tensor, pixels: Sequence[Pixel], guide: Optional[torch.Tensor] = None,
                    group: int = 0) -> List[dict]:
    """Per output pixel: ``kernel`` (k x k numpy array of group ``group``) and ``taps`` =
    ``[dict(row, col, weight, inside)]`` centred on the parent pixel ``(P // s, Q // s)``; taps outside the map
    read zeros (``inside=False``)."""
    s = _scale_of(module)
    kernels, k = reassembly_kernels(module, x, guide)
    kernels = kernels[0].double()
    height, width = x.shape[-2:]
    r = (k - 1) // 2
    offsets = None
    if type(module).__name__ == 'DLUPack':
        offsets = module.conv_offset(module.channel_compressor(x))[0].double()
    out = []
    for p, q in pixels:
        h, w = p // s, q // s
        kernel = kernels[group * k * k:(group + 1) * k * k, p, q].reshape(k, k).numpy()
        taps = [dict(row=h + a - r, col=w + b - r, weight=float(kernel[a, b]),
                     inside=0 <= h + a - r < height and 0 <= w + b - r < width)
                for a in range(k) for b in range(k)]
        item = dict(pixel=(p, q), centre=((q + 0.5) / s, (p + 0.5) / s), parent=(h, w), kernel=kernel, taps=taps)
        if offsets is not None:
            # DLU: where the kernel space was sampled, parent + offset clamped to the map (spec/dlu.md).
            i, j = p % s, q % s
            dx = offsets[(group * 2) * s * s + i * s + j, h, w].item()
            dy = offsets[(group * 2 + 1) * s * s + i * s + j, h, w].item()
            item['source'] = (min(max(w + dx, 0), width - 1) + 0.5, min(max(h + dy, 0), height - 1) + 0.5)
        out.append(item)
    return out


@torch.no_grad()
def ddf_geometry(module, x: torch.Tensor, pixels: Sequence[Pixel], head: int = 0) -> List[dict]:
    """DDF-Up: per output pixel, the k x k spatial filter of its phase b = (P % s) * s + Q % s at the parent
    pixel (taps spaced by the dilation). Weights are FilterNorm-ed (zero mean), not a partition of unity; the
    channel filter multiplies them per channel."""
    s, k, d = module.scale_factor, module.kernel_size, module.dilation
    height, width = x.shape[-2:]
    r = (k - 1) // 2
    filters = {}
    out = []
    for p, q in pixels:
        h, w, b = p // s, q // s, (p % s) * s + q % s
        if b not in filters:
            filters[b] = module.spatial_branch[b](x).reshape(module.head, k * k, height, width)[head].double()
        kernel = filters[b][:, h, w].reshape(k, k).numpy()
        taps = [dict(row=h + (a - r) * d, col=w + (c - r) * d, weight=float(kernel[a, c]),
                     inside=0 <= h + (a - r) * d < height and 0 <= w + (c - r) * d < width)
                for a in range(k) for c in range(k)]
        out.append(dict(pixel=(p, q), centre=((q + 0.5) / s, (p + 0.5) / s), parent=(h, w), kernel=kernel,
                        taps=taps, phase=b))
    return out


def geometry(module, x: torch.Tensor, pixels: Sequence[Pixel], guide: Optional[torch.Tensor] = None) -> Tuple[str, List[dict]]:
    """Dispatch on the module's class: ``('points' | 'kernel', geometry)``."""
    name = type(module).__name__
    if name == 'DySample':
        return 'points', dysample_geometry(module, x, pixels)
    if name == 'LDA_AQU':
        return 'points', lda_aqu_geometry(module, x, pixels)
    if name == 'FRFU':
        return 'points', frfu_geometry(module, x, pixels)
    if name == 'DDFUpPack':
        return 'kernel', ddf_geometry(module, x, pixels)
    return 'kernel', kernel_geometry(module, x, pixels, guide)


# ----------------------------------------------------------------------------------------------------- inputs

def demo_image(height: int = 256, width: int = 256, seed: int = 0) -> np.ndarray:
    """A (H, W, 3) uint8 picture of simple shapes (disc, square, triangle, stripes) on a smooth background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack([0.25 + 0.2 * yy / height, 0.3 + 0.2 * xx / width, 0.45 * np.ones_like(xx)], -1)
    disc = (yy - 0.3 * height) ** 2 + (xx - 0.3 * width) ** 2 < (0.18 * min(height, width)) ** 2
    img[disc] = (0.9, 0.3, 0.2)
    square = (abs(yy - 0.68 * height) < 0.16 * height) & (abs(xx - 0.35 * width) < 0.16 * width)
    img[square] = (0.2, 0.7, 0.3)
    tri = (yy > 0.15 * height) & (yy < 0.55 * height) & (abs(xx - 0.72 * width) < (yy - 0.15 * height) * 0.5)
    img[tri] = (0.95, 0.85, 0.2)
    stripes = (yy > 0.65 * height) & (xx > 0.6 * width) & ((xx // max(width // 32, 1)) % 2 == 0)
    img[stripes] = (0.1, 0.1, 0.5)
    img += rng.normal(0, 0.01, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def image_features(image: np.ndarray, channels: int, size: Tuple[int, int], seed: int = 0) -> torch.Tensor:
    """A stand-in feature map (1, C, h, w) for an image when no backbone is at hand: the image area-pooled to
    ``size``, its RGB and gradient magnitude standardised and mixed into C channels by a fixed random 1x1
    projection (seeded)."""
    rgb = torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    pooled = F.adaptive_avg_pool2d(rgb, size)
    gray = pooled.mean(1, keepdim=True)
    gy = F.pad(gray[:, :, 1:] - gray[:, :, :-1], (0, 0, 0, 1))
    gx = F.pad(gray[:, :, :, 1:] - gray[:, :, :, :-1], (0, 1, 0, 0))
    base = torch.cat([pooled, (gx ** 2 + gy ** 2).sqrt()], 1)
    base = (base - base.mean((2, 3), keepdim=True)) / (base.std((2, 3), keepdim=True) + 1e-6)
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(channels, base.shape[1], generator=gen) / math.sqrt(base.shape[1])
    return torch.einsum('oc,nchw->nohw', proj, base)


def randomize_weights(module: nn.Module, std: float = 1.0, seed: int = 0) -> nn.Module:
    """Re-draw every conv weight ~N(0, std^2 / fan_in): an untrained module whose offsets and kernels vary with
    the content (a freshly initialised DySample/DLU/LDA-AQU samples on the regular grid, CARAFE has flat kernels)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std / math.sqrt(fan_in))
    return module


# ----------------------------------------------------------------------------------------------------- drawing

def render(image: np.ndarray, kind: str, geom: List[dict], feature_size: Tuple[int, int], path, title: str = '',
           dpi: int = 100, show_taps: bool = True) -> None:
    """Draw ``geom`` on ``image`` and save a PNG of exactly the image's size (``dpi`` pixels per inch).

    Points: each output pixel (white star) with its sampling points (one colour per output pixel, marker size
    by weight when given) and, for DySample, lines to the bilinear taps. Kernels: k x k heat patches (one input
    pixel each) around the parent pixel; the colour scale is per kernel.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    img_h, img_w = image.shape[:2]
    fh, fw = feature_size
    sx, sy = img_w / fw, img_h / fh
    fig = plt.figure(figsize=(img_w / dpi, img_h / dpi), dpi=dpi)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(image, extent=(0, img_w, img_h, 0), interpolation='nearest')
    ax.set_xlim(0, img_w)
    ax.set_ylim(img_h, 0)
    ax.axis('off')
    colours = plt.get_cmap('tab10')
    cmap = plt.get_cmap('magma')
    for n, item in enumerate(geom):
        colour = colours(n % 10)
        cx, cy = item['centre'][0] * sx, item['centre'][1] * sy
        if kind == 'points':
            for point in item['points']:
                px, py = point['pos'][0] * sx, point['pos'][1] * sy
                size = 12 + 120 * point.get('weight', 0.5)
                ax.plot([cx, px], [cy, py], color=colour, lw=0.6, alpha=0.7)
                ax.scatter([px], [py], s=size, color=colour, edgecolors='white', linewidths=0.5, zorder=3)
                if show_taps and 'taps' in point:
                    for tap in point['taps']:
                        tx, ty = (tap['col'] + 0.5) * sx, (tap['row'] + 0.5) * sy
                        ax.plot([px, tx], [py, ty], color=colour, lw=0.4, alpha=0.5, ls=':')
        else:
            weights = np.array([t['weight'] for t in item['taps']])
            lo, hi = float(weights.min()), float(weights.max())
            for tap in item['taps']:
                if not tap['inside']:
                    continue
                level = (tap['weight'] - lo) / (hi - lo) if hi > lo else 0.5
                ax.add_patch(Rectangle((tap['col'] * sx, tap['row'] * sy), sx, sy, facecolor=cmap(level),
                                       alpha=0.75, edgecolor=colour, linewidth=0.4))
        if 'source' in item:
            ax.scatter([item['source'][0] * sx], [item['source'][1] * sy], marker='x', s=40, color='cyan', zorder=4)
            ax.plot([cx, item['source'][0] * sx], [cy, item['source'][1] * sy], color='cyan', lw=0.8)
        ax.scatter([cx], [cy], marker='*', s=90, color='white', edgecolors='black', linewidths=0.6, zorder=4)
    if title:
        ax.text(4, 12, title, color='white', fontsize=8, bbox=dict(facecolor='black', alpha=0.5, pad=2))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
