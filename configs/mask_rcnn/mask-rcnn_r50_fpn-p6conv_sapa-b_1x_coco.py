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
