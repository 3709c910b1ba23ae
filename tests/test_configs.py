"""Every config under configs/ loads, builds its model, runs one training step and one prediction step on CPU
at a small input size, with finite losses; parameter deltas over each setting's baseline match the papers'
module counts (spec/necks.md "Checkable numbers", spec/numbers.md); every paper config states its provenance
(tools/config_table.py) and runs the published schedule."""
import functools
import importlib.util
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

import upsample_plugin  # noqa: F401  (registers the upsamplers and the mm integration)

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / 'configs').rglob('*.py'))
_spec = importlib.util.spec_from_file_location('config_table', ROOT / 'tools' / 'config_table.py')
config_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(config_table)
PAPER_CONFIGS = config_table.paper_configs()
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
                     'sapa-b': 17_472, 'sapa-d': 139_808, 'bilinear': 0}
MODULE_PARAMS_512 = {'carafe': 90_532, 'dysample-lpg4': 16_416, 'dysample-lpg4ds': 32_800,
                     'dysample-plg8ds': 4_112, 'sapa-b': 34_880, 'sapa-d': 279_072, 'fade': 80_025}
EXPECTED_DELTA = {
    ('faster_rcnn', name): 4 * n for name, n in MODULE_PARAMS_256.items()}
EXPECTED_DELTA.update({('panoptic_fpn', name): 3 * n for name, n in MODULE_PARAMS_256.items()})
EXPECTED_DELTA.update({('upernet', name): 3 * n for name, n in MODULE_PARAMS_512.items()})
# SegFormer's 6 modules keep FADE's gate (47,514 = 47,257 + the 257-parameter gate; FADE-Lite 13,332).
EXPECTED_DELTA.update({('segformer', 'carafe'): 6 * 74_148, ('segformer', 'fade'): 6 * 47_514,
                       ('segformer', 'fade-lite'): 6 * 13_332, ('segformer', 'dysample-lpg4'): 6 * 8_224,
                       ('segformer', 'sapa-b'): 6 * 17_472, ('segformer', 'sapa-d'): 6 * 139_808})
# Mask R-CNN + CARAFE also replaces the mask head's 2x2 deconv (256*256*2*2 + 256 parameters) by a 5th CARAFE.
EXPECTED_DELTA.update({('mask_rcnn', name): 4 * n for name, n in MODULE_PARAMS_256.items() if name != 'carafe'})
EXPECTED_DELTA[('mask_rcnn', 'carafe')] = 5 * 74_148 - (256 * 256 * 2 * 2 + 256)
# Deltas that depend on more than (family, upsampler), per config (spec/numbers.md 13.1-13.2): FreqFusion's official
# configs set the sampler per model (Faster R101: 8 groups; Panoptic R50: no GroupNorm), and the FreqFusion / FRFU
# Panoptic FPN configs are 4-module FPN_CARAFE layouts over their matched p6conv baseline. FRFU's SegFormer head is
# the 128-channel mmseg one: 6 x FRFU(128); its matched nearest baseline has no parameters more.
_FF, _FF_NO_NORM, _FF_G8, _FRFU = 104_690, 104_434, 156_610, 21_074
EXPECTED_DELTA_BY_CONFIG = {
    'faster-rcnn_r50_fpn-p6conv_freqfusion_1x_coco': 4 * _FF,
    'faster-rcnn_r101_fpn-p6conv_freqfusion_1x_coco': 4 * _FF_G8,
    'mask-rcnn_r50_fpn-p6conv_freqfusion_1x_coco': 4 * _FF,
    'mask-rcnn_r101_fpn-p6conv_freqfusion_1x_coco': 4 * _FF,
    'panoptic-fpn_r50_fpn-p6conv_freqfusion_1x_coco': 4 * _FF_NO_NORM,
    'panoptic-fpn_r101_fpn-p6conv_freqfusion_1x_coco': 4 * _FF,
    **{f'{model}_r{depth}_{neck}_frfu_1x_coco': 4 * _FRFU for depth in (50, 101)
       for model, neck in (('faster-rcnn', 'fpn-p6conv'), ('mask-rcnn', 'fpn-p6conv'), ('panoptic-fpn', 'fpn-p6conv'))},
    'segformer_mit-b1_2xb16-160k_frfu_ade20k-512x512': 6 * 10_578,
    'segformer_mit-b1_2xb16-160k_nearest_ade20k-512x512': 0,
}


def expected_delta(path):
    if path.stem in EXPECTED_DELTA_BY_CONFIG:
        return EXPECTED_DELTA_BY_CONFIG[path.stem]
    return EXPECTED_DELTA.get((path.parent.name, config_table.upsampler_of(path)))


# Every (setting, upsampler) with an expected delta: R50 and R101 settings alike (the upsamplers do not see the
# backbone).
DELTA_CASES = [p for p in PAPER_CONFIGS if p.parent.name in FAMILY_BASELINE and expected_delta(p) is not None
               and config_table.upsampler_of(p) != FAMILY_BASELINE[p.parent.name]]


