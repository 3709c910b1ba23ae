# Lite-HRNet-30: Lite-HRNet-18 with more modules per stage (3, 8, 3); everything else as the -18 config.
_base_ = './fcn_lite-hrnet-18_8xb2-160k_dysample_cityscapes-512x1024.py'
model = dict(backbone=dict(arch='30'))
