"""The generated toy datasets (upsample_plugin.toy_data) in the real formats, loaded by pycocotools, panopticapi,
mmdet's CocoDataset / CocoPanopticDataset / CocoPanopticMetric and mmseg's ADE20KDataset / BaseSegDataset; and the
dataset checks (upsample_plugin.data_checks) with errors that name the file."""
import copy
import filecmp
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from upsample_plugin import data_checks, toy_data
from upsample_plugin.data_checks import check_dataloader_cfg, check_dataset

TRAIN, VAL = 6, 3


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('toy') / 'toy')
    summary = toy_data.make_all(root, seed=0, train=TRAIN, val=VAL)
    assert not summary['skipped']
    return root


def all_files(root):
    return sorted(osp.relpath(osp.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def rgb2id(rgb):
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


# --------------------------------------------------------------------------------------------------- generator
def test_layout_and_determinism(toy, tmp_path):
    files = all_files(toy)
    assert len([f for f in files if f.startswith('images/train/')]) == TRAIN
    assert len([f for f in files if f.startswith('annotations/panoptic_val/')]) == VAL
    assert len([f for f in files if f.startswith('ade/images/training/') and f.endswith('.jpg')]) == TRAIN
    assert len([f for f in files if f.startswith('ade/annotations/validation/') and f.endswith('.png')]) == VAL
    for name in ('instances_train', 'instances_val', 'panoptic_train', 'panoptic_val'):
        assert f'annotations/{name}.json' in files

    same = str(tmp_path / 'same')
    toy_data.make_all(same, seed=0, train=TRAIN, val=VAL)
    assert all_files(same) == files
    match, mismatch, errors = filecmp.cmpfiles(toy, same, files, shallow=False)
    assert not mismatch and not errors and len(match) == len(files)

    other = str(tmp_path / 'other')
    toy_data.make_all(other, seed=1, train=TRAIN, val=VAL)
    _, mismatch, _ = filecmp.cmpfiles(toy, other, files, shallow=False)
    assert {'annotations/instances_train.json', 'annotations/panoptic_val.json'} <= set(mismatch)
    assert sum(f.endswith('.jpg') for f in mismatch) == 2 * (TRAIN + VAL)

    # idempotent: same parameters skip, other parameters need force, force regenerates
    assert toy_data.make_all(same, seed=0, train=TRAIN, val=VAL)['skipped']
    with pytest.raises(FileExistsError, match='meta.json'):
        toy_data.make_all(same, seed=2, train=TRAIN, val=VAL)
    summary = toy_data.make_all(same, seed=1, train=TRAIN, val=VAL, force=True)
    assert not summary['skipped']
    assert not filecmp.cmpfiles(other, same, files, shallow=False)[1]
    os.remove(osp.join(same, 'meta.json'))  # as after an interrupted run
    with pytest.raises(FileExistsError, match='incomplete'):
        toy_data.make_all(same, seed=1, train=TRAIN, val=VAL)
    assert not toy_data.make_all(same, seed=1, train=TRAIN, val=VAL, force=True)['skipped']
    foreign = tmp_path / 'foreign'
    (foreign / 'images').mkdir(parents=True)
    (foreign / 'images' / 'mine.jpg').write_bytes(b'x')
    with pytest.raises(FileExistsError, match='refusing'):
        toy_data.make_all(str(foreign), train=1, val=1, force=True)
    assert (foreign / 'images' / 'mine.jpg').exists()


def test_cli(tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'make_toy_data', osp.join(osp.dirname(osp.dirname(__file__)), 'tools', 'make_toy_data.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = str(tmp_path / 'cli')
    assert cli.main(['--out', out, '--train', '2', '--val', '1', '--seg-train', '1', '--seg-val', '1',
                     '--check']) == 0
    text = capsys.readouterr().out
    assert 'circle (id 2)' in text and 'data_checks: all splits OK' in text
    assert cli.main(['--out', out, '--train', '2', '--val', '1', '--seg-train', '1', '--seg-val', '1']) == 0
    assert 'skipped' in capsys.readouterr().out
    assert cli.main(['--out', out, '--train', '3']) == 2


# ---------------------------------------------------------------------------------------------- COCO instances
@pytest.mark.parametrize('split', ['train', 'val'])
def test_coco_instances_decode(toy, split):
    coco = COCO(osp.join(toy, toy_data.coco_instances_file(split)))
    cat_ids = sorted(coco.getCatIds())
    assert cat_ids == list(toy_data.TOY_DET_CATEGORY_IDS) and cat_ids[0] != 0 and cat_ids != list(
        range(cat_ids[0], cat_ids[0] + len(cat_ids)))
    assert [c['name'] for c in coco.loadCats(cat_ids)] == list(toy_data.TOY_DET_CLASSES)
    kinds, sizes = set(), set()
    for img in coco.loadImgs(coco.getImgIds()):
        h, w = img['height'], img['width']
        sizes.add((h % 2, w % 2))
        assert 160 <= h <= 256 and 160 <= w <= 256
        assert Image.open(osp.join(toy, toy_data.coco_image_dir(split), img['file_name'])).size == (w, h)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img['id']])):
            seg = ann['segmentation']
            if isinstance(seg, list):
                kinds.add('polygon')
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            else:
                kinds.add('rle')
                assert isinstance(seg['counts'], str) and seg['size'] == [h, w]
                rle = seg
            mask = mask_utils.decode(rle).astype(bool)
            assert ann['iscrowd'] == 0 and ann['area'] > 0
            assert abs(mask.sum() - ann['area']) <= 0.01 * ann['area']
            x, y, bw, bh = ann['bbox']
            ys, xs = np.nonzero(mask)
            assert xs.min() >= np.floor(x) and xs.max() < np.ceil(x + bw)
            assert ys.min() >= np.floor(y) and ys.max() < np.ceil(y + bh)
            assert coco.annToMask(ann).sum() == mask.sum()
    assert kinds == {'polygon', 'rle'}
    if split == 'train':
        assert (1, 1) in sizes  # odd-sized images
        areas = [a['bbox'] for a in coco.dataset['annotations']]
        assert any(max(b[2], b[3]) <= 20 for b in areas) and any(max(b[2], b[3]) >= 40 for b in areas)


def test_mmdet_coco_dataset(toy):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations

    cfg = toy_data.toy_dataset_cfg('coco', 'train', data_root=toy)
    cfg.pop('type')
    dataset = CocoDataset(**cfg, pipeline=[LoadImageFromFile(), LoadAnnotations(with_bbox=True, with_mask=True)])
    assert len(dataset) == TRAIN and dataset.metainfo['classes'] == toy_data.TOY_DET_CLASSES
    coco = COCO(osp.join(toy, toy_data.coco_instances_file('train')))
    labels = set()
    for i in range(len(dataset)):
        out = dataset[i]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[out['img_id']]))
        h, w = out['img'].shape[:2]
        assert (h, w) == (out['height'], out['width'])
        assert len(out['gt_bboxes']) == len(anns) == len(out['gt_masks']) > 0
        assert out['gt_masks'].masks.shape == (len(anns), h, w)
        np.testing.assert_allclose(out['gt_masks'].areas, [a['area'] for a in anns])
        boxes = out['gt_bboxes'].numpy()
        np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], [a['bbox'][2:] for a in anns])
        assert not out['gt_ignore_flags'].any()
        labels |= set(out['gt_bboxes_labels'].tolist())
    assert labels <= set(range(len(toy_data.TOY_DET_CLASSES))) and len(labels) >= 2


