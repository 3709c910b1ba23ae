# CARAFE (Wang et al., ICCV 2019): k_up 5, k_enc 3, C_m 64.
_base_ = './segformer_mit-b1_8xb2-160k_bilinear_ade20k-512x512.py'
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
    number='42.82',
    source='poppinace/fade README.md',
    printed_params='+0.44M',
    mirrors=(
        "no released config (the run's log: poppinace/fade "
        'segformer/segformer.b1_carafe.512x512.ade.160k.log); the NVlabs head with CARAFE'
    ),
    deviations=[
        'runs on mmseg 1.x with SyncBN on 8 GPUs x 2 images instead of the NVlabs codebase (mmseg 0.x) with '
        'BN on 1 GPU x 16 images: the same 16-image batch statistics',
    ],
    note='best evaluation (144k; final 42.78)',
)
