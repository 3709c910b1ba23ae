# SAPA-B (Lu et al., NeurIPS 2022), guided by the finer lateral.
_base_ = './upernet_r50_4xb4-160k_bilinear_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='sapa',
            up_kernel_size=5,
            embedding_dim=32,
            qkv_bias=True,
            norm=True)),
)
