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
