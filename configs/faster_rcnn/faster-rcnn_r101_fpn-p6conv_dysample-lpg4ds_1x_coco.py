# DySample+ (lp style, 4 groups, dynamic scope), with ResNet-101: the R50 config with mmdet's R101 backbone
# (ImageNet-pretrained torchvision weights).
_base_ = './faster-rcnn_r50_fpn-p6conv_dysample-lpg4ds_1x_coco.py'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='box AP',
    number='40.5',
    source='tiny-smart/dysample README.md',
    printed_params='+65.5K',
    mirrors=(
        'no released R101 config: tiny-smart/detection-with-upsamplers '
        'configs/dynamic_upsampling/faster-rcnn_r50_fpn_dysample-lpg4ds_1x_coco.py with ResNet-101'
    ),
    deviations=[
        'official config: FPN_UPSAMPLE (mmdet FPN layout: max-pooled P6, 3 upsamplers); here FPN_CARAFE (4 '
        "upsamplers), the layout the README's parameter increment counts",
        'official config: its mmdet-2.x keys (Pad size_divisor=64, 4 images/GPU) are ignored by mmdet 3.1, so'
        ' it pads to 32 and trains 8 images per iteration at lr 0.02; here pad 64 and 16 images at lr 0.02',
        "official config: the neck's Xavier init overwrites the upsamplers' own init; here every upsampler "
        'keeps its own init',
    ],
    note='DySample+ (dynamic scope)',
)
