# Lite-HRNet-18 + FCN, Cityscapes: every fuse-layer upsampling is DySample (Liu et al., ICCV 2023; the paper's
# default: lp style, 4 groups, static scope) at the target branch's width, a x2^(j-i) step built as j-i chained
# x2 DySamples (the ratio DySample is designed and evaluated at; it also keeps the added parameters small).
_base_ = './fcn_lite-hrnet-18_8xb2-160k_nearest_cityscapes-512x1024.py'
model = dict(
    backbone=dict(
        upsample_cfg=dict(_delete_=True, type='dysample', style='lp', groups=4, dyscope=False),
        upsample_chain=True))
