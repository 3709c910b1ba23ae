# Toy detection run on CPU (README "main job"): Faster R-CNN ResNet-18 (random init, no download) with the
# plugin's FPN on the generated COCO-format set (tools/make_toy_data.py). Switch the upsampler with one option:
#   python tools/train.py configs/toy/faster-rcnn_r18_fpn_toy.py --cfg-options model.neck.upsample_cfg.type=dysample
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['upsample_plugin'], allow_failed_imports=False)

data_root = 'data/toy/'
metainfo = dict(classes=('circle', 'square', 'triangle', 'star'),
                palette=[(220, 20, 60), (0, 0, 142), (0, 160, 60), (250, 170, 30)])
# A ResNet-18 at a quarter of the width (base_channels 16) and a 64-wide FPN: CPU training in minutes.
base_channels = 16
width = 64
image_scale = (256, 256)

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(depth=18, base_channels=base_channels, init_cfg=None, frozen_stages=-1, norm_eval=False),
    neck=dict(
        _delete_=True,
        type='UpsampleFPN',
        topology='fpn',
        in_channels=[base_channels * 2**i for i in range(4)],
        out_channels=width,
        num_outs=5,
        upsample_cfg=dict(type='nearest')),
    rpn_head=dict(in_channels=width, feat_channels=width,
                  anchor_generator=dict(scales=[4], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=len(metainfo['classes']))),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=50)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='images/train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='images/val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json', metric='bbox')
test_evaluator = val_evaluator

max_epochs = 8
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[6], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
default_hooks = dict(logger=dict(interval=8), checkpoint=dict(interval=max_epochs))

# A fixed seed: the same batches in the same order for every run. With the tools (upsample_plugin.runner, which
# seeds each module's init by its path), runs of different upsamplers also start from the same weights everywhere
# outside the upsamplers (tests/test_runner.py); with a plain mmengine Runner they do not.
randomness = dict(seed=0)
