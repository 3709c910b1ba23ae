# LDA-AQU (Du et al., 2024): the FPN_LAU settings.
_base_ = './panoptic-fpn_r50_fpn_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='lda_aqu',
            reduction_factor=4,
            nh=1,
            k_e=3,
            k_u=3,
            n_groups=2,
            range_factor=11,
            rpb=True)),
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
    note='the LDA-AQU abstract claims +2.0 PQ; its table is not available',
)
