# DLU (Fu et al., ICPR 2024): the settings of its UNIFIED_FPN configs.
_base_ = './segformer_mit-b1_8xb2-160k_bilinear_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='dlu',
            up_kernel=5,
            up_group=1,
            encoder_kernel=3,
            encoder_dilation=1,
            compressed_channels=64)),
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
    note='no published SegFormer number for DLU',
)
