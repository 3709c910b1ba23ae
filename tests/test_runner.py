"""What the tools share (upsample_plugin.runner), in process: mmengine checkpoints (message hub with
HistoryBuffers, numpy scalars) load with torch.load's default weights_only=True; one work dir per set of options
and no new run over another run's checkpoints; truncated and mismatched checkpoints named in one line; the plugin
runner's record of the environment and its initial weights shared across upsamplers. The tools themselves run in
tests/test_toy_run.py and tests/test_dist.py."""
import importlib
import json
import os
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from upsample_plugin.runner import (CheckpointFileError, PluginRunner, WorkDirInUseError, _is_upsampler,
                                    check_checkpoint_file, check_work_dir, checkpoint_mismatch, load_config,
                                    options_tag, trust_mm_checkpoints, upsampler_cfgs)

TOY = Path(__file__).parents[1] / 'configs' / 'toy'


def test_message_hub_round_trips_through_weights_only_load(tmp_path):
    trust_mm_checkpoints()
    hub = MessageHub.get_instance('upsample_plugin_test_hub')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('iter', 7)
    checkpoint = dict(message_hub=hub.state_dict(), meta=dict(seed=np.int64(3), value=np.float64(0.25)),
                      state_dict=dict(weight=torch.ones(2)))
    torch.save(checkpoint, tmp_path / 'ckpt.pth')
    loaded = torch.load(tmp_path / 'ckpt.pth')  # weights_only=True is the default
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.mean() == 1.0 and buffer.current() == 0.5
    assert loaded['meta']['seed'] == 3 and loaded['message_hub']['runtime_info']['iter'] == 7


def test_custom_statistics_survive_pickling():
    trust_mm_checkpoints()
    buffer = HistoryBuffer()
    buffer.update(2.0)
    state = buffer.__getstate__()
    assert 'statistics_methods' not in state and 'statistics_methods' not in buffer.__dict__
    restored = HistoryBuffer.__new__(HistoryBuffer)
    restored.__setstate__(state)
    assert restored.statistics('max') == 2.0


# ------------------------------------------------------------------------------------------ work dirs, configs
def test_default_work_dir_is_one_per_set_of_options():
    config = str(TOY / 'faster-rcnn_r18_fpn_toy.py')
    plain = load_config(config).work_dir
    dlu = load_config(config, {'model.neck.upsample_cfg.type': 'dlu'}).work_dir
    dysample = load_config(config, {'model.neck.upsample_cfg.type': 'dysample'}).work_dir
    assert plain == './work_dirs/faster-rcnn_r18_fpn_toy'
    assert dlu == './work_dirs/faster-rcnn_r18_fpn_toy/upsample_cfg.type=dlu' and dysample != dlu
    assert load_config(config, {'model.neck.upsample_cfg.type': 'dlu'}, work_dir='elsewhere').work_dir == 'elsewhere'
    long = load_config(config, {f'train_cfg.option_{i}': 'x' * 20 for i in range(8)}).work_dir
    assert len(osp.basename(long)) <= 120


def test_persistent_workers_off_without_workers():
    cfg = load_config(str(TOY / 'upernet_r18_toy.py'), {'train_dataloader.num_workers': 0})
    assert cfg.train_dataloader.persistent_workers is False  # torch's DataLoader would refuse True
    assert cfg.val_dataloader.num_workers == 2 and cfg.val_dataloader.persistent_workers is True


def test_new_run_refuses_a_work_dir_with_checkpoints(tmp_path):
    cfg = load_config(str(TOY / 'faster-rcnn_r18_fpn_toy.py'), work_dir=str(tmp_path))
    check_work_dir(cfg, resume=None, force=False)  # empty: fine
    (tmp_path / 'epoch_1.pth').write_bytes(b'x')
    with pytest.raises(WorkDirInUseError, match=r'epoch_1\.pth.*--resume.*--force'):
        check_work_dir(cfg, resume=None, force=False)
    check_work_dir(cfg, resume='auto', force=False)
    check_work_dir(cfg, resume=None, force=True)


# ---------------------------------------------------------------------------------------------- checkpoints
def test_truncated_checkpoint_is_named_with_the_previous_good_one(tmp_path):
    good, bad = tmp_path / 'epoch_1.pth', tmp_path / 'epoch_2.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(1000))), good)
    torch.save(dict(state_dict=dict(w=torch.zeros(1000))), bad)
    os.utime(good, (1, 1))  # older
    check_checkpoint_file(str(good))
    bad.write_bytes(bad.read_bytes()[:2000])  # cut short, as by a full disk
    with pytest.raises(CheckpointFileError) as info:
        check_checkpoint_file(str(bad))
    message = str(info.value)
    assert str(bad) in message and 'truncated' in message and f'previous good checkpoint there is {good}' in message
    with pytest.raises(CheckpointFileError, match='does not exist'):
        check_checkpoint_file(str(tmp_path / 'nothing.pth'))


