# DySample+ (lp style, 4 groups, dynamic scope), with ResNet-101: the R50 config with mmdet's R101 backbone
# (ImageNet-pretrained torchvision weights).
_base_ = './panoptic-fpn_r50_fpn_dysample-lpg4ds_1x_coco.py'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='PQ',
    number='43.0',
    source='tiny-smart/dysample README.md',
    printed_params='+49.2K',
    mirrors=(
        'no released config: mmdet Panoptic FPN with the upsampler in the 3 FPN top-down steps (mmdet FPN '
        'layout), semantic head bilinear (the printed increments count 3 modules)'
    ),
    deviations=[],
    note='DySample+ (dynamic scope)',
)
