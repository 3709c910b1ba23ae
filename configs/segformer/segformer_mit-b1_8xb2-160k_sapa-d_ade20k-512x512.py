# SAPA-D (Lu et al., "On Point Affiliation in Feature Upsampling", the SAPA extension): 9 deformable points in
# 4 groups, high-resolution offsets, no GroupNorm (the builder defaults of the official code), guided by the finer
# projected level.
_base_ = './segformer_mit-b1_8xb2-160k_bilinear_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='sapadeform',
            num_point=9,
            groups=4,
            embedding_dim=32,
            qkv_bias=True,
            high_offset=True,
            norm=False)),
)

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='mIoU',
    number='44.68',
    source='tiny-smart/sapa README.md (extension)',
    printed_params='+0.8M',
    mirrors=(
        'no released config: the NVlabs head (poppinace/fade segformer/segformer_head.py) with the upsampler '
        'in its 6 slots'
    ),
    deviations=[
        'runs on mmseg 1.x with SyncBN on 8 GPUs x 2 images instead of the NVlabs codebase (mmseg 0.x) with '
        'BN on 1 GPU x 16 images: the same 16-image batch statistics',
    ],
    note='the SAPA extension README prints 42.11 for its bilinear baseline (41.68 in poppinace/fade)',
)