def toy_model(config, **options):
    from mmengine.registry import DefaultScope
    cfg = load_config(str(TOY / config), options)
    registry = importlib.import_module(f'{cfg.default_scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return cfg, registry.build(cfg.model)


def test_checkpoint_mismatch_names_modules_and_upsampler_types():
    cfg_near, nearest = toy_model('faster-rcnn_r18_fpn_toy.py')
    cfg_dys, dysample = toy_model('faster-rcnn_r18_fpn_toy.py', **{'model.neck.upsample_cfg.type': 'dysample'})
    assert checkpoint_mismatch(nearest, nearest.state_dict()) is None
    # a checkpoint saved from a DDP-wrapped model: mmengine strips "module."
    assert checkpoint_mismatch(dysample, {f'module.{k}': v for k, v in dysample.state_dict().items()}) is None
    problem = checkpoint_mismatch(nearest, dysample.state_dict(), upsampler_cfgs(cfg_dys.model),
                                  upsampler_cfgs(cfg_near.model))
    assert "neck.upsample_cfg of type 'dysample', the config builds 'nearest'" in problem
    assert 'not in the model: neck.upsample_modules (' in problem and 'missing' not in problem
    assert 'the config builds' not in checkpoint_mismatch(dysample, nearest.state_dict())  # no meta: keys only
    assert 'missing in the checkpoint: neck.upsample_modules' in checkpoint_mismatch(dysample, nearest.state_dict())
    _, segmentor = toy_model('upernet_r18_toy.py')
    problem = checkpoint_mismatch(segmentor, nearest.state_dict())
    for prefix in ('decode_head', 'auxiliary_head', 'neck', 'rpn_head', 'roi_head'):
        assert prefix in problem


# ---------------------------------------------------------------------------------------------- plugin runner
def built_runner(tmp_path, config, runner_cls, **options):
    from mmengine.registry import DefaultScope
    cfg = load_config(str(TOY / config), options, work_dir=str(tmp_path / config / options_tag(options)))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):  # the Runner's own scope would leak
        return runner_cls.from_cfg(cfg)


def initial_weights(runner) -> dict:
    runner._init_model_weights()
    upsamplers = [name + '.' for name, module in runner.model.named_modules() if _is_upsampler(module)]
    return {k: v for k, v in runner.model.state_dict().items() if not k.startswith(tuple(upsamplers))}


UPSAMPLER_KEYS = {'faster-rcnn_r18_fpn_toy.py': 'model.neck.upsample_cfg.type',
                  'mask-rcnn_r18_fpn_toy.py': 'model.neck.upsample_cfg.type',
                  'panoptic-fpn_r18_fpn_toy.py': 'model.neck.upsample_cfg.type',
                  'upernet_r18_toy.py': 'model.decode_head.upsample_cfg.type',
                  'lite-hrnet-18_fcn_toy.py': 'model.backbone.upsample_cfg.type'}


@pytest.mark.parametrize('config', sorted(UPSAMPLER_KEYS))
def test_runs_of_different_upsamplers_share_every_other_initial_weight(tmp_path, config):
    key = UPSAMPLER_KEYS[config]
    reference = initial_weights(built_runner(tmp_path, config, PluginRunner, **{key: 'nearest'}))
    for upsampler in ('dysample', 'dlu'):
        other = initial_weights(built_runner(tmp_path, config, PluginRunner, **{key: upsampler}))
        assert other.keys() == reference.keys()
        differing = [k for k in reference if not torch.equal(reference[k], other[k])]
        assert not differing, f'{upsampler}: {len(differing)} initial tensors differ from nearest: {differing[:5]}'


def test_plain_runner_shifts_other_weights_with_the_upsampler(tmp_path):
    """Why PluginRunner seeds each module's init: with mmengine's Runner the upsampler changes the backbone."""
    from mmengine.runner import Runner
    key = UPSAMPLER_KEYS['faster-rcnn_r18_fpn_toy.py']
    nearest, dysample = (initial_weights(built_runner(tmp_path, 'faster-rcnn_r18_fpn_toy.py', Runner, **{key: up}))
                         for up in ('nearest', 'dysample'))
    assert any(not torch.equal(v, dysample[k]) for k, v in nearest.items() if k.startswith('backbone.'))


def test_every_run_records_its_environment(tmp_path):
    runner = built_runner(tmp_path, 'upernet_r18_toy.py', PluginRunner, **{'train_dataloader.num_workers': 0})
    environment = json.loads((Path(runner.log_dir) / 'environment.json').read_text())
    assert environment['cpu'] and environment['cpu_capability']
    assert environment['torch_threads'] == torch.get_num_threads()
    assert environment['num_workers'] == dict(train_dataloader=0, val_dataloader=2, test_dataloader=2)
    assert environment['versions']['torch'] == torch.__version__ and environment['versions']['mmcv'] == '2.1.0'
    assert environment['randomness'] == dict(seed=0)
    # the config is dumped only once a checkpoint (here: none) has been loaded, not when the runner is built
    assert not list(Path(runner.work_dir).glob('*.py'))


def test_runner_names_a_truncated_checkpoint(tmp_path):
    runner = built_runner(tmp_path, 'faster-rcnn_r18_fpn_toy.py', PluginRunner)
    torch.save(dict(meta=dict(epoch=1), state_dict=runner.model.state_dict()), Path(runner.work_dir) / 'epoch_1.pth')
    broken = Path(runner.work_dir) / 'epoch_2.pth'
    broken.write_bytes((Path(runner.work_dir) / 'epoch_1.pth').read_bytes()[:5000])
    with pytest.raises(CheckpointFileError) as info:
        runner.load_checkpoint(str(broken))
    assert f'{broken} is truncated' in str(info.value)
    assert f'previous good checkpoint there is {broken.parent / "epoch_1.pth"}' in str(info.value)
