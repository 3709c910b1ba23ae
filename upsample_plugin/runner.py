"""What ``tools/train.py`` and ``tools/test.py`` share, on top of mmengine's Runner.

* Config loading with mmdet's command-line rules, a default work dir per set of ``--cfg-options`` (two runs that
  differ in one option never share a folder) and a refusal to start a new training run over another run's
  checkpoints (:func:`load_config`, :func:`check_work_dir`).
* :class:`PluginRunner`, mmengine's Runner with the fixes the tools need: checkpoints that load under torch >= 2.6
  (:func:`trust_mm_checkpoints`), strict checkpoint loading that names the mismatch
  (:class:`UpsamplerCheckpointHook`), a truncated checkpoint named as such with the previous good one, the config
  dumped only once a checkpoint has loaded, the environment of every run recorded in its work dir, a console
  without the ~500 lines of environment and config (they stay in the log file), and runs of different upsamplers
  that share every other initial weight.
* CPU data-parallel training: :func:`init_distributed` is the one place that works around mmengine's CUDA
  assumptions (gloo backend, no CUDA).
* The data check on rank 0 only (:func:`check_data`), and the tools' error handling (:func:`run_tool`): one line
  on the console, the full traceback in the run's log file.

The tools accept mmdet's flags for both mmdet and mmseg configs; the config's ``default_scope`` says which
library it belongs to.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib
import json
import logging
import math
import os
import os.path as osp
import pickle
import platform
import re
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from typing import Dict, Iterator, List, Mapping, Optional, Sequence
from unittest import mock

from mmengine.config import Config, ConfigDict
from mmengine.hooks import Hook
from mmengine.runner import Runner

from .data_checks import DataCheckError

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


# ------------------------------------------------------------------------------------------------------ errors
class ToolError(Exception):
    """An error whose message is the whole story (a bad argument, a mismatched checkpoint, a busy work dir): the
    tools print it as one line, without a traceback."""


class CheckpointMismatchError(ToolError, ValueError):
    """A checkpoint's weights do not fit the model the config builds (strict loading)."""


class CheckpointFileError(ToolError, ValueError):
    """A checkpoint file is missing, empty, truncated or unreadable."""


class WorkDirInUseError(ToolError, FileExistsError):
    """A new training run would overwrite another run's checkpoints."""


# ---------------------------------------------------------------------------- checkpoints under torch >= 2.6
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


def _checkpoint_file_problem(path: str) -> Optional[str]:
    """Why the local checkpoint file ``path`` cannot be loaded, or None if its structure is sound.

    torch.save writes a zip archive whose directory is at the end, so a file cut short (a full disk, a killed
    writer, an interrupted copy) has none: checked without reading the tensors."""
    if not osp.isfile(path):
        return 'does not exist'
    if osp.getsize(path) == 0:
        return 'is empty'
    with open(path, 'rb') as f:
        magic = f.read(4)
    if magic == b'PK\x03\x04':
        try:
            zipfile.ZipFile(path).close()
        except zipfile.BadZipFile as error:
            return f'is truncated or corrupt ({error})'
    return None


def _previous_good_checkpoint(path: str) -> Optional[str]:
    """The newest other ``*.pth`` next to ``path`` whose structure is sound."""
    others = [p for p in glob.glob(osp.join(osp.dirname(path) or '.', '*.pth'))
              if osp.abspath(p) != osp.abspath(path)]
    for other in sorted(others, key=osp.getmtime, reverse=True):
        if _checkpoint_file_problem(other) is None:
            return other
    return None


def check_checkpoint_file(path: str) -> None:
    """Raise :class:`CheckpointFileError` naming ``path`` (and the newest sound checkpoint next to it) if the
    file is missing, empty or truncated. Remote paths (``https://``, ``open-mmlab://``) are left to mmengine."""
    if '://' in str(path):
        return
    problem = _checkpoint_file_problem(path)
    if problem is None:
        return
    previous = _previous_good_checkpoint(path) if osp.isdir(osp.dirname(path) or '.') else None
    hint = f'; the previous good checkpoint there is {previous}' if previous else ''
    raise CheckpointFileError(f'checkpoint {path} {problem}{hint}')


