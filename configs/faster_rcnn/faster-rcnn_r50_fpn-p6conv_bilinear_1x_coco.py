# Bilinear top-down upsampling in the FPN_CARAFE layout: the baseline of the DLU README (Fu0511/Dynamic-Lightweight-
# Upsampling), whose CARAFE and DLU rows are measured against it.
_base_ = './faster-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(neck=dict(upsample_cfg=dict(_delete_=True, type='bilinear')))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='box AP',
    number='37.5',
    source='Fu0511/Dynamic-Lightweight-Upsampling README.md',
    printed_params=None,
    mirrors='Fu0511/Dynamic-Lightweight-Upsampling custom/config/FPN/coco_baseline_bilinear.py',
    deviations=[
        'official config (mmdet 3.x custom code): UNIFIED_FPN (topology B) whose mmdet-2.x pad-64 key is '
        'ignored, so it pads to 32 (the P6 path is cropped); auto_scale_lr on, validation every 4 epochs; '
        'here pad 64, 16 images at lr 0.02, validation every epoch',
    ],
    note='bilinear with align_corners=False',
)