def baseline_of(path):
    setting = config_table.setting_of(path)
    matches = [p for p in path.parent.glob('*.py') if config_table.setting_of(p) == setting
               and config_table.upsampler_of(p) == FAMILY_BASELINE[path.parent.name]]
    assert len(matches) == 1, f'{path.name}: setting {setting} needs exactly one baseline, found {matches}'
    return matches[0]


@pytest.mark.parametrize('path', DELTA_CASES, ids=config_id)
def test_parameter_delta_over_baseline(path):
    assert parameter_count(path) - parameter_count(baseline_of(path)) == expected_delta(path)


def test_every_published_setting_has_a_config():
    """The experiments of issue 13: SAPA-D (Faster R-CNN, UPerNet, SegFormer), FADE-Lite SegFormer, the R101 rows
    and DLU's bilinear FPN_CARAFE baseline exist, and each setting has its baseline."""
    names = {p.name for p in PAPER_CONFIGS}
    for name in ('faster-rcnn_r50_fpn-p6conv_sapa-d_1x_coco.py', 'faster-rcnn_r50_fpn-p6conv_bilinear_1x_coco.py',
                 'faster-rcnn_r101_fpn-p6conv_dysample-lpg4ds_1x_coco.py', 'faster-rcnn_r101_fpn-p6conv_sapa-d_1x_coco.py',
                 'mask-rcnn_r101_fpn-p6conv_dysample-lpg4ds_1x_coco.py', 'panoptic-fpn_r101_fpn_dysample-lpg4ds_1x_coco.py',
                 'upernet_r50_4xb4-80k_sapa-d_ade20k-512x512.py', 'upernet_r101_4xb4-80k_sapa-d_ade20k-512x512.py',
                 'segformer_mit-b1_8xb2-160k_sapa-d_ade20k-512x512.py',
                 'segformer_mit-b1_8xb2-160k_fade-lite_ade20k-512x512.py',
                 # issue 16: FreqFusion and FRFU wherever their repositories publish a number
                 *(f'{model}_r{depth}_fpn-p6conv_{method}_1x_coco.py' for depth in (50, 101)
                   for model in ('faster-rcnn', 'mask-rcnn', 'panoptic-fpn') for method in ('freqfusion', 'frfu')),
                 'segformer_mit-b1_2xb16-160k_frfu_ade20k-512x512.py'):
        assert name in names, name
    for path in PAPER_CONFIGS:
        baseline_of(path)


@pytest.mark.parametrize('path', PAPER_CONFIGS, ids=config_id)
def test_paper_config_states_its_provenance(path):
    """Each config defines its own ``paper`` dict (metric, number and source, the official config it mirrors and
    how it differs): the README's results table is made from it."""
    paper = config_table.provenance(path)
    expected_metric = {'faster_rcnn': 'box AP', 'mask_rcnn': 'box / mask AP', 'panoptic_fpn': 'PQ'}
    assert paper['metric'] == expected_metric.get(path.parent.name, 'mIoU')


def test_provenance_check_rejects_an_inherited_or_incomplete_paper_dict(tmp_path):
    base = ROOT / 'configs' / 'faster_rcnn' / 'faster-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
    inherited = tmp_path / 'inherits.py'
    inherited.write_text(f"_base_ = '{base}'\nmodel = dict(neck=dict(upsample_cfg=dict(type='bilinear')))\n")
    config_table.ROOT, saved = tmp_path, config_table.ROOT
    try:
        with pytest.raises(ValueError, match='no top-level'):
            config_table.provenance(inherited)
        incomplete = tmp_path / 'incomplete.py'
        incomplete.write_text(f"_base_ = '{base}'\npaper = dict(metric='box AP', number='1.0', source=None, "
                              "printed_params=None, mirrors='x', deviations=[], note='')\n")
        with pytest.raises(ValueError, match='a number needs its source'):
            config_table.provenance(incomplete)
    finally:
        config_table.ROOT = saved


@pytest.mark.parametrize('path', sorted((ROOT / 'configs' / 'upernet').glob('*.py')), ids=config_id)
def test_upernet_configs_run_the_published_80k_schedule(path):
    """The UPerNet numbers of the papers are 80k runs with validation every 8k (tiny-smart
    upernet_r50_4xb4_carafe-80k_ade20k-512x512.py, mmseg schedule_80k), 4 GPUs x 4 images."""
    cfg = Config.fromfile(str(path))
    assert '-80k_' in path.name
    assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == (80_000, 8_000)
    assert cfg.train_dataloader.batch_size == 4 and cfg.optim_wrapper.optimizer.lr == 0.01
    assert [s.end for s in cfg.param_scheduler] == [80_000]
    assert cfg.default_hooks.checkpoint.save_best == 'mIoU'
