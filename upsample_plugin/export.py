"""ONNX export of the plugin's upsamplers, and a check of the exported graph against PyTorch.

Every upsampler exports with ``torch.onnx.export`` (opset >= 16: DySample and LDA-AQU need ``GridSample``), with
the default dynamo exporter (needs ``onnxscript``) and the TorchScript one (``dynamo=False``), with dynamic
height and width. The compiled ops (``upsample_plugin._C``: CARAFE, DLU, DDF) have no standard ONNX
translation, so ``backend='auto'`` picks their pure-PyTorch references while an ONNX export traces the model
(:func:`upsample_plugin.ops._checks.auto_uses_reference`): the graph holds standard ONNX ops only and runs in
any runtime.

Alternatively, ``export_onnx(..., custom_ops=True)`` (dynamo exporter) keeps the compiled ops and writes each
as one node of the custom domain ``upsample_plugin`` (version 1), for runtimes that bring their own kernel
(a TensorRT plugin, an onnxruntime custom-op library). Inputs and integer attributes follow the op schemas:

* ``upsample_plugin::CARAFE(features, masks)``, attributes ``kernel_size``, ``group_size``, ``scale_factor``
  (:func:`upsample_plugin.ops.carafe`, spec/carafe.md);
* ``upsample_plugin::DLU(features, kernel_space, offsets)``, attributes ``kernel_size``, ``group_size``,
  ``scale_factor`` (:func:`upsample_plugin.ops.dlu_reassemble`, spec/dlu.md);
* ``upsample_plugin::DDF(features, channel_filter, spatial_filter)``, attributes ``kernel_size``, ``dilation``,
  ``stride`` and the string ``combine`` (:func:`upsample_plugin.ops.ddf`, spec/ddf.md).

onnxruntime has no kernel for them; :func:`check_onnx` then evaluates the graph with ``onnx.reference`` and the
plugin's own ops for those nodes, which checks the wiring (inputs, attributes) of the exported graph.
"""
from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple, Union

import numpy as np
import torch

from .ops import _library, carafe_reference, ddf_reference, dlu_reassemble_reference
from .ops._checks import onnx_custom_ops

__all__ = ['export_onnx', 'check_call', 'check_onnx', 'run_onnx', 'custom_nodes', 'onnx_custom_translation_table',
           'onnx_custom_ops', 'register_onnx_schemas', 'CUSTOM_DOMAIN', 'MIN_OPSET']

CUSTOM_DOMAIN = 'upsample_plugin'
CUSTOM_DOMAIN_VERSION = 1
#: The lowest opset the upsamplers export to: ``GridSample`` (DySample, LDA-AQU, SAPA-D) entered ONNX in opset 16.
MIN_OPSET = 16
#: The opset the dynamo exporter (torch 2.13) writes natively; lower opsets are converted from it.
DYNAMO_NATIVE_OPSET = 18
# Domain that hides Pad nodes from onnx's version converter (see _convert_opset).
_PAD_PLACEHOLDER_DOMAIN = 'upsample_plugin.pad_placeholder'

PathLike = Union[str, Path]


# name -> (inputs, integer attributes, string attributes, meaning), the schemas of the compiled forward ops.
_CUSTOM_SCHEMAS = {
    'CARAFE': (('features', 'masks'), ('kernel_size', 'group_size', 'scale_factor'), (),
               'CARAFE reassembly, upsample_plugin.ops.carafe (spec/carafe.md)'),
    'DLU': (('features', 'kernel_space', 'offsets'), ('kernel_size', 'group_size', 'scale_factor'), (),
            'DLU reassembly with sampled kernels, upsample_plugin.ops.dlu_reassemble (spec/dlu.md)'),
    'DDF': (('features', 'channel_filter', 'spatial_filter'), ('kernel_size', 'dilation', 'stride'), ('combine',),
            'decoupled dynamic filter, upsample_plugin.ops.ddf (spec/ddf.md)'),
}


def register_onnx_schemas() -> None:
    """Register the ``upsample_plugin::*`` node schemas with ``onnx.defs`` (once per process): onnxscript
    builds nodes only for ops with a schema, and ``onnx.checker`` then validates their inputs and attributes."""
    import onnx.defs as defs

    schema_cls = defs.OpSchema
    for name, (inputs, int_attributes, str_attributes, doc) in _CUSTOM_SCHEMAS.items():
        if defs.has(name, CUSTOM_DOMAIN):
            continue
        attributes = ([schema_cls.Attribute(a, schema_cls.AttrType.INT) for a in int_attributes]
                      + [schema_cls.Attribute(a, schema_cls.AttrType.STRING) for a in str_attributes])
        defs.register_schema(schema_cls(
            name, CUSTOM_DOMAIN, CUSTOM_DOMAIN_VERSION, doc,
            inputs=[schema_cls.FormalParameter(i, 'T') for i in inputs],
            outputs=[schema_cls.FormalParameter('output', 'T')],
            type_constraints=[('T', ['tensor(float16)', 'tensor(bfloat16)', 'tensor(float)', 'tensor(double)'],
                               'floating-point tensors of one dtype')],
            attributes=attributes))