# ------------------------------------------------------------------------------------------------------ config
def options_tag(cfg_options: Optional[Mapping]) -> str:
    """A folder name for a set of ``--cfg-options``: each key shortened to its last two parts, e.g.
    ``{'model.neck.upsample_cfg.type': 'dlu'}`` -> ``upsample_cfg.type=dlu``; long tags end in a hash."""
    if not cfg_options:
        return ''
    parts = []
    for key, value in cfg_options.items():
        text = ','.join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        parts.append(f"{'.'.join(str(key).split('.')[-2:])}={text}")
    tag = re.sub(r'[^\w.=,+-]', '_', '+'.join(parts))
    if len(tag) > 120:  # the hash of the whole text keeps tags of different options apart
        tag = f'{tag[:100]}-{hashlib.sha1(tag.encode()).hexdigest()[:10]}'
    return tag


def _fix_dataloaders(cfg: Config) -> None:
    """torch's DataLoader refuses ``persistent_workers=True`` with ``num_workers=0`` (the usual way to run
    without worker processes); there is nothing to keep alive then, so the flag is turned off."""
    for name in DATALOADERS:
        loader = cfg.get(name)
        if isinstance(loader, Mapping) and loader.get('num_workers', 0) == 0 and loader.get('persistent_workers'):
            loader['persistent_workers'] = False


def load_config(path: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    """Read a config and apply ``--cfg-options``; the work dir is ``--work-dir``, else the config's, else
    ``work_dirs/<config name>`` plus, with ``--cfg-options``, a subfolder named after them
    (:func:`options_tag`), so that e.g. one run per upsampler never shares a folder."""
    if not osp.isfile(path):
        raise ToolError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0], options_tag(cfg_options))
        cfg.work_dir = cfg.work_dir.rstrip('/')
    _fix_dataloaders(cfg)
    _ERROR_LOG['work_dir'] = cfg.work_dir
    return cfg


def check_work_dir(cfg: Config, resume: Optional[str], force: bool) -> None:
    """Refuse to start a new training run in a work dir that holds another run's checkpoints (they would be
    overwritten one by one, with ``last_checkpoint`` pointing at a mix); ``--resume`` continues that run,
    ``--force`` overwrites it on purpose."""
    if resume is not None or force:
        return
    found = sorted(osp.basename(p) for p in glob.glob(osp.join(cfg.work_dir, '*.pth')))
    if osp.exists(osp.join(cfg.work_dir, 'last_checkpoint')):
        found.append('last_checkpoint')
    if found:
        listed = ', '.join(found[:4]) + (f' and {len(found) - 4} more' if len(found) > 4 else '')
        raise WorkDirInUseError(f'work dir {cfg.work_dir} holds checkpoints of an earlier run ({listed}): '
                                '--resume continues that run, --force starts a new one there (overwriting them), '
                                '--work-dir DIR picks another folder')


def set_local_rank(local_rank: int) -> None:
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK itself.
    os.environ.setdefault('LOCAL_RANK', str(local_rank))


def enable_amp(cfg: Config) -> None:
    optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if optim_wrapper == 'AmpOptimWrapper':
        warnings.warn('AMP training is already enabled in the config.')
        return
    if optim_wrapper != 'OptimWrapper':
        raise ToolError(f'--amp needs optim_wrapper.type "OptimWrapper", the config has {optim_wrapper!r}')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def enable_auto_scale_lr(cfg: Config) -> None:
    if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
        raise ToolError('--auto-scale-lr needs auto_scale_lr=dict(enable=..., base_batch_size=...) in the config')
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
        raise ToolError('--show/--show-dir need default_hooks.visualization in the config')
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
        raise ToolError('--tta needs tta_model and tta_pipeline in the config')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)


