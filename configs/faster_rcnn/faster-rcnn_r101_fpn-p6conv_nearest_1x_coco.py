# Faster R-CNN, FPN_CARAFE layout, nearest, with ResNet-101 (ImageNet-pretrained torchvision weights, as
# mmdet's R101 configs).
_base_ = './faster-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='box AP',
    number='39.4',
    source='tiny-smart/dysample README.md',
    printed_params='65.8M',
    mirrors='no released baseline config: the R50 baseline with ResNet-101',
    deviations=[],
    note='the SAPA extension README prints the same 39.4',
)
