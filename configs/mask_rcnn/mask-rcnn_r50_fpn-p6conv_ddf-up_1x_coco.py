# DDF-Up (Zhou et al., CVPR 2021): the DDFUpPack defaults.
_base_ = './mask-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
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
    metric='box / mask AP',
    number=None,
    source=None,
    printed_params=None,
    mirrors=(
        "no official config: the upsampler in this family's layout (FPN_CARAFE, pad 64, 16 images at lr 0.02)"
    ),
    deviations=[],
    note='no paper reports DDF-Up in Mask R-CNN',
)
