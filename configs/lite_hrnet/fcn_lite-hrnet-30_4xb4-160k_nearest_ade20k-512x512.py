# Lite-HRNet-30: Lite-HRNet-18 with more modules per stage (3, 8, 3); everything else as the -18 config.
_base_ = './fcn_lite-hrnet-18_4xb4-160k_nearest_ade20k-512x512.py'
model = dict(backbone=dict(arch='30'))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='mIoU',
    number=None,
    source=None,
    printed_params=None,
    mirrors=(
        'no published number for learned fuse upsampling: the Lite-HRNet model (spec/lite_hrnet.md) with an '
        "FCN head in mmseg's HRNet ADE20K setting (docs/lite_hrnet.md)"
    ),
    deviations=[],
    note="the paper's own segmentation table could not be read here (docs/lite_hrnet.md)",
)
