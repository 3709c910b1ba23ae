# DLU (Fu et al., ICPR 2024): the settings of its UNIFIED_FPN configs.
_base_ = './panoptic-fpn_r50_fpn_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='dlu',
            up_kernel=5,
            up_group=1,
            encoder_kernel=3,
            encoder_dilation=1,
            compressed_channels=64)),
)

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='PQ',
    number=None,
    source=None,
    printed_params=None,
    mirrors=(
        'no released config: mmdet Panoptic FPN with the upsampler in the 3 FPN top-down steps (mmdet FPN '
        'layout), semantic head bilinear (the printed increments count 3 modules)'
    ),
    deviations=[],
    note='no published Panoptic FPN number for DLU',
)
