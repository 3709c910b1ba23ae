"""FreqFusion and FRFU in the FPN (spec/freqfusion.md and spec/frfu.md "Integration notes"): the official
``FreqFusionCARAFEFPN`` top-down loop (the lateral replaced by ``hr' + up``), the module counts and parameter
deltas of topology B, the official init order, and any input size."""
import pytest
import torch
from upsample_test_utils import count_parameters

from upsample_plugin import FRFU, FreqFusion
from upsample_plugin.models.necks import UpsampleFPN

IN_CHANNELS = [8, 16, 32, 64]
FREQFUSION = dict(type='freqfusion', compressed_channels=8, feature_resample=True, feature_resample_group=4)


def neck(upsample_cfg, out_channels=16):
    torch.manual_seed(0)
    module = UpsampleFPN(IN_CHANNELS, out_channels, num_outs=5, upsample_cfg=upsample_cfg, topology='fpn_carafe')
    module.init_weights()
    return module


def backbone_maps(height, width, n=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, -(-height // 2 ** i), -(-width // 2 ** i), generator=gen)
            for i, c in enumerate(IN_CHANNELS)]


def official_freqfusion_fpn(module, inputs):
    """The official ``FreqFusionCARAFEFPN.forward`` (mmdet 2.28.1 fork, fpn_carafe.py), written out with the
    plugin's laterals, output convs and modules' ``official_forward``: ``(_, hr', up) = alignment[i-1](L[i-1], L[i])``,
    ``L[i-1] = hr' + up``."""
    laterals = [conv(x) for conv, x in zip(module.lateral_convs[:4], inputs)]
    laterals.append(module.lateral_convs[4](inputs[-1]))
    for i in range(len(laterals) - 1, 0, -1):
        _, hr, up = module.upsample_modules[i - 1].official_forward(laterals[i - 1], laterals[i])
        laterals[i - 1] = hr + up
    return [conv(lateral) for conv, lateral in zip(module.fpn_convs, laterals)]


def test_freqfusion_fpn_is_the_official_top_down_loop():
    module = neck(FREQFUSION)
    assert len(module.upsample_modules) == 4 and all(isinstance(m, FreqFusion) for m in module.upsample_modules)
    inputs = backbone_maps(64, 96)  # padded to 64 as the official configs: exact x2 everywhere
    outs = module(inputs)
    expected = official_freqfusion_fpn(module, inputs)
    assert len(outs) == 5
    for out, ref in zip(outs, expected):
        assert torch.equal(out, ref)


@pytest.mark.parametrize('size', [(37, 53), (65, 33)])
def test_freqfusion_fpn_any_input_size(size):
    module = neck(FREQFUSION)
    inputs = [x.requires_grad_() for x in backbone_maps(*size)]
    outs = module(inputs)
    assert [tuple(o.shape[-2:]) for o in outs[:4]] == [tuple(x.shape[-2:]) for x in inputs]
    sum(o.sum() for o in outs).backward()
    assert all(torch.isfinite(x.grad).all() for x in inputs)


@pytest.mark.parametrize('cfg,per_module', [
    (dict(type='freqfusion', compressed_channels=64, feature_resample=True, feature_resample_group=4), 104_690),
    (dict(type='freqfusion', compressed_channels=64, feature_resample=True, feature_resample_group=4,
          feature_resample_norm=False), 104_434),
    (dict(type='freqfusion', compressed_channels=64, feature_resample=True, feature_resample_group=8), 156_610),
    (dict(type='frfu'), 21_074),
])
def test_topology_b_deltas_at_256(cfg, per_module):
    """4 modules in topology B (spec/numbers.md 13.2): 418,760 / 417,736 / 626,440 / 84,296 over nearest."""
    channels = [256, 512, 1024, 2048]
    base = UpsampleFPN(channels, 256, 5, upsample_cfg=dict(type='nearest'), topology='fpn_carafe')
    learned = UpsampleFPN(channels, 256, 5, upsample_cfg=cfg, topology='fpn_carafe')
    assert count_parameters(learned) - count_parameters(base) == 4 * per_module


def test_neck_init_keeps_the_official_module_inits():
    """The neck's Xavier runs first, then each module's own init: FreqFusion's encoders N(0, 0.001^2) (and its
    Xavier sampler, quirk 3), FRFU's frfu.py init (or Xavier with init='xavier', the official detection necks)."""
    module = neck(dict(FREQFUSION, compressed_channels=64), out_channels=64)
    for up in module.upsample_modules:
        assert up.content_encoder.weight.std() < 0.0012 and up.dysampler.direct_scale.weight.any()
    frfu = neck(dict(type='frfu'))
    assert all(isinstance(m, FRFU) and not m.offset_mask.weight.any() for m in frfu.upsample_modules)
    xavier = neck(dict(type='frfu', init='xavier'))
    assert all(m.offset_mask.weight.any() for m in xavier.upsample_modules)
