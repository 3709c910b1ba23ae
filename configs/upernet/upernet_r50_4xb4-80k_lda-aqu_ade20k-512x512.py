# LDA-AQU (Du et al., 2024): the FPN_LAU settings.
_base_ = './upernet_r50_4xb4-80k_bilinear_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='lda_aqu',
            reduction_factor=4,
            nh=1,
            k_e=3,
            k_u=3,
            n_groups=2,
            range_factor=11,
            rpb=True)),
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
    note=(
        'the LDA-AQU abstract claims +2.5 mIoU on semantic segmentation (architecture not stated); its table '
        'is not available'
    ),
)
