# DDF-Up (Zhou et al., CVPR 2021): the DDFUpPack defaults.
_base_ = './panoptic-fpn_r50_fpn_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='ddf_up',
            kernel_size=3,
            dilation=1,
            head=1,
            se_ratio=0.2,
            nonlinearity='linear',
            dw_kernel_size=3,
            kernel_combine='mul')),
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
    note='no paper reports DDF-Up in Panoptic FPN',
)
