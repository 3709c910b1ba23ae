# DySample (Liu et al., ICCV 2023), the paper's "DySample": lp style, 4 groups, static scope.
_base_ = './mask-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='dysample',
            style='lp',
            groups=4,
            dyscope=False)),
)
