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
