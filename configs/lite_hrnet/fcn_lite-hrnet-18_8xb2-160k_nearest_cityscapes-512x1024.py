# Lite-HRNet-18 (Yu et al., CVPR 2021) + FCN head on Cityscapes 512x1024, the paper's segmentation setting as far
# as it is published (docs/lite_hrnet.md): the HRNet segmentation head of mmseg (the four branches resized to the
# finest and concatenated, 1x1 conv + BN + ReLU, classifier), 8 GPUs x 2 images, 160k iterations, SGD lr 0.01
# with poly decay, random init (no ImageNet checkpoint), as the Lite-HRNet configs of mmseg's dev branch.
# Fuse-layer upsampling: nearest, the paper's (official module and state-dict keys). Baseline of this folder.
_base_ = 'mmseg::hrnet/fcn_hr18_4xb2-160k_cityscapes-512x1024.py'
custom_imports = dict(imports=['upsample_plugin'], allow_failed_imports=False)
default_scope = 'mmseg'

norm_cfg = dict(type='SyncBN', requires_grad=True)
widths = [40, 80, 160, 320]  # branch widths of Lite-HRNet-18/30, finest first
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='LiteHRNet',
        arch='18',  # upsample_plugin.models.backbones.lite_hrnet.LITE_HRNET_18 (the official config's `extra`)
        norm_cfg=norm_cfg,
        norm_eval=False,
        # The paper's fuse layers: 1x1 conv + BN + nearest x2^(j-i); 'official' keeps the published fuse sum.
        upsample_cfg=dict(type='nearest'),
        fuse_mode='official'),
    decode_head=dict(in_channels=widths, channels=sum(widths), norm_cfg=norm_cfg))

# Schedule spelled out: 8 GPUs x 2 images = 16 images per iteration, 160k iterations, SGD lr 0.01, poly decay.
# On another number of GPUs, add --auto-scale-lr to tools/train.py.
train_dataloader = dict(batch_size=2)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005))
auto_scale_lr = dict(enable=False, base_batch_size=16)

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