def onnx_custom_translation_table() -> Dict[Callable, Callable]:
    """``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``: each compiled forward op ->
    an onnxscript function emitting its ``upsample_plugin::*`` node (the module docstring lists them).

    Only effective while the compiled ops stay in the traced graph, i.e. inside
    :func:`upsample_plugin.ops._checks.onnx_custom_ops` (what ``export_onnx(custom_ops=True)`` does).
    """
    from onnxscript import values

    register_onnx_schemas()
    domain = values.Opset(CUSTOM_DOMAIN, CUSTOM_DOMAIN_VERSION)
    carafe_op, dlu_op, ddf_op = domain.CARAFE, domain.DLU, domain.DDF

    # onnxscript traces these with the schema's int/str arguments as Python values: they become attributes.
    def carafe_node(features, masks, kernel_size: int, group_size: int, scale_factor: int):
        return carafe_op(features, masks, kernel_size=kernel_size, group_size=group_size, scale_factor=scale_factor)

    def dlu_node(features, kernel_space, offsets, kernel_size: int, group_size: int, scale_factor: int):
        return dlu_op(features, kernel_space, offsets, kernel_size=kernel_size, group_size=group_size,
                      scale_factor=scale_factor)

    def ddf_node(features, channel_filter, spatial_filter, kernel_size: int, dilation: int, stride: int,
                 combine: str):
        return ddf_op(features, channel_filter, spatial_filter, kernel_size=kernel_size, dilation=dilation,
                      stride=stride, combine=combine)

    ops = torch.ops.upsample_plugin
    table = {}
    for name, node in (('carafe_forward', carafe_node), ('dlu_forward', dlu_node), ('ddf_forward', ddf_node)):
        if hasattr(ops, name):  # absent when the extension is not loaded
            table[getattr(ops, name).default] = node
    return table


def _layer_norm_translation() -> Dict[Callable, Callable]:
    """``aten.layer_norm`` as ReduceMean/Sub/Mul/Sqrt/Div/Add nodes, for opsets below 17 (LDA-AQU's
    LayerNorm): the dynamo exporter writes ``LayerNormalization``, which opset 17 introduced and onnx's version
    converter cannot take further down."""
    from onnxscript import opset18 as op

    def layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5, cudnn_enable: bool = True):
        axes = op.Constant(value_ints=[-1 - i for i in range(len(normalized_shape))])
        centred = op.Sub(x, op.ReduceMean(x, axes, keepdims=1))
        variance = op.ReduceMean(op.Mul(centred, centred), axes, keepdims=1)
        out = op.Div(centred, op.Sqrt(op.Add(variance, op.CastLike(op.Constant(value_float=eps), x))))
        if weight is not None:
            out = op.Mul(out, weight)
        return out if bias is None else op.Add(out, bias)

    return {torch.ops.aten.layer_norm.default: layer_norm}


def input_names(module: torch.nn.Module, count: int) -> Tuple[str, ...]:
    """Graph input names: the first ``count`` parameters of ``module.forward`` (``x``, ``guide`` for the plugin's
    upsamplers)."""
    params = [p.name for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) < count:
        raise ValueError(f'example_inputs has {count} tensors but {type(module).__name__}.forward takes '
                         f'{len(params)} positional arguments ({params})')
    return tuple(params[:count])


def check_call(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor]) -> None:
    """Call ``module`` once, eagerly, on ``example_inputs``: a wrong call (e.g. a guided upsampler without its
    guide) then fails with the module's own one-line ``ValueError`` instead of the same message buried in the
    exporter's trace report (some 160 lines)."""
    with torch.no_grad():
        try:
            module(*example_inputs)
        except (ValueError, TypeError) as error:
            shapes = ', '.join(str(tuple(t.shape)) for t in example_inputs)
            raise ValueError(f'cannot export {type(module).__name__}: calling it on example_inputs of shapes '
                             f'{shapes} fails: {error}') from error


