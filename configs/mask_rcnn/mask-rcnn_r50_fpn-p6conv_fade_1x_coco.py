# FADE (Lu et al., ECCV 2022), guided by the finer lateral; no gate inside an additive neck (spec/necks.md).
_base_ = './mask-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='fade',
            up_kernel_size=5,
            gating=False)),
)
