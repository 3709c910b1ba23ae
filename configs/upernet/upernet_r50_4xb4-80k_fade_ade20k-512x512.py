# FADE (Lu et al., ECCV 2022), guided by the finer lateral; no gate inside an additive neck (spec/necks.md).
_base_ = './upernet_r50_4xb4-80k_bilinear_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='fade',
            up_kernel_size=5,
            gating=False)),
)

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='mIoU',
    number='41.83',
    source='tiny-smart/sapa README.md (extension)',
    printed_params='+0.1M',
    mirrors=(
        'tiny-smart/segmentation-with-upsamplers '
        'configs/dynamic_upsampling/upernet_r50_4xb4_carafe-80k_ade20k-512x512.py with FADE (builder default '
        'gating=False, as here)'
    ),
    deviations=[],
    note=(
        'the printed "+0.1M" fits FADE-Lite (3 x 25,875 = 77,625), not FADE (3 modules at 512 channels add '
        '0.24M); the official config writes its test pipeline with mmseg-0.x keys (img_norm_cfg, data=, '
        'ResizeToMultiple) that mmseg 1.1 ignores, so it tested on keep-ratio (2048, 512) resizes without '
        'alignment, as this config does'
    ),
)
