# Panoptic FPN R50 with the plugin's FPN, baseline: nearest top-down upsampling. The semantic head is the
# plugin's PanopticFPNHead, whose x2 steps are configurable (default bilinear, as in mmdet and the papers).
_base_ = 'mmdet::panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['upsample_plugin'], allow_failed_imports=False)

model = dict(
    # mmdet FPN layout (spec/necks.md (A)): 3 top-down upsamplers, P6 by max-pooling; the layout of the Panoptic FPN
    # numbers (DySample README: +24.6K = 3 x 8,224). Inputs padded to 32.
    neck=dict(
        _delete_=True,
        type='UpsampleFPN',
        topology='fpn',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        num_outs=5,
        upsample_cfg=dict(type='nearest')),
    semantic_head=dict(type='UpsamplePanopticFPNHead', upsample_cfg=dict(type='bilinear')),
)

# The papers' 1x schedule, spelled out: 12 epochs, 8 GPUs x 2 images = total batch 16, SGD lr 0.02. On another
# number of GPUs, add --auto-scale-lr to tools/train.py (lr scaled from base_batch_size 16).
train_dataloader = dict(batch_size=2, num_workers=2)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='PQ',
    number='40.2',
    source='tiny-smart/dysample README.md',
    printed_params='46.0M',
    mirrors='open-mmlab/mmdetection configs/panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py',
    deviations=[],
    note="equal to mmdet's model-zoo row",
)
