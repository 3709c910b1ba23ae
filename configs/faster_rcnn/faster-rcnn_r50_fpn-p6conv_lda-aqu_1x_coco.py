# LDA-AQU (Du et al., 2024): the FPN_LAU settings.
_base_ = './faster-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='lda_aqu',
            reduction_factor=4,
            nh=1,
            k_e=3,
            k_u=3,
            n_groups=2,
            range_factor=11,
            rpb=True)),
)

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='box AP',
    number='39.2',
    source='duzw9311/LDA-AQU README.md ("Weight" table: fasterrcnn_r50_lau)',
    printed_params=None,
    mirrors='duzw9311/LDA-AQU configs/lda_aqu/fasterrcnn_r50_lau.py (FPN_LAU, mmdet 2.25.1)',
    deviations=[
        'official config: 4 GPUs x 2 images = 8 images per iteration at lr 0.01 (steps at epochs 8 and 11, '
        '500-iteration warm-up), validation every 3 epochs; here 16 images at lr 0.02 (the same lr per '
        'image), validation every epoch',
    ],
    note='',
)
