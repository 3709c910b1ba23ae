# CARAFE (Wang et al., ICCV 2019): k_up 5, k_enc 3, C_m 64. As in mmdet's CARAFE config, the mask head upsamples with
# CARAFE too.
_base_ = './mask-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='carafe',
            up_kernel=5,
            up_group=1,
            encoder_kernel=3,
            encoder_dilation=1,
            compressed_channels=64)),
    roi_head=dict(
        mask_head=dict(
            upsample_cfg=dict(
                _delete_=True,
                type='carafe',
                up_kernel=5,
                up_group=1,
                encoder_kernel=3,
                encoder_dilation=1,
                compressed_channels=64,
                scale_factor=2))),
)
