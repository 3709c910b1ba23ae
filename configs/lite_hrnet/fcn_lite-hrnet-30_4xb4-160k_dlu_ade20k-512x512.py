# Lite-HRNet-30: Lite-HRNet-18 with more modules per stage (3, 8, 3); everything else as the -18 config.
_base_ = './fcn_lite-hrnet-18_4xb4-160k_dlu_ade20k-512x512.py'
model = dict(backbone=dict(arch='30'))
