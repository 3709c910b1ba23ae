"""The view-based pixel (un)shuffle equals torch's and differentiates on an empty batch."""
import pytest
import torch
import torch.nn.functional as F

from upsample_plugin.upsamplers._shuffle import pixel_shuffle, pixel_unshuffle


@pytest.mark.parametrize('scale', [1, 2, 3])
def test_matches_torch(scale):
    x = torch.randn(2, 3 * scale * scale, 4, 5)
    torch.testing.assert_close(pixel_shuffle(x, scale), F.pixel_shuffle(x, scale), rtol=0, atol=0)
    y = torch.randn(2, 3, 4 * scale, 5 * scale)
    torch.testing.assert_close(pixel_unshuffle(y, scale), F.pixel_unshuffle(y, scale), rtol=0, atol=0)
    torch.testing.assert_close(pixel_unshuffle(pixel_shuffle(x, scale), scale), x, rtol=0, atol=0)


def test_backward_on_empty_batch():
    x = torch.randn(0, 8, 3, 3, requires_grad=True)
    (pixel_shuffle(x, 2).sum() + pixel_unshuffle(pixel_shuffle(x, 2), 2).sum()).backward()
    assert x.grad.shape == x.shape