def export_onnx(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor], path: PathLike, opset: int = 17,
                dynamic_hw: bool = True, dynamo: bool = True, custom_ops: bool = False) -> Path:
    """Export ``module`` (put in eval mode) called on ``example_inputs`` to the ONNX file ``path``.

    Args:
        module: an upsampler (or any module taking 4-D (N, C, H, W) tensors).
        example_inputs: the positional tensors of one call, e.g. ``(x,)`` or ``(x, guide)``.
        path: the ``.onnx`` file to write (parents are created); weights are stored inside it.
        opset: ONNX opset of the default domain, >= 16. Below 18 the dynamo exporter's graph (opset 18) is
            converted with ``onnx.version_converter`` (:func:`_convert_opset`).
        dynamic_hw: height and width (dims 2 and 3) of every input and of the output are symbolic; batch and
            channels stay fixed. The dynamo exporter fails if the model pins a size instead of warning.
        dynamo: the default ``torch.export``-based exporter (needs onnxscript); False: the TorchScript exporter.
        custom_ops: keep the compiled ops and write them as ``upsample_plugin::*`` nodes (module docstring);
            dynamo exporter only, needs the compiled extension.

    Returns:
        ``Path(path)``.
    """
    example_inputs = tuple(example_inputs)
    if not example_inputs or not all(isinstance(t, torch.Tensor) for t in example_inputs):
        raise ValueError('example_inputs must be a non-empty sequence of tensors, e.g. (x,) or (x, guide)')
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f'opset must be an integer >= {MIN_OPSET} (GridSample), got {opset!r}')
    if custom_ops and not dynamo:
        raise ValueError('custom_ops=True needs dynamo=True: the custom-domain nodes come from the dynamo '
                         "exporter's custom_translation_table")
    if custom_ops and not _library.compiled_available():
        raise RuntimeError(f'custom_ops=True needs the compiled ops (upsample_plugin._C), which are not loaded: '
                           f'{_library.load_error()}')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    names = input_names(module, len(example_inputs))
    check_call(module, example_inputs)
    kwargs = dict(input_names=list(names), output_names=['out'], verbose=False)
    if dynamo:
        kwargs['opset_version'] = max(opset, DYNAMO_NATIVE_OPSET)
        if dynamic_hw:
            from torch.export import Dim

            # DYNAMIC (not AUTO): exporting fails loudly when the model specialises a size.
            kwargs['dynamic_shapes'] = tuple({2: Dim.DYNAMIC, 3: Dim.DYNAMIC} for _ in example_inputs)
        translations = onnx_custom_translation_table() if custom_ops else {}
        if opset < 17:
            translations.update(_layer_norm_translation())
        kwargs['custom_translation_table'] = translations or None
        with torch.no_grad(), (onnx_custom_ops() if custom_ops else contextlib.nullcontext()):
            program = torch.onnx.export(module, example_inputs, dynamo=True, external_data=False, **kwargs)
        if opset < DYNAMO_NATIVE_OPSET:
            import onnx

            onnx.save_model(_convert_opset(program.model_proto, opset), str(path))
        else:
            program.save(str(path), external_data=False)
    else:
        kwargs['opset_version'] = opset
        if dynamic_hw:
            kwargs['dynamic_axes'] = {name: {2: f'{name}_height', 3: f'{name}_width'} for name in names + ('out',)}
        with torch.no_grad():
            torch.onnx.export(module, example_inputs, str(path), dynamo=False, **kwargs)
    return path


def _convert_opset(model, opset: int):
    """``onnx.version_converter.convert_version(model, opset)`` that also handles ``Pad``.

    The converter has no adapter from Pad-18 down (torch's ``unfold``, used by the CARAFE/SAPA/DDF references,
    exports as Pad), although a Pad without the ``axes`` input (added in opset 18) means the same in opsets
    13-17. So such Pad nodes are parked in a placeholder domain during the conversion and put back after it.
    The converter also leaves attributes the target opset does not know (ReduceMean-18 -> 17 keeps
    ``noop_with_empty_axes``); they are dropped, and ``onnx.checker`` validates the result.
    """
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())  # a copy: the caller's proto stays as it was
    pads = [node for node in model.graph.node if node.op_type == 'Pad' and node.domain in ('', 'ai.onnx')]
    for node in pads:
        if len(node.input) > 3 and node.input[3]:
            raise RuntimeError(f'Pad node {node.name!r} uses the opset-18 axes input; it cannot be written at '
                               f'opset {opset}: export with opset >= 18')
        node.domain = _PAD_PLACEHOLDER_DOMAIN
    if pads:
        model.opset_import.append(onnx.helper.make_opsetid(_PAD_PLACEHOLDER_DOMAIN, 1))
    converted = onnx.version_converter.convert_version(model, opset)
    for node in converted.graph.node:
        if node.domain == _PAD_PLACEHOLDER_DOMAIN:
            node.domain = ''
        if node.domain in ('', 'ai.onnx'):
            known = onnx.defs.get_schema(node.op_type, opset, '').attributes
            unknown = [attribute for attribute in node.attribute if attribute.name not in known]
            for attribute in unknown:
                node.attribute.remove(attribute)
    kept = [entry for entry in converted.opset_import if entry.domain != _PAD_PLACEHOLDER_DOMAIN]
    del converted.opset_import[:]
    converted.opset_import.extend(kept)
    onnx.checker.check_model(converted)
    return converted


