# Lite-HRNet-18 (Yu et al., CVPR 2021) + FCN head on ADE20K 512x512: the model of the Cityscapes config (random
# init, nearest fuse upsampling: the paper's) in mmseg's HRNet ADE20K setting: 4 GPUs x 4 images = 16 images per
# iteration, 160k iterations, SGD lr 0.01 with poly decay. Baseline of the ADE20K configs of this folder.
_base_ = 'mmseg::hrnet/fcn_hr18_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['upsample_plugin'], allow_failed_imports=False)
default_scope = 'mmseg'

norm_cfg = dict(type='SyncBN', requires_grad=True)
widths = [40, 80, 160, 320]  # branch widths of Lite-HRNet-18/30, finest first
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='LiteHRNet',
        arch='18',
        norm_cfg=norm_cfg,
        norm_eval=False,
        upsample_cfg=dict(type='nearest'),
        fuse_mode='official'),
    decode_head=dict(in_channels=widths, channels=sum(widths), norm_cfg=norm_cfg))

train_dataloader = dict(batch_size=4)
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
        "FCN head in mmseg's HRNet ADE20K setting (docs/lite_hrnet.md)"
    ),
    deviations=[],
    note="the paper's own segmentation table could not be read here (docs/lite_hrnet.md)",
)
