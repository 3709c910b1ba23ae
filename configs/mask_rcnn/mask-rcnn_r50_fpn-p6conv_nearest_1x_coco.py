# Mask R-CNN R50 with the plugin's FPN, baseline: nearest top-down upsampling. The mask head is the plugin's
# FCNMaskHead, whose upsampler is configurable too (default: mmdet's 2x2 deconv + ReLU).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['upsample_plugin'], allow_failed_imports=False)

model = dict(
    # FPN_CARAFE layout (spec/necks.md (B)): P6 from a stride-2 conv on C5 joins the top-down path, so 4 upsamplers;
    # the layout of the CARAFE, DySample, DLU, LDA-AQU and extended-SAPA detection numbers. Inputs padded to 64 so
    # every x2 step is exact (other sizes are cropped/padded by the neck). topology='fpn' gives mmdet's FPN layout.
    data_preprocessor=dict(pad_size_divisor=64),
    neck=dict(
        _delete_=True,
        type='UpsampleFPN',
        topology='fpn_carafe',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        num_outs=5,
        start_level=0,
        end_level=-1,
        norm_cfg=None,
        act_cfg=None,
        order=('conv', 'norm', 'act'),
        upsample_cfg=dict(type='nearest')),
    roi_head=dict(mask_head=dict(type='UpsampleFCNMaskHead', upsample_cfg=dict(type='deconv', scale_factor=2))),
)

# The papers' 1x schedule, spelled out: 12 epochs, 8 GPUs x 2 images = total batch 16, SGD lr 0.02. On another
# number of GPUs, add --auto-scale-lr to tools/train.py (lr scaled from base_batch_size 16).
train_dataloader = dict(batch_size=2, num_workers=2)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Provenance of the number this config reproduces (tools/config_table.py makes the README table from it).
paper = dict(
    metric='box / mask AP',
    number='38.3 / 34.7',
    source='tiny-smart/dysample README.md',
    printed_params=None,
    mirrors=(
        'no released baseline config: mmdet Mask R-CNN R50 with the FPN_CARAFE layout and nearest top-down '
        'upsampling'
    ),
    deviations=[],
    note="mmdet's model zoo (mmdet FPN layout): 38.2 / 34.7",
)
