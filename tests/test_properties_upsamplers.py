"""Property tests (Hypothesis) of the eleven upsamplers built with ``upsample_plugin.build_upsampler`` (issue 8).

For random valid construction arguments of each method (scale, groups, kernel sizes, channels, styles, options)
and random input sizes (empty batch and 1-pixel maps included), with every parameter re-drawn at random so that
offsets, kernels and gates are far from their near-identity initial state:

* the output has shape (N, C, s*H, s*W) and the input's dtype (float32, float64, bfloat16) and is finite;
* batch elements are independent: the batch output equals the per-sample outputs;
* channels-last and non-contiguous inputs (and a channels-last module) give the contiguous output;
* where the module runs a compiled op (CARAFE, FADE, FADE-Lite, SAPA-B, FreqFusion and FRFU reassemble or filter
  with the CARAFE op, DLU
  with the DLU op, DDF-Up with the DDF op), the compiled and the pure-PyTorch reference paths
  (``UPSAMPLE_PLUGIN_FORCE_REFERENCE``) agree in output and in the gradients of inputs and parameters, and the
  profiler shows that each path really ran its own op.

Guided methods get a guide (FADE, SAPA-B, SAPA-D, FreqFusion: the high-resolution map; DDF-Up: optionally its low-resolution
``joint_x``). Channel counts and maps are tiny so that each example runs in milliseconds; the example counts come
from the profiles in conftest.py.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional, Tuple

import pytest
import torch
from hypothesis import given, strategies as st
from torch.profiler import ProfilerActivity, profile
from upsample_test_utils import LAYOUTS, random_tensor, with_layout

from upsample_plugin import build_upsampler
from upsample_plugin.ops import _library
from upsample_plugin.ops._library_ddf import ddf_compiled_available
from upsample_plugin.ops._library_dlu import dlu_compiled_available


@dataclasses.dataclass
class Case:
    """One upsampler configuration: ``build_upsampler(cfg, channels, scale)`` called as
    ``module(x, **{name: tensor})`` with one tensor per ``inputs`` entry, (channels, 'low' | 'high' resolution)."""

    cfg: dict
    channels: int
    scale: int
    inputs: Dict[str, Tuple[int, str]] = dataclasses.field(default_factory=dict)

    def build(self, gen: torch.Generator, dtype: torch.dtype) -> torch.nn.Module:
        """The module with every parameter re-drawn from N(0, 0.5^2) (buffers such as DySample's base grid kept)."""
        module = build_upsampler(self.cfg, self.channels, self.scale)
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.copy_(random_tensor(gen, parameter.shape) * 0.5)
        return module.to(dtype).eval()

    def make_inputs(self, gen: torch.Generator, n: int, h: int, w: int, dtype: torch.dtype) -> Dict[str, torch.Tensor]:
        tensors = {'x': random_tensor(gen, (n, self.channels, h, w), dtype)}
        for name, (channels, resolution) in self.inputs.items():
            size = (h * self.scale, w * self.scale) if resolution == 'high' else (h, w)
            tensors[name] = random_tensor(gen, (n, channels, *size), dtype)
        return tensors


def run(module: torch.nn.Module, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
    inputs = dict(inputs)
    return module(inputs.pop('x'), **inputs)


# ------------------------------------------------------------------------------------- one strategy each

scales = st.integers(1, 3)
odd_kernels = st.sampled_from([1, 3, 5])


@st.composite
def carafe_cases(draw, type_name='portable_carafe'):
    """CARAFE and DLU share the constructor (DLUPack copies CARAFEPack's arguments)."""
    up_group = draw(st.integers(1, 3))
    cfg = dict(type=type_name, up_kernel=draw(odd_kernels), up_group=up_group,
               encoder_kernel=draw(st.sampled_from([1, 3])), encoder_dilation=draw(st.integers(1, 2)),
               compressed_channels=draw(st.integers(1, 4)))
    return Case(cfg, up_group * draw(st.integers(1, 2)), draw(scales))


@st.composite
def dysample_cases(draw):
    scale, groups, style = draw(scales), draw(st.integers(1, 3)), draw(st.sampled_from(['lp', 'pl']))
    # 'pl' pixel-shuffles the input first: C must be divisible by s^2 (and, for the groups, by G).
    unit = math.lcm(groups, scale * scale) if style == 'pl' else groups
    cfg = dict(type='dysample', style=style, groups=groups, dyscope=draw(st.booleans()),
               scope_bias=draw(st.booleans()))
    return Case(cfg, unit * draw(st.integers(1, 2)), scale)


@st.composite
def ddf_up_cases(draw):
    head = draw(st.integers(1, 2))
    channels = head * draw(st.integers(1, 2))
    cfg = dict(type='ddf_up', kernel_size=draw(st.sampled_from([3, 5])), dilation=draw(st.integers(1, 2)),
               head=head, se_ratio=draw(st.sampled_from([1.0, 2.0])),  # int(C * se_ratio) >= 1 hidden channels
               kernel_combine=draw(st.sampled_from(['mul', 'add'])), dw_kernel_size=draw(st.sampled_from([3, 5])))
    inputs = {}
    guidance = draw(st.sampled_from(['none', 'same_width', 'own_width']))
    if guidance == 'own_width':  # a dedicated guidance branch over joint_x with its own channel count
        cfg['joint_channels'] = draw(st.integers(1, 3))
        inputs['joint_x'] = (cfg['joint_channels'], 'low')
    elif guidance == 'same_width':
        inputs['joint_x'] = (channels, 'low')
    return Case(cfg, channels, draw(scales), inputs)


@st.composite
def lda_aqu_cases(draw):
    nh, n_groups = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    hidden = math.lcm(nh, n_groups) * draw(st.integers(1, 2))  # nh and n_groups split the queries and keys
    reduction = draw(st.integers(1, 2))
    cfg = dict(type='lda_aqu', reduction_factor=reduction, nh=nh, n_groups=n_groups, k_u=draw(st.sampled_from([1, 3])),
               k_e=draw(st.sampled_from([1, 3])), range_factor=draw(st.sampled_from([0, 1, 3])),
               rpb=draw(st.booleans()))
    return Case(cfg, hidden * reduction, draw(scales))


@st.composite
def fade_cases(draw, type_name='fade'):
    """FADE is defined for x2 only (spec/fade.md); the guide may be wider or narrower than x (aligner)."""
    up_group = draw(st.integers(1, 2))
    channels = up_group * draw(st.integers(1, 2))
    guide_channels = draw(st.integers(1, 3))
    cfg = dict(type=type_name, in_channels_en=guide_channels, up_kernel_size=draw(odd_kernels), up_group=up_group,
               gating=draw(st.booleans()))
    return Case(cfg, channels, 2, {'guide': (guide_channels, 'high')})


def sapa_widths(draw, norm: bool):
    # GroupNorm(32, .) needs multiples of 32; without it any width.
    return (32, 32) if norm else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))


