"""Check a dataset on disk before training/testing, with errors that name the offending file.

mmdet/mmseg fail late and vaguely on bad data (an ``AssertionError`` deep in a worker, a ``KeyError`` on a
category id, or silently zero instances when the config's ``classes`` do not match the json). These checks run
in seconds on the main process and raise

* :class:`MissingDataFileError` (a ``FileNotFoundError``) -- a missing annotation file, image, panoptic PNG or
  label map (the path is in the message; for many missing files the first few and the count);
* :class:`DataCheckError` (a ``ValueError``) -- a corrupt/truncated (non-JSON) annotation file, an empty image
  list, an empty annotation list (training would find no sample, evaluation no ground truth: COCO mAP -1), an
  annotation whose category is not declared (COCO ``category_id`` not in ``categories``; panoptic segment
  category not in ``categories``), config ``classes`` that the file does not declare, an image whose size on
  disk differs from its ``width``/``height`` in the JSON, a panoptic PNG whose ids disagree with
  ``segments_info``, a semantic label map with values outside the config's classes (other than
  ``ignore_index``; with a subset of a dataset's classes, e.g. 7 of ADE20K's 150, the values of the other
  classes count as outside: mmseg would silently turn them into ``ignore_index``).

Files that must be decoded (image headers for the size check, panoptic PNGs, label maps) are checked for the
first ``max_label_files`` images of each set (the tools: 64), so that the check stays within seconds on full
COCO; the JSON files are checked completely.

Entry points:

* :func:`check_coco_instances`, :func:`check_coco_panoptic`, :func:`check_semantic_seg` -- explicit paths;
* :func:`check_dataset` -- an mm dataset config dict (``type`` ``CocoDataset``, ``CocoPanopticDataset``,
  ``ADE20KDataset``, ``BaseSegDataset`` or a subclass; dataset wrappers are followed) or a kind name with paths;
* :func:`check_dataloader_cfg` -- ``cfg.train_dataloader`` / ``val_dataloader`` / ``test_dataloader``.

Paths resolve as in the datasets: ``ann_file`` and every ``data_prefix`` entry that is not absolute are joined
to ``data_root`` (mmengine ``BaseDataset._join_prefix``); COCO images are ``data_prefix['img'] / file_name``;
panoptic PNGs are ``data_prefix['seg'] / file_name.replace('.jpg', '.png')`` (the image's file name, as in
``CocoPanopticDataset``); semantic pairs are ``img_path/<name><img_suffix>`` and
``seg_map_path/<name><seg_map_suffix>``, the names listed in ``ann_file`` if it is a file, else every
``*<img_suffix>`` under ``img_path`` (recursively). Remote paths (``s3://`` ...) are not checked.

Every function returns a small summary dict (kind, files, counts).
"""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

_MAX_LISTED = 5


class DataCheckError(ValueError):
    """A dataset on disk is unusable for the config; the message names the file and says why. The tools print
    it as one line (no traceback): it is about the data, not the code. A ``ValueError``, as before."""


class MissingDataFileError(DataCheckError, FileNotFoundError):
    """A file the dataset needs (annotation file, image, PNG, label map) does not exist; also a
    ``FileNotFoundError``."""

KINDS = ('coco', 'coco_panoptic', 'semantic')
_KIND_ALIASES = {'coco': 'coco', 'instances': 'coco', 'coco_instances': 'coco', 'det': 'coco',
                 'coco_panoptic': 'coco_panoptic', 'panoptic': 'coco_panoptic',
                 'semantic': 'semantic', 'seg': 'semantic', 'ade': 'ade', 'ade20k': 'ade'}


# --------------------------------------------------------------------------------------------------- helpers
def _is_remote(path: Optional[str]) -> bool:
    return isinstance(path, str) and '://' in path


def _join(root: Optional[str], path: Optional[str]) -> Optional[str]:
    """mmengine's rule: relative paths are joined to ``data_root``; absolute ones (and empty ones) are kept."""
    if not path or not root or osp.isabs(path) or _is_remote(path):
        return path
    return osp.join(root, path)


def _missing_files_error(what: str, missing: List[str], source: str) -> MissingDataFileError:
    listed = ', '.join(missing[:_MAX_LISTED])
    more = f' (and {len(missing) - _MAX_LISTED} more)' if len(missing) > _MAX_LISTED else ''
    return MissingDataFileError(f'{len(missing)} {what} {source} not found: {listed}{more}')


