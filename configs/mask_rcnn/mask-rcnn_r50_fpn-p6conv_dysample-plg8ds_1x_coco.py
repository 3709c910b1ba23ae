# DySample-S+: pl style, 8 groups, dynamic scope (spec/dysample.md: 3 x 2,064 = +6.2K).
_base_ = './mask-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
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
    metric='box / mask AP',
    number='39.3 / 35.5',
    source='Linwei-Chen/FreqFusion README.md (comparison table)',
    printed_params=None,
    mirrors=(
        'no released config: the upsampler in the 4 FPN top-down steps, mask head unchanged (the comparison '
        'table does not say how the mask head was treated)'
    ),
    deviations=[],
    note='DySample-S+',
)
