# DLU (Fu et al., ICPR 2024): the settings of its UNIFIED_FPN configs.
_base_ = './faster-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(
    neck=dict(
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
    metric='box AP',
    number='38.6',
    source='Fu0511/Dynamic-Lightweight-Upsampling README.md',
    printed_params='+0.6MB',
    mirrors='Fu0511/Dynamic-Lightweight-Upsampling custom/config/FPN/coco_custom_dlu.py',
    deviations=[
        'official config (mmdet 3.x custom code): UNIFIED_FPN (topology B) whose mmdet-2.x pad-64 key is '
        'ignored, so it pads to 32 (the P6 path is cropped); auto_scale_lr on, validation every 4 epochs; '
        'here pad 64, 16 images at lr 0.02, validation every epoch',
    ],
    note="the README's baseline is bilinear (37.5): faster-rcnn_r50_fpn-p6conv_bilinear_1x_coco.py",
)