def _load_json(path: str, what: str) -> dict:
    if not path:
        raise MissingDataFileError(f'no {what} given (empty ann_file)')
    if not osp.isfile(path):
        raise MissingDataFileError(f'{what} not found: {path}' if not osp.exists(path)
                                   else f'{what} is not a file: {path}')
    try:
        with open(path, 'rb') as f:
            data = json.loads(f.read().decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise DataCheckError(f'{what} {path} is not valid JSON (corrupt or truncated?): {e}') from None
    if not isinstance(data, dict):
        raise DataCheckError(f'{what} {path} must hold a JSON object, got {type(data).__name__}')
    return data


def _list_field(data: dict, key: str, path: str, required: bool = True) -> list:
    value = data.get(key)
    if value is None:
        if required:
            raise DataCheckError(f'{path} has no {key!r} list')
        return []
    if not isinstance(value, list):
        raise DataCheckError(f'{path}: {key!r} must be a list, got {type(value).__name__}')
    return value


def _image_size(path: str) -> tuple:
    """(width, height) of an image file as the loaders see it: from the header, with an EXIF rotation by 90
    degrees applied (mmcv's and cv2's colour loading honour it)."""
    from PIL import Image
    try:
        with Image.open(path) as f:
            width, height = f.size
            orientation = f.getexif().get(0x0112, 1)
    except Exception as e:  # noqa: BLE001 -- any decoding error
        raise DataCheckError(f'image {path} cannot be read: {e}') from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _check_image_sizes(images: List[dict], img_dir: str, path: str, limit: Optional[int]) -> None:
    """The ``width``/``height`` that ``path`` declares for its images against the files (the first ``limit``)."""
    for im in images[:len(images) if limit is None else limit]:
        if 'width' not in im or 'height' not in im:
            continue
        file = osp.join(img_dir, im['file_name'])
        size = _image_size(file)
        if size != (im['width'], im['height']):
            raise DataCheckError(f'{path}: image {im["file_name"]} (id {im["id"]}) is declared '
                                 f'{im["width"]}x{im["height"]}, but {file} is {size[0]}x{size[1]}')


def _check_images(data: dict, path: str, img_dir: Optional[str], max_image_files: Optional[int] = None
                  ) -> Dict[int, dict]:
    images = _list_field(data, 'images', path)
    if not images:
        raise DataCheckError(f'{path} has an empty image list (no entries in "images")')
    by_id = {}
    for im in images:
        if not isinstance(im, dict) or 'id' not in im or 'file_name' not in im:
            raise DataCheckError(f'{path}: every entry of "images" needs "id" and "file_name", got {im!r:.200}')
        if im['id'] in by_id:
            raise DataCheckError(f'{path}: image id {im["id"]} appears twice in "images"')
        by_id[im['id']] = im
    if img_dir is not None and not _is_remote(img_dir):
        missing = [osp.join(img_dir, im['file_name']) for im in images
                   if not osp.isfile(osp.join(img_dir, im['file_name']))]
        if missing:
            raise _missing_files_error('image files', missing, f'listed by {path}')
        _check_image_sizes(images, img_dir, path, max_image_files)
    return by_id


def _categories(data: dict, path: str, need_isthing: bool = False) -> Dict[int, dict]:
    cats = _list_field(data, 'categories', path)
    if not cats:
        raise DataCheckError(f'{path} has an empty "categories" list')
    by_id = {}
    for cat in cats:
        if not isinstance(cat, dict) or 'id' not in cat or 'name' not in cat:
            raise DataCheckError(f'{path}: every category needs "id" and "name", got {cat!r:.200}')
        if need_isthing and 'isthing' not in cat:
            raise DataCheckError(f'{path}: panoptic category {cat["id"]} ({cat["name"]!r}) has no "isthing" field')
        by_id[cat['id']] = cat
    return by_id


def _check_classes(classes: Optional[Sequence[str]], cats: Dict[int, dict], path: str, field: str = 'classes'):
    if classes is None:
        return
    names = {c['name'] for c in cats.values()}
    missing = [c for c in classes if c not in names]
    if missing:
        raise DataCheckError(f'{path}: {field} {missing} of the dataset metainfo are not categories of this file '
                             f'(its categories: {sorted(names)}); set metainfo=dict(classes=...) to names it declares')


# ------------------------------------------------------------------------------------------------------ COCO
def _check_annotations_present(anns: list, path: str) -> None:
    if not anns:
        raise DataCheckError(f'{path} has an empty annotation list (no entries in "annotations"): training would '
                             'find no image with objects, and evaluation no ground truth (COCO mAP -1)')


def check_coco_instances(ann_file: str, img_dir: Optional[str] = None,
                         classes: Optional[Sequence[str]] = None, max_image_files: Optional[int] = None) -> dict:
    """A COCO instances json (``images``, ``annotations``, ``categories``) and, if ``img_dir`` is given, its
    images (all must exist; the sizes of the first ``max_image_files``, all if None, must match the JSON).
    ``classes``: the dataset metainfo's class names, which must all be categories of the file."""
    data = _load_json(ann_file, 'COCO annotation file')
    images = _check_images(data, ann_file, img_dir, max_image_files)
    cats = _categories(data, ann_file)
    _check_classes(classes, cats, ann_file)
    anns = _list_field(data, 'annotations', ann_file, required=False)
    _check_annotations_present(anns, ann_file)
    seen = set()
    for ann in anns:
        if not isinstance(ann, dict) or 'category_id' not in ann or 'image_id' not in ann:
            raise DataCheckError(f'{ann_file}: every annotation needs "image_id" and "category_id", got {ann!r:.200}')
        where = f'annotation {ann.get("id")} (image_id {ann["image_id"]})'
        if ann['category_id'] not in cats:
            raise DataCheckError(f'{ann_file}: {where} has category_id {ann["category_id"]}, which is not in the '
                                 f'declared categories {sorted(cats)}')
        if ann['image_id'] not in images:
            raise DataCheckError(f'{ann_file}: {where} refers to an image id that is not in "images"')
        if 'id' in ann:
            if ann['id'] in seen:
                raise DataCheckError(f'{ann_file}: annotation id {ann["id"]} is not unique')
            seen.add(ann['id'])
        bbox = ann.get('bbox')
        if bbox is not None and (not isinstance(bbox, (list, tuple)) or len(bbox) != 4):
            raise DataCheckError(f'{ann_file}: {where} has a malformed bbox {bbox!r}')
    return dict(kind='coco', ann_file=ann_file, img_dir=img_dir, num_images=len(images),
                num_annotations=len(anns), categories={k: v['name'] for k, v in cats.items()})


def _rgb2id(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def check_coco_panoptic(ann_file: str, img_dir: Optional[str] = None, seg_dir: Optional[str] = None,
                        classes: Optional[Sequence[str]] = None, thing_classes: Optional[Sequence[str]] = None,
                        stuff_classes: Optional[Sequence[str]] = None,
                        max_png_files: Optional[int] = None) -> dict:
    """A COCO panoptic json, its images (``img_dir``) and PNG id maps (``seg_dir``).

    Up to ``max_png_files`` PNGs (all if None, none if 0) are read: the ids in the PNG (0 = VOID) must be exactly
    the ``segments_info`` ids of the image, with the declared areas, and the PNG must have the image's size; as
    many image headers are compared with the sizes in the JSON.
    """
    data = _load_json(ann_file, 'COCO panoptic annotation file')
    images = _check_images(data, ann_file, img_dir, max_png_files)
    cats = _categories(data, ann_file, need_isthing=True)
    _check_classes(classes, cats, ann_file)
    for field, names, isthing in (('thing_classes', thing_classes, 1), ('stuff_classes', stuff_classes, 0)):
        _check_classes(names, cats, ann_file, field)
        wrong = [c['name'] for c in cats.values() if names and c['name'] in names and int(c['isthing']) != isthing]
        if wrong:
            raise DataCheckError(f'{ann_file}: {field} {wrong} have isthing={1 - isthing} in the file')
    anns = _list_field(data, 'annotations', ann_file, required=False)
    _check_annotations_present(anns, ann_file)
    by_image = {}
    num_segments = 0
    for ann in anns:
        if not isinstance(ann, dict) or 'image_id' not in ann or 'segments_info' not in ann:
            raise DataCheckError(f'{ann_file}: every annotation needs "image_id" and "segments_info", '
                                 f'got {ann!r:.200}')
        if ann['image_id'] not in images:
            raise DataCheckError(f'{ann_file}: annotation of image_id {ann["image_id"]} refers to an image id '
                                 'that is not in "images"')
        ids = set()
        for seg in ann['segments_info']:
            if seg.get('category_id') not in cats:
                raise DataCheckError(f'{ann_file}: segment {seg.get("id")} of image_id {ann["image_id"]} has '
                                     f'category_id {seg.get("category_id")}, which is not in the declared '
                                     f'categories {sorted(cats)}')
            if seg.get('id') in ids:
                raise DataCheckError(f'{ann_file}: segment id {seg.get("id")} appears twice in image_id '
                                     f'{ann["image_id"]}')
            ids.add(seg.get('id'))
        num_segments += len(ann['segments_info'])
        by_image[ann['image_id']] = ann

    if seg_dir is not None and not _is_remote(seg_dir):
        def png_path(im):
            return osp.join(seg_dir, im['file_name'].replace('.jpg', '.png'))

        missing = [png_path(im) for im in images.values() if not osp.isfile(png_path(im))]
        if missing:
            raise _missing_files_error('panoptic PNGs', missing, f'for the images of {ann_file}')
        limit = len(by_image) if max_png_files is None else max_png_files
        for image_id, ann in list(by_image.items())[:limit]:
            im = images[image_id]
            _check_panoptic_png(png_path(im), im, ann, ann_file)
    return dict(kind='coco_panoptic', ann_file=ann_file, img_dir=img_dir, seg_dir=seg_dir,
                num_images=len(images), num_annotations=len(anns), num_segments=num_segments,
                categories={k: (v['name'], int(v['isthing'])) for k, v in cats.items()})


def _check_panoptic_png(path: str, image: dict, ann: dict, ann_file: str) -> None:
    from PIL import Image
    try:
        with Image.open(path) as f:
            png = np.asarray(f.convert('RGB'))
    except Exception as e:  # noqa: BLE001 -- any decoding error
        raise DataCheckError(f'panoptic PNG {path} cannot be read: {e}') from None
    if 'height' in image and 'width' in image and png.shape[:2] != (image['height'], image['width']):
        raise DataCheckError(f'panoptic PNG {path} is {png.shape[1]}x{png.shape[0]} but {ann_file} says the image is '
                             f'{image["width"]}x{image["height"]}')
    ids, counts = np.unique(_rgb2id(png), return_counts=True)
    in_png = {int(i): int(c) for i, c in zip(ids, counts) if i != 0}
    declared = {seg['id']: seg for seg in ann['segments_info']}
    extra = sorted(set(in_png) - set(declared))
    if extra:
        raise DataCheckError(f'panoptic PNG {path} has segment ids {extra[:10]} that are not in the segments_info of '
                             f'image_id {ann["image_id"]} in {ann_file}')
    absent = sorted(set(declared) - set(in_png))
    if absent:
        raise DataCheckError(f'{ann_file}: segments {absent[:10]} of image_id {ann["image_id"]} do not occur in {path}')
    wrong = [(i, declared[i]['area'], in_png[i]) for i in in_png
             if 'area' in declared[i] and int(declared[i]['area']) != in_png[i]]
    if wrong:
        raise DataCheckError(f'{ann_file}: areas of image_id {ann["image_id"]} disagree with {path} '
                             f'(segment id, declared, in PNG): {wrong[:5]}')


# -------------------------------------------------------------------------------------------------- semantic
def check_semantic_seg(img_dir: str, seg_dir: Optional[str], num_classes: Union[int, Sequence[str]], *,
                       ann_file: str = '', img_suffix: str = '.jpg', seg_map_suffix: str = '.png',
                       reduce_zero_label: bool = False, ignore_index: int = 255,
                       max_label_files: Optional[int] = None, class_indices: Optional[Sequence[int]] = None
                       ) -> dict:
    """An mmseg ``BaseSegDataset`` layout: images and label maps with the same stem.

    ``num_classes``: the number of classes of the label maps (or their names). Valid label values are
    ``1..num_classes`` (0 = "other") with ``reduce_zero_label`` (ADE20K), else ``0..num_classes-1``; plus
    ``ignore_index``. ``class_indices``: only these of the ``num_classes`` classes (0-based) are trained (a
    config's subset of the dataset's classes); label values of the others are errors too. Up to
    ``max_label_files`` label maps are read (all if None, none if 0).
    """
    if not isinstance(num_classes, (int, np.integer)):
        num_classes = len(num_classes)
    if num_classes < 1:
        raise DataCheckError(f'num_classes must be >= 1, got {num_classes}')
    if _is_remote(img_dir):
        return dict(kind='semantic', img_dir=img_dir, skipped='remote')
    if not img_dir or not osp.isdir(img_dir):
        raise MissingDataFileError(f'image directory not found: {img_dir!r}')
    if seg_dir is not None and not osp.isdir(seg_dir):
        raise MissingDataFileError(f'label map directory not found: {seg_dir}')
    if ann_file and not osp.isdir(ann_file):
        if not osp.isfile(ann_file):
            raise MissingDataFileError(f'split file (ann_file) not found: {ann_file}')
        with open(ann_file) as f:
            names = [line.strip() for line in f if line.strip()]
        if not names:
            raise DataCheckError(f'split file {ann_file} lists no images')
        source = ann_file
        img_paths = [osp.join(img_dir, n + img_suffix) for n in names]
        missing = [p for p in img_paths if not osp.isfile(p)]
        if missing:
            raise _missing_files_error('images', missing, f'listed by {source}')
    else:
        names = sorted(osp.relpath(osp.join(d, f), img_dir)[:-len(img_suffix)]
                       for d, _, files in os.walk(img_dir) for f in files if f.endswith(img_suffix))
        if not names:
            raise DataCheckError(f'no "*{img_suffix}" images found under {img_dir}')
        source = img_dir
    checked = 0
    if seg_dir is not None:
        seg_paths = [osp.join(seg_dir, n + seg_map_suffix) for n in names]
        missing = [p for p in seg_paths if not osp.isfile(p)]
        if missing:
            raise _missing_files_error('label maps', missing, f'for the images of {source}')
        offset = 1 if reduce_zero_label else 0
        indices = range(num_classes) if class_indices is None else sorted(class_indices)
        valid = {i + offset for i in indices} | {ignore_index} | ({0} if reduce_zero_label else set())
        if class_indices is None:
            meaning = (f'valid: 1..{num_classes} (0 = other)' if reduce_zero_label
                       else f'valid: 0..{num_classes - 1}')
            what = f'the {num_classes} classes'
        else:
            meaning = (f'valid: {sorted(valid - {ignore_index})}, the config\'s {len(indices)} of the dataset\'s '
                       f'{num_classes} classes; mmseg would silently turn the others into {ignore_index}')
            what = "the config's classes"
        limit = len(seg_paths) if max_label_files is None else max_label_files
        for path in seg_paths[:limit]:
            _check_label_map(path, valid, f'outside {what} ({meaning}, and {ignore_index} = ignore)')
            checked += 1
    return dict(kind='semantic', img_dir=img_dir, seg_dir=seg_dir, ann_file=ann_file or None,
                num_images=len(names), num_classes=num_classes, reduce_zero_label=reduce_zero_label,
                label_files_checked=checked)


def _check_label_map(path: str, valid: set, meaning: str) -> None:
    from PIL import Image
    try:
        with Image.open(path) as f:
            label = np.asarray(f)
    except Exception as e:  # noqa: BLE001
        raise DataCheckError(f'label map {path} cannot be read: {e}') from None
    if label.ndim != 2:
        raise DataCheckError(f'label map {path} must be single-channel (class indices), got shape {label.shape}')
    bad = [int(v) for v in np.unique(label) if int(v) not in valid]
    if bad:
        raise DataCheckError(f'label map {path} has values {bad[:10]} {meaning}')


# ------------------------------------------------------------------------------------------- config dispatch
def _registry(scope: str):
    """mmdet's or mmseg's DATASETS registry (with the datasets registered), or None if not installed."""
    try:
        if scope == 'mmdet':
            import mmdet.datasets  # noqa: F401 -- registers the datasets
            from mmdet.registry import DATASETS
        else:
            import mmseg.datasets  # noqa: F401
            from mmseg.registry import DATASETS
    except Exception:  # noqa: BLE001 -- library missing or broken
        return None
    return DATASETS


def _dataset_class(type_, scope: Optional[str] = None):
    """The registered class of a dataset type (string, ``scope.Name`` or class), or None.

    Some names exist in both libraries (``BaseSegDataset``, ``CityscapesDataset``, ...): an explicit
    ``scope.`` prefix wins, then ``scope`` (the config's ``default_scope``), then mmengine's current default
    scope, then mmdet before mmseg.
    """
    if isinstance(type_, type):
        return type_
    if not isinstance(type_, str):
        return None
    prefix, _, name = type_.rpartition('.')
    if scope is None:
        from mmengine.registry import DefaultScope
        current = DefaultScope.get_current_instance()
        scope = current.scope_name if current is not None else None
    order = [prefix] if prefix else ([scope] if scope in ('mmdet', 'mmseg') else []) + ['mmdet', 'mmseg']
    for lib in dict.fromkeys(order):
        registry = _registry(lib) if lib in ('mmdet', 'mmseg') else None
        # module_dict: the registry's own entries (Registry.get would also search other scopes).
        found = registry.module_dict.get(name) if registry is not None else None
        if found is not None:
            return found
    return None


def _kind_of(cls, type_name: str) -> Optional[str]:
    names = [c.__name__ for c in cls.__mro__] if cls is not None else [str(type_name).rpartition('.')[2]]
    if 'CocoPanopticDataset' in names:
        return 'coco_panoptic'
    if 'CocoDataset' in names:
        return 'coco'
    if 'BaseSegDataset' in names or 'ADE20KDataset' in names:
        return 'semantic'
    return None


def _seg_defaults(cls, type_name: str) -> dict:
    """img_suffix / seg_map_suffix / reduce_zero_label defaults of an mmseg dataset class."""
    import inspect
    defaults = dict(img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False, ignore_index=255)
    if cls is None:
        if str(type_name).endswith('ADE20KDataset'):
            defaults['reduce_zero_label'] = True
        return defaults
    for klass in reversed(cls.__mro__):
        try:
            params = inspect.signature(klass.__init__).parameters
        except (TypeError, ValueError):
            continue
        for key in defaults:
            if key in params and params[key].default is not inspect.Parameter.empty:
                defaults[key] = params[key].default
    return defaults


def _metainfo(cfg: Mapping, cls) -> dict:
    meta = dict(getattr(cls, 'METAINFO', None) or {}) if cls is not None else {}
    custom = cfg.get('metainfo')
    if isinstance(custom, Mapping):
        meta.update(custom)
    return meta


def _check_dataset_cfg(cfg: Mapping, scope: Optional[str] = None, **options) -> List[dict]:
    type_ = cfg.get('type')
    if cfg.get('dataset') is not None:  # RepeatDataset, ClassBalancedDataset, MultiImageMixDataset, ...
        return _check_dataset_cfg(cfg['dataset'], scope, **options)
    if cfg.get('datasets') is not None:  # ConcatDataset
        return [r for sub in cfg['datasets'] for r in _check_dataset_cfg(sub, scope, **options)]
    cls = _dataset_class(type_, scope)
    kind = _kind_of(cls, type_)
    if kind is None:
        return [dict(kind=None, type=str(type_), skipped='unknown dataset type')]
    root = cfg.get('data_root')
    prefix = dict(cfg.get('data_prefix') or {})
    ann_file = cfg.get('ann_file', '')
    if _is_remote(root) or any(_is_remote(v) for v in prefix.values()) or _is_remote(ann_file):
        return [dict(kind=kind, type=str(type_), skipped='remote paths')]
    ann_file = _join(root, ann_file)
    prefix = {k: _join(root, v) if isinstance(v, str) else v for k, v in prefix.items()}
    meta = _metainfo(cfg, cls)
    if kind in ('coco', 'coco_panoptic'):
        if not isinstance(prefix.get('img'), str):  # mmdet reads data_prefix['img'] (KeyError without it)
            raise DataCheckError(f'dataset {type_} (ann_file {ann_file}): data_prefix needs an "img" entry, got '
                                 f'{cfg.get("data_prefix")!r}')
        img_dir = prefix['img']
    if kind == 'coco':
        return [check_coco_instances(ann_file, img_dir, classes=meta.get('classes'),
                                     max_image_files=options.get('max_label_files'))]
    if kind == 'coco_panoptic':
        return [check_coco_panoptic(ann_file, img_dir, prefix.get('seg'), classes=meta.get('classes'),
                                    thing_classes=meta.get('thing_classes'),
                                    stuff_classes=meta.get('stuff_classes'),
                                    max_png_files=options.get('max_label_files'))]
    defaults = _seg_defaults(cls, type_)
    settings = {k: cfg.get(k, v) for k, v in defaults.items()}
    classes = meta.get('classes')
    if classes is None:
        raise DataCheckError(f'dataset {type_}: no classes (set metainfo=dict(classes=...))')
    num_classes = len(classes)
    class_indices = None
    base_classes = (getattr(cls, 'METAINFO', None) or {}).get('classes') if cls is not None else None
    custom = (cfg.get('metainfo') or {}).get('classes') if isinstance(cfg.get('metainfo'), Mapping) else None
    if base_classes is not None and custom is not None and list(custom) != list(base_classes):
        # mmseg remaps the labels of the class's own list (label_map): the files hold those label values.
        unknown = [c for c in custom if c not in base_classes]
        if unknown:
            raise DataCheckError(f'dataset {type_}: metainfo classes {unknown} are not classes of {cls.__name__} '
                                 f'(mmseg only accepts a subset of its METAINFO classes); use type="BaseSegDataset" '
                                 'with img_suffix/seg_map_suffix/reduce_zero_label for a dataset with its own classes')
        num_classes = len(base_classes)
        class_indices = [list(base_classes).index(c) for c in custom]
    return [check_semantic_seg(prefix.get('img_path', root or ''), prefix.get('seg_map_path'), num_classes,
                               ann_file=ann_file or '', max_label_files=options.get('max_label_files'),
                               class_indices=class_indices, **settings)]


def check_dataset(dataset: Union[Mapping, str], max_label_files: Optional[int] = None, scope: Optional[str] = None,
                  **paths) -> dict:
    """Check one dataset: an mm dataset config dict, or a kind with explicit paths.

    * ``check_dataset(cfg.train_dataloader.dataset)`` -- resolves ``data_root``/``ann_file``/``data_prefix``
      like the dataset class would (wrappers are followed; a ``ConcatDataset`` gives one summary per part,
      returned under ``'parts'``);
    * ``check_dataset('coco', ann_file=..., img_dir=..., classes=...)``,
      ``check_dataset('coco_panoptic', ann_file=..., img_dir=..., seg_dir=..., classes=...)``,
      ``check_dataset('semantic', img_dir=..., seg_dir=..., num_classes=..., reduce_zero_label=...)``,
      ``check_dataset('ade', img_dir=..., seg_dir=..., num_classes=...)`` (``reduce_zero_label=True``).

    ``max_label_files`` bounds how many panoptic PNGs / label maps are decoded (None = all). ``scope``
    (``'mmdet'``/``'mmseg'``, e.g. the config's ``default_scope``) picks the library of a dataset type name that
    both define; by default mmengine's current default scope, else mmdet first.
    """
    if isinstance(dataset, Mapping):
        if paths:
            raise TypeError(f'paths {sorted(paths)} are only for a kind name, not a dataset config')
        results = _check_dataset_cfg(dataset, scope, max_label_files=max_label_files)
        return results[0] if len(results) == 1 else dict(kind='concat', parts=results)
    kind = _KIND_ALIASES.get(str(dataset).lower())
    if kind is None:
        raise DataCheckError(f'unknown dataset kind {dataset!r}; use one of {sorted(_KIND_ALIASES)} or a config dict')
    if kind == 'coco':
        return check_coco_instances(**paths)
    if kind == 'coco_panoptic':
        return check_coco_panoptic(max_png_files=max_label_files, **paths)
    if kind == 'ade':
        paths.setdefault('reduce_zero_label', True)
    return check_semantic_seg(max_label_files=max_label_files, **paths)


def check_dataloader_cfg(dataloader_cfg: Mapping, max_label_files: Optional[int] = None,
                         scope: Optional[str] = None) -> List[dict]:
    """Check the dataset of an mmengine dataloader config (``cfg.train_dataloader`` etc.).

    ``check_dataloader_cfg(cfg.train_dataloader, scope=cfg.get('default_scope'))``. Returns one summary per
    underlying dataset (several for ``ConcatDataset``); a ``None`` config gives ``[]``; a dataset type that is
    not a COCO / COCO panoptic / mmseg segmentation dataset gives a summary with ``skipped``.
    """
    if dataloader_cfg is None:
        return []
    if not isinstance(dataloader_cfg, Mapping):
        raise TypeError(f'expected a dataloader config dict, got {type(dataloader_cfg).__name__}')
    dataset = dataloader_cfg.get('dataset')
    if dataset is None:
        raise DataCheckError('the dataloader config has no "dataset"')
    if not isinstance(dataset, Mapping):  # an already built dataset object: nothing to resolve
        return [dict(kind=None, type=type(dataset).__name__, skipped='not a config')]
    return _check_dataset_cfg(dataset, scope, max_label_files=max_label_files)

