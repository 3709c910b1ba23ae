# Mask R-CNN, FPN_CARAFE layout, nearest, with ResNet-101 (ImageNet-pretrained torchvision weights, as
# mmdet's R101 configs).
_base_ = './mask-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='box / mask AP',
    number='40.0 / 36.0',
    source='tiny-smart/dysample README.md',
    printed_params=None,
    mirrors='no released baseline config: the R50 baseline with ResNet-101',
    deviations=[],
    note='',
)