def custom_nodes(path: PathLike) -> list:
    """The ``upsample_plugin::*`` nodes of an exported model (empty for a standard-ops export)."""
    import onnx

    return [node for node in onnx.load(str(path)).graph.node if node.domain == CUSTOM_DOMAIN]


def _reference_evaluator_ops() -> list:
    """``onnx.reference`` implementations of the custom-domain nodes, computed with the plugin's references."""
    from onnx.reference.op_run import OpRun

    def run(fn, *arrays_then_attributes):
        # Tensors arrive as numpy arrays, integer attributes as numpy integers, strings as str or bytes.
        args = [torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray)
                else a.decode() if isinstance(a, bytes) else a if isinstance(a, str) else int(a)
                for a in arrays_then_attributes]
        return (fn(*args).numpy(),)

    class CARAFE(OpRun):
        op_domain = CUSTOM_DOMAIN

        def _run(self, features, masks, kernel_size=None, group_size=None, scale_factor=None):
            return run(carafe_reference, features, masks, kernel_size, group_size, scale_factor)

    class DLU(OpRun):
        op_domain = CUSTOM_DOMAIN

        def _run(self, features, kernel_space, offsets, kernel_size=None, group_size=None, scale_factor=None):
            return run(dlu_reassemble_reference, features, kernel_space, offsets, kernel_size, group_size,
                       scale_factor)

    class DDF(OpRun):
        op_domain = CUSTOM_DOMAIN

        def _run(self, features, channel_filter, spatial_filter, kernel_size=None, dilation=None, stride=None,
                 combine=None):
            return run(ddf_reference, features, channel_filter, spatial_filter, kernel_size, dilation, stride,
                       combine)

    return [CARAFE, DLU, DDF]


def run_onnx(path: PathLike, inputs: Sequence[torch.Tensor]) -> np.ndarray:
    """Run the exported model on ``inputs`` (CPU): onnxruntime for a standard-ops graph; ``onnx.reference`` with
    the plugin's ops for a graph with ``upsample_plugin::*`` nodes (onnxruntime has no kernel for them)."""
    arrays = [t.detach().cpu().numpy() for t in inputs]
    if custom_nodes(path):
        from onnx.reference import ReferenceEvaluator

        session = ReferenceEvaluator(str(path), new_ops=_reference_evaluator_ops())
        names = session.input_names
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
        names = [i.name for i in session.get_inputs()]
    if len(names) != len(arrays):
        raise ValueError(f'the model at {path} takes {len(names)} inputs ({names}), got {len(arrays)}')
    return session.run(None, dict(zip(names, arrays)))[0]


def check_onnx(path: PathLike, module: torch.nn.Module, inputs: Sequence[torch.Tensor], rtol: float = 1e-4,
               atol: float = 1e-5) -> float:
    """Run the exported model (:func:`run_onnx`) and ``module`` on ``inputs`` and return the max abs error.

    Raises a RuntimeError when the shapes differ or when ``max|onnx - torch| > atol + rtol * max|torch|``: the
    tolerance is relative to the output's scale, not per value, because float32 sums of many products in
    another order differ by a fraction of the summands' size, also where the sum itself is near 0.
    """
    inputs = tuple(inputs)
    got = run_onnx(path, inputs)
    with torch.no_grad():
        expected = module.eval()(*inputs).detach().cpu().numpy()
    if got.shape != expected.shape:
        raise RuntimeError(f'ONNX output has shape {got.shape}, PyTorch {expected.shape} (inputs of shapes '
                           f'{[tuple(t.shape) for t in inputs]})')
    if got.size == 0:
        return 0.0
    error = float(np.abs(got.astype(np.float64) - expected).max())  # NaN when either side has a NaN
    scale = float(np.abs(expected).max())
    tolerance = atol + rtol * scale
    if not error <= tolerance:
        raise RuntimeError(f'ONNX output differs from PyTorch: max abs error {error:.3g} > atol + rtol * '
                           f'max|output| = {atol} + {rtol} * {scale:.3g} = {tolerance:.3g}')
    return error
