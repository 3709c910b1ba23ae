# DySample-S+: pl style, 8 groups, dynamic scope (spec/dysample.md: 3 x 2,064 = +6.2K).
_base_ = './faster-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
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
    metric='box AP',
    number='38.6',
    source='Linwei-Chen/FreqFusion README.md (comparison table)',
    printed_params=None,
    mirrors=(
        "no official config: the upsampler in this family's layout (FPN_CARAFE, pad 64, 16 images at lr 0.02)"
    ),
    deviations=[],
    note='DySample-S+ (pl style, 8 groups, dynamic scope)',
)
