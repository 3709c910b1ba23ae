# Panoptic FPN R50 in the FPN_CARAFE layout (spec/necks.md (B): stride-2 extra lateral on C5 joining the top-down
# path, P6 by its own 3x3 conv, inputs padded to 64), nearest: the matched baseline of the FreqFusion and FRFU
# Panoptic FPN configs, whose official necks (FreqFusionCARAFEFPN, FPN_CARAFE_Upsample) have this layout. It has
# 5,308,928 more parameters than the mmdet-FPN-layout baseline (46.0M) that both papers compare against.
_base_ = './panoptic-fpn_r50_fpn_nearest_1x_coco.py'
model = dict(
    data_preprocessor=dict(pad_size_divisor=64),
    neck=dict(topology='fpn_carafe', norm_cfg=None, act_cfg=None))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='PQ',
    number=None,
    source=None,
    printed_params=None,
    mirrors=(
        "no released config: the FPN_CARAFE layout of FreqFusion's and FRFU's Panoptic FPN necks with nearest "
        'top-down upsampling'
    ),
    deviations=[],
    note=('no published number: the papers compare against the mmdet-FPN-layout Nearest 40.2 (46.0M, '
          'panoptic-fpn_r50_fpn_nearest_1x_coco.py)'),
)
