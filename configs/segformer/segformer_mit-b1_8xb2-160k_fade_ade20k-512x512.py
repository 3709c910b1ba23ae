# FADE (Lu et al., ECCV 2022), guided by the finer lateral; gated, as in the SegFormer head.
_base_ = './segformer_mit-b1_8xb2-160k_bilinear_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='fade',
            up_kernel_size=5,
            gating=True)),
)

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='mIoU',
    number='44.41',
    source='poppinace/fade README.md',
    printed_params='+0.29M',
    mirrors='poppinace/fade segformer/segformer.b1_fade.512x512.ade.160k.py',
    deviations=[
        'runs on mmseg 1.x with SyncBN on 8 GPUs x 2 images instead of the NVlabs codebase (mmseg 0.x) with '
        'BN on 1 GPU x 16 images: the same 16-image batch statistics',
    ],
    note='best evaluation (144k; final 44.25); the SAPA extension README prints 43.06 for FADE',
)
