# DySample+: lp style, 4 groups, dynamic scope.
_base_ = './panoptic-fpn_r50_fpn_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='dysample',
            style='lp',
            groups=4,
            dyscope=True)),
)
