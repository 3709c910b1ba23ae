# Panoptic FPN, mmdet FPN layout, nearest, with ResNet-101 (ImageNet-pretrained torchvision weights, as
# mmdet's R101 configs).
_base_ = './panoptic-fpn_r50_fpn_nearest_1x_coco.py'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='PQ',
    number='42.2',
    source='tiny-smart/dysample README.md',
    printed_params='65.0M',
    mirrors='open-mmlab/mmdetection configs/panoptic_fpn/panoptic-fpn_r101_fpn_1x_coco.py',
    deviations=[],
    note="equal to mmdet's model-zoo row",
)
