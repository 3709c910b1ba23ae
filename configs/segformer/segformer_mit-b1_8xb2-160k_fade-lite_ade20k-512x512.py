# FADE-Lite (Lu et al., ECCV 2022): FADE with a depthwise kernel generator, gated, guided by the finer projected
# level (poppinace/fade upsample_mode='fade_lite').
_base_ = './segformer_mit-b1_8xb2-160k_bilinear_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='fade_lite',
            up_kernel_size=5,
            gating=True)),
)

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='mIoU',
    number='43.49',
    source='poppinace/fade README.md',
    printed_params='+80K',
    mirrors='poppinace/fade segformer/segformer.b1_fade_lite.512x512.ade.160k.py',
    deviations=[
        'runs on mmseg 1.x with SyncBN on 8 GPUs x 2 images instead of the NVlabs codebase (mmseg 0.x) with '
        'BN on 1 GPU x 16 images: the same 16-image batch statistics',
    ],
    note='best evaluation = final (160k)',
)
