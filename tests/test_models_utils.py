"""The size handling of one top-down step (spec/necks.md, "Size handling")."""
import pytest
import torch
import torch.nn as nn

from upsample_plugin.models.utils import fit_to_size, upsample_to


class RecordingGuided(nn.Module):
    """A guided x2 upsampler that records the guide it was given and returns nearest(x) + guide."""
    needs_guide = True
    scale_factor = 2

    def forward(self, x, guide):
        assert guide.shape[-2:] == (2 * x.shape[-2], 2 * x.shape[-1])
        self.guide = guide
        return nn.functional.interpolate(x, scale_factor=2, mode='nearest') + guide


def test_fit_crops_top_left_and_pads_by_replication():
    x = torch.arange(12.).view(1, 1, 3, 4)
    assert torch.equal(fit_to_size(x, 2, 3), x[..., :2, :3])
    padded = fit_to_size(x, 4, 5)
    assert torch.equal(padded[..., :3, :4], x)
    assert torch.equal(padded[..., 3, :4], x[..., 2, :]) and torch.equal(padded[..., :3, 4], x[..., :, 3])


@pytest.mark.parametrize('low,target', [((13, 19), (25, 38)), ((13, 19), (26, 38)), ((12, 19), (25, 38))])
def test_unguided_step_fits_the_lateral(low, target):
    up = nn.Upsample(scale_factor=2, mode='nearest')
    x, lateral = torch.randn(1, 2, *low), torch.randn(1, 2, *target)
    out = upsample_to(up, x, lateral)
    assert out.shape == lateral.shape
    common_h, common_w = min(2 * low[0], target[0]), min(2 * low[1], target[1])
    assert torch.equal(out[..., :common_h, :common_w], up(x)[..., :common_h, :common_w])


@pytest.mark.parametrize('low,target', [((13, 19), (25, 38)), ((12, 19), (25, 38)), ((4, 5), (8, 10))])
def test_guided_step_gets_an_exact_guide(low, target):
    up = RecordingGuided()
    x, lateral = torch.randn(1, 2, *low), torch.randn(1, 2, *target)
    out = upsample_to(up, x, lateral)
    assert out.shape == lateral.shape
    common_h, common_w = min(2 * low[0], target[0]), min(2 * low[1], target[1])
    assert torch.equal(up.guide[..., :common_h, :common_w], lateral[..., :common_h, :common_w])
