# UPerNet R101 (ADE20K, 80k iterations), bilinear baseline: the R50 config with ResNet-101-V1c (as mmseg's R101
# configs).
_base_ = './upernet_r50_4xb4-80k_bilinear_ade20k-512x512.py'
model = dict(pretrained='open-mmlab://resnet101_v1c', backbone=dict(depth=101))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='mIoU',
    number='43.33',
    source='tiny-smart/sapa README.md (extension)',
    printed_params='85.5M',
    mirrors=(
        'no released R101 config: tiny-smart/segmentation-with-upsamplers '
        'configs/dynamic_upsampling/upernet_r50_4xb4_carafe-80k_ade20k-512x512.py with ResNet-101 and '
        'bilinear steps'
    ),
    deviations=[],
    note=(
        'the official config writes its test pipeline with mmseg-0.x keys (img_norm_cfg, data=, '
        'ResizeToMultiple) that mmseg 1.1 ignores, so it tested on keep-ratio (2048, 512) resizes without '
        'alignment, as this config does'
    ),
)
