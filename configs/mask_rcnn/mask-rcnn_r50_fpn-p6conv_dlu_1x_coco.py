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
