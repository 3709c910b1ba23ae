"""Small generated datasets in the real on-disk formats of COCO (instances + panoptic) and ADE20K.

Everything is drawn with numpy/OpenCV (vectorised, no per-pixel Python loops) and is a pure function of the seed:
image ``k`` of a split uses its own random stream ``(seed, set, split, k)``, so the same seed gives byte-identical
files and a larger ``--train`` only appends images. ``tools/make_toy_data.py`` is the command line over
:func:`make_all`.

Scenes: textured "stuff" regions (gradient sky, noisy ground, striped wall, ...; sometimes a VOID blob of clutter)
under filled shapes. About a third of the objects are small (8-20 px), objects may overlap (the hidden part of an
object is never more than half of it), image sizes are random in ``[min_size, max_size]`` (odd ones included).

Layout under ``out`` (default ``data/toy``)::

    images/{train,val}/000000000001.jpg ...        COCO images (file_name in the json), ids 1.. and 500001..
    annotations/instances_{train,val}.json         COCO instances: polygons, and RLE (counts as str) for the
                                                   occluded objects and some others; iscrowd=0; area = mask pixels
    annotations/panoptic_{train,val}.json          COCO panoptic: images, annotations (file_name, image_id,
                                                   segments_info[id, category_id, area, bbox, iscrowd]), categories
    annotations/panoptic_{train,val}/*.png         RGB id maps, id = R + 256 G + 256^2 B, 0 = VOID
    ade/images/{training,validation}/ADE_*.jpg     ADE20K-style semantic segmentation (own scenes)
    ade/annotations/{training,validation}/ADE_*.png  uint8 labels: 0 = other (ignored by reduce_zero_label), 1..7
    meta.json                                      the generation parameters (written last)

Classes:

* Instances (:data:`TOY_DET_CLASSES`): ``circle``, ``square``, ``triangle``, ``star`` with COCO-like
  non-contiguous category ids 2, 5, 6, 9. A config sets ``metainfo=dict(classes=TOY_DET_CLASSES,
  palette=TOY_DET_PALETTE)`` (mmdet maps category ids to labels 0..3 by name, in this order).
* Panoptic: the same things (same ids) + stuff (:data:`TOY_PANOPTIC_STUFF`) ``sky`` (101), ``ground`` (104),
  ``wall`` (118), ``isthing=0``. Things come first, as mmdet's panoptic heads expect (labels 0..3 things, 4..6
  stuff): ``metainfo=TOY_PANOPTIC_METAINFO`` (``classes``, ``thing_classes``, ``stuff_classes``, ``palette``).
  ``CocoPanopticMetric`` needs ``ann_file=<root>/annotations/panoptic_val.json`` and
  ``seg_prefix=<root>/annotations/panoptic_val/``; it does not read the instances json.
* Semantic (:data:`TOY_SEG_CLASSES`): ``wall`` (striped region), ``building`` (squares), ``sky`` (gradient),
  ``floor`` (noisy ground), ``tree`` (triangles), ``ceiling`` (checkered top band), ``road`` (dark band with
  dashes) = labels 1..7 on disk. They are named after the first 7 ADE20K classes on purpose: mmseg's
  ``ADE20KDataset`` only accepts custom ``classes`` that are a subset of ADE's 150 names and then remaps labels
  through ``label_map``; for a prefix of ADE's list that map is the identity, so both

  - ``dict(type='ADE20KDataset', metainfo=TOY_SEG_METAINFO, ...)`` and
  - ``dict(type='BaseSegDataset', img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
    metainfo=TOY_SEG_METAINFO, ...)``

  load the set with labels 0..6 and 255 (= ignore: the "other" pixels). Use ``num_classes=7`` in the decode
  heads and ``LoadAnnotations(reduce_zero_label=True)`` (or leave it unset) in the pipeline.

Dataset dicts (without ``pipeline``) for every split: :func:`toy_dataset_cfg`. Evaluators: ``CocoMetric`` with
``ann_file=<root>/annotations/instances_val.json``, ``CocoPanopticMetric`` as above, mmseg's ``IoUMetric``.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

FORMAT_VERSION = 1

# ----------------------------------------------------------------------------------------------------- classes
TOY_DET_CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'star')
TOY_DET_CATEGORY_IDS: Tuple[int, ...] = (2, 5, 6, 9)
TOY_DET_PALETTE: List[Tuple[int, int, int]] = [(220, 20, 60), (0, 0, 142), (0, 160, 60), (250, 170, 30)]
TOY_DET_METAINFO = dict(classes=TOY_DET_CLASSES, palette=TOY_DET_PALETTE)

TOY_PANOPTIC_THINGS: Tuple[str, ...] = TOY_DET_CLASSES
TOY_PANOPTIC_STUFF: Tuple[str, ...] = ('sky', 'ground', 'wall')
TOY_PANOPTIC_STUFF_IDS: Tuple[int, ...] = (101, 104, 118)
TOY_PANOPTIC_CLASSES: Tuple[str, ...] = TOY_PANOPTIC_THINGS + TOY_PANOPTIC_STUFF
TOY_PANOPTIC_PALETTE: List[Tuple[int, int, int]] = TOY_DET_PALETTE + [(70, 130, 180), (152, 251, 152),
                                                                      (102, 102, 156)]
TOY_PANOPTIC_METAINFO = dict(classes=TOY_PANOPTIC_CLASSES, thing_classes=TOY_PANOPTIC_THINGS,
                             stuff_classes=TOY_PANOPTIC_STUFF, palette=TOY_PANOPTIC_PALETTE)

# The first 7 classes of ADE20K (mmseg's ADE20KDataset.METAINFO), so that ADE20KDataset accepts them (see above).
TOY_SEG_CLASSES: Tuple[str, ...] = ('wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road')
TOY_SEG_PALETTE: List[List[int]] = [[120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3],
                                    [120, 120, 80], [140, 140, 140]]
TOY_SEG_METAINFO = dict(classes=TOY_SEG_CLASSES, palette=TOY_SEG_PALETTE)
TOY_SEG_NUM_CLASSES = len(TOY_SEG_CLASSES)

# What each class looks like (the renderer's vocabulary).
_DET_SHAPES = ('circle', 'square', 'triangle', 'star')
_PANOPTIC_STUFF_KINDS = ('sky', 'ground', 'wall')
_SEG_STUFF_KINDS = {'wall': 'wall', 'sky': 'sky', 'floor': 'ground', 'ceiling': 'ceiling', 'road': 'road'}
_SEG_THING_SHAPES = {'building': 'square', 'tree': 'triangle'}

_SHAPE_COLORS = {'circle': (200, 40, 60), 'square': (40, 60, 190), 'triangle': (40, 170, 70),
                 'star': (235, 180, 40)}

# Relative paths (also what the configs use).
COCO_SPLITS = ('train', 'val')
ADE_SPLITS = {'train': 'training', 'val': 'validation'}
_IMAGE_ID_BASE = {'train': 0, 'val': 500000}
_ANN_ID_BASE = {'train': 0, 'val': 5000000}
_SPLIT_CODE = {'train': 0, 'val': 1}
_SET_CODE = {'coco': 11, 'ade': 23}


def coco_image_dir(split: str) -> str:
    return f'images/{split}'


def coco_instances_file(split: str) -> str:
    return f'annotations/instances_{split}.json'


def coco_panoptic_file(split: str) -> str:
    return f'annotations/panoptic_{split}.json'


def coco_panoptic_dir(split: str) -> str:
    return f'annotations/panoptic_{split}'


def ade_image_dir(split: str) -> str:
    return f'ade/images/{ADE_SPLITS[split]}'


def ade_label_dir(split: str) -> str:
    return f'ade/annotations/{ADE_SPLITS[split]}'


def toy_dataset_cfg(kind: str, split: str = 'train', data_root: str = 'data/toy', **kwargs) -> dict:
    """The mm dataset dict (no ``pipeline``) for one generated split.

    ``kind``: ``'coco'`` (mmdet ``CocoDataset``), ``'coco_panoptic'`` (``CocoPanopticDataset``), ``'ade'``
    (mmseg ``ADE20KDataset``) or ``'seg'`` (mmseg ``BaseSegDataset`` with ADE's conventions). ``kwargs`` are
    added to the dict (e.g. ``pipeline``, ``test_mode``).
    """
    if split not in COCO_SPLITS:
        raise ValueError(f'split must be one of {COCO_SPLITS}, got {split!r}')
    root = data_root.rstrip('/') + '/'
    if kind == 'coco':
        cfg = dict(type='CocoDataset', data_root=root, ann_file=coco_instances_file(split),
                   data_prefix=dict(img=coco_image_dir(split) + '/'), metainfo=dict(TOY_DET_METAINFO))
    elif kind == 'coco_panoptic':
        cfg = dict(type='CocoPanopticDataset', data_root=root, ann_file=coco_panoptic_file(split),
                   data_prefix=dict(img=coco_image_dir(split) + '/', seg=coco_panoptic_dir(split) + '/'),
                   metainfo=dict(TOY_PANOPTIC_METAINFO))
    elif kind in ('ade', 'seg'):
        cfg = dict(type='ADE20KDataset', data_root=root + 'ade',
                   data_prefix=dict(img_path=f'images/{ADE_SPLITS[split]}',
                                    seg_map_path=f'annotations/{ADE_SPLITS[split]}'),
                   metainfo=dict(TOY_SEG_METAINFO))
        if kind == 'seg':
            cfg.update(type='BaseSegDataset', img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
    else:
        raise ValueError(f"kind must be 'coco', 'coco_panoptic', 'ade' or 'seg', got {kind!r}")
    cfg.update(kwargs)
    return cfg


# --------------------------------------------------------------------------------------------------- rendering
def _rng(seed: int, dataset: str, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SET_CODE[dataset], _SPLIT_CODE[split], int(index)])


def _image_size(rng: np.random.Generator, index: int, min_size: int, max_size: int) -> Tuple[int, int]:
    if index == 0:  # the first image of every split has odd sides
        lo = min_size + (min_size + 1) % 2
        hi = max(lo, max_size - (max_size + 1) % 2)
        odd = np.arange(lo, hi + 1, 2)
        return int(rng.choice(odd)), int(rng.choice(odd))
    return int(rng.integers(min_size, max_size + 1)), int(rng.integers(min_size, max_size + 1))


def _jitter(rng: np.random.Generator, color, amount: int) -> np.ndarray:
    return np.clip(np.asarray(color, np.float32) + rng.integers(-amount, amount + 1, 3), 0, 255)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise in [0, 1], shape (h, w, channels)."""
    import cv2
    small = rng.random((h // cell + 2, w // cell + 2, channels)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(big.reshape(h, w, channels), 0, 1)


def _texture(kind: str, rng: np.random.Generator, h: int, w: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A (h, w, 3) float32 RGB texture for one stuff kind."""
    if kind == 'sky':
        top, bottom = _jitter(rng, (70, 120, 210), 30), _jitter(rng, (170, 200, 235), 20)
        t = (yy / max(h - 1, 1))[..., None]
        return top * (1 - t) + bottom * t + 12 * (_smooth_noise(rng, h, w, 24) - 0.5)
    if kind == 'ground':
        base = _jitter(rng, (110, 95, 60) if rng.random() < 0.5 else (80, 120, 55), 25)
        return base + 70 * (_smooth_noise(rng, h, w, 12, 3) - 0.5) + 30 * (_smooth_noise(rng, h, w, 3) - 0.5)
    if kind == 'wall':
        angle, period = rng.uniform(0, np.pi), rng.uniform(5, 14)
        t = xx * np.cos(angle) + yy * np.sin(angle)
        stripes = (np.sin(2 * np.pi * t / period) > 0)[..., None]
        c0, c1 = _jitter(rng, (150, 140, 130), 40), _jitter(rng, (95, 85, 80), 30)
        return np.where(stripes, c0, c1)
    if kind == 'ceiling':
        cell = int(rng.integers(6, 13))
        checker = (((yy // cell) + (xx // cell)) % 2 == 0)[..., None]
        return np.where(checker, _jitter(rng, (210, 205, 190), 20), _jitter(rng, (175, 170, 160), 20))
    if kind == 'road':
        base = _jitter(rng, (70, 70, 75), 12) + 25 * (_smooth_noise(rng, h, w, 2) - 0.5)
        period = int(rng.integers(10, 20))
        dashes = (((xx // period) % 2 == 0) & (np.abs(yy - np.round(yy / 7) * 7) < 1))[..., None]
        return np.where(dashes, np.float32(235), base)
    if kind == 'void':
        return rng.integers(0, 256, (h, w, 3)).astype(np.float32)
    raise ValueError(kind)


def _stuff_layout(rng: np.random.Generator, h: int, w: int, kinds: Sequence[str], yy: np.ndarray,
                  xx: np.ndarray) -> np.ndarray:
    """(h, w) int map: index into ``kinds`` per pixel, -1 = VOID."""
    layout = np.full((h, w), -1, np.int64)
    horizon = h * rng.uniform(0.3, 0.6) + rng.uniform(2, 0.08 * h) * np.sin(
        2 * np.pi * xx / rng.uniform(0.5 * w, 2 * w) + rng.uniform(0, 2 * np.pi))
    below = yy >= horizon
    if 'sky' in kinds:
        layout[~below] = kinds.index('sky')
    if 'ground' in kinds:
        layout[below] = kinds.index('ground')
    if 'road' in kinds and rng.random() < 0.6:
        top = horizon.max() + rng.uniform(0.05, 0.2) * h
        band = (yy >= top) & (yy < top + rng.uniform(0.1, 0.25) * h)
        layout[band] = kinds.index('road')
    if 'wall' in kinds and rng.random() < 0.6:
        x0 = rng.uniform(-0.1, 0.7) * w
        x1 = x0 + rng.uniform(0.2, 0.5) * w
        y0 = rng.uniform(0.05, 0.4) * h
        y1 = rng.uniform(0.6, 0.95) * h
        layout[(xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)] = kinds.index('wall')
    if 'ceiling' in kinds and rng.random() < 0.4:
        layout[yy < rng.uniform(0.08, 0.22) * h] = kinds.index('ceiling')
    if rng.random() < 0.35:  # a blob of unlabeled clutter
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(6, 0.15 * h), rng.uniform(6, 0.15 * w)
        layout[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = -1
    return layout


def _shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """(n, 2) x/y vertices of a filled shape of circumradius ``r``."""
    if shape == 'circle':
        n = int(np.clip(np.pi * r, 12, 48))
        radius = np.full(n, r)
    elif shape == 'square':
        n, radius = 4, np.full(4, r)
    elif shape == 'triangle':
        n, radius = 3, np.full(3, r)
    elif shape == 'star':
        n, radius = 10, np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    else:
        raise ValueError(shape)
    theta = angle + 2 * np.pi * np.arange(n) / n
    return np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1)


def _poly_mask(polygon: np.ndarray, h: int, w: int) -> np.ndarray:
    """Rasterise exactly as pycocotools (and hence mmdet) decodes the polygon."""
    from pycocotools import mask as mask_utils
    rles = mask_utils.frPyObjects([polygon.reshape(-1).tolist()], h, w)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def _render_scene(rng: np.random.Generator, h: int, w: int, stuff_kinds: Sequence[str],
                  thing_shapes: Sequence[str], max_objects: int) -> dict:
    """Image, stuff layout and objects (drawn bottom to top, each with its full and visible mask)."""
    import cv2
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    layout = _stuff_layout(rng, h, w, stuff_kinds, yy, xx)
    img = _texture('void', rng, h, w, yy, xx)
    for k, kind in enumerate(stuff_kinds):
        region = layout == k
        if region.any():
            img = np.where(region[..., None], _texture(kind, rng, h, w, yy, xx), img)

    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(len(thing_shapes)))
        shape = thing_shapes[cls]
        small = rng.random() < 0.35
        # circumradius: small objects are 8-20 px across
        r = rng.uniform(4, 10) if small else rng.uniform(10, 0.22 * min(h, w))
        cx, cy = rng.uniform(r + 1, w - r - 2), rng.uniform(r + 1, h - r - 2)
        polygon = np.round(_shape_polygon(shape, cx, cy, r, rng.uniform(0, 2 * np.pi)), 2)
        mask = _poly_mask(polygon, h, w)
        if mask.sum() < 12:
            continue
        objects.append(dict(cls=cls, shape=shape, polygon=polygon, mask=mask, color=_jitter(
            rng, _SHAPE_COLORS[shape], 45), shade=rng.uniform(-1, 1, 2)))

    # Drop the objects whose visible part is too small (less than half of it, or < 12 px), lowest first.
    while True:
        covered = np.zeros((h, w), bool)
        for obj in reversed(objects):
            obj['visible'] = obj['mask'] & ~covered
            covered |= obj['mask']
        bad = [i for i, obj in enumerate(objects)
               if obj['visible'].sum() < max(12, 0.5 * obj['mask'].sum())]
        if not bad:
            break
        del objects[bad[0]]

    for obj in objects:
        cx, cy = obj['polygon'].mean(0)
        ramp = 1 + 0.15 * (obj['shade'][0] * (xx - cx) + obj['shade'][1] * (yy - cy)) / max(h, w) * 4
        img = np.where(obj['mask'][..., None], obj['color'] * ramp[..., None], img)

    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.float32), (3, 3), 0.6)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return dict(image=img, layout=layout, objects=objects)


# ------------------------------------------------------------------------------------------------------ writers
def _write_jpg(path: str, rgb: np.ndarray) -> None:
    from PIL import Image
    Image.fromarray(rgb).save(path, format='JPEG', quality=92)


def _write_png(path: str, array: np.ndarray) -> None:
    from PIL import Image
    Image.fromarray(array).save(path, format='PNG')


def _dump_json(path: str, obj) -> None:
    with open(path, 'w') as f:
        json.dump(obj, f, separators=(',', ':'))


def _bbox(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1)]


def _encode_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=[int(s) for s in rle['size']], counts=rle['counts'].decode('ascii'))


def _det_categories() -> List[dict]:
    return [dict(id=cid, name=name, supercategory='shape')
            for cid, name in zip(TOY_DET_CATEGORY_IDS, TOY_DET_CLASSES)]


def _panoptic_categories() -> List[dict]:
    cats = [dict(id=cid, name=name, supercategory='shape', isthing=1, color=list(color))
            for cid, name, color in zip(TOY_DET_CATEGORY_IDS, TOY_DET_CLASSES, TOY_DET_PALETTE)]
    cats += [dict(id=cid, name=name, supercategory='background', isthing=0, color=list(color))
             for cid, name, color in zip(TOY_PANOPTIC_STUFF_IDS, TOY_PANOPTIC_STUFF, TOY_PANOPTIC_PALETTE[4:])]
    return cats


def _coco_info(seed: int, split: str) -> dict:
    return dict(description=f'upsample_plugin toy COCO ({split}), seed {seed}', version=str(FORMAT_VERSION),
                year=2024, contributor='upsample_plugin.toy_data', date_created='2024-01-01')


def make_coco(out: str, seed: int = 0, splits: Optional[Dict[str, int]] = None, min_size: int = 160,
              max_size: int = 256, max_objects: int = 8, instances: bool = True, panoptic: bool = True,
              rle_fraction: float = 0.15) -> dict:
    """Render the COCO scenes once and write the images plus instances and/or panoptic annotations."""
    splits = dict(train=64, val=16) if splits is None else splits
    stats = {}
    for split, count in splits.items():
        img_dir = osp.join(out, coco_image_dir(split))
        os.makedirs(img_dir, exist_ok=True)
        pan_dir = osp.join(out, coco_panoptic_dir(split))
        if panoptic:
            os.makedirs(pan_dir, exist_ok=True)
        os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
        images, anns, pan_anns = [], [], []
        ann_id = _ANN_ID_BASE[split]
        n_rle = n_small = n_occluded = 0
        for index in range(count):
            rng = _rng(seed, 'coco', split, index)
            h, w = _image_size(rng, index, min_size, max_size)
            scene = _render_scene(rng, h, w, _PANOPTIC_STUFF_KINDS, _DET_SHAPES, max_objects)
            image_id = _IMAGE_ID_BASE[split] + index + 1
            file_name = f'{image_id:012d}.jpg'
            _write_jpg(osp.join(img_dir, file_name), scene['image'])
            images.append(dict(id=image_id, file_name=file_name, height=h, width=w, license=0))

            pan = np.zeros((h, w), np.int64)  # 0 = VOID
            for k, stuff_id in enumerate(TOY_PANOPTIC_STUFF_IDS):
                pan[scene['layout'] == k] = stuff_id * 1000
            for number, obj in enumerate(scene['objects'], 1):
                ann_id += 1
                visible = obj['visible']
                occluded = bool((obj['mask'] & ~visible).any())
                n_occluded += occluded
                if occluded or rng.random() < rle_fraction:
                    segmentation = _encode_rle(visible)
                    n_rle += 1
                else:
                    segmentation = [obj['polygon'].reshape(-1).tolist()]
                bbox = _bbox(visible)
                n_small += max(bbox[2], bbox[3]) <= 20
                anns.append(dict(id=ann_id, image_id=image_id, category_id=TOY_DET_CATEGORY_IDS[obj['cls']],
                                 segmentation=segmentation, area=float(visible.sum()), bbox=bbox, iscrowd=0))
                # segment ids: category id * 1000 + instance number (stuff: + 0); unique in the image
                obj['segment_id'] = TOY_DET_CATEGORY_IDS[obj['cls']] * 1000 + number
                pan[visible] = obj['segment_id']

            if panoptic:
                segments = []
                for k, stuff_id in enumerate(TOY_PANOPTIC_STUFF_IDS):
                    mask = pan == stuff_id * 1000
                    if mask.any():
                        segments.append(dict(id=stuff_id * 1000, category_id=stuff_id, area=int(mask.sum()),
                                             bbox=[int(v) for v in _bbox(mask)], iscrowd=0))
                for obj in scene['objects']:
                    segments.append(dict(id=obj['segment_id'], category_id=TOY_DET_CATEGORY_IDS[obj['cls']],
                                         area=int(obj['visible'].sum()),
                                         bbox=[int(v) for v in _bbox(obj['visible'])], iscrowd=0))
                ids = [s['id'] for s in segments]
                assert len(set(ids)) == len(ids), 'panoptic segment ids must be unique in an image'
                rgb = np.stack([pan % 256, pan // 256 % 256, pan // 65536], axis=-1).astype(np.uint8)
                png_name = file_name.replace('.jpg', '.png')
                _write_png(osp.join(pan_dir, png_name), rgb)
                pan_anns.append(dict(image_id=image_id, file_name=png_name, segments_info=segments))

        if instances:
            _dump_json(osp.join(out, coco_instances_file(split)), dict(
                info=_coco_info(seed, split), licenses=[dict(id=0, name='generated', url='')], images=images,
                annotations=anns, categories=_det_categories()))
        if panoptic:
            _dump_json(osp.join(out, coco_panoptic_file(split)), dict(
                info=_coco_info(seed, split), licenses=[dict(id=0, name='generated', url='')], images=images,
                annotations=pan_anns, categories=_panoptic_categories()))
        stats[split] = dict(images=len(images), objects=len(anns), rle=n_rle, small=int(n_small),
                            occluded=int(n_occluded),
                            odd_sized=sum(im['height'] % 2 or im['width'] % 2 for im in images))
    return stats


def make_coco_instances(out: str, seed: int = 0, splits: Optional[Dict[str, int]] = None, **kwargs) -> dict:
    """COCO instances: ``images/<split>/*.jpg`` + ``annotations/instances_<split>.json``."""
    return make_coco(out, seed, splits, instances=True, panoptic=False, **kwargs)


def make_coco_panoptic(out: str, seed: int = 0, splits: Optional[Dict[str, int]] = None, **kwargs) -> dict:
    """COCO panoptic: ``images/<split>/*.jpg`` + ``annotations/panoptic_<split>.json`` and PNG id maps.

    The images are the same (same bytes) as :func:`make_coco_instances` with the same arguments.
    """
    return make_coco(out, seed, splits, instances=False, panoptic=True, **kwargs)


def make_ade_semantic(out: str, seed: int = 0, splits: Optional[Dict[str, int]] = None, min_size: int = 160,
                      max_size: int = 256, max_objects: int = 8) -> dict:
    """ADE20K-style: ``ade/images/<training|validation>/ADE_*.jpg`` + uint8 label PNGs (0 = other, 1..7)."""
    splits = dict(train=64, val=16) if splits is None else splits
    stuff_names = [c for c in TOY_SEG_CLASSES if c in _SEG_STUFF_KINDS]
    stuff_kinds = [_SEG_STUFF_KINDS[c] for c in stuff_names]
    thing_names = [c for c in TOY_SEG_CLASSES if c in _SEG_THING_SHAPES]
    thing_shapes = [_SEG_THING_SHAPES[c] for c in thing_names]
    stats = {}
    for split, count in splits.items():
        img_dir, lbl_dir = osp.join(out, ade_image_dir(split)), osp.join(out, ade_label_dir(split))
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(lbl_dir, exist_ok=True)
        hist = np.zeros(TOY_SEG_NUM_CLASSES + 1, np.int64)
        prefix = 'ADE_train' if split == 'train' else 'ADE_val'
        for index in range(count):
            rng = _rng(seed, 'ade', split, index)
            h, w = _image_size(rng, index, min_size, max_size)
            scene = _render_scene(rng, h, w, stuff_kinds, thing_shapes, max_objects)
            lut = np.array([TOY_SEG_CLASSES.index(c) + 1 for c in stuff_names] + [0], np.uint8)
            label = lut[scene['layout']]  # layout -1 (VOID) -> lut[-1] = 0
            for obj in scene['objects']:
                label[obj['visible']] = TOY_SEG_CLASSES.index(thing_names[obj['cls']]) + 1
            name = f'{prefix}_{index + 1:08d}'
            _write_jpg(osp.join(img_dir, name + '.jpg'), scene['image'])
            _write_png(osp.join(lbl_dir, name + '.png'), label)
            hist += np.bincount(label.reshape(-1), minlength=TOY_SEG_NUM_CLASSES + 1)
        stats[split] = dict(images=count, pixel_fraction={
            name: round(float(v) / max(int(hist.sum()), 1), 4)
            for name, v in zip(('other',) + TOY_SEG_CLASSES, hist)})
    return stats


# ------------------------------------------------------------------------------------------------------ make_all
_GENERATED = ('images', 'annotations', 'ade', 'meta.json')


def _expected_files(out: str, params: dict) -> List[str]:
    files = []
    for split in COCO_SPLITS:
        files += [coco_instances_file(split), coco_panoptic_file(split)]
        n = params[split]
        if n:
            last = f'{_IMAGE_ID_BASE[split] + n:012d}'
            files += [f'{coco_image_dir(split)}/{last}.jpg', f'{coco_panoptic_dir(split)}/{last}.png']
        m = params[f'seg_{split}']
        if m:
            prefix = 'ADE_train' if split == 'train' else 'ADE_val'
            files += [f'{ade_image_dir(split)}/{prefix}_{m:08d}.jpg', f'{ade_label_dir(split)}/{prefix}_{m:08d}.png']
    return [osp.join(out, f) for f in files]


def make_all(out: str = 'data/toy', seed: int = 0, train: int = 64, val: int = 16, seg_train: Optional[int] = None,
             seg_val: Optional[int] = None, min_size: int = 160, max_size: int = 256, max_objects: int = 8,
             force: bool = False) -> dict:
    """Generate the three datasets under ``out`` (see the module docstring); return a summary dict.

    If ``out/meta.json`` exists with the same parameters (and the files are there), nothing is written and the
    summary has ``skipped=True``. If it exists with other parameters, or an interrupted run left files without
    ``meta.json``, ``force=True`` is needed: it deletes the generated entries (``images/``, ``annotations/``,
    ``ade/``, ``meta.json``; nothing else) first, and only from a directory that holds a toy dataset.
    """
    if not 64 <= min_size <= max_size:
        raise ValueError(f'need 64 <= min_size <= max_size, got {min_size}, {max_size}')
    if max_objects < 1:
        raise ValueError(f'max_objects must be >= 1, got {max_objects}')
    params = dict(format_version=FORMAT_VERSION, seed=int(seed), train=int(train), val=int(val),
                  seg_train=int(train if seg_train is None else seg_train),
                  seg_val=int(val if seg_val is None else seg_val), min_size=int(min_size), max_size=int(max_size),
                  max_objects=int(max_objects))
    meta_path = osp.join(out, 'meta.json')
    summary = dict(out=out, params=params, det_classes=TOY_DET_CLASSES, det_category_ids=TOY_DET_CATEGORY_IDS,
                   panoptic_things=TOY_PANOPTIC_THINGS, panoptic_stuff=TOY_PANOPTIC_STUFF,
                   panoptic_stuff_ids=TOY_PANOPTIC_STUFF_IDS, seg_classes=TOY_SEG_CLASSES,
                   paths=dict(coco_images=[coco_image_dir(s) for s in COCO_SPLITS],
                              coco_instances=[coco_instances_file(s) for s in COCO_SPLITS],
                              coco_panoptic=[coco_panoptic_file(s) for s in COCO_SPLITS],
                              coco_panoptic_pngs=[coco_panoptic_dir(s) for s in COCO_SPLITS],
                              ade_images=[ade_image_dir(s) for s in COCO_SPLITS],
                              ade_annotations=[ade_label_dir(s) for s in COCO_SPLITS]))
    if osp.exists(meta_path) and not force:
        try:
            with open(meta_path) as f:
                old = json.load(f).get('params')
        except (OSError, ValueError):
            old = None
        if old == params and all(osp.isfile(p) for p in _expected_files(out, params)):
            with open(meta_path) as f:
                summary['stats'] = json.load(f).get('stats', {})
            summary['skipped'] = True
            return summary
        if old is not None and old != params:
            raise FileExistsError(f'{meta_path} was generated with other parameters ({old}); '
                                  'pass force=True (--force) to regenerate')
    leftovers = [osp.join(out, e) for e in _GENERATED if osp.exists(osp.join(out, e))]
    if leftovers:
        markers = [meta_path, osp.join(out, coco_image_dir('train'), f'{1:012d}.jpg')] + [
            osp.join(out, f) for s in COCO_SPLITS
            for f in (coco_instances_file(s), coco_panoptic_file(s), ade_image_dir(s))]
        if not any(osp.exists(m) for m in markers):
            raise FileExistsError(f'{out} holds {", ".join(leftovers)} but no toy dataset (no meta.json, '
                                  'instances_train.json, ...): refusing to overwrite or delete; choose another out')
        if not force:
            raise FileExistsError(f'{out} holds an incomplete toy dataset ({", ".join(leftovers)}; interrupted '
                                  'run?); pass force=True (--force) to regenerate')
        for entry in _GENERATED:
            path = osp.join(out, entry)
            if osp.isdir(path):
                shutil.rmtree(path)
            elif osp.exists(path):
                os.remove(path)
    os.makedirs(out, exist_ok=True)
    sizes = dict(min_size=min_size, max_size=max_size, max_objects=max_objects)
    stats = dict(coco=make_coco(out, seed, dict(train=train, val=val), **sizes),
                 ade=make_ade_semantic(out, seed, dict(train=params['seg_train'], val=params['seg_val']), **sizes))
    with open(meta_path, 'w') as f:
        json.dump(dict(params=params, stats=stats), f, indent=1, sort_keys=True)
    summary.update(stats=stats, skipped=False)
    return summary


def format_summary(summary: dict) -> str:
    """Human-readable lines for :func:`make_all`'s summary."""
    out, p = summary['out'], summary['params']
    lines = [f"toy datasets in {out} (seed {p['seed']}, sizes {p['min_size']}-{p['max_size']} px)"
             + (' -- already present, skipped (use --force to regenerate)' if summary.get('skipped') else '')]
    stats = summary.get('stats', {})
    for split in COCO_SPLITS:
        c = stats.get('coco', {}).get(split, {})
        lines.append(f"  COCO {split}: {p[split]} images, {c.get('objects', '?')} objects "
                     f"({c.get('small', '?')} small, {c.get('occluded', '?')} partly hidden, "
                     f"{c.get('rle', '?')} as RLE), {c.get('odd_sized', '?')} odd-sized images")
    for split in COCO_SPLITS:
        lines.append(f"  ADE {ADE_SPLITS[split]}: {p['seg_' + split]} images")
    lines.append('  instance classes: ' + ', '.join(
        f'{n} (id {i})' for n, i in zip(summary['det_classes'], summary['det_category_ids'])))
    lines.append('  panoptic stuff:   ' + ', '.join(
        f'{n} (id {i})' for n, i in zip(summary['panoptic_stuff'], summary['panoptic_stuff_ids'])))
    lines.append('  semantic classes: 0 = other (ignored), ' + ', '.join(
        f'{i + 1} = {n}' for i, n in enumerate(summary['seg_classes'])))
    for key, rels in summary['paths'].items():
        lines.append(f'  {key:19s}' + '  '.join(osp.join(out, r) for r in rels))
    return '\n'.join(lines)
