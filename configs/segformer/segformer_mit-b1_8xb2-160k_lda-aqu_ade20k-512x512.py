# LDA-AQU (Du et al., 2024): the FPN_LAU settings.
_base_ = './segformer_mit-b1_8xb2-160k_bilinear_ade20k-512x512.py'
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
        'no released config: the NVlabs head (poppinace/fade segformer/segformer_head.py) with the upsampler '
        'in its 6 slots'
    ),
    deviations=[],
    note='no published SegFormer number for LDA-AQU',
)
