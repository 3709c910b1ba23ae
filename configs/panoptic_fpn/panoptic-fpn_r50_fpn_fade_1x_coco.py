# FADE (Lu et al., ECCV 2022), guided by the finer lateral; no gate inside an additive neck (spec/necks.md).
_base_ = './panoptic-fpn_r50_fpn_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='fade',
            up_kernel_size=5,
            gating=False)),
)

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='PQ',
    number='40.9',
    source='Linwei-Chen/FreqFusion README.md (comparison table)',
    printed_params='+0.1M',
    mirrors=(
        'no released config: mmdet Panoptic FPN with the upsampler in the 3 FPN top-down steps (mmdet FPN '
        'layout), semantic head bilinear (the printed increments count 3 modules)'
    ),
    deviations=[],
    note='FADE without gating (additive neck)',
)
