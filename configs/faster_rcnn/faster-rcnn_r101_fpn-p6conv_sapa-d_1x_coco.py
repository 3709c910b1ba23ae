# SAPA-D (9 points, 4 groups, high-resolution offsets, no GroupNorm), with ResNet-101: the R50 config with mmdet's
# R101 backbone (ImageNet-pretrained torchvision weights).
_base_ = './faster-rcnn_r50_fpn-p6conv_sapa-d_1x_coco.py'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='box AP',
    number='40.6',
    source='tiny-smart/sapa README.md (extension)',
    printed_params='+0.6M',
    mirrors=(
        'no released R101 config: tiny-smart/detection-with-upsamplers '
        'configs/dynamic_upsampling/faster-rcnn_r50_fpn_sapadeform-p9g4_1x_coco.py with ResNet-101'
    ),
    deviations=[
        'official config: FPN_UPSAMPLE (mmdet FPN layout: max-pooled P6, 3 upsamplers); here FPN_CARAFE (4 '
        "upsamplers), the layout the README's parameter increment counts",
        'official config: its mmdet-2.x keys (Pad size_divisor=64, 4 images/GPU) are ignored by mmdet 3.1, so'
        ' it pads to 32 and trains 8 images per iteration at lr 0.02; here pad 64 and 16 images at lr 0.02',
        "official config: the neck's Xavier init overwrites the upsamplers' own init; here every upsampler "
        'keeps its own init',
    ],
    note='',
)
