# SegFormer MiT-B1 (ADE20K) with the plugin's head: 6 x2 upsamplers at 256 channels replace the multi-step
# bilinear resizes (spec/necks.md (F), the FADE/SAPA papers' layout). Baseline: bilinear.
_base_ = 'mmseg::segformer/segformer_mit-b1_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['upsample_plugin'], allow_failed_imports=False)

model = dict(decode_head=dict(type='UpsampleSegformerHead', upsample_cfg=dict(type='bilinear')))

# Schedule spelled out: 8 GPUs x 2 images = 16 images per iteration, 160k iterations, AdamW lr 6e-5.
# On another number of GPUs, add --auto-scale-lr to tools/train.py.
train_dataloader = dict(batch_size=2)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
auto_scale_lr = dict(enable=False, base_batch_size=16)
