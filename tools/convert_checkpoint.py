#!/usr/bin/env python
"""Convert a checkpoint of an official upsampler repository to the plugin's parameter names.

    python tools/convert_checkpoint.py IN.pth OUT.pth [--source NAME] [--check-config CONFIG.py]
                                       [--cfg-options KEY=VALUE ...] [--list-sources]

IN.pth is a whole detector/segmentor checkpoint (mmdet 2.x/3.x, mmseg 1.x: ``{'state_dict': ..., 'meta': ...}``),
a bare state dict, a bare neck / decode head or a bare upsampler; it is read with ``weights_only=True``
(``upsample_plugin.checkpoints.load_checkpoint_file``). OUT.pth is ``{'meta': ..., 'state_dict': ...}`` for
mmengine's ``load_checkpoint`` / a config's ``load_from``. The sources and their renaming rules are in
``upsample_plugin/checkpoints.py``; ``--source`` forces one (default: detected from the keys).

With ``--check-config`` the config's model is built on the CPU (no pretrained weights are fetched: building does
not run ``init_weights``) and OUT.pth is loaded into it with mmengine's ``load_checkpoint(strict=True)``; missing,
unexpected and mis-shaped keys are listed and the exit status is 1 when any exist.
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction

from upsample_plugin.checkpoints import (CONTAINER_SOURCES, SOURCES, UPSAMPLER_SOURCES, convert_checkpoint,
                                         load_checkpoint_file)
from upsample_plugin.runner import run_tool


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Convert an official upsampler checkpoint to the plugin's names")
    parser.add_argument('input', nargs='?', help='official checkpoint (.pth)')
    parser.add_argument('output', nargs='?', help='converted checkpoint to write')
    parser.add_argument('--source', choices=SOURCES, help='official source of the neck / head / upsampler '
                        '(default: detected from the keys)')
    parser.add_argument('--check-config', help='build this config\'s model and load the converted checkpoint '
                        'with strict=True')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings of --check-config, '
                        'e.g. model.neck.topology=fpn')
    parser.add_argument('--list-sources', action='store_true', help='list the official sources and exit')
    args = parser.parse_args(argv)
    if not args.list_sources and (args.input is None or args.output is None):
        parser.error('IN.pth and OUT.pth are required (or --list-sources)')
    if args.cfg_options and not args.check_config:
        parser.error('--cfg-options applies to --check-config only')
    return args


def build_model(config_path, cfg_options=None):
    """The config's model, built in its own default scope (mmdet or mmseg) with SyncBN reverted to BN."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope

    if not osp.isfile(config_path):
        raise FileNotFoundError(f'config file {config_path!r} does not exist')
    cfg = Config.fromfile(config_path)  # runs custom_imports (upsample_plugin)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope is None:
        raise ValueError(f'{config_path}: the config sets no default_scope (mmdet or mmseg)')
    with DefaultScope.overwrite_default_scope(scope):
        registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
        return revert_sync_batchnorm(registry.build(cfg.model))


def compare_keys(model, state_dict):
    """(missing, unexpected, mis-shaped) keys of ``state_dict`` against ``model.state_dict()``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [f'{k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(v.shape)}'
                 for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    return missing, unexpected, misshaped


def check_load(config_path, checkpoint_path, cfg_options=None):
    """Load the written checkpoint into the config's model with mmengine and strict=True; True when it loads."""
    from mmengine.runner import load_checkpoint

    model = build_model(config_path, cfg_options)
    state_dict = load_checkpoint_file(checkpoint_path)['state_dict']
    missing, unexpected, misshaped = compare_keys(model, state_dict)
    if missing or unexpected or misshaped:
        print(f'check: {checkpoint_path} does NOT load into {config_path} with strict=True')
        for title, keys in (('missing', missing), ('unexpected', unexpected), ('mis-shaped', misshaped)):
            if keys:
                print(f'  {len(keys)} {title} keys:')
                print('\n'.join(f'    {k}' for k in keys))
        return False
    load_checkpoint(model, checkpoint_path, map_location='cpu', strict=True)
    print(f'check: loaded into {config_path} ({type(model).__name__}) with strict=True: '
          f'{len(state_dict)} tensors, no missing or unexpected keys')
    return True


def main(argv=None):
    args = parse_args(argv)
    if args.list_sources:
        for name, source in CONTAINER_SOURCES.items():
            print(f'{name:26s} {source.kind:12s} {source.official}')
        for name, source in UPSAMPLER_SOURCES.items():
            print(f'{name:26s} {"upsampler":12s} {source.official}')
        return 0
    checkpoint = load_checkpoint_file(args.input)
    converted, conversion = convert_checkpoint(checkpoint, source=args.source)
    print(conversion.summary())
    torch.save(converted, args.output)
    print(f'wrote {args.output} ({len(converted["state_dict"])} tensors)')
    if args.check_config and not check_load(args.check_config, args.output, args.cfg_options):
        return 1
    return 0


if __name__ == '__main__':
    # sys.exit passes through run_tool, which turns ValueError / FileNotFoundError into one-line errors.
    run_tool(lambda: sys.exit(main()))
