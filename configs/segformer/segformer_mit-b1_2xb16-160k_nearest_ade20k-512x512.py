# FRFU's matched SegFormer baseline: the same 128-channel mmseg head with nearest resizes (spec/frfu.md quirk 10).
_base_ = './segformer_mit-b1_2xb16-160k_bilinear_ade20k-512x512.py'
model = dict(decode_head=dict(upsample_cfg=dict(_delete_=True, type='nearest')))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='mIoU',
    number='40.54',
    source='yisi-xj/Relaxed-Receptive-Field-for-Adaptive-Upsampling README.md Table 1',
    printed_params='13.7M',
    mirrors=(
        'yisi-xj/Relaxed-Receptive-Field-for-Adaptive-Upsampling ADE20K_segmentation/'
        'segformer_mit-b1-nearest_160k_ade20k-512x512_log.txt (same head, channels=128, upsample_cfg nearest)'
    ),
    deviations=[],
    note='final = best evaluation of the log (160k)',
)
