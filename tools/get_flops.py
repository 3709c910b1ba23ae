#!/usr/bin/env python
"""MACs and parameters of a config's model, the plugin's ops included (upsample_plugin.complexity).

Counted part: for mmdet configs the backbone and neck (``extract_feat``: where the FPN upsamplers are; the RPN
and RoI heads depend on the proposals), for mmseg configs the backbone and decode head (``_forward``).
"GFLOPs" in the upsampler papers are MAC counts (spec/numbers.md section 3), so MACs are reported.

    python tools/get_flops.py configs/faster_rcnn/faster-rcnn_r50_fpn-p6conv_carafe_1x_coco.py --shape 800 1216
"""
import argparse

import torch
import torch.nn as nn
from mmengine.analysis.print_helper import complexity_stats_table
from mmengine.config import DictAction
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

from upsample_plugin.complexity import flop_analyzer
from upsample_plugin.runner import load_config
from upsample_plugin.upsamplers import Upsampler


class CountedPart(nn.Module):
    """The part of a detector/segmentor that is counted, as a tensor-in, tensors-out module for tracing."""

    def __init__(self, model: nn.Module, is_segmentor: bool):
        super().__init__()
        self.model = model
        self.is_segmentor = is_segmentor

    def forward(self, inputs: torch.Tensor):
        if self.is_segmentor:
            return self.model._forward(inputs)
        return self.model.extract_feat(inputs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, default=(800, 1216), metavar=('H', 'W'),
                        help='input image size (default: a COCO image padded to 64)')
    parser.add_argument('--depth', type=int, default=3, help='module depth of the printed table')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    model = revert_sync_batchnorm(registry.build(cfg.model)).eval()
    is_segmentor = cfg.default_scope == 'mmseg'
    counted = CountedPart(model, is_segmentor)
    inputs = (torch.randn(1, 3, *args.shape),)
    with torch.no_grad():
        analyzer = flop_analyzer(counted, inputs)
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = analyzer.total()
        by_module = analyzer.by_module()
    upsamplers = {name: module for name, module in counted.named_modules()
                  if isinstance(module, Upsampler) and name}
    print(complexity_stats_table(analyzer, max_depth=args.depth, show_param_shapes=False))
    part = 'backbone + decode head' if is_segmentor else 'backbone + neck'
    print(f'\ninput 1x3x{args.shape[0]}x{args.shape[1]}; counted: {part} (MACs)')
    print(f'MACs: {total / 1e9:.3f} G; parameters (whole model): '
          f'{sum(p.numel() for p in model.parameters()) / 1e6:.3f} M')
    if upsamplers:
        macs = sum(by_module[name] for name in upsamplers)
        params = sum(p.numel() for module in upsamplers.values() for p in module.parameters())
        print(f'upsamplers: {len(upsamplers)} x {type(next(iter(upsamplers.values()))).__name__}, '
              f'{macs:,} MACs ({macs / 1e9:.3f} G), {params:,} parameters')


if __name__ == '__main__':
    main()