# ------------------------------------------------------------------------------------------------ distributed
def init_distributed(cfg: Config) -> None:
    """Join the process group of a ``--launcher`` run before anything else (the data check on rank 0 needs it;
    mmengine's Runner then finds it initialised and skips its own ``init_dist``).

    This is the one place where the tools work around mmengine 0.10's CUDA assumptions, for data-parallel
    training on CPUs (``--cfg-options env_cfg.dist_cfg.backend=gloo``) when torch has no CUDA device:

    * ``mmengine.dist.init_dist`` calls ``torch.cuda.set_device(LOCAL_RANK)`` unconditionally (on a CPU build:
      "module 'torch._C' has no attribute '_cuda_setDevice'"): the call is skipped, nothing else changes;
    * ``Runner.wrap_model`` builds ``MMDistributedDataParallel(device_ids=[LOCAL_RANK])``, which torch refuses
      for a CPU module: the config's ``model_wrapper_cfg`` gets ``device_ids=None`` (mmengine's ``default_args``
      do not override a key the config sets), with mmengine's own defaults otherwise.

    With CUDA, mmengine's ``init_dist`` runs unchanged. Without CUDA, nccl cannot work at all, so a backend
    other than gloo is an error that names the option.
    """
    if cfg.get('launcher', 'none') == 'none':
        return
    import torch
    from mmengine.dist import init_dist, is_distributed
    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel

    if is_distributed():
        return
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    if torch.cuda.is_available():
        init_dist(cfg.launcher, **dist_cfg)
        return
    backend = dist_cfg.get('backend', 'nccl')
    if backend != 'gloo':
        raise ToolError(f'distributed run without CUDA: the {backend!r} backend needs GPUs; use gloo '
                        '(--cfg-options env_cfg.dist_cfg.backend=gloo)')
    with mock.patch.object(torch.cuda, 'set_device', lambda device: None):
        init_dist(cfg.launcher, **dist_cfg)
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:  # what Runner.wrap_model builds without a model_wrapper_cfg, minus device_ids
        wrapper = ConfigDict(type='MMDistributedDataParallel', broadcast_buffers=False,
                             find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_type = wrapper.get('type', 'MMDistributedDataParallel')
    wrapper_cls = MODEL_WRAPPERS.get(wrapper_type) if isinstance(wrapper_type, str) else wrapper_type
    if isinstance(wrapper_cls, type) and issubclass(wrapper_cls, DistributedDataParallel):
        wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper


def _rank() -> int:
    from mmengine.dist import get_rank
    return get_rank()


# ------------------------------------------------------------------------------------------------- data check
def check_data(cfg: Config, dataloaders: Sequence[str], max_label_files: int = 64) -> None:
    """Validate the datasets of ``dataloaders`` (e.g. ``('train_dataloader', 'val_dataloader')``) before the
    Runner touches them: a missing or corrupt annotation file, an empty image or annotation list, a label outside
    the classes, a missing image or one whose size disagrees with the JSON raises
    :class:`~upsample_plugin.data_checks.DataCheckError` naming the file (upsample_plugin.data_checks) instead of
    a stack trace from deep inside a data worker. Decoded files: the first ``max_label_files`` per set.

    In a distributed run only rank 0 checks (for full COCO the check takes seconds and GBs of memory per
    process); the other ranks wait for its verdict and fail with the same message."""
    from mmengine.dist import broadcast_object_list, is_distributed

    from .data_checks import check_dataloader_cfg

    error: Optional[Exception] = None
    if _rank() == 0:
        try:
            for name in dataloaders:
                if cfg.get(name) is not None:
                    check_dataloader_cfg(cfg.get(name), max_label_files=max_label_files,
                                         scope=cfg.get('default_scope'))
        except Exception as failure:  # noqa: BLE001 -- the other ranks must hear of any failure, not hang
            error = failure
    if is_distributed():
        verdict = [None if error is None else (isinstance(error, DataCheckError), str(error))]
        broadcast_object_list(verdict, src=0)
        if error is None and verdict[0] is not None:
            is_data_error, message = verdict[0]
            error = DataCheckError(message) if is_data_error else ToolError(f'the data check of rank 0 failed: '
                                                                            f'{message}')
    if error is not None:
        raise error


# ------------------------------------------------------------------------------------------------ checkpoints
def upsampler_cfgs(model_cfg: Mapping, prefix: str = '') -> Dict[str, dict]:
    """Every ``upsample_cfg`` in a model config by its path, e.g. ``{'neck.upsample_cfg': {'type': 'dysample'}}``
    (a test-time-augmentation wrapper's ``module.`` is left out, so train and ``--tta`` configs compare)."""
    found = {}
    for key, value in model_cfg.items():
        path = key if not prefix else f'{prefix}.{key}'
        if key == 'module' and not prefix and isinstance(value, Mapping):
            found.update(upsampler_cfgs(value))
        elif key.endswith('upsample_cfg') and isinstance(value, Mapping):
            found[path] = json.loads(json.dumps(dict(value), default=str))
        elif isinstance(value, Mapping):
            found.update(upsampler_cfgs(value, path))
    return found


def _describe_cfg(cfg: dict) -> str:
    rest = ', '.join(f'{k}={v!r}' for k, v in cfg.items() if k != 'type')
    return repr(cfg.get('type')) + (f' ({rest})' if rest else '')


def _group_keys(keys: Sequence[str], other: Sequence[str]) -> List[str]:
    """``keys`` grouped by their shortest prefix that ``other`` lacks entirely, e.g. the 9 tensors of the
    upsamplers of the toy DySample neck against a nearest neck -> ``['neck.upsample_modules (9 tensors)']``."""
    present = {'.'.join(parts[:i]) for parts in (k.split('.') for k in other) for i in range(1, len(parts) + 1)}
    groups: Dict[str, int] = {}
    for key in sorted(keys):
        parts = key.split('.')
        prefix = next(('.'.join(parts[:i]) for i in range(1, len(parts) + 1) if '.'.join(parts[:i]) not in present),
                      key)
        groups[prefix] = groups.get(prefix, 0) + 1
    return [f'{p} ({n} tensor{"s" if n > 1 else ""})' if n > 1 else p for p, n in groups.items()]


def _listed(items: List[str], limit: int = 6) -> str:
    return ', '.join(items[:limit]) + (f' and {len(items) - limit} more' if len(items) > limit else '')


def checkpoint_mismatch(model, state_dict: Mapping, saved_upsamplers: Optional[Mapping] = None,
                        config_upsamplers: Optional[Mapping] = None) -> Optional[str]:
    """What keeps ``state_dict`` from loading strictly into ``model`` (missing and unexpected modules, shape
    mismatches, and the upsamplers the checkpoint's meta records against the config's), or None if it fits.
    ``state_dict`` keys are taken as mmengine loads them (a leading ``module.`` stripped)."""
    saved = {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    shapes = [f'{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}' for k, v in expected.items()
              if k in saved and hasattr(saved[k], 'shape') and tuple(saved[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if saved_upsamplers is not None and config_upsamplers is not None:
        for path in sorted(set(saved_upsamplers) | set(config_upsamplers)):
            before, now = saved_upsamplers.get(path), config_upsamplers.get(path)
            if before == now:
                continue
            if now is None:
                parts.append(f'the checkpoint holds a {path} of type {_describe_cfg(before)} that the config lacks')
            elif before is None:
                parts.append(f'the config builds a {path} of type {_describe_cfg(now)} that the checkpoint lacks')
            else:
                parts.append(f'the checkpoint holds a {path} of type {_describe_cfg(before)}, the config builds '
                             f'{_describe_cfg(now)}')
    if missing:
        parts.append(f'missing in the checkpoint: {_listed(_group_keys(missing, saved))}')
    if unexpected:
        parts.append(f'not in the model: {_listed(_group_keys(unexpected, expected))}')
    if shapes:
        parts.append(f'shapes differ (checkpoint vs model): {_listed(shapes, 3)}')
    return '; '.join(parts)


class UpsamplerCheckpointHook(Hook):
    """Checkpoints that say which upsamplers they hold, and strict loading that names a mismatch.

    * ``before_save_checkpoint``: ``meta['upsamplers']`` records every ``upsample_cfg`` of the model config
      (:func:`upsampler_cfgs`).
    * ``after_load_checkpoint`` (mmengine calls it between reading a checkpoint and loading it into the model, in
      ``load_from`` and in ``resume``): with ``strict``, a checkpoint that does not fit the model raises
      :class:`CheckpointMismatchError` with one line naming the missing / unexpected module prefixes and the
      upsampler types (instead of mmengine's default: a warning among hundreds of lines, a partly random model
      and a plausible metric, or an optimizer parameter-group error on resume). Without ``strict`` the same line
      is a warning (deliberate partial loads, e.g. fine-tuning from another model).
    """

    priority = 'VERY_HIGH'

    def __init__(self, strict: bool = True):
        self.strict = strict

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})['upsamplers'] = upsampler_cfgs(runner.cfg.get('model', {}))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from mmengine.model import BaseTTAModel, is_model_wrapper

        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if isinstance(model, BaseTTAModel):  # mmengine loads the checkpoint into the wrapped model's keys
            model = model.module
        meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), Mapping) else {}
        problem = checkpoint_mismatch(model, checkpoint.get('state_dict', checkpoint), meta.get('upsamplers'),
                                      upsampler_cfgs(runner.cfg.get('model', {})))
        if problem is None:
            return
        if self.strict:
            raise CheckpointMismatchError(f'the checkpoint does not fit the model of the config: {problem} '
                                          '(--cfg-options can select the checkpoint\'s modules; --no-strict loads '
                                          'only what matches)')
        runner.logger.warning(f'the checkpoint does not fit the model, loading only what matches: {problem}')


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    return platform.processor() or platform.machine()


def collect_environment(cfg: Config) -> dict:
    """What a CPU result depends on beyond the config and the seed (README "Reproducibility"): the CPU model and
    its vector instruction set (MKL/oneDNN pick code paths by them), the thread counts, the data loader workers
    (each worker's augmentation stream is seeded by its index), the launcher and the library versions."""
    import numpy as np
    import torch

    versions = {'python': platform.python_version(), 'torch': torch.__version__, 'numpy': np.__version__}
    for name in ('mmcv', 'mmengine', 'mmdet', 'mmseg', 'upsample_plugin'):
        with contextlib.suppress(Exception):
            versions[name] = importlib.import_module(name).__version__
    from mmengine.dist import get_world_size
    return dict(
        cpu=cpu_model(), cpu_capability=torch.backends.cpu.get_cpu_capability(), logical_cpus=os.cpu_count(),
        torch_threads=torch.get_num_threads(), torch_interop_threads=torch.get_num_interop_threads(),
        thread_env={k: os.environ[k] for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS') if k in os.environ},
        mkldnn=torch.backends.mkldnn.is_available(),
        cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        num_workers={name: cfg[name].get('num_workers', 0) for name in DATALOADERS
                     if isinstance(cfg.get(name), Mapping)},
        launcher=cfg.get('launcher', 'none'), world_size=get_world_size(), randomness=dict(cfg.get('randomness', {})),
        versions=versions, argv=sys.argv)


class _ConsoleDigest(logging.Filter):
    """Keeps the environment, config and hook-table records (hundreds of lines before the first progress line)
    off the console; the log file still gets them."""

    LONG = ('\n' + '-' * 60 + '\nSystem environment:', 'Config:\n', 'Hooks will be executed in the following order')

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self.LONG))


