# DySample-S+: pl style, 8 groups, dynamic scope (spec/dysample.md: 3 x 2,064 = +6.2K).
_base_ = './segformer_mit-b1_8xb2-160k_bilinear_ade20k-512x512.py'
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
        'no released config: the NVlabs head (poppinace/fade segformer/segformer_head.py) with the upsampler '
        'in its 6 slots'
    ),
    deviations=[],
    note="DySample's Fig. 1 only (no table)",
)
