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

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='box / mask AP',
    number='39.2 / 35.4',
    source='tiny-smart/dysample README.md',
    printed_params='+32.7K',
    mirrors=(
        'no released Mask R-CNN config (tiny-smart/detection-with-upsamplers ships Faster R-CNN configs '
        "only): the upsampler in the 4 FPN top-down steps, mask head unchanged (the README's increment counts"
        ' 4 modules)'
    ),
    deviations=[],
    note='',
)
