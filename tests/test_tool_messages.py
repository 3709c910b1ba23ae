"""Small traps of the tools that end in one clear line (issue 14): an ONNX export of a guided upsampler without
its guide, an evaluation without ground truth, the tools' own argument errors."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from upsample_plugin import build_upsampler
from upsample_plugin.export import export_onnx
from upsample_plugin.runner import ToolError, check_metrics

ROOT = Path(__file__).parents[1]


def test_export_of_a_guided_upsampler_without_its_guide_names_the_guide(tmp_path):
    fade = build_upsampler(dict(type='fade'), 16, 2)
    with pytest.raises(ValueError) as info:
        export_onnx(fade, (torch.randn(1, 16, 6, 6),), tmp_path / 'fade.onnx')
    message = str(info.value)
    assert message.startswith('cannot export FADE: calling it on example_inputs of shapes (1, 16, 6, 6) fails: ')
    assert 'guide' in message and len(message.splitlines()) == 1
    assert not (tmp_path / 'fade.onnx').exists()


@pytest.mark.parametrize('metrics', [{'coco/bbox_mAP': -1.0, 'coco/bbox_mAP_50': -1.0},
                                     {'mIoU': float('nan'), 'aAcc': float('nan')}])
def test_an_evaluation_without_ground_truth_is_an_error(metrics):
    with pytest.raises(ToolError, match='no ground truth'):
        check_metrics(metrics)


def test_real_metrics_pass():
    check_metrics({'coco/bbox_mAP': 0.0, 'coco/bbox_mAP_l': -1.0})  # no large objects: one -1 is a result
    check_metrics({'mIoU': 12.5})


def test_test_tool_argument_error_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / 'tools' / 'test.py'),
                             str(ROOT / 'configs' / 'toy' / 'faster-rcnn_r18_fpn_toy.py'), 'x.pth', '--out', 'x.json'],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "error: --out must be a .pkl file for detection configs, got 'x.json'"
    assert 'Traceback' not in result.stderr


def test_run_tool_prints_one_line_and_keeps_the_traceback(tmp_path, monkeypatch):
    from upsample_plugin import runner
    from upsample_plugin.data_checks import DataCheckError

    monkeypatch.setitem(runner._ERROR_LOG, 'log_file', None)
    monkeypatch.setitem(runner._ERROR_LOG, 'work_dir', str(tmp_path))

    def data_error():
        raise DataCheckError('annotations.json has an empty image list')

    with pytest.raises(SystemExit) as info:
        runner.run_tool(data_error)
    assert info.value.code == 'error: annotations.json has an empty image list'
    assert not list(tmp_path.iterdir())  # the data check's own errors need no traceback

    def bug():
        {}['missing key']

    with pytest.raises(SystemExit) as info:
        runner.run_tool(bug)
    message = info.value.code
    assert message.startswith("error: KeyError: 'missing key' (full traceback: ") and '\n' not in message
    (log,) = tmp_path.glob('error_*.log')
    assert str(log) in message and "{}['missing key']" in log.read_text()
