# FreqFusion Panoptic FPN with ResNet-101: the official R101 config keeps the sampler's GroupNorm on.
_base_ = './panoptic-fpn_r50_fpn-p6conv_freqfusion_1x_coco.py'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')), neck=dict(upsample_cfg=dict(feature_resample_norm=True)))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='PQ',
    number='44.0',
    source='Linwei-Chen/FreqFusion README.md (released checkpoint: 44.1)',
    printed_params='+0.3',
    mirrors=(
        'Linwei-Chen/FreqFusion mmdetection/configs/panoptic_fpn/ (R101 FreqFusion config; neck '
        'FreqFusionCARAFEFPN)'
    ),
    deviations=[
        'official config: 4 images per GPU, GPU count not stated; here 8 GPUs x 2 images at lr 0.02',
        'runs on mmdet 3.3 / mmcv 2 instead of the mmdet 2.28.1 fork; CARAFE is the plugin op (zero padding as mmcv)',
        'printed +0.3M over the 46.0M mmdet-FPN-layout baseline counts 3 modules (3 x 104,434 = 313,302) and '
        'not the extra lateral and P6 conv (+5,308,928) of the official neck; measured here over the matched '
        'FPN_CARAFE-layout baseline: 4 modules (spec/freqfusion.md quirk 11)',
    ],
    note='FreqFusion (G_r 4, GroupNorm): 4 x 104,690 = +418,760',
)
