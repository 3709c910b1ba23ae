"""NVlabsSegFormerHead: the NVlabs / poppinace/fade SegFormer head behind the papers' SegFormer numbers (issue 13),
and the SegFormer configs that use it (spec/necks.md (F))."""
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

import upsample_plugin  # noqa: F401  (registers the upsamplers and the mm integration)
from upsample_plugin.models.seg_heads import NVlabsSegFormerHead
from upsample_plugin.models.utils import is_guided

ROOT = Path(__file__).parents[1]
# The NVlabs setting of the FADE / SAPA numbers (8 GPUs x 2 = 1 x 16 images); the 2xb16 configs are FRFU's own
# setting (mmseg 1.x head at 128 channels, tests/test_configs.py).
SEGFORMER_CONFIGS = sorted((ROOT / 'configs' / 'segformer').glob('segformer_mit-b1_8xb2-160k_*.py'))
IN_CHANNELS = [8, 16, 24, 40]


def make_head(upsample_cfg=None, **kwargs):
    args = dict(in_channels=IN_CHANNELS, in_index=[0, 1, 2, 3], channels=16, num_classes=5,
                norm_cfg=dict(type='BN', requires_grad=True), dropout_ratio=0.1, upsample_cfg=upsample_cfg)
    args.update(kwargs)
    return NVlabsSegFormerHead(**args)


def pyramid(n=2, size=(32, 48), dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, size[0] // 2 ** i, size[1] // 2 ** i, generator=gen, dtype=dtype)
            for i, c in enumerate(IN_CHANNELS)]


def nvlabs_forward(head, inputs):
    """The official forward (poppinace/fade segformer/segformer_head.py), written from the spec with the head's
    parameters: flatten + Linear per level, bilinear resize or the six upsamplers, concat coarsest first,
    linear_fuse, dropout (eval: identity), linear_pred."""
    c1, c2, c3, c4 = inputs
    n = c4.shape[0]

    def mlp(name, x):
        proj = getattr(head, name).proj
        tokens = F.linear(x.flatten(2).transpose(1, 2), proj.weight, proj.bias)
        return tokens.permute(0, 2, 1).reshape(n, -1, x.shape[2], x.shape[3])

    _c4, _c3, _c2, _c1 = mlp('linear_c4', c4), mlp('linear_c3', c3), mlp('linear_c2', c2), mlp('linear_c1', c1)
    ups = head.upsamplers
    if len(ups) == 0:
        _c4, _c3, _c2 = (F.interpolate(x, size=c1.shape[2:], mode='bilinear', align_corners=False)
                         for x in (_c4, _c3, _c2))
    elif is_guided(ups[0]):  # the plugin's call is up(x, guide); NVlabs' FADE(en=guide, de=x)
        _c4 = ups[2](ups[1](ups[0](_c4, _c3), _c2), _c1)
        _c3 = ups[4](ups[3](_c3, _c2), _c1)
        _c2 = ups[5](_c2, _c1)
    else:
        _c4 = ups[2](ups[1](ups[0](_c4)))
        _c3 = ups[4](ups[3](_c3))
        _c2 = ups[5](_c2)
    fused = head.linear_fuse(torch.cat([_c4, _c3, _c2, _c1], dim=1))
    return head.linear_pred(fused)


@pytest.mark.parametrize('upsample_cfg', [None, dict(type='bilinear'), dict(type='dysample'),
                                          dict(type='fade', gating=True), dict(type='sapa', norm=False)],
                         ids=['default', 'bilinear', 'dysample', 'fade', 'sapa'])
def test_forward_equals_the_nvlabs_forward(upsample_cfg):
    torch.manual_seed(0)
    head = make_head(upsample_cfg).double().eval()
    inputs = pyramid()
    with torch.no_grad():
        out = head(inputs)
        expected = nvlabs_forward(head, inputs)
    assert out.shape == (2, 5, 32, 48)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_the_layout_is_the_nvlabs_one():
    """Linear projections without norm or activation; exactly one BatchNorm (in linear_fuse); no conv_seg."""
    head = make_head(dict(type='fade', gating=True))
    norms = [name for name, m in head.named_modules() if isinstance(m, _BatchNorm)]
    assert norms == ['linear_fuse.bn']
    for level in range(1, 5):
        projection = getattr(head, f'linear_c{level}')
        assert [type(m) for m in projection.modules()][1:] == [torch.nn.Linear]
    assert not hasattr(head, 'conv_seg') and len(head.upsamplers) == 6
    assert isinstance(head.linear_fuse.activate, torch.nn.ReLU)


