"""What ``tools/train.py`` and ``tools/test.py`` share: config loading with the usual mmdet/mmseg command-line
overrides, the checkpoint-loading fix for torch >= 2.6, and building mmengine's Runner.

The tools accept mmdet's flags for both mmdet and mmseg configs; the config's ``default_scope`` says which
library it belongs to.
"""
from __future__ import annotations

import importlib
import os
import os.path as osp
import warnings
from typing import Optional

from mmengine.config import Config, ConfigDict


_BUILTIN_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_state(self) -> dict:
    """``HistoryBuffer.__getstate__`` without the built-in statistics functions.

    mmengine pickles the class-wide table of statistics methods into every buffer; the built-in four are
    recreated by ``__setstate__`` anyway, but pickling them takes ``getattr(HistoryBuffer, 'min')``, which
    ``torch.load(weights_only=True)`` rightly refuses. Custom statistics (``register_statistics``) are kept.
    Unlike the original, this does not write into the instance's ``__dict__``.
    """
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    custom = {k: v for k, v in self._statistics_methods.items() if k not in _BUILTIN_STATISTICS}
    if custom:
        state['statistics_methods'] = custom
    return state


def trust_mm_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` (the default since torch 2.6) read mmengine checkpoints.

    mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, and its checkpoints hold more than tensors:
    the message hub's ``HistoryBuffer`` (numpy arrays inside) and numpy scalars in the run-time info, so
    resuming fails with "Weights only load failed". Instead of switching the safe loader off
    (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), exactly those classes are registered as safe globals, and
    checkpoints written from now on leave out the pickled built-in statistics functions (the one item that
    needs ``getattr``). A checkpoint written by stock mmengine tools still contains them: load it with
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` if you trust it.
    """
    import numpy as np
    import torch
    from mmengine.logging import HistoryBuffer

    HistoryBuffer.__getstate__ = _history_buffer_state
    if not hasattr(torch.serialization, 'add_safe_globals'):  # torch < 2.4 loads everything anyway
        return
    try:  # numpy >= 2 (numpy 1.26 has a numpy._core stub without multiarray)
        multiarray = importlib.import_module('numpy._core.multiarray')
    except ImportError:
        multiarray = importlib.import_module('numpy.core.multiarray')
    safe = [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    # numpy >= 1.25 pickles dtypes by class (np.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        safe += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith('DType')]
    torch.serialization.add_safe_globals(safe)


def load_config(path: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    """Read a config, apply ``--cfg-options`` and the work-dir rule of mmdet's tools (CLI > config > name)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def set_local_rank(local_rank: int) -> None:
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK itself.
    os.environ.setdefault('LOCAL_RANK', str(local_rank))


def enable_amp(cfg: Config) -> None:
    optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if optim_wrapper == 'AmpOptimWrapper':
        warnings.warn('AMP training is already enabled in the config.')
        return
    if optim_wrapper != 'OptimWrapper':
        raise ValueError(f'--amp needs optim_wrapper.type "OptimWrapper", the config has {optim_wrapper!r}')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def enable_auto_scale_lr(cfg: Config) -> None:
    if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
        raise ValueError('--auto-scale-lr needs auto_scale_lr=dict(enable=..., base_batch_size=...) in the config')
    cfg.auto_scale_lr.enable = True


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """``--resume`` alone: the latest checkpoint of the work dir; ``--resume PATH``: that checkpoint."""
    if resume is None:
        return
    cfg.resume = True
    cfg.load_from = None if resume == 'auto' else resume


def enable_visualization(cfg: Config, show: bool, show_dir: Optional[str], wait_time: float) -> None:
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise ValueError('--show/--show-dir need default_hooks.visualization in the config')
    hook = hooks['visualization']
    hook['draw'] = True
    if show:
        hook['show'] = True
        hook['wait_time'] = wait_time
    if show_dir:
        if cfg.get('default_scope') == 'mmseg':
            cfg.visualizer['save_dir'] = show_dir
        else:
            hook['test_out_dir'] = show_dir


def enable_tta(cfg: Config) -> None:
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise ValueError('--tta needs tta_model and tta_pipeline in the config')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)


def check_data(cfg: Config, dataloaders, max_label_files: int = 64) -> None:
    """Validate the datasets of ``dataloaders`` (e.g. ``('train_dataloader', 'val_dataloader')``) before the
    Runner touches them: a missing or corrupt annotation file, an empty image list, a label outside the classes
    or a missing image raises ``ValueError``/``FileNotFoundError`` naming the file (upsample_plugin.data_checks)
    instead of a stack trace from deep inside a data worker. Label maps: the first ``max_label_files`` only."""
    from .data_checks import check_dataloader_cfg
    for name in dataloaders:
        if cfg.get(name) is not None:
            check_dataloader_cfg(cfg.get(name), max_label_files=max_label_files, scope=cfg.get('default_scope'))


def run_tool(main) -> None:
    """Run a tool's ``main``; data and config errors end it with their message (exit status 1), no traceback."""
    try:
        main()
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f'error: {error}') from None


def build_runner(cfg: Config):
    """mmengine's Runner (or the config's ``runner_type``), with checkpoints loadable under torch >= 2.6."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    trust_mm_checkpoints()
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
