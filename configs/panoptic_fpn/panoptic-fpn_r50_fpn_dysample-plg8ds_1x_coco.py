# DySample-S+: pl style, 8 groups, dynamic scope (spec/dysample.md: 3 x 2,064 = +6.2K).
_base_ = './panoptic-fpn_r50_fpn_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='dysample',
            style='pl',
            groups=8,
            dyscope=True)),
)

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='PQ',
    number='41.1',
    source='Linwei-Chen/FreqFusion README.md (comparison table)',
    printed_params='+6.2K',
    mirrors=(
        'no released config: mmdet Panoptic FPN with the upsampler in the 3 FPN top-down steps (mmdet FPN '
        'layout), semantic head bilinear (the printed increments count 3 modules)'
    ),
    deviations=[],
    note='DySample-S+',
)