#: Where :func:`run_tool` writes a traceback: the runner's log file once there is one, else the work dir.
_ERROR_LOG: Dict[str, Optional[str]] = dict(log_file=None, work_dir=None)


class PluginRunner(Runner):
    """mmengine's Runner with what the tools need (module docstring). Built by :func:`build_runner` when the
    config names no ``runner_type``."""

    @property
    def log_dir(self) -> str:
        """Rank 0's is mmengine's ``<work_dir>/<timestamp>``; other ranks get a subfolder ``rank<r>`` for what they
        write: mmengine's LoggerHook dumps the test metrics from every rank into the same ``<timestamp>.json``,
        and concurrent writes of different lengths leave a corrupt file."""
        return self._log_dir if self.rank == 0 else osp.join(self._log_dir, f'rank{self.rank}')

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                _ERROR_LOG['log_file'] = handler.baseFilename
            else:
                handler.addFilter(_ConsoleDigest())
        return logger

    def _log_env(self, env_cfg: dict) -> None:
        super()._log_env(env_cfg)
        if self.rank == 0:
            path = osp.join(self.log_dir, 'environment.json')
            with open(path, 'w') as f:
                json.dump(collect_environment(self.cfg), f, indent=1)
            self.logger.info(f'environment, config and hooks: {osp.join(self.log_dir, self.timestamp + ".log")}; '
                             f'machine and versions: {path}')

    def dump_config(self) -> None:
        """Dumped only once :meth:`load_or_resume` has succeeded (``Runner.__init__``'s call is held back): a
        failed resume leaves the run's config dump as it was. Test and validation runs dump into their own
        timestamp folder, so the training run's dump in the work dir stays."""
        if not getattr(self, '_checkpoint_settled', False):
            return
        from mmengine.runner import BaseLoop
        if isinstance(self._train_loop, BaseLoop):
            super().dump_config()
        elif self.rank == 0:
            self.cfg.dump(osp.join(self.log_dir, osp.basename(self.cfg.filename or f'{self.timestamp}.py')))

    def load_or_resume(self) -> None:
        super().load_or_resume()
        if not getattr(self, '_checkpoint_settled', False):
            self._checkpoint_settled = True
            self.dump_config()

    def load_checkpoint(self, filename: str, *args, **kwargs):
        """mmengine's, after checking that the file is complete (:func:`check_checkpoint_file`); an unreadable
        pickle is reported with the file's name."""
        check_checkpoint_file(filename)
        try:
            return super().load_checkpoint(filename, *args, **kwargs)
        except pickle.UnpicklingError as error:
            raise CheckpointFileError(f'checkpoint {filename} cannot be read: {str(error).splitlines()[0]}') from None

    def _init_model_weights(self) -> None:
        """mmengine's, with each module's initialisation seeded by the run's seed and its module path
        (:func:`path_seeded_init`).

        Built as usual, the modules initialised after an upsampler draw their initial weights from a random stream
        that the upsampler has advanced by its own draws, so runs that differ only in the upsampler would also
        differ in most other initial weights (20 of 100 backbone tensors in the toy Faster R-CNN, nearest vs
        DySample: the upsamplers are built before ``init_weights`` re-draws the backbone)."""
        from mmengine.model import is_model_wrapper

        model = self.model.module if is_model_wrapper(self.model) else self.model
        if self.seed is None:
            return super()._init_model_weights()
        with path_seeded_init(model, self.seed):
            super()._init_model_weights()


