# FreqFusion (Chen et al., TPAMI 2024; spec/freqfusion.md) in the official FreqFusionCARAFEFPN layout: topology B
# (stride-2 extra lateral on C5, P6 by its own 3x3 conv, inputs padded to 64), 4 FreqFusion modules at 256 channels
# (C_m = (256 + 256) // 8 = 64, ALPF 5x5, AHPF 3x3, offset generator), each *replacing* the finer lateral by the
# official hr' + up (UpsampleFPN calls FreqFusion.fuse for it). Module init as the official one (Xavier sampler,
# spec quirk 3, kept); FPN Xavier on the laterals / output convs first.
_base_ = './faster-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='freqfusion',
            lowpass_kernel=5,
            highpass_kernel=3,
            compressed_channels=64,
            use_high_pass=True,
            semi_conv=True,
            comp_feat_upsample=True,
            feature_resample=True,
            feature_resample_group=4,
            feature_resample_norm=True)),
)

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='box AP',
    number='39.4',
    source='Linwei-Chen/FreqFusion README.md (released checkpoint: 39.5)',
    printed_params=None,
    mirrors=(
        'Linwei-Chen/FreqFusion mmdetection/configs/faster_rcnn/ (R50 FreqFusion config; neck '
        'FreqFusionCARAFEFPN, mmdetection/mmdet/models/necks/fpn_carafe.py)'
    ),
    deviations=[
        'official config: data is defined twice and the second dict (8 images per GPU) wins while the lr stays '
        '0.02, GPU count not stated (spec quirk 12); here 8 GPUs x 2 images at lr 0.02, the family schedule',
        'runs on mmdet 3.3 / mmcv 2 instead of the mmdet 2.28.1 fork with mmcv-full 1.x; CARAFE is the plugin\'s op '
        '(same zero-padded math as mmcv, spec quirk 4)',
    ],
    note='FreqFusion (G_r 4); the README prints no parameter increment: 4 x 104,690 = +418,760',
)
