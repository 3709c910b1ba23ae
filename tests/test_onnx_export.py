"""ONNX export (issue 8): every upsampler exports with ``torch.onnx.export`` (dynamo and TorchScript exporters,
opset 17, DySample and LDA-AQU also opset 16) with dynamic height/width, and onnxruntime reproduces PyTorch on
the export size and on another one. The compiled ops stay out of the standard export (``backend='auto'`` falls
back to the references during an ONNX export) or become ``upsample_plugin::*`` nodes on request.

Modules get random weights (N(0, 0.1^2)) before export: a fresh module is nearly static (DySample's scope conv
starts at zero, its offsets near zero), which would hide a wrong export of those branches.
"""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from upsample_test_utils import MATRIX_CHANNELS, UPSAMPLER_MATRIX

onnx = pytest.importorskip('onnx', reason='the ONNX export checks need the onnx package')
pytest.importorskip('onnxruntime', reason='the ONNX export checks run the graphs with onnxruntime')

from upsample_plugin import build_upsampler, ops  # noqa: E402
from upsample_plugin.export import CUSTOM_DOMAIN, check_onnx, custom_nodes, export_onnx  # noqa: E402
from upsample_plugin.ops._checks import auto_uses_reference, onnx_custom_ops  # noqa: E402

ROOT = Path(__file__).parents[1]
needs_onnxscript = pytest.mark.skipif(importlib.util.find_spec('onnxscript') is None,
                                      reason='the dynamo ONNX exporter needs onnxscript')
needs_compiled = pytest.mark.skipif(not ops.compiled_available('cpu'),
                                    reason='upsample_plugin._C (compiled CPU ops) is not loaded')

EXPORT_HW, OTHER_HW = (8, 8), (6, 11)  # the second size differs in both dims and is not square
RTOL, ATOL = 1e-4, 1e-6  # check_onnx: max abs error <= ATOL + RTOL * max|output| (float32)
CHANNELS = MATRIX_CHANNELS
#: Every upsampler (DySample in its four styles), as in the AMP/compile/determinism matrix.
UPSAMPLERS = UPSAMPLER_MATRIX
STANDARD_DOMAINS = {'', 'ai.onnx'}


def build(cfg: dict) -> torch.nn.Module:
    """``cfg`` at ``CHANNELS`` channels and x2, every parameter N(0, 0.1^2) (far from the near-identity init)."""
    torch.manual_seed(0)
    module = build_upsampler(cfg, CHANNELS, 2).eval()
    with torch.no_grad():
        for param in module.parameters():
            param.normal_(0, 0.1)
    return module


def make_inputs(module: torch.nn.Module, hw, seed: int = 1) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    height, width = hw
    x = torch.randn(1, CHANNELS, height, width, generator=generator)
    if module.needs_guide:
        return x, torch.randn(1, CHANNELS, 2 * height, 2 * width, generator=generator)
    return (x,)


def default_opset(model) -> int:
    return next(entry.version for entry in model.opset_import if entry.domain in STANDARD_DOMAINS)


def check_export(path: Path, module: torch.nn.Module, opset: int) -> None:
    """Standard ops only, the requested opset, symbolic H/W on every input and the output, and onnxruntime
    matching PyTorch on the export size and on another size."""
    model = onnx.load(str(path))
    assert {node.domain for node in model.graph.node} <= STANDARD_DOMAINS
    assert default_opset(model) == opset
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert dims[2].dim_param and dims[3].dim_param, f'{value.name} has a fixed height/width: {dims}'
    for hw in (EXPORT_HW, OTHER_HW):
        check_onnx(path, module, make_inputs(module, hw, seed=hw[1]), rtol=RTOL, atol=ATOL)  # raises on a mismatch


# ----------------------------------------------------------------------------------- backend selection


_SEEN_CHOICES = []  # filled by _RecordsBackendChoice.forward whenever it runs or is traced


class _RecordsBackendChoice(torch.nn.Module):
    """Records what ``backend='auto'`` decides while the module is traced."""

    def forward(self, x):
        _SEEN_CHOICES.append(auto_uses_reference())
        return x * 2


