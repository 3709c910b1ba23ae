# FreqFusion with ResNet-101: the official R101 config differs from R50 in the sampler's groups (G_r 8) and the
# batch (4 images per GPU); see the R50 config for the layout.
_base_ = './faster-rcnn_r50_fpn-p6conv_freqfusion_1x_coco.py'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')),
    neck=dict(upsample_cfg=dict(feature_resample_group=8)))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='box AP',
    number='41.0',
    source='Linwei-Chen/FreqFusion README.md (released checkpoint: 41.1)',
    printed_params=None,
    mirrors=(
        'Linwei-Chen/FreqFusion mmdetection/configs/faster_rcnn/ (R101 FreqFusion config; neck '
        'FreqFusionCARAFEFPN, mmdetection/mmdet/models/necks/fpn_carafe.py)'
    ),
    deviations=[
        'official config: 4 images per GPU, GPU count not stated; here 8 GPUs x 2 images at lr 0.02 (the 1x '
        'schedule the config names)',
        'runs on mmdet 3.3 / mmcv 2 instead of the mmdet 2.28.1 fork with mmcv-full 1.x; CARAFE is the plugin\'s op '
        '(same zero-padded math as mmcv, spec quirk 4)',
    ],
    note='FreqFusion (G_r 8): 4 x 156,610 = +626,440',
)