def _is_upsampler(module) -> bool:
    from .registry import plugin_upsamplers
    return isinstance(module, tuple(plugin_upsamplers().values()))


def _path_seed(seed: int, path: str) -> int:
    return (seed * 1_000_003 + int(hashlib.sha1(path.encode()).hexdigest()[:12], 16)) % 2**63


@contextlib.contextmanager
def path_seeded_init(model, seed: int) -> Iterator[None]:
    """While active, every ``init_weights`` in ``model`` starts from a generator state given by ``seed`` and the
    module's path, so what one module draws does not shift the draws of the modules initialised after it.

    mmengine's ``BaseModule.init_weights`` applies a module's ``init_cfg`` and then calls each child's
    ``init_weights``: here each of those calls re-seeds the global generator first (same path, same weights), and
    a plugin upsampler's runs under ``torch.random.fork_rng`` (its draws leave the global stream as it was). So
    a host's modules initialise identically whatever upsampler it holds, except those that its own ``init_cfg``
    reaches after the upsampler in module order (none in the toy configs: tests/test_runner.py)."""
    import torch

    patched = []
    for path, module in model.named_modules():
        original = getattr(module, 'init_weights', None)
        if not callable(original):
            continue

        def init_weights(original=original, path_seed=_path_seed(seed, path or '<model>'),
                         isolated=_is_upsampler(module)):
            with torch.random.fork_rng(devices=[]) if isolated else contextlib.nullcontext():
                torch.manual_seed(path_seed)
                original()
        module.init_weights = init_weights  # an instance attribute shadows the method
        patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.init_weights


