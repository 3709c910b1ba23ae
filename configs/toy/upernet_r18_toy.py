# Toy semantic segmentation run on CPU: UPerNet with a quarter-width ResNet-18 (random init, no download) on the
# generated ADE20K-format set (tools/make_toy_data.py). Switch the upsampler with one option:
#   python tools/train.py configs/toy/upernet_r18_toy.py --cfg-options model.decode_head.upsample_cfg.type=dysample
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['upsample_plugin'], allow_failed_imports=False)

data_root = 'data/toy/ade/'
# The first 7 ADE20K classes (upsample_plugin.toy_data.TOY_SEG_CLASSES): labels 1..7 on disk, 0 = ignored.
metainfo = dict(classes=('wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road'),
                palette=[[120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3],
                         [120, 120, 80], [140, 140, 140]])
base_channels = 16
width = 64
crop_size = (192, 192)
norm_cfg = dict(type='BN', requires_grad=True)  # single process on CPU: no SyncBN
# mmengine's init_weights never reaches the ConvModules of mmseg's FCNHead (they sit in an nn.Sequential): they keep
# the Kaiming init mmcv draws while the model is built, after the decode head's upsamplers, so the upsampler would
# shift them. The same Kaiming init as an init_cfg is drawn in init_weights instead (tools' runner: seeded per
# module), and conv_seg keeps mmseg's N(0, 0.01^2).
fcn_head_init = [dict(type='Kaiming', layer='Conv2d'), dict(type='Normal', std=0.01, override=dict(name='conv_seg'))]

model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(depth=18, stem_channels=base_channels, base_channels=base_channels, norm_cfg=norm_cfg,
                  init_cfg=None),
    decode_head=dict(type='UpsampleUPerHead', upsample_cfg=dict(type='bilinear'),
                     in_channels=[base_channels * 2**i for i in range(4)], channels=width,
                     num_classes=len(metainfo['classes']), norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=base_channels * 4, channels=width // 2, init_cfg=fcn_head_init,
                        num_classes=len(metainfo['classes']), norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 256), ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation')))
test_dataloader = val_dataloader

max_iters = 320
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005))
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
auto_scale_lr = dict(enable=False, base_batch_size=4)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(by_epoch=False, interval=max_iters))

# A fixed seed: the same batches in the same order for every run. With the tools (upsample_plugin.runner, which
# seeds each module's init by its path), runs of different upsamplers also start from the same weights everywhere
# outside the upsamplers (tests/test_runner.py); with a plain mmengine Runner they do not.
randomness = dict(seed=0)
