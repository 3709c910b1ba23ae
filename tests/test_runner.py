"""The tools' checkpoint handling: mmengine checkpoints (message hub with HistoryBuffers, numpy scalars) load
with torch.load's default weights_only=True after upsample_plugin.runner.trust_mm_checkpoints()."""
import numpy as np
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from upsample_plugin.runner import trust_mm_checkpoints


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