def nvlabs_state_dict(head, conv_seg_channels=128, seed=1):
    """The head's tensors under the NVlabs names, random values, plus mmseg 0.x's unused conv_seg."""
    gen = torch.Generator().manual_seed(seed)
    state = OrderedDict((k, torch.randint(1, 1000, v.shape, generator=gen) if not v.is_floating_point()
                         else torch.randn(v.shape, generator=gen)) for k, v in head.state_dict().items())
    state['conv_seg.weight'] = torch.randn(5, conv_seg_channels, 1, 1, generator=gen)
    state['conv_seg.bias'] = torch.randn(5, generator=gen)
    return state


def test_nvlabs_key_names_load_strictly():
    head = make_head(dict(type='fade', gating=True))
    expected = {f'linear_c{i}.proj.{p}' for i in range(1, 5) for p in ('weight', 'bias')}
    expected |= {'linear_pred.weight', 'linear_pred.bias', 'linear_fuse.conv.weight', 'linear_fuse.bn.weight',
                 'linear_fuse.bn.bias', 'linear_fuse.bn.running_mean', 'linear_fuse.bn.running_var',
                 'linear_fuse.bn.num_batches_tracked'}
    keys = set(head.state_dict())
    assert expected <= keys and all(k in expected or k.startswith('upsamplers.') for k in keys)
    state = nvlabs_state_dict(head)
    head.load_state_dict(state, strict=True)  # conv_seg (128 channels, never used by NVlabs) is dropped
    for key, value in head.state_dict().items():
        assert torch.equal(value, state[key]), key
    with pytest.raises(RuntimeError, match='linear_pred.bias'):
        make_head(dict(type='fade', gating=True)).load_state_dict(
            {k: v for k, v in state.items() if k != 'linear_pred.bias'}, strict=True)


def test_odd_sizes_work_through_crop_and_guide_padding():
    head = make_head(dict(type='sapa', norm=False)).eval()
    inputs = [torch.randn(1, c, s, t) for c, (s, t) in zip(IN_CHANNELS, [(25, 31), (13, 16), (7, 8), (4, 4)])]
    assert head(inputs).shape == (1, 5, 25, 31)


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=[8, 16, 24], in_index=[0, 1, 2]), 'in_channels must have 4 entries'),
    (dict(decoder_params=dict(embed_dim=256)), 'decoder_params'),
    (dict(upsample_cfg=dict(type='dysample', scale_factor=4)), 'x2'),
    (dict(interpolate_mode='bicubic'), 'interpolate_mode'),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_head(**kwargs)


def test_wrong_pyramid_is_a_value_error():
    head = make_head()
    inputs = pyramid(dtype=torch.float32)
    inputs[2] = inputs[2][:, :5]
    with pytest.raises(ValueError, match=r'inputs\[2\]'):
        head(inputs)


@pytest.mark.parametrize('path', SEGFORMER_CONFIGS, ids=lambda p: p.stem)
def test_segformer_configs_build_the_nvlabs_setting(path):
    """The published SegFormer experiment: the NVlabs head (one BN, in the fuse layer), the aligned test resize
    (keep-ratio (2048, 512), then multiples of 32), evaluation every 16k with the best checkpoint kept."""
    cfg = Config.fromfile(str(path))
    assert cfg.model.decode_head.type == 'NVlabsSegFormerHead' and cfg.model.decode_head.channels == 256
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        steps = [(t.type, t.get('scale'), t.get('keep_ratio'), t.get('size_divisor')) for t in loader.dataset.pipeline]
        assert ('Resize', (2048, 512), True, None) in steps and ('ResizeToMultiple', None, None, 32) in steps
        assert steps.index(('Resize', (2048, 512), True, None)) < steps.index(('ResizeToMultiple', None, None, 32))
    assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == (160_000, 16_000)
    assert cfg.train_dataloader.batch_size * 8 == 16 and cfg.default_hooks.checkpoint.save_best == 'mIoU'
    with DefaultScope.overwrite_default_scope('mmseg'):
        from mmseg.registry import MODELS
        head = MODELS.build(cfg.model.decode_head)
    assert [n for n, m in head.named_modules() if isinstance(m, _BatchNorm)] == ['linear_fuse.bn']