def test_auto_backend_is_reference_only_inside_onnx_export(tmp_path, monkeypatch):
    """The TorchScript exporter here; under the dynamo exporter the same holds, shown by the dynamo exports of
    CARAFE, DLU and DDF-Up below (a compiled op reaching that exporter fails: it has no translation) and by the
    custom-op exports (their nodes exist only if the compiled ops were kept)."""
    monkeypatch.delenv('UPSAMPLE_PLUGIN_FORCE_REFERENCE', raising=False)
    probe, x = _RecordsBackendChoice().eval(), torch.randn(1, 2, 3, 3)

    def choices_while(run) -> list:
        _SEEN_CHOICES.clear()
        run()
        assert _SEEN_CHOICES, 'the probe was not traced'
        return list(_SEEN_CHOICES)

    assert not any(choices_while(lambda: probe(x)))
    # plain torch.export (e.g. for AOTInductor) keeps the compiled ops: they have fake kernels
    assert not any(choices_while(lambda: torch.export.export(probe, (x,))))
    assert all(choices_while(lambda: torch.onnx.export(probe, (x,), str(tmp_path / 'probe.onnx'), dynamo=False)))
    with onnx_custom_ops():
        assert not any(choices_while(lambda: torch.onnx.export(probe, (x,), str(tmp_path / 'custom.onnx'),
                                                               dynamo=False)))


@needs_compiled
@pytest.mark.parametrize('name', ['portable_carafe', 'dlu', 'ddf_up'])
def test_compiled_op_replaced_by_reference_in_export(name, tmp_path):
    """Without the fallback the compiled op reaches the exporter (which has no translation for it); with it,
    the graph holds standard ONNX ops only and matches PyTorch (which runs the compiled op)."""
    module = build(UPSAMPLERS[name])
    inputs = make_inputs(module, EXPORT_HW)
    op = {'portable_carafe': 'carafe_forward', 'dlu': 'dlu_forward', 'ddf_up': 'ddf_forward'}[name]
    with onnx_custom_ops(), pytest.raises(torch.onnx.errors.UnsupportedOperatorError,
                                          match=f'upsample_plugin::{op}'):
        export_onnx(module, inputs, tmp_path / 'compiled.onnx', dynamo=False)
    path = export_onnx(module, inputs, tmp_path / 'reference.onnx', dynamo=False)
    assert {node.domain for node in onnx.load(str(path)).graph.node} <= STANDARD_DOMAINS
    check_onnx(path, module, inputs, rtol=RTOL, atol=ATOL)  # raises RuntimeError on a mismatch


# ----------------------------------------------------------------------------------- every upsampler


@needs_onnxscript
@pytest.mark.parametrize('name', list(UPSAMPLERS))
def test_dynamo_export_opset17_matches_pytorch(name, tmp_path):
    module = build(UPSAMPLERS[name])
    path = export_onnx(module, make_inputs(module, EXPORT_HW), tmp_path / f'{name}.onnx', opset=17)
    check_export(path, module, 17)


@pytest.mark.parametrize('name', list(UPSAMPLERS))
def test_torchscript_export_opset17_matches_pytorch(name, tmp_path):
    module = build(UPSAMPLERS[name])
    path = export_onnx(module, make_inputs(module, EXPORT_HW), tmp_path / f'{name}.onnx', opset=17, dynamo=False)
    check_export(path, module, 17)


OPSET16_CASES = ([pytest.param(name, True, marks=needs_onnxscript, id=f'{name}-dynamo')
                  for name in ('dysample_pl_dyscope', 'lda_aqu')]  # dynamo exports cost ~3 s each: two
                 + [pytest.param(name, False, id=f'{name}-torchscript')
                    for name in UPSAMPLERS if name.startswith('dysample') or name == 'lda_aqu'])


@pytest.mark.parametrize('name, dynamo', OPSET16_CASES)
def test_export_opset16_matches_pytorch(name, dynamo, tmp_path):
    """Opset 16, the first with GridSample; the dynamo path converts its opset-18 graph down (LDA-AQU's
    LayerNorm, an opset-17 op, is written as primitive ops)."""
    module = build(UPSAMPLERS[name])
    path = export_onnx(module, make_inputs(module, EXPORT_HW), tmp_path / f'{name}.onnx', opset=16, dynamo=dynamo)
    check_export(path, module, 16)
    assert 'LayerNormalization' not in {node.op_type for node in onnx.load(str(path)).graph.node}


# ----------------------------------------------------------------------------------- custom-domain nodes

