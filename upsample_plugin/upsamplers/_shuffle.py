"""``pixel_shuffle`` / ``pixel_unshuffle`` written as view + permute.

Same values and gradients as ``torch.nn.functional``'s, but their backward also works on an empty batch:
torch's ``PixelShuffleBackward0`` returns a wrongly shaped gradient for N = 0 (seen with torch 2.13). Only
reshape/transpose are used, which ONNX exports at any rank.
"""
import torch


def pixel_shuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, C*s*s, H, W) -> (N, C, H*s, W*s): channel ``c*s*s + i*s + j`` goes to pixel (h*s + i, w*s + j)."""
    n, channels, height, width = x.shape
    out_channels = channels // (scale * scale)
    x = x.reshape(n, out_channels, scale, scale, height, width).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, out_channels, height * scale, width * scale)


def pixel_unshuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The inverse of :func:`pixel_shuffle`: (N, C, H*s, W*s) -> (N, C*s*s, H, W)."""
    n, channels, height, width = x.shape
    x = x.reshape(n, channels, height // scale, scale, width // scale, scale).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, channels * scale * scale, height // scale, width // scale)
