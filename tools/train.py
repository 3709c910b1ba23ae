#!/usr/bin/env python
"""Train an mmdet or mmseg model from a config (mmdet's tools/train.py flags), with the plugin imported.

A new run refuses a work dir that holds another run's checkpoints (``--resume`` continues it, ``--force``
overwrites it); without ``--work-dir`` each set of ``--cfg-options`` gets its own folder. ``--resume`` loads
strictly: a checkpoint of another model (e.g. another upsampler) stops the run with one line naming the
difference. Errors: one line on the console, the traceback in the run's log file (upsample_plugin.runner)."""
import argparse

from mmengine.config import DictAction

from upsample_plugin.runner import (build_runner, check_data, check_work_dir, enable_amp, enable_auto_scale_lr,
                                    init_distributed, load_config, run_tool, set_local_rank, set_resume)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models (default: work_dirs/<config name>, '
                                           'plus a subfolder named after the --cfg-options)')
    parser.add_argument('--amp', action='store_true', help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true', help='scale the lr to the actual batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or (no value) from the latest one in the work dir')
    parser.add_argument('--force', action='store_true',
                        help='start a new run even if the work dir holds checkpoints of another run (overwrites them)')
    parser.add_argument('--no-strict', action='store_true',
                        help='--resume / load_from: load what matches instead of stopping at a checkpoint that does '
                             'not fit the model (a fine-tuning load_from is never strict)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs (e.g. model.neck.upsample_cfg.type=dlu)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--no-data-check', action='store_true',
                        help='skip validating the annotation files before building the runner')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    set_local_rank(args.local_rank)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    set_resume(cfg, args.resume)
    check_work_dir(cfg, args.resume, args.force)
    init_distributed(cfg)
    if not args.no_data_check:
        check_data(cfg, ('train_dataloader', 'val_dataloader'))
    build_runner(cfg, strict=args.resume is not None and not args.no_strict).train()


if __name__ == '__main__':
    run_tool(main)
