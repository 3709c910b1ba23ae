# LDA-AQU (Du et al., 2024): the FPN_LAU settings.
_base_ = './mask-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
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
    metric='box / mask AP',
    number=None,
    source=None,
    printed_params=None,
    mirrors=(
        "no official config: the upsampler in this family's layout (FPN_CARAFE, pad 64, 16 images at lr 0.02)"
    ),
    deviations=[],
    note='the LDA-AQU abstract claims +1.5 AP on instance segmentation; its table is not available',
)
