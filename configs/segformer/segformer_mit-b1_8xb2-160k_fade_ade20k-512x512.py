# FADE (Lu et al., ECCV 2022), guided by the finer lateral; gated, as in the SegFormer head.
_base_ = './segformer_mit-b1_8xb2-160k_bilinear_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='fade',
            up_kernel_size=5,
            gating=True)),
)
