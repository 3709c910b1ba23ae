#!/usr/bin/env python
"""Test (and evaluate) an mmdet or mmseg model from a config and a checkpoint (mmdet's tools/test.py flags).

The checkpoint loads strictly: one of another model (e.g. trained with another upsampler: pass the same
``--cfg-options`` as in training) stops with one line naming the difference; ``--no-strict`` loads what matches.
An evaluation without ground truth (every metric -1 or NaN) is an error, not a result."""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction

from upsample_plugin.runner import (ToolError, build_runner, check_data, check_metrics, enable_tta,
                                    enable_visualization, init_distributed, load_config, run_tool, set_local_rank)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector or segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', help='dump predictions: a .pkl file (mmdet) or a directory (mmseg)')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='directory where painted images are saved')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (tta_model/tta_pipeline)')
    parser.add_argument('--no-strict', action='store_true',
                        help='load the parts of the checkpoint that fit the model instead of stopping')
    parser.add_argument('--no-data-check', action='store_true',
                        help='skip validating the annotation files before building the runner')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    set_local_rank(args.local_rank)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args.show, args.show_dir, args.wait_time)
    if args.tta:
        enable_tta(cfg)
    is_seg = cfg.get('default_scope') == 'mmseg'
    if args.out is not None and is_seg:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    elif args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ToolError(f'--out must be a .pkl file for detection configs, got {args.out!r}')
    if args.out is not None:
        # Every rank writes into --out (mmseg: one file per image), but mmseg creates the folder on rank 0 only.
        os.makedirs(args.out if is_seg else osp.dirname(osp.abspath(args.out)), exist_ok=True)
    init_distributed(cfg)
    if not args.no_data_check:
        check_data(cfg, ('test_dataloader',))
    runner = build_runner(cfg, strict=not args.no_strict)
    if args.out is not None and not is_seg:
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    check_metrics(runner.test())


if __name__ == '__main__':
    run_tool(main)
