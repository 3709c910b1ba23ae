# SAPA-B (Lu et al., NeurIPS 2022), guided by the finer lateral.
_base_ = './mask-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='sapa',
            up_kernel_size=5,
            embedding_dim=32,
            qkv_bias=True,
            norm=True)),
)

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='box / mask AP',
    number='38.7 / 35.1',
    source='Linwei-Chen/FreqFusion README.md (comparison table)',
    printed_params=None,
    mirrors=(
        'no released config: the upsampler in the 4 FPN top-down steps, mask head unchanged (the comparison '
        'table does not say how the mask head was treated)'
    ),
    deviations=[],
    note='',
)
