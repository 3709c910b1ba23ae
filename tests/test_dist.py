"""Data-parallel training and testing on CPUs, as CI runs them: tools/dist_train.sh and tools/dist_test.sh with 2
processes and the gloo backend on a machine without CUDA (upsample_plugin.runner.init_distributed).

Each rank dumps its parameters and buffers after training (a hook imported from the workspace); the ranks must
hold the same parameters (DDP averaged the gradients of every parameter: an unused one would have stopped the
second iteration, as ``find_unused_parameters`` is off) while their BatchNorm statistics differ (each rank saw its
own half of the data; mmengine does not broadcast buffers). Rank 0's dump must equal its checkpoint."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from upsample_plugin.run_logs import metrics, run_records, train_losses
from upsample_plugin.runner import trust_mm_checkpoints
from upsample_plugin.toy_data import make_all

ROOT = Path(__file__).parents[1]
TOY = ROOT / 'configs' / 'toy'

DUMP_HOOK = '''
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpRankState(Hook):
    """After training: this rank's parameters and buffers -> <work_dir>/rank<r>_state.pth."""

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = dict(params={k: v.detach().clone() for k, v in model.named_parameters()},
                     buffers={k: v.detach().clone() for k, v in model.named_buffers()},
                     wrapper=type(runner.model).__name__)
        torch.save(state, f'{runner.work_dir}/rank{get_rank()}_state.pth')
'''

# Tiny schedules: 3 iterations of 2 images per rank, no worker processes (num_workers=0 also checks that the
# configs' persistent_workers=True is turned off then); no validation while training: dist_test.sh evaluates.
DETECTOR = '''
_base_ = '{base}'
custom_imports = dict(imports=['upsample_plugin', 'dump_rank_state'], allow_failed_imports=False)
custom_hooks = [dict(type='DumpRankState')]
model = dict(neck=dict(upsample_cfg=dict(type='dysample')))
train_dataloader = dict(batch_size=2, num_workers=0, dataset=dict(indices=12))
test_dataloader = dict(batch_size=2, num_workers=0)
val_dataloader = None  # no validation while training: dist_test.sh evaluates
val_cfg = None
val_evaluator = None
train_cfg = dict(max_epochs=1)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
'''
SEGMENTOR = '''
_base_ = '{base}'
custom_imports = dict(imports=['upsample_plugin', 'dump_rank_state'], allow_failed_imports=False)
custom_hooks = [dict(type='DumpRankState')]
model = dict(decode_head=dict(upsample_cfg=dict(type='carafe')))
train_dataloader = dict(batch_size=2, num_workers=0)
test_dataloader = dict(num_workers=0)
val_dataloader = None  # no validation while training: dist_test.sh evaluates
val_cfg = None
val_evaluator = None
train_cfg = dict(max_iters=3)
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=3, by_epoch=False)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=3))
'''
GLOO = ['--cfg-options', 'env_cfg.dist_cfg.backend=gloo']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('dist')
    make_all(out=str(root / 'data' / 'toy'), seed=0, train=16, val=4, seg_train=8, seg_val=4)
    (root / 'dump_rank_state.py').write_text(DUMP_HOOK)
    (root / 'detector.py').write_text(DETECTOR.format(base=TOY / 'faster-rcnn_r18_fpn_toy.py'))
    (root / 'segmentor.py').write_text(SEGMENTOR.format(base=TOY / 'upernet_r18_toy.py'))
    return root


def launch(workspace, script, *args):
    """bash tools/<script> ... with 2 processes, as a user runs it: no CUDA, a free MASTER_PORT, the workspace on
    PYTHONPATH for the dump hook, the test's Python as $PYTHON."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', MASTER_PORT=str(free_port()), PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join(filter(None, [str(workspace), os.environ.get('PYTHONPATH')])))
    result = subprocess.run(['bash', str(ROOT / 'tools' / script), *map(str, args)], cwd=workspace, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout + result.stderr


def check_ranks_agree(work_dir):
    rank0, rank1 = (torch.load(work_dir / f'rank{r}_state.pth') for r in (0, 1))
    assert rank0['wrapper'] == 'MMDistributedDataParallel'
    assert rank0['params'].keys() == rank1['params'].keys()
    differing = [k for k, v in rank0['params'].items() if not torch.equal(v, rank1['params'][k])]
    assert not differing, f'parameters differ across ranks: {differing[:5]}'
    running_means = [k for k in rank0['buffers'] if k.endswith('running_mean')]
    assert running_means and any(not torch.equal(rank0['buffers'][k], rank1['buffers'][k]) for k in running_means), \
        'the BatchNorm statistics agree across ranks: the ranks did not see different data'
    trust_mm_checkpoints()
    checkpoint = torch.load((work_dir / 'last_checkpoint').read_text().strip())
    assert all(torch.equal(checkpoint['state_dict'][k], v) for k, v in rank0['params'].items())
    assert checkpoint['meta']['upsamplers']  # the plugin's hook recorded the upsampler types
    return checkpoint


def test_detector_trains_and_tests_with_two_cpu_processes(workspace):
    work_dir = workspace / 'work_dirs' / 'det'
    output = launch(workspace, 'dist_train.sh', 'detector.py', 2, '--work-dir', work_dir, *GLOO)
    assert '_cuda_setDevice' not in output
    losses = train_losses(run_records(str(work_dir)))
    assert len(losses) == 3  # 12 images / (2 ranks x 2 images) = 3 iterations, logged every iteration
    checkpoint = check_ranks_agree(work_dir)
    assert checkpoint['meta']['upsamplers']['neck.upsample_cfg']['type'] == 'dysample'
    test_dir = workspace / 'work_dirs' / 'det_test'
    launch(workspace, 'dist_test.sh', 'detector.py', (work_dir / 'last_checkpoint').read_text().strip(), 2,
           '--work-dir', test_dir, '--out', test_dir / 'predictions' / 'det.pkl', *GLOO)
    assert 'coco/bbox_mAP' in metrics(run_records(str(test_dir)))
    assert (test_dir / 'predictions' / 'det.pkl').is_file()


def test_segmentor_trains_and_tests_with_two_cpu_processes(workspace):
    work_dir = workspace / 'work_dirs' / 'seg'
    launch(workspace, 'dist_train.sh', 'segmentor.py', 2, '--work-dir', work_dir, *GLOO)
    assert len(train_losses(run_records(str(work_dir)))) == 3
    check_ranks_agree(work_dir)
    test_dir = workspace / 'work_dirs' / 'seg_test'
    out = test_dir / 'predictions'  # mmseg writes one PNG per image from every rank
    launch(workspace, 'dist_test.sh', 'segmentor.py', (work_dir / 'last_checkpoint').read_text().strip(), 2,
           '--work-dir', test_dir, '--out', out, *GLOO)
    assert 'mIoU' in metrics(run_records(str(test_dir)))
    assert len(list(out.glob('*.png'))) == 4
