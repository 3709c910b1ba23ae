# CARAFE (Wang et al., ICCV 2019): k_up 5, k_enc 3, C_m 64.
_base_ = './faster-rcnn_r50_fpn-p6conv_nearest_1x_coco.py'
model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True,
            type='carafe',
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
    source='open-mmlab/mmdetection configs/carafe/README.md',
    printed_params=None,
    mirrors='open-mmlab/mmdetection configs/carafe/faster-rcnn_r50_fpn-carafe_1x_coco.py',
    deviations=[],
    note=(
        "the plugin computes CARAFE with its own op (the same math as mmcv's CUDA op, "
        'tests/test_carafe_op.py); the SAPA and DLU READMEs quote the same 38.6'
    ),
)
