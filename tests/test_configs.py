"""Every config under configs/ loads, builds its model, runs one training step and one prediction step on CPU
at a small input size, with finite losses; parameter deltas over each family's baseline match the papers'
module counts (spec/necks.md "Checkable numbers", spec/numbers.md)."""
import functools
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

import upsample_plugin  # noqa: F401  (registers the upsamplers and the mm integration)

CONFIGS = sorted((Path(__file__).parents[1] / 'configs').rglob('*.py'))
FAMILY_BASELINE = {'faster_rcnn': 'nearest', 'mask_rcnn': 'nearest', 'panoptic_fpn': 'nearest',
                   'upernet': 'bilinear', 'segformer': 'bilinear',
                   # Lite-HRNet's fuse-layer upsampling; its parameter deltas: tests/test_lite_hrnet.py.
                   'lite_hrnet': 'nearest'}


# Small enough for ~50 R50 models on 2 CPU cores; the test size is odd and not a multiple of 32 or 64.
TRAIN_SIZE = (128, 192)
TEST_SIZE = (125, 167)


def config_id(path):
    return path.stem


def load(path):
    cfg = Config.fromfile(str(path))
    cfg.model.pop('init_cfg', None)
    if cfg.model.get('backbone', {}).get('init_cfg'):
        cfg.model.backbone.init_cfg = None  # no pretrained download
    if 'pretrained' in cfg.model:
        cfg.model.pretrained = None
    if cfg.model.get('train_cfg', {}).get('rcnn'):
        # Fewer RoIs than the 512 of the configs: the 4-conv mask head on 512 RoIs dominates a CPU step.
        cfg.model.train_cfg.rcnn.sampler.num = 32
        cfg.model.train_cfg.rpn_proposal.max_per_img = 64
        cfg.model.test_cfg.rpn.max_per_img = 64
    return cfg


def build(cfg):
    # Only inside the config's scope: a global init_default_scope would leak into later tests (an mmdet
    # model built under the mmseg scope picks mmseg's losses).
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        scoped = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
        return revert_sync_batchnorm(scoped.build(cfg.model))


def num_classes(cfg):
    if cfg.default_scope == 'mmseg':
        return cfg.model.decode_head.num_classes
    return cfg.model.roi_head.bbox_head.num_classes


def det_batch(shapes, classes, with_mask, with_semantic):
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(len(shapes), image_shapes=[(3, *s) for s in shapes], num_items=[3] * len(shapes),
                          num_classes=classes, with_mask=with_mask, with_semantic=with_semantic)


def seg_batch(shapes, num_classes):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for height, width in shapes:
        inputs.append(torch.randint(0, 255, (3, height, width), generator=gen, dtype=torch.uint8))
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, height, width), generator=gen))
        sample.set_metainfo(dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def batch_for(cfg, shapes):
    if cfg.default_scope == 'mmseg':
        return seg_batch(shapes, num_classes(cfg))
    model_type = cfg.model.type
    return det_batch(shapes, num_classes(cfg), with_mask=model_type in ('MaskRCNN', 'PanopticFPN'),
                     with_semantic=model_type == 'PanopticFPN')


@pytest.mark.parametrize('path', CONFIGS, ids=config_id)
def test_config_trains_and_predicts(path):
    torch.manual_seed(0)
    cfg = load(path)
    if cfg.default_scope == 'mmseg':
        # Train at a small crop (the configs crop 512x512); predict on an odd, unpadded size below.
        cfg.model.data_preprocessor.size = TRAIN_SIZE
    model = build(cfg)
    model.train()
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        losses = model.train_step(batch_for(cfg, [TRAIN_SIZE, TRAIN_SIZE]), optim_wrapper)
        assert losses and all(torch.isfinite(v).all() for v in losses.values()), losses
        model.eval()
        with torch.no_grad():
            results = model.test_step(batch_for(cfg, [TEST_SIZE]))
    assert len(results) == 1


@functools.lru_cache(maxsize=None)
def parameter_count(path):
    return sum(p.numel() for p in build(load(path)).parameters())


# Per-module parameters at the host's width (spec/numbers.md section 1) x modules per host (spec/necks.md).
MODULE_PARAMS_256 = {'carafe': 74_148, 'dlu': 35_489, 'dysample-lpg4': 8_224, 'dysample-lpg4ds': 16_416,
                     'dysample-plg8ds': 2_064, 'ddf-up': 560_368, 'lda-aqu': 39_410, 'fade': 47_257,
                     'sapa-b': 17_472}
MODULE_PARAMS_512 = {'carafe': 90_532, 'dysample-lpg4': 16_416, 'dysample-lpg4ds': 32_800,
                     'dysample-plg8ds': 4_112, 'sapa-b': 34_880}
EXPECTED_DELTA = {
    ('faster_rcnn', name): 4 * n for name, n in MODULE_PARAMS_256.items()}
EXPECTED_DELTA.update({('panoptic_fpn', name): 3 * n for name, n in MODULE_PARAMS_256.items()})
EXPECTED_DELTA.update({('upernet', name): 3 * n for name, n in MODULE_PARAMS_512.items()})
EXPECTED_DELTA.update({('segformer', 'carafe'): 6 * 74_148, ('segformer', 'fade'): 6 * 47_514,
                       ('segformer', 'dysample-lpg4'): 6 * 8_224})
# Mask R-CNN + CARAFE also replaces the mask head's 2x2 deconv (256*256*2*2 + 256 parameters) by a 5th CARAFE.
EXPECTED_DELTA.update({('mask_rcnn', name): 4 * n for name, n in MODULE_PARAMS_256.items() if name != 'carafe'})
EXPECTED_DELTA[('mask_rcnn', 'carafe')] = 5 * 74_148 - (256 * 256 * 2 * 2 + 256)


@pytest.mark.parametrize('family,name', sorted(EXPECTED_DELTA), ids=lambda v: str(v))
def test_parameter_delta_over_baseline(family, name):
    folder = Path(__file__).parents[1] / 'configs' / family
    baseline = next(folder.glob(f'*_{FAMILY_BASELINE[family]}_*.py'))
    learned = next(folder.glob(f'*_{name}_*.py'))
    assert parameter_count(learned) - parameter_count(baseline) == EXPECTED_DELTA[(family, name)]
