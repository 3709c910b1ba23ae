# UPerNet R50 (ADE20K) with the plugin's UPerHead: the 3 FPN top-down x2 steps at 512 channels are configurable;
# the PPM and the final fusion resize stay bilinear (spec/necks.md (E)). Baseline: bilinear.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['upsample_plugin'], allow_failed_imports=False)

model = dict(decode_head=dict(type='UpsampleUPerHead', upsample_cfg=dict(type='bilinear')))

# Schedule spelled out: 4 GPUs x 4 images = 16 images per iteration, 160k iterations, SGD lr 0.01, poly decay.
# On another number of GPUs, add --auto-scale-lr to tools/train.py.
train_dataloader = dict(batch_size=4)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005))
auto_scale_lr = dict(enable=False, base_batch_size=16)
