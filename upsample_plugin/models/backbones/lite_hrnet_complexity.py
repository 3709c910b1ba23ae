"""The operation count of the Lite-HRNet paper's tables (Yu et al., CVPR 2021, Tables 1-3; spec/lite_hrnet.md
"Checkable numbers"), and the pose model it was measured on.

The official repository measured its models with ``tools/summary_network.py`` -> ``tools/torchstat_utils.py``, a
wrapper of a modified ``torchstat`` that is not published. torchstat wraps every *leaf* module and stores, per
module, the cost of its *last* call (a module called twice, like the fuse path from branch 0 in the official
fuse loop, counts once); ``torchstat_utils`` prints the "Flops" column in units of 2**20. Its rules (torchstat's
``compute_flops``): Conv2d = multiply-adds + one per output element for a bias; BatchNorm = 2 per input element
(affine); ReLU = 1 per element; ``nn.Upsample`` = 1 per output pixel (H x W, torchstat reads ``out[0].shape[1:]``);
other modules 0. The modified version must also count the SE unit's ``AdaptiveAvgPool2d`` and the
cross-resolution weighting's functional nearest resize: without them the count is 1.6 M (2**20) below the
paper's. :func:`paper_operation_count` adds them as ``AdaptiveAvgPool2d`` = 1 per input element and the resize =
1 per output pixel (the ``nn.Upsample`` rule); with these rules the paper's eight Lite-HRNet/Naive Lite-HRNet
numbers are reproduced within 0.08 M (docs/lite_hrnet.md has the table and the rules tried).

This is a *paper-reproduction* count. For the MACs of a model (every call counted, the plugin's compiled ops
included) use :func:`upsample_plugin.complexity.flop_analyzer` (mmengine's ``FlopAnalyzer``).
"""
from __future__ import annotations

import collections
import copy
from typing import Dict, Mapping, Sequence, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from .lite_hrnet import CrossResolutionWeighting, LiteHRNet

#: torchstat_utils prints FLOPs with a 1024-based "M".
MEGA = 2 ** 20

__all__ = ['PoseModel', 'pose_model', 'paper_operation_count', 'MEGA']


class PoseModel(nn.Module):
    """Backbone + the official COCO keypoint head at ``num_deconv_layers=0, final_conv_kernel=1``
    (``TopDownSimpleHead``: a single 1x1 conv with bias on the finest output of the iterative head)."""

    def __init__(self, extra: Mapping, num_joints: int = 17, **backbone_kwargs):
        super().__init__()
        extra = copy.deepcopy(dict(extra))
        extra['with_head'] = True
        self.backbone = LiteHRNet(extra, **backbone_kwargs)
        self.final_layer = nn.Conv2d(self.backbone.out_channels[0], num_joints, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.backbone(x)[0])


def pose_model(extra: Mapping, num_joints: int = 17, **backbone_kwargs) -> PoseModel:
    """The model of the paper's pose tables (COCO: 17 joints, MPII: 16), in eval mode."""
    return PoseModel(extra, num_joints, **backbone_kwargs).eval()


def _leaf_cost(module: nn.Module, inputs: Tuple, output) -> Dict[str, int]:
    x = inputs[0]
    if isinstance(module, nn.Conv2d):
        n, in_channels = x.shape[:2]
        out_channels, height, width = output.shape[1:]
        positions = n * height * width
        macs = module.kernel_size[0] * module.kernel_size[1] * in_channels * (out_channels // module.groups)
        return {'conv': macs * positions,
                'conv_bias': out_channels * positions if module.bias is not None else 0}
    if isinstance(module, _BatchNorm):
        return {'norm': x.numel() * (2 if module.affine else 1)}
    if isinstance(module, nn.ReLU):
        return {'relu': x.numel()}
    if isinstance(module, nn.Upsample):
        return {'upsample': x.shape[0] * output.shape[-2] * output.shape[-1]}
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return {'pool': x.numel()}
    return {}


def paper_operation_count(model: nn.Module, input_shape: Sequence[int]) -> Tuple[float, Dict[str, int]]:
    """``(total in M = 2**20, {category: count})`` of ``model`` on one ``input_shape`` input, by the rules of the
    module docstring (each leaf module counted once, at its last call)."""
    last_call: Dict[nn.Module, Dict[str, int]] = {}
    resize = collections.Counter()

    def leaf_hook(module, inputs, output):
        last_call[module] = _leaf_cost(module, inputs, output)

    def weighting_hook(module, inputs, output):
        # The weights of every branch are resized (nearest) to that branch: one per output pixel, per call.
        resize['weight_resize'] += sum(branch.shape[0] * branch.shape[-2] * branch.shape[-1] for branch in output)

    handles = [m.register_forward_hook(leaf_hook) for m in model.modules() if not list(m.children())]
    handles += [m.register_forward_hook(weighting_hook) for m in model.modules()
                if isinstance(m, CrossResolutionWeighting)]
    try:
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape)))
    finally:
        for handle in handles:
            handle.remove()
    totals = collections.Counter(resize)
    for cost in last_call.values():
        totals.update(cost)
    return sum(totals.values()) / MEGA, dict(totals)