def test_mmdet_coco_metric_gt_vs_gt(toy):
    """mmdet's CocoMetric (bbox + segm) on predictions equal to the gt of the val json: mAP 1."""
    import torch
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations
    from mmdet.evaluation import CocoMetric

    cfg = toy_data.toy_dataset_cfg('coco', 'val', data_root=toy, test_mode=True)
    cfg.pop('type')
    dataset = CocoDataset(**cfg, pipeline=[LoadImageFromFile(), LoadAnnotations(with_bbox=True, with_mask=True)])
    metric = CocoMetric(ann_file=osp.join(toy, toy_data.coco_instances_file('val')), metric=['bbox', 'segm'])
    metric.dataset_meta = dataset.metainfo
    for i in range(len(dataset)):
        out = dataset[i]
        n = len(out['gt_bboxes'])
        pred = dict(bboxes=out['gt_bboxes'].tensor, scores=torch.ones(n),
                    labels=torch.from_numpy(out['gt_bboxes_labels']),
                    masks=torch.from_numpy(out['gt_masks'].masks.astype(bool)))
        metric.process({}, [dict(img_id=out['img_id'], ori_shape=out['ori_shape'], pred_instances=pred)])
    results = metric.compute_metrics(metric.results)
    assert results['bbox_mAP'] == pytest.approx(1.0) and results['segm_mAP'] == pytest.approx(1.0), results


