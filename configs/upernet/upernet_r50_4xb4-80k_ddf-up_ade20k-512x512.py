# DDF-Up (Zhou et al., CVPR 2021): the DDFUpPack defaults.
_base_ = './upernet_r50_4xb4-80k_bilinear_ade20k-512x512.py'
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

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='mIoU',
    number=None,
    source=None,
    printed_params=None,
    mirrors=(
        'no released config: the upsampler in the 3 FPN top-down steps of '
        'tiny-smart/segmentation-with-upsamplers '
        'configs/dynamic_upsampling/upernet_r50_4xb4_carafe-80k_ade20k-512x512.py'
    ),
    deviations=[],
    note='no paper reports DDF-Up in UPerNet',
)
