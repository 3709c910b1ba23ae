# DySample+: lp style, 4 groups, dynamic scope.
_base_ = './faster-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='dysample',
            style='lp',
            groups=4,
            dyscope=True)),
)
