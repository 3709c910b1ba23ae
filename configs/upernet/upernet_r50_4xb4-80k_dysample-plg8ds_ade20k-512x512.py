# DySample-S+: pl style, 8 groups, dynamic scope (spec/dysample.md: 3 x 2,064 = +6.2K).
_base_ = './upernet_r50_4xb4-80k_bilinear_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='dysample',
            style='pl',
            groups=8,
            dyscope=True)),
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
    note='no paper reports DySample-S+ in UPerNet',
)
