# SegFormer MiT-B1 (ADE20K, 160k) in the setting of FRFU's SegFormer experiment (spec/frfu.md "Integration notes",
# ADE20K_segmentation/segformer_mit-b1-rrfu_160k_ade20k-512x512.py): mmseg 1.x's SegFormer head with upsampler
# slots (SegformerHead_Upsample = the plugin's UpsampleSegformerHead: per-level 1x1 ConvModule + BN + ReLU,
# fusion_conv) at channels=128 (not the NVlabs head's 256), BN, 2 GPUs x 16 images. The NVlabs-head configs of this
# folder (8xb2) are another setting: FRFU's SegFormer numbers come from this head.
_base_ = 'mmseg::segformer/segformer_mit-b1_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['upsample_plugin'], allow_failed_imports=False)

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    decode_head=dict(
        type='UpsampleSegformerHead',
        channels=128,
        norm_cfg=norm_cfg,
        upsample_cfg=dict(type='bilinear')))

# The official test pipeline: keep-ratio resize to (2048, 512), then ResizeToMultiple(32), so every x2 step is exact.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# The official schedule: 2 GPUs x 16 images with BN (per-GPU statistics over 16 images), AdamW lr 6e-5 (head x10),
# 1,500-iteration linear warm-up then poly (power 1), 160k iterations, evaluation every 16k (mmseg's SegFormer
# schedule). On 4 GPUs: --cfg-options train_dataloader.batch_size=8 (the BN statistics then see 8 images).
train_dataloader = dict(batch_size=16)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
auto_scale_lr = dict(enable=False, base_batch_size=32)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=16000, save_best='mIoU', rule='greater'))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='mIoU',
    number=None,
    source=None,
    printed_params=None,
    mirrors=(
        'yisi-xj/Relaxed-Receptive-Field-for-Adaptive-Upsampling ADE20K_segmentation/segformer_head_upsample.py '
        "(SegformerHead_Upsample, channels=128) with bilinear resizes: mmseg's SegformerHead at 128 channels"
    ),
    deviations=[],
    note=('baseline of this setting (no published number: the matched published baseline is the nearest '
          'config, 40.54; the README table\'s Bilinear 41.68 is the 256-channel NVlabs head)'),
)
