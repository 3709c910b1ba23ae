# Lite-HRNet-18 + FCN, Cityscapes: every fuse-layer upsampling is DySample (Liu et al., ICCV 2023; the paper's
# default: lp style, 4 groups, static scope) at the target branch's width, a x2^(j-i) step built as j-i chained
# x2 DySamples (the ratio DySample is designed and evaluated at; it also keeps the added parameters small).
_base_ = './fcn_lite-hrnet-18_8xb2-160k_nearest_cityscapes-512x1024.py'
model = dict(
    backbone=dict(
        upsample_cfg=dict(_delete_=True, type='dysample', style='lp', groups=4, dyscope=False),
        upsample_chain=True))

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='mIoU',
    number=None,
    source=None,
    printed_params=None,
    mirrors=(
        'no published number for learned fuse upsampling: the Lite-HRNet model (spec/lite_hrnet.md) with an '
        "FCN head in mmseg's HRNet Cityscapes setting (docs/lite_hrnet.md)"
    ),
    deviations=[],
    note="the paper's own segmentation table could not be read here (docs/lite_hrnet.md)",
)