CUSTOM_CASES = {
    # non-default op arguments, so that the attributes prove where they come from
    'carafe': (dict(type='carafe', up_kernel=3, up_group=2), 'CARAFE', 1,
               dict(kernel_size=3, group_size=2, scale_factor=2)),
    'dlu': (dict(type='dlu', up_kernel=3, up_group=2), 'DLU', 1, dict(kernel_size=3, group_size=2, scale_factor=2)),
    # DDF-Up filters once per output phase: s*s = 4 DDF calls
    'ddf_up': (dict(type='ddf_up', dilation=2, kernel_combine='add'), 'DDF', 4,
               dict(kernel_size=3, dilation=2, stride=1, combine=b'add')),
}


@needs_onnxscript
@needs_compiled
@pytest.mark.parametrize('name', list(CUSTOM_CASES))
def test_custom_ops_export_writes_upsample_plugin_nodes(name, tmp_path):
    cfg, op_type, count, attributes = CUSTOM_CASES[name]
    module = build(cfg)
    path = export_onnx(module, make_inputs(module, EXPORT_HW), tmp_path / f'{name}.onnx', opset=17, custom_ops=True)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)  # the custom nodes against the schemas export_onnx registered
    assert (CUSTOM_DOMAIN, 1) in {(entry.domain, entry.version) for entry in model.opset_import}
    assert default_opset(model) == 17
    nodes = custom_nodes(path)
    assert [node.op_type for node in nodes] == [op_type] * count
    for node in nodes:
        assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} == attributes
    # Everything else is standard; onnx.reference runs the graph with the plugin's ops for the custom nodes.
    assert {node.domain for node in model.graph.node} <= STANDARD_DOMAINS | {CUSTOM_DOMAIN}
    for hw in (EXPORT_HW, OTHER_HW):
        check_onnx(path, module, make_inputs(module, hw, seed=hw[1]), rtol=RTOL, atol=ATOL)  # raises on a mismatch


# ----------------------------------------------------------------------------------- helpers and CLI


def test_check_onnx_reports_a_mismatch(tmp_path):
    module = build(UPSAMPLERS['dysample_lp'])
    inputs = make_inputs(module, EXPORT_HW)
    path = export_onnx(module, inputs, tmp_path / 'dysample.onnx', dynamo=False)
    assert check_onnx(path, module, inputs) < 1e-4
    with torch.no_grad():
        module.offset.bias.add_(0.5)  # the module moves away from the exported graph
    with pytest.raises(RuntimeError, match='ONNX output differs from PyTorch'):
        check_onnx(path, module, inputs)


def test_export_onnx_rejects_bad_arguments(tmp_path):
    module = build(UPSAMPLERS['dysample_lp'])
    x = torch.randn(1, CHANNELS, 4, 4)
    with pytest.raises(ValueError, match='opset must be an integer >= 16'):
        export_onnx(module, (x,), tmp_path / 'a.onnx', opset=15)
    with pytest.raises(ValueError, match='custom_ops=True needs dynamo=True'):
        export_onnx(module, (x,), tmp_path / 'a.onnx', dynamo=False, custom_ops=True)
    with pytest.raises(ValueError, match='example_inputs must be a non-empty sequence of tensors'):
        export_onnx(module, (), tmp_path / 'a.onnx')
    with pytest.raises(ValueError, match='forward takes 2 positional arguments'):
        export_onnx(module, (x, x, x), tmp_path / 'a.onnx')
    assert not (tmp_path / 'a.onnx').exists()


def test_cli_exports_and_checks(tmp_path):
    """End to end in a subprocess: JSON config, export (the TorchScript exporter: the dynamo path is the same
    export_onnx call, tested above, and costs seconds more), onnxruntime check on two sizes."""
    out = tmp_path / 'cli' / 'dysample.onnx'
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'export_onnx.py'), '{"type": "dysample", "style": "pl", "dyscope": true}',
         '--channels', '16', '--size', '6', '6', '--check-size', '5', '9', '--randomize', '0.1', '--opset', '16',
         '--legacy', '--out', str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'exported DySample to' in result.stdout and 'custom nodes: none' in result.stdout
    errors = {size: float(err) for size, err in re.findall(r'input (\d+x\d+): max abs error (\S+)', result.stdout)}
    assert set(errors) == {'6x6', '5x9'} and max(errors.values()) < 1e-4
    assert default_opset(onnx.load(str(out))) == 16
