# CARAFE (Wang et al., ICCV 2019): k_up 5, k_enc 3, C_m 64.
_base_ = './upernet_r50_4xb4-80k_bilinear_ade20k-512x512.py'
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

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='mIoU',
    number='41.49',
    source='tiny-smart/sapa README.md (extension)',
    printed_params='+0.3M',
    mirrors=(
        'tiny-smart/segmentation-with-upsamplers '
        'configs/dynamic_upsampling/upernet_r50_4xb4_carafe-80k_ade20k-512x512.py'
    ),
    deviations=[],
    note=(
        'the official config writes its test pipeline with mmseg-0.x keys (img_norm_cfg, data=, '
        'ResizeToMultiple) that mmseg 1.1 ignores, so it tested on keep-ratio (2048, 512) resizes without '
        'alignment, as this config does'
    ),
)
