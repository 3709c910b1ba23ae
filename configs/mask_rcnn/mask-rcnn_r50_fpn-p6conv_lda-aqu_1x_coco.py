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