@st.composite
def sapa_cases(draw):
    norm = draw(st.booleans())
    guide_channels, channels = sapa_widths(draw, norm)
    cfg = dict(type='sapa', dim_y=guide_channels, up_kernel_size=draw(odd_kernels),
               embedding_dim=draw(st.integers(1, 3)), qkv_bias=draw(st.booleans()), norm=norm)
    return Case(cfg, channels, draw(scales), {'guide': (guide_channels, 'high')})


@st.composite
def sapadeform_cases(draw):
    norm = draw(st.booleans())
    groups = draw(st.sampled_from([1, 2])) if norm else draw(st.integers(1, 3))
    guide_channels, channels = sapa_widths(draw, norm)
    if not norm:
        channels = groups * draw(st.integers(1, 2))
    cfg = dict(type='sapadeform', dim_y=guide_channels, num_point=draw(st.integers(1, 4)), groups=groups,
               embedding_dim=draw(st.integers(1, 2)), qkv_bias=draw(st.booleans()),
               high_offset=draw(st.booleans()), norm=norm)
    return Case(cfg, channels, draw(scales), {'guide': (guide_channels, 'high')})


@st.composite
def freqfusion_cases(draw):
    """FreqFusion is x2 only; G up_groups divide the width and C_m; the sampler's GroupNorm needs C_m = 8 here;
    the CARAFE cascade needs the AHPF (spec/freqfusion.md). Equal widths: with C_hr != C_lr forward() returns
    the upsampled map alone (tests/test_freqfusion.py), and the AHPF parameters get no gradient."""
    up_group = draw(st.integers(1, 2))
    channels = guide_channels = up_group * draw(st.integers(1, 2))
    resample = draw(st.booleans())
    norm = resample and draw(st.booleans())
    compressed = 8 if norm else up_group * draw(st.integers(1, 3))
    groups = draw(st.sampled_from([g for g in (1, 2) if channels % g == 0 and compressed % g == 0]))
    comp_feat_upsample, semi_conv = draw(st.booleans()), draw(st.booleans())
    use_high_pass = (comp_feat_upsample and semi_conv) or draw(st.booleans())
    cfg = dict(type='freqfusion', hr_channels=guide_channels, compressed_channels=compressed, up_group=up_group,
               lowpass_kernel=draw(odd_kernels), highpass_kernel=draw(odd_kernels), feature_resample=resample,
               feature_resample_group=groups, feature_resample_norm=norm, comp_feat_upsample=comp_feat_upsample,
               semi_conv=semi_conv, use_high_pass=use_high_pass, hr_residual=draw(st.booleans()),
               hamming_window=draw(st.booleans()), direction_feat=draw(st.sampled_from(['sim_concat', 'sim'])))
    return Case(cfg, channels, 2, {'guide': (guide_channels, 'high')})


