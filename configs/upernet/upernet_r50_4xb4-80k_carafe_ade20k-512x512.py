# CARAFE (Wang et al., ICCV 2019): k_up 5, k_enc 3, C_m 64.
_base_ = './upernet_r50_4xb4-160k_bilinear_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='carafe',
            up_kernel=5,
            up_group=1,
            encoder_kernel=3,
            encoder_dilation=1,
            compressed_channels=64)),
)
