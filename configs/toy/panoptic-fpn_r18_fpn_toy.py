# Toy panoptic segmentation run on CPU: the toy Mask R-CNN plus Panoptic FPN's semantic head (the plugin's, its
# x2 steps configurable) on the generated COCO-panoptic set: 4 thing classes, 3 stuff classes.
_base_ = './mask-rcnn_r18_fpn_toy.py'

metainfo = dict(classes=('circle', 'square', 'triangle', 'star', 'sky', 'ground', 'wall'),
                thing_classes=('circle', 'square', 'triangle', 'star'), stuff_classes=('sky', 'ground', 'wall'),
                palette=[(220, 20, 60), (0, 0, 142), (0, 160, 60), (250, 170, 30), (70, 130, 180),
                         (152, 251, 152), (102, 102, 156)])
model = dict(
    type='PanopticFPN',
    data_preprocessor=dict(pad_mask=True, mask_pad_value=0, pad_seg=True, seg_pad_value=255),
    semantic_head=dict(
        type='UpsamplePanopticFPNHead',
        upsample_cfg=dict(type='bilinear'),
        num_things_classes=4,
        num_stuff_classes=3,
        in_channels={{_base_.width}},
        inner_channels=32,
        start_level=0,
        end_level=4,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
        conv_cfg=None,
        loss_seg=dict(type='CrossEntropyLoss', ignore_index=255, loss_weight=0.5)),
    panoptic_fusion_head=dict(type='HeuristicFusionHead', num_things_classes=4, num_stuff_classes=3),
    test_cfg=dict(
        rcnn=dict(score_thr=0.3, nms=dict(type='nms', iou_threshold=0.5, class_agnostic=True), max_per_img=50,
                  mask_thr_binary=0.5),
        panoptic=dict(mask_overlap=0.5, stuff_area_limit=256)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadPanopticAnnotations'),
    dict(type='Resize', scale={{_base_.image_scale}}, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale={{_base_.image_scale}}, keep_ratio=True),
    dict(type='LoadPanopticAnnotations'),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
data_root = 'data/toy/'
train_dataloader = dict(dataset=dict(
    type='CocoPanopticDataset', metainfo=metainfo, ann_file='annotations/panoptic_train.json',
    data_prefix=dict(_delete_=True, img='images/train/', seg='annotations/panoptic_train/'),
    pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(
    type='CocoPanopticDataset', metainfo=metainfo, ann_file='annotations/panoptic_val.json',
    data_prefix=dict(_delete_=True, img='images/val/', seg='annotations/panoptic_val/'),
    pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='CocoPanopticMetric', ann_file=data_root + 'annotations/panoptic_val.json',
                     seg_prefix=data_root + 'annotations/panoptic_val/')
test_evaluator = val_evaluator
