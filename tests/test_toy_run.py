"""The whole path on the generated toy data, as a user runs it: tools/train.py -> checkpoint -> resume ->
tools/test.py with mmdet's/mmseg's own evaluators, for one detector and one segmentor (a short schedule); and the
tools' refusals, each one line: a checkpoint of another upsampler or model (test and resume), a work dir with
another run's checkpoints; an unexpected error's traceback goes to the run's log.

The tools run in a subprocess whose working directory holds ``data/toy`` (the configs' data_root)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from upsample_plugin.run_logs import metrics, run_environment, run_records, train_losses
from upsample_plugin.runner import options_tag, trust_mm_checkpoints
from upsample_plugin.toy_data import make_all

ROOT = Path(__file__).parents[1]
TOY = ROOT / 'configs' / 'toy'


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy')
    make_all(out=str(root / 'data' / 'toy'), seed=0, train=64, val=16, seg_train=32, seg_val=8)
    return root


def run_tool(workspace, *args, expect_failure=False):
    result = subprocess.run([sys.executable, str(ROOT / 'tools' / args[0]), *map(str, args[1:])], cwd=workspace,
                            capture_output=True, text=True, timeout=1800)
    if expect_failure:
        assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
        error = result.stderr.strip().splitlines()
        # one line, no traceback: the error is the last line of stderr, and stderr holds nothing else of it
        assert error and error[-1].startswith('error: ') and 'Traceback' not in result.stderr, result.stderr[-3000:]
        return result.stdout, error[-1]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def train_resume_test(workspace, config, options, resume_options, metric, floor):
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
    return work_dir, resumed_checkpoint


DETECTOR = TOY / 'faster-rcnn_r18_fpn_toy.py'
DYSAMPLE_NECK = 'model.neck.upsample_cfg.type=dysample'


@pytest.fixture(scope='module')
def detector(workspace):
    """A toy Faster R-CNN with DySample in its FPN, trained, resumed and tested by the tools: (work dir,
    checkpoint). 6 epochs of 16 iterations with a short warm-up; the full toy run (8 epochs of 32) reaches
    bbox mAP_50 ~0.45."""
    common = [DYSAMPLE_NECK, 'param_scheduler.0.end=16', 'default_hooks.logger.interval=4']
    options = common + ['train_cfg.max_epochs=6', 'train_cfg.val_interval=6', 'default_hooks.checkpoint.interval=6',
                        'param_scheduler.1.milestones=[5]']
    resume = common + ['train_cfg.max_epochs=7', 'train_cfg.val_interval=7', 'default_hooks.checkpoint.interval=7',
                       'param_scheduler.1.milestones=[5]']
    return train_resume_test(workspace, DETECTOR, options, resume, 'coco/bbox_mAP_50', 0.02)


def test_detector_toy_run(detector):
    work_dir, checkpoint = detector
    trust_mm_checkpoints()
    meta = torch.load(checkpoint)['meta']
    assert meta['upsamplers'] == {'neck.upsample_cfg': {'type': 'dysample'}}
    environment = run_environment(str(work_dir))  # every run records what its numbers depend on
    assert environment['torch_threads'] >= 1 and environment['num_workers']['train_dataloader'] == 2
    assert environment['cpu'] and environment['versions']['mmcv']


def test_segmentor_toy_run(workspace):
    options = ['model.decode_head.upsample_cfg.type=dysample', 'train_cfg.max_iters=60', 'train_cfg.val_interval=60',
               'default_hooks.checkpoint.interval=60', 'default_hooks.logger.interval=10',
               'param_scheduler.0.end=60']
    resume = ['model.decode_head.upsample_cfg.type=dysample', 'train_cfg.max_iters=70', 'train_cfg.val_interval=70',
              'default_hooks.checkpoint.interval=70', 'default_hooks.logger.interval=10', 'param_scheduler.0.end=70']
    train_resume_test(workspace, TOY / 'upernet_r18_toy.py', options, resume, 'mIoU', 0.0)


def test_test_tool_refuses_a_checkpoint_of_another_upsampler(workspace, detector):
    _, checkpoint = detector
    test_dir = workspace / 'work_dirs' / 'mismatch_test'
    _, error = run_tool(workspace, 'test.py', DETECTOR, checkpoint, '--work-dir', test_dir, expect_failure=True)
    assert "the checkpoint holds a neck.upsample_cfg of type 'dysample', the config builds 'nearest'" in error
    assert 'not in the model: neck.upsample_modules' in error
    assert not [p for p in test_dir.glob('*/*.json') if p.name != 'environment.json'], 'a metric was written'
    # a checkpoint of another model family: named by its modules, not evaluated
    _, error = run_tool(workspace, 'test.py', TOY / 'upernet_r18_toy.py', checkpoint, '--work-dir', test_dir,
                        expect_failure=True)
    assert 'missing in the checkpoint: ' in error and 'decode_head' in error and 'rpn_head' in error
    # --no-strict: a deliberate partial load runs (and warns with the same description)
    output = run_tool(workspace, 'test.py', DETECTOR, checkpoint, '--work-dir', test_dir, '--no-strict',
                      '--cfg-options', 'test_dataloader.dataset.indices=4')
    assert 'loading only what matches: the checkpoint holds a neck.upsample_cfg' in output


def test_resume_with_another_upsampler_stops_and_keeps_the_run(workspace, detector):
    work_dir, checkpoint = detector
    dump = work_dir / DETECTOR.name
    before = dump.read_text()
    assert 'dysample' in before
    _, error = run_tool(workspace, 'train.py', DETECTOR, '--work-dir', work_dir, '--resume', '--cfg-options',
                        'train_cfg.max_epochs=8', expect_failure=True)
    assert "'dysample', the config builds 'nearest'" in error and 'neck.upsample_modules' in error
    assert dump.read_text() == before, 'the failed resume replaced the config dump'
    assert (work_dir / 'last_checkpoint').read_text().strip() == checkpoint


def test_runs_without_work_dir_keep_each_others_checkpoints(workspace):
    tiny = ['train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=8', 'default_hooks.checkpoint.interval=1',
            'val_dataloader=None', 'val_cfg=None', 'val_evaluator=None']
    checkpoints = {}
    for upsampler in ('nearest', 'carafe'):
        run_tool(workspace, 'train.py', DETECTOR, '--cfg-options', *tiny, f'model.neck.upsample_cfg.type={upsampler}')
    for upsampler in ('nearest', 'carafe'):
        options = dict(pair.split('=', 1) for pair in tiny + [f'model.neck.upsample_cfg.type={upsampler}'])
        work_dir = workspace / 'work_dirs' / DETECTOR.stem / options_tag(options)
        trust_mm_checkpoints()
        checkpoints[upsampler] = torch.load(work_dir / 'epoch_1.pth')['state_dict']
        assert upsampler in (work_dir / DETECTOR.name).read_text()
    assert not any(k.startswith('neck.upsample_modules') for k in checkpoints['nearest'])
    assert any(k.startswith('neck.upsample_modules') for k in checkpoints['carafe'])
    # the same options again: the run is refused, not overwritten
    _, error = run_tool(workspace, 'train.py', DETECTOR, '--cfg-options', *tiny, 'model.neck.upsample_cfg.type=carafe',
                        expect_failure=True)
    assert 'holds checkpoints of an earlier run (epoch_1.pth' in error and '--resume' in error


def test_unexpected_error_is_one_line_with_the_traceback_in_the_log(workspace):
    work_dir = workspace / 'work_dirs' / 'broken'
    stdout, error = run_tool(workspace, 'train.py', DETECTOR, '--work-dir', work_dir, '--cfg-options',
                             'model.neck.upsample_cfg.type=no_such_upsampler', expect_failure=True)
    assert 'no_such_upsampler' in error and '(full traceback: ' in error
    log = Path(error.split('(full traceback: ')[1].rstrip(')'))
    assert log.is_file() and log.parent.parent == work_dir
    assert 'Traceback (most recent call last)' in log.read_text() and 'System environment' in log.read_text()
    # the console got one line pointing at the environment and config, not the hundreds of lines themselves
    assert 'System environment' not in stdout and 'Config:' not in stdout and 'environment, config and hooks' in stdout


def test_visualize_reads_a_tools_checkpoint(workspace, detector):
    _, checkpoint = detector
    out = workspace / 'dysample_points.png'
    run_tool(workspace, 'visualize_upsampler.py', 'dysample', '--checkpoint', checkpoint, '--prefix',
             'neck.upsample_modules.0', '--out', out)
    assert out.is_file()
    result = subprocess.run([sys.executable, str(ROOT / 'tools' / 'visualize_upsampler.py'), 'dysample',
                             '--checkpoint', checkpoint, '--prefix', 'neck.upsample', '--out', out], cwd=workspace,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert 'upsampler modules there: neck.upsample_modules.0, neck.upsample_modules.1' in result.stderr


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
