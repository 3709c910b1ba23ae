# Panoptic FPN R101 in the FPN_CARAFE layout, nearest: the matched baseline of the R101 FreqFusion and FRFU configs.
_base_ = './panoptic-fpn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='PQ',
    number=None,
    source=None,
    printed_params=None,
    mirrors='no released config: panoptic-fpn_r50_fpn-p6conv_nearest_1x_coco.py with ResNet-101',
    deviations=[],
    note=('no published number: the papers compare against the mmdet-FPN-layout Nearest 42.2 (65.0M, '
          'panoptic-fpn_r101_fpn_nearest_1x_coco.py)'),
)