# ------------------------------------------------------------------------------------------------ COCO panoptic
def test_mmdet_coco_panoptic_dataset(toy):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoPanopticDataset
    from mmdet.datasets.transforms import LoadPanopticAnnotations

    cfg = toy_data.toy_dataset_cfg('coco_panoptic', 'val', data_root=toy)
    cfg.pop('type')
    dataset = CocoPanopticDataset(**cfg, pipeline=[LoadImageFromFile(), LoadPanopticAnnotations()])
    assert len(dataset) == VAL
    with open(osp.join(toy, toy_data.coco_panoptic_file('val'))) as f:
        pan_json = json.load(f)
    assert [c['isthing'] for c in pan_json['categories']] == [1, 1, 1, 1, 0, 0, 0]
    by_image = {a['image_id']: a for a in pan_json['annotations']}
    num_things = len(toy_data.TOY_PANOPTIC_THINGS)
    for i in range(len(dataset)):
        out = dataset[i]
        ann = by_image[out['img_id']]
        png = rgb2id(np.asarray(Image.open(out['seg_map_path']).convert('RGB')))
        assert png.shape == out['img'].shape[:2]
        ids, counts = np.unique(png, return_counts=True)
        in_png = {int(k): int(v) for k, v in zip(ids, counts) if k != 0}
        assert in_png == {s['id']: s['area'] for s in ann['segments_info']}
        for s in ann['segments_info']:
            ys, xs = np.nonzero(png == s['id'])
            assert [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1] == s['bbox']
        things = [s for s in ann['segments_info'] if s['category_id'] in toy_data.TOY_DET_CATEGORY_IDS]
        assert len(out['gt_masks']) == len(out['gt_bboxes']) == len(things) > 0
        assert sorted(out['gt_masks'].areas.tolist()) == sorted(s['area'] for s in things)
        seg = out['gt_seg_map']
        assert set(np.unique(seg).tolist()) <= set(range(len(toy_data.TOY_PANOPTIC_CLASSES))) | {255}
        assert ((seg < num_things) == np.isin(png, [s['id'] for s in things])).all()
        assert ((seg == 255) == (png == 0)).all()


