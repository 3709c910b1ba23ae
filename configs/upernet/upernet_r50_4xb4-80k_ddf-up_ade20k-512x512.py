# DDF-Up (Zhou et al., CVPR 2021): the DDFUpPack defaults.
_base_ = './upernet_r50_4xb4-160k_bilinear_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='ddf_up',
            kernel_size=3,
            dilation=1,
            head=1,
            se_ratio=0.2,
            nonlinearity='linear',
            dw_kernel_size=3,
            kernel_combine='mul')),
)
