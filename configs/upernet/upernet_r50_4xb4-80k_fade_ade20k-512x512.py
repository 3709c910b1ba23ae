# FADE (Lu et al., ECCV 2022), guided by the finer lateral; no gate inside an additive neck (spec/necks.md).
_base_ = './upernet_r50_4xb4-160k_bilinear_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='fade',
            up_kernel_size=5,
            gating=False)),
)