@st.composite
def frfu_cases(draw):
    groups = draw(st.integers(1, 3))
    cfg = dict(type='frfu', groups=groups, sample_k=draw(odd_kernels))
    return Case(cfg, groups * draw(st.integers(1, 2)), draw(scales))


CASES = {
    'portable_carafe': carafe_cases(),
    'dysample': dysample_cases(),
    'dlu': carafe_cases('dlu'),
    'ddf_up': ddf_up_cases(),
    'lda_aqu': lda_aqu_cases(),
    'fade': fade_cases(),
    'fade_lite': fade_cases('fade_lite'),
    'sapa': sapa_cases(),
    'sapadeform': sapadeform_cases(),
    'freqfusion': freqfusion_cases(),
    'frfu': frfu_cases(),
}

seeds = st.integers(0, 2 ** 31 - 1)
sizes = st.integers(1, 4)
#: Widths: mostly tiny, sometimes longer rows (the compiled kernels loop over rows).
widths = st.one_of(sizes, st.integers(5, 9))

# ------------------------------------------------------------------------------------------- properties


@pytest.mark.parametrize('name', CASES)
@given(data=st.data(), n=st.integers(0, 2), h=sizes, w=widths,
       dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]), seed=seeds)
def test_output_shape_and_dtype(name, data, n, h, w, dtype, seed):
    case = data.draw(CASES[name], label='case')
    gen = torch.Generator().manual_seed(seed)
    module = case.build(gen, dtype)
    out = run(module, case.make_inputs(gen, n, h, w, dtype))
    assert out.shape == (n, case.channels, case.scale * h, case.scale * w)
    assert out.dtype == dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('name', CASES)