def build_runner(cfg: Config, strict: bool = True):
    """:class:`PluginRunner` (or the config's ``runner_type``) with :class:`UpsamplerCheckpointHook`
    (``strict``: checkpoints that do not fit the model are errors) and checkpoints loadable under torch >= 2.6."""
    from mmengine.registry import RUNNERS

    trust_mm_checkpoints()
    if 'runner_type' in cfg:
        warnings.warn(f'runner_type={cfg.runner_type!r}: the plugin runner\'s checks (complete checkpoint files, '
                      'config dumped after loading, environment record) are off')
        runner = RUNNERS.build(cfg)
    else:
        runner = PluginRunner.from_cfg(cfg)
    runner.register_hook(UpsamplerCheckpointHook(strict=strict))
    return runner


def check_metrics(metrics: Optional[Mapping]) -> None:
    """An evaluation without ground truth is not a result: COCO's evaluator reports -1 for every metric, mmseg's
    NaN. Raise instead of printing it with exit status 0."""
    values = [v for v in (metrics or {}).values() if isinstance(v, (int, float))]
    if values and all(v == -1 or math.isnan(v) for v in values):
        raise ToolError(f'the evaluation found no ground truth: every metric is -1 or NaN ({dict(metrics)}); the '
                        'test annotations are empty or do not match the images')


