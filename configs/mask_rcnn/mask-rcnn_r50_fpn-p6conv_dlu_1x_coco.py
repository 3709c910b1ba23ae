# DLU (Fu et al., ICPR 2024): the settings of its UNIFIED_FPN configs.
_base_ = './mask-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
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
    metric='box / mask AP',
    number=None,
    source=None,
    printed_params=None,
    mirrors=(
        "no official config: the upsampler in this family's layout (FPN_CARAFE, pad 64, 16 images at lr 0.02)"
    ),
    deviations=[],
    note='no published Mask R-CNN number for DLU',
)
