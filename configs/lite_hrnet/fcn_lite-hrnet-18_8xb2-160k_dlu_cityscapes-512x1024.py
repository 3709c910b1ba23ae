# Lite-HRNet-18 + FCN, Cityscapes: every fuse-layer upsampling is DLU (Fu et al., ICPR 2024; k_up=5, 1 group)
# at the target branch's width, a x2^(j-i) step built as j-i chained x2 DLUs. The compressor is 16 channels
# wide (the official default, 64, is wider than the 40-160-channel branches it would compress and would add
# about 0.8M parameters to a 1.1M backbone).
_base_ = './fcn_lite-hrnet-18_8xb2-160k_nearest_cityscapes-512x1024.py'
model = dict(
    backbone=dict(
        upsample_cfg=dict(_delete_=True, type='dlu', up_kernel=5, up_group=1, encoder_kernel=3,
                          compressed_channels=16),
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