# ------------------------------------------------------------------------------------------------------ errors
def _traceback_file() -> str:
    """The run's log file if this process has one (rank 0 of a run whose Runner was built), else a file in the
    work dir, else (a tool without a work dir, or an error before the config is read) one in the temp dir."""
    if _ERROR_LOG['log_file'] is not None:
        return _ERROR_LOG['log_file']
    rank = os.environ.get('RANK', '0')
    name = time.strftime('error_%Y%m%d_%H%M%S') + (f'_rank{rank}' if rank != '0' else '') + '.log'
    if _ERROR_LOG['work_dir'] is not None:
        return osp.join(_ERROR_LOG['work_dir'], name)
    return osp.join(tempfile.gettempdir(), f'upsample_plugin_{name}')


def run_tool(main) -> None:
    """Run a tool's ``main`` and turn any exception into one line on the console and an exit status of 1.

    The data check's errors (:class:`~upsample_plugin.data_checks.DataCheckError`) and the tools' own
    (:class:`ToolError`) say everything in their message. Any other error -- a bug, a library failure -- prints
    its type and first line and where its full traceback went: the run's log file, else ``<work_dir>/error_*.log``,
    else (no work dir) ``<tempdir>/upsample_plugin_error_*.log``."""
    try:
        main()
    except (DataCheckError, ToolError) as error:
        message = str(error)
    except Exception as error:  # noqa: BLE001 -- every error ends as one line
        lines = str(error).strip().splitlines()
        message = f'{type(error).__name__}: {lines[0] if lines else ""}'
        target = _traceback_file()
        try:
            os.makedirs(osp.dirname(target) or '.', exist_ok=True)
            with open(target, 'a') as f:
                f.write(f'\n{time.strftime("%Y/%m/%d %H:%M:%S")} - error - the run failed:\n{traceback.format_exc()}')
            message += f' (full traceback: {target})'
        except OSError:  # nowhere to write it: the console gets it after all
            sys.stderr.write(traceback.format_exc())
    else:
        return
    rank = os.environ.get('RANK')
    raise SystemExit(f'error{f" (rank {rank})" if rank not in (None, "0") else ""}: {message}') from None