def test_panoptic_pq_gt_vs_gt(toy):
    """panopticapi's pq on gt vs gt, and mmdet's CocoPanopticMetric on predictions rebuilt from the gt: PQ 100."""
    import torch
    from mmdet.datasets import CocoPanopticDataset
    from mmdet.datasets.transforms import LoadPanopticAnnotations
    from mmdet.evaluation import CocoPanopticMetric
    from panopticapi.evaluation import pq_compute_single_core

    ann_file = osp.join(toy, toy_data.coco_panoptic_file('val'))
    seg_dir = osp.join(toy, toy_data.coco_panoptic_dir('val'))
    with open(ann_file) as f:
        gt = json.load(f)
    categories = {c['id']: c for c in gt['categories']}
    stat = pq_compute_single_core(0, [(a, copy.deepcopy(a)) for a in gt['annotations']], seg_dir, seg_dir,
                                  categories)
    present = {s['category_id'] for a in gt['annotations'] for s in a['segments_info']}
    for isthing in (None, True, False):
        result, _ = stat.pq_average(categories, isthing=isthing)
        assert result['pq'] == pytest.approx(1.0) and result['sq'] == pytest.approx(1.0)
        assert result['n'] == sum(isthing is None or categories[c]['isthing'] == isthing for c in present)

    cfg = toy_data.toy_dataset_cfg('coco_panoptic', 'val', data_root=toy, test_mode=True)
    cfg.pop('type')
    dataset = CocoPanopticDataset(**cfg, pipeline=[LoadPanopticAnnotations(with_bbox=False, with_label=False,
                                                                           with_mask=False)])
    metric = CocoPanopticMetric(ann_file=ann_file, seg_prefix=seg_dir + '/', nproc=1)
    metric.dataset_meta = dataset.metainfo
    num_classes = len(toy_data.TOY_PANOPTIC_CLASSES)
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        png = rgb2id(np.asarray(Image.open(info['seg_map_path']).convert('RGB')))
        pred = np.full(png.shape, num_classes, np.int64)  # VOID
        for k, s in enumerate(info['segments_info']):
            pred[png == s['id']] = s['category'] + (k + 1) * 1000 * bool(s['is_thing'])
        metric.process({}, [dict(img_id=info['img_id'], img_path=info['img_path'], ori_shape=png.shape,
                                 pred_panoptic_seg=dict(sem_seg=torch.from_numpy(pred)[None]))])
    results = metric.compute_metrics(metric.results)
    for key in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
        assert results[key] == pytest.approx(100.0), (key, results)


# ------------------------------------------------------------------------------------------------ ADE semantic
@pytest.mark.parametrize('kind', ['ade', 'seg'])
def test_mmseg_semantic_dataset(toy, kind):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import ADE20KDataset, BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations

    cfg = toy_data.toy_dataset_cfg(kind, 'train', data_root=toy)
    cls = dict(ADE20KDataset=ADE20KDataset, BaseSegDataset=BaseSegDataset)[cfg.pop('type')]
    dataset = cls(**cfg, pipeline=[LoadImageFromFile(), LoadAnnotations()])
    assert len(dataset) == TRAIN and dataset.reduce_zero_label
    assert dataset.metainfo['classes'] == toy_data.TOY_SEG_CLASSES
    assert dataset.metainfo['palette'] == toy_data.TOY_SEG_PALETTE
    if kind == 'ade':  # the toy classes are ADE's first 7: the label map is the identity on them
        assert {k: v for k, v in dataset.label_map.items() if v != 255} == {i: i for i in range(7)}
    seen = set()
    for i in range(len(dataset)):
        out = dataset[i]
        raw = np.asarray(Image.open(out['seg_map_path']))
        assert raw.dtype == np.uint8 and raw.ndim == 2 and raw.max() <= toy_data.TOY_SEG_NUM_CLASSES
        seg = out['gt_seg_map']
        assert seg.shape == out['img'].shape[:2] == raw.shape
        assert set(np.unique(seg).tolist()) <= set(range(toy_data.TOY_SEG_NUM_CLASSES)) | {255}
        assert ((seg == 255) == (raw == 0)).all() and (seg[raw > 0] == raw[raw > 0] - 1).all()
        seen |= set(np.unique(seg).tolist())
    assert len(seen - {255}) >= 5


# ------------------------------------------------------------------------------------------------- data checks
def test_data_checks_accept_toy(toy):
    for kind in ('coco', 'coco_panoptic', 'ade', 'seg'):
        for split in ('train', 'val'):
            (summary,) = check_dataloader_cfg(dict(dataset=toy_data.toy_dataset_cfg(kind, split, data_root=toy)))
            assert summary['num_images'] == (TRAIN if split == 'train' else VAL)
    wrapped = dict(batch_size=2, dataset=dict(type='RepeatDataset', times=2,
                                              dataset=toy_data.toy_dataset_cfg('coco', 'train', data_root=toy)))
    assert check_dataloader_cfg(wrapped)[0]['num_annotations'] > 0
    concat = dict(type='ConcatDataset', datasets=[toy_data.toy_dataset_cfg('seg', s, data_root=toy)
                                                  for s in ('train', 'val')])
    assert [p['num_images'] for p in check_dataset(concat)['parts']] == [TRAIN, VAL]
    # explicit paths
    assert check_dataset('ade', img_dir=osp.join(toy, toy_data.ade_image_dir('val')),
                         seg_dir=osp.join(toy, toy_data.ade_label_dir('val')), num_classes=7)['num_images'] == VAL
    assert check_dataset('coco_panoptic', ann_file=osp.join(toy, toy_data.coco_panoptic_file('val')),
                         img_dir=osp.join(toy, 'images/val'), seg_dir=osp.join(toy, 'annotations/panoptic_val'),
                         classes=toy_data.TOY_PANOPTIC_CLASSES)['num_segments'] > VAL


