"""The whole path on the generated toy data, as a user runs it: tools/train.py -> checkpoint -> resume ->
tools/test.py with mmdet's/mmseg's own evaluators, for one detector and one segmentor (a short schedule).

The tools run in a subprocess whose working directory holds ``data/toy`` (the configs' data_root)."""
import subprocess
import sys
from pathlib import Path

import pytest

from upsample_plugin.run_logs import metrics, run_records, train_losses
from upsample_plugin.toy_data import make_all

ROOT = Path(__file__).parents[1]
TOY = ROOT / 'configs' / 'toy'


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy')
    make_all(out=str(root / 'data' / 'toy'), seed=0, train=64, val=16, seg_train=32, seg_val=8)
    return root


def run_tool(workspace, *args):
    result = subprocess.run([sys.executable, str(ROOT / 'tools' / args[0]), *map(str, args[1:])], cwd=workspace,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def check_train_resume_test(workspace, config, options, resume_options, metric, floor):
    work_dir = workspace / 'work_dirs' / config.stem
    run_tool(workspace, 'train.py', config, '--work-dir', work_dir, '--cfg-options', *options)
    losses = train_losses(run_records(str(work_dir)))
    assert len(losses) >= 3 and losses[-1] < losses[0], f'the training loss did not fall: {losses}'
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    # Resuming reads the optimizer, schedulers and message hub back (torch >= 2.6 weights_only loading).
    output = run_tool(workspace, 'train.py', config, '--work-dir', work_dir, '--resume', '--cfg-options',
                      *resume_options)
    assert 'resumed' in output.lower() and checkpoint.split('/')[-1] in output
    resumed_checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    assert resumed_checkpoint != checkpoint
    test_dir = workspace / 'work_dirs' / f'{config.stem}_test'
    run_tool(workspace, 'test.py', config, resumed_checkpoint, '--work-dir', test_dir, '--cfg-options', *options)
    value = metrics(run_records(str(test_dir)))[metric]
    assert value > floor, f'{metric} = {value} is not above {floor}'


def test_detector_toy_run(workspace):
    # 6 epochs of 16 iterations with a short warm-up; the full toy run (8 epochs of 32) reaches bbox mAP_50 ~0.45.
    common = ['model.neck.upsample_cfg.type=dysample', 'param_scheduler.0.end=16', 'default_hooks.logger.interval=4']
    options = common + ['train_cfg.max_epochs=6', 'train_cfg.val_interval=6', 'default_hooks.checkpoint.interval=6',
                        'param_scheduler.1.milestones=[5]']
    resume = common + ['train_cfg.max_epochs=7', 'train_cfg.val_interval=7', 'default_hooks.checkpoint.interval=7',
                       'param_scheduler.1.milestones=[5]']
    check_train_resume_test(workspace, TOY / 'faster-rcnn_r18_fpn_toy.py', options, resume, 'coco/bbox_mAP_50', 0.02)


def test_segmentor_toy_run(workspace):
    options = ['model.decode_head.upsample_cfg.type=dysample', 'train_cfg.max_iters=60', 'train_cfg.val_interval=60',
               'default_hooks.checkpoint.interval=60', 'default_hooks.logger.interval=10',
               'param_scheduler.0.end=60']
    resume = ['model.decode_head.upsample_cfg.type=dysample', 'train_cfg.max_iters=70', 'train_cfg.val_interval=70',
              'default_hooks.checkpoint.interval=70', 'default_hooks.logger.interval=10', 'param_scheduler.0.end=70']
    check_train_resume_test(workspace, TOY / 'upernet_r18_toy.py', options, resume, 'mIoU', 0.0)


@pytest.mark.parametrize('breakage,match', [
    ('corrupt', 'instances_train.json is not valid JSON'),
    ('missing', 'instances_train.json'),
])
def test_train_tool_reports_bad_annotations_by_file(tmp_path, breakage, match):
    annotations = tmp_path / 'data' / 'toy' / 'annotations'
    annotations.mkdir(parents=True)
    if breakage == 'corrupt':
        (annotations / 'instances_train.json').write_text('{"images": [')
    result = subprocess.run([sys.executable, str(ROOT / 'tools' / 'train.py'), str(TOY / 'faster-rcnn_r18_fpn_toy.py')],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert match in result.stderr and 'Traceback' not in result.stderr