@given(data=st.data(), n=st.integers(2, 3), h=sizes, w=widths, seed=seeds)
def test_batch_elements_are_independent(name, data, n, h, w, seed):
    case = data.draw(CASES[name], label='case')
    gen = torch.Generator().manual_seed(seed)
    module = case.build(gen, torch.float64)
    inputs = case.make_inputs(gen, n, h, w, torch.float64)
    batch = run(module, inputs)
    single = torch.cat([run(module, {key: t[i:i + 1] for key, t in inputs.items()}) for i in range(n)])
    torch.testing.assert_close(batch, single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('name', CASES)
@given(data=st.data(), n=st.integers(1, 2), h=sizes, w=widths, module_channels_last=st.booleans(), seed=seeds)
def test_memory_layouts_give_the_contiguous_output(name, data, n, h, w, module_channels_last, seed):
    case = data.draw(CASES[name], label='case')
    gen = torch.Generator().manual_seed(seed)
    module = case.build(gen, torch.float64)
    inputs = case.make_inputs(gen, n, h, w, torch.float64)
    expected = run(module, inputs)
    layouts = {key: data.draw(st.sampled_from(LAYOUTS), label=f'{key} layout') for key in inputs}
    if module_channels_last:
        # As after converting a model for channels-last training (every 4-D parameter and buffer).
        module.to(memory_format=torch.channels_last)
    got = run(module, {key: with_layout(t, layouts[key]) for key, t in inputs.items()})
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


#: The upsamplers whose forward runs a compiled op, the op's profiler name and whether it is built.
COMPILED_PATHS = {
    'portable_carafe': ('upsample_plugin::carafe_forward', _library.compiled_available('cpu')),
    'fade': ('upsample_plugin::carafe_forward', _library.compiled_available('cpu')),
    'fade_lite': ('upsample_plugin::carafe_forward', _library.compiled_available('cpu')),
    'sapa': ('upsample_plugin::carafe_forward', _library.compiled_available('cpu')),
    'freqfusion': ('upsample_plugin::carafe_forward', _library.compiled_available('cpu')),
    'frfu': ('upsample_plugin::carafe_forward', _library.compiled_available('cpu')),
    'dlu': ('upsample_plugin::dlu_forward', dlu_compiled_available('cpu')),
    'ddf_up': ('upsample_plugin::ddf_forward', ddf_compiled_available('cpu')),
}


def run_recording_ops(module: torch.nn.Module, inputs: Dict[str, torch.Tensor], force_reference: str):
    """Output and the names of the ops that ran, with ``UPSAMPLE_PLUGIN_FORCE_REFERENCE=force_reference``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('UPSAMPLE_PLUGIN_FORCE_REFERENCE', force_reference)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = run(module, inputs)
    return out, {event.name for event in prof.events()}


@pytest.mark.parametrize('name', [
    pytest.param(name, marks=pytest.mark.skipif(
        not built, reason=f'upsample_plugin._C has no {op} CPU kernel ({_library.load_error()}); build it with '
                          f'`pip install --no-build-isolation --no-deps -e .`'))
    for name, (op, built) in COMPILED_PATHS.items()])
@given(data=st.data(), n=st.integers(0, 2), h=sizes, w=widths, seed=seeds)
def test_compiled_and_reference_paths_agree(name, data, n, h, w, seed):
    case = data.draw(CASES[name], label='case')
    gen = torch.Generator().manual_seed(seed)
    module = case.build(gen, torch.float64)
    inputs = case.make_inputs(gen, n, h, w, torch.float64)
    compiled_op = COMPILED_PATHS[name][0]
    results = []
    grad_out: Optional[torch.Tensor] = None
    for force_reference in ('0', '1'):
        leaves = {key: t.clone().requires_grad_() for key, t in inputs.items()}
        out, ops_run = run_recording_ops(module, leaves, force_reference)
        assert (compiled_op in ops_run) == (force_reference == '0'), f'{compiled_op} ran: {compiled_op in ops_run}'
        if grad_out is None:
            grad_out = random_tensor(gen, out.shape)
        wrt = [*leaves.values(), *module.parameters()]
        results.append((out, *torch.autograd.grad(out, wrt, grad_out)))
    labels = ['output', *(f'gradient of {key}' for key in inputs),
              *(f'gradient of {parameter}' for parameter, _ in module.named_parameters())]
    for label, got, expected in zip(labels, *results):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12, msg=lambda msg: f'{label}: {msg}')
