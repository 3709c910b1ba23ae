# DySample+ (lp style, 4 groups, dynamic scope), with ResNet-101: the R50 config with mmdet's R101 backbone
# (ImageNet-pretrained torchvision weights).
_base_ = './mask-rcnn_r50_fpn-p6conv_dysample-lpg4ds_1x_coco.py'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='box / mask AP',
    number='41.0 / 36.8',
    source='tiny-smart/dysample README.md',
    printed_params='+65.5K',
    mirrors=(
        'no released Mask R-CNN config (tiny-smart/detection-with-upsamplers ships Faster R-CNN configs '
        "only): the upsampler in the 4 FPN top-down steps, mask head unchanged (the README's increment counts"
        ' 4 modules)'
    ),
    deviations=[],
    note='DySample+ (dynamic scope)',
)