def _corrupt(name, root):
    """Break a copy of the toy set; return (dataset cfg, exception type, the path the message must name)."""
    coco_cfg = toy_data.toy_dataset_cfg('coco', 'train', data_root=root)
    pan_cfg = toy_data.toy_dataset_cfg('coco_panoptic', 'train', data_root=root)
    seg_cfg = toy_data.toy_dataset_cfg('seg', 'train', data_root=root)
    ann = osp.join(root, toy_data.coco_instances_file('train'))
    pan = osp.join(root, toy_data.coco_panoptic_file('train'))

    def edit(path, fn):
        with open(path) as f:
            data = json.load(f)
        fn(data)
        with open(path, 'w') as f:
            json.dump(data, f)

    if name == 'missing_ann_file':
        os.remove(ann)
        return coco_cfg, FileNotFoundError, ann
    if name == 'corrupt_json':
        with open(ann, 'rb') as f:
            text = f.read()
        with open(ann, 'wb') as f:
            f.write(text[:len(text) // 2])  # truncated
        return coco_cfg, ValueError, ann
    if name == 'not_json':
        with open(pan, 'wb') as f:
            f.write(b'\x89PNG\r\n\x1a\n not json')
        return pan_cfg, ValueError, pan
    if name == 'empty_images':
        edit(ann, lambda d: d.update(images=[], annotations=[]))
        return coco_cfg, ValueError, ann
    if name == 'category_outside':
        edit(ann, lambda d: d['annotations'][3].update(category_id=7))
        return coco_cfg, ValueError, ann
    if name == 'panoptic_category_outside':
        edit(pan, lambda d: d['annotations'][1]['segments_info'][0].update(category_id=103))
        return pan_cfg, ValueError, pan
    if name == 'classes_not_in_file':
        coco_cfg['metainfo'] = dict(classes=('circle', 'hexagon'))
        return coco_cfg, ValueError, ann
    if name == 'panoptic_png_ids':
        png_path = osp.join(root, toy_data.coco_panoptic_dir('train'), '000000000002.png')
        rgb = np.asarray(Image.open(png_path)).copy()
        rgb[:3, :3] = (7, 7, 7)  # an id that no segment has
        Image.fromarray(rgb).save(png_path)
        return pan_cfg, ValueError, png_path
    if name == 'missing_panoptic_png':
        png_path = osp.join(root, toy_data.coco_panoptic_dir('train'), '000000000003.png')
        os.remove(png_path)
        return pan_cfg, FileNotFoundError, png_path
    if name == 'seg_label_outside':
        label_path = osp.join(root, toy_data.ade_label_dir('train'), 'ADE_train_00000004.png')
        label = np.asarray(Image.open(label_path)).copy()
        label[5, 5:9] = 9  # > 7 classes, and not 255
        Image.fromarray(label).save(label_path)
        return seg_cfg, ValueError, label_path
    if name == 'missing_label_map':
        label_path = osp.join(root, toy_data.ade_label_dir('train'), 'ADE_train_00000002.png')
        os.remove(label_path)
        return seg_cfg, FileNotFoundError, label_path
    if name == 'missing_image':
        img_path = osp.join(root, toy_data.coco_image_dir('train'), '000000000005.jpg')
        os.remove(img_path)
        return coco_cfg, FileNotFoundError, img_path
    if name == 'empty_annotations':  # training would find no sample, evaluation no ground truth (mAP -1)
        edit(ann, lambda d: d.update(annotations=[]))
        return coco_cfg, ValueError, ann
    if name == 'image_size_mismatch':
        img_path = osp.join(root, toy_data.coco_image_dir('train'), '000000000001.jpg')
        with Image.open(img_path) as image:
            image.resize((image.width + 8, image.height)).save(img_path)
        return coco_cfg, ValueError, img_path
    if name == 'ade_label_outside_config_classes':
        # 9 is an ADE20K class, but not one of the config's 7: mmseg would silently make it 255 (ignored).
        ade_cfg = toy_data.toy_dataset_cfg('ade', 'train', data_root=root)
        label_path = osp.join(root, toy_data.ade_label_dir('train'), 'ADE_train_00000003.png')
        label = np.asarray(Image.open(label_path)).copy()
        label[4, 4:8] = 9
        Image.fromarray(label).save(label_path)
        return ade_cfg, ValueError, label_path
    if name == 'no_seg_images':
        img_dir = osp.join(root, toy_data.ade_image_dir('train'))
        for f in os.listdir(img_dir):
            os.remove(osp.join(img_dir, f))
        return seg_cfg, ValueError, img_dir
    raise AssertionError(name)


CORRUPTIONS = ['missing_ann_file', 'corrupt_json', 'not_json', 'empty_images', 'category_outside',
               'panoptic_category_outside', 'classes_not_in_file', 'panoptic_png_ids', 'missing_panoptic_png',
               'seg_label_outside', 'missing_label_map', 'missing_image', 'no_seg_images', 'empty_annotations',
               'image_size_mismatch', 'ade_label_outside_config_classes']


@pytest.mark.parametrize('name', CORRUPTIONS)
def test_data_checks_errors(toy, tmp_path, name):
    root = str(tmp_path / 'broken')
    shutil.copytree(toy, root)
    dataset_cfg, error, path = _corrupt(name, root)
    with pytest.raises(error) as info:
        check_dataloader_cfg(dict(batch_size=1, dataset=dataset_cfg))
    assert path.rstrip('/') in str(info.value)
    # the tools print these as one line without a traceback (upsample_plugin.runner.run_tool)
    assert isinstance(info.value, data_checks.DataCheckError)
    # the same through explicit paths (no config)
    if dataset_cfg['type'] == 'CocoDataset' and name != 'classes_not_in_file':
        with pytest.raises(error, match='instances_train.json|000000000005.jpg|000000000001.jpg'):
            data_checks.check_coco_instances(osp.join(root, toy_data.coco_instances_file('train')),
                                             osp.join(root, toy_data.coco_image_dir('train')))


def test_data_checks_config_errors(toy):
    cfg = toy_data.toy_dataset_cfg('coco', 'train', data_root=toy)
    cfg['data_prefix'] = dict(img_path='images/train')  # mmdet reads data_prefix['img']
    with pytest.raises(ValueError, match='data_prefix'):
        check_dataset(cfg)
    cfg = toy_data.toy_dataset_cfg('ade', 'train', data_root=toy)
    cfg['metainfo'] = dict(classes=('circle', 'square'))  # ADE20KDataset only accepts ADE class names
    with pytest.raises(ValueError, match='BaseSegDataset'):
        check_dataset(cfg)
    # names that both libraries register resolve by scope (explicit prefix, then the config's default_scope)
    assert data_checks._dataset_class('BaseSegDataset', 'mmseg').__module__.startswith('mmseg.')
    assert data_checks._dataset_class('mmseg.CityscapesDataset', 'mmdet').__module__.startswith('mmseg.')
    assert data_checks._dataset_class('CityscapesDataset', 'mmdet').__module__.startswith('mmdet.')
    seg_cfg = toy_data.toy_dataset_cfg('seg', 'val', data_root=toy)
    assert check_dataloader_cfg(dict(dataset=seg_cfg), scope='mmseg')[0]['num_classes'] == 7
    unknown = check_dataloader_cfg(dict(dataset=dict(type='NoSuchDataset', data_root=toy)))
    assert unknown[0]['skipped'] == 'unknown dataset type'
    with pytest.raises(ValueError, match='unknown dataset kind'):
        check_dataset('voc')
