"""Helpers shared by the tests (``tests/`` is deliberately not a package: the mmsegmentation wheel installs a
top-level ``tests`` package, so this module is imported by its own name)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / 'data'


def load_official(name: str) -> dict:
    """An official-numerics fixture (format: data/official/README.md)."""
    return torch.load(DATA / 'official' / f'{name}.pt')


def load_mmcv_carafe(name: str, shape) -> torch.Tensor:
    return torch.from_numpy(np.fromfile(DATA / 'mmcv_carafe' / f'carafe_{name}.bin', dtype=np.float32)).view(shape)


def check_official(module: torch.nn.Module, fixture: dict, atol: float = 1e-8) -> None:
    """Load the official state dict strictly and compare outputs and input gradients in float64."""
    module = module.double()
    module.load_state_dict(fixture['state_dict'], strict=True)
    inputs = [fixture['inputs'][k].clone().requires_grad_() for k in fixture['forward_args']]
    out = module(*inputs)
    torch.testing.assert_close(out, fixture['output'], rtol=0, atol=atol)
    grads = torch.autograd.grad((out * fixture['grad_weight']).sum(), inputs)
    for key, grad in zip(fixture['forward_args'], grads):
        torch.testing.assert_close(grad, fixture['input_grads'][key], rtol=0, atol=atol)


def check_official_tuple(module: torch.nn.Module, fixture: dict, atol: float = 1e-8, **kwargs) -> None:
    """The tuple-valued official fixtures (FreqFusion: ``(mask_lr, hr_feat, lr_feat)``) through the module's
    ``official_forward``: every output, and the input gradients of ``sum_i (output[i] * grad_weight[i]).sum()``.
    ``module`` must already hold the fixture's state dict in float64."""
    inputs = [fixture['inputs'][k].clone().requires_grad_() for k in fixture['forward_args']]
    outputs = module.official_forward(*inputs, **kwargs)
    assert len(outputs) == len(fixture['output']) == len(fixture['output_names'])
    for out, expected in zip(outputs, fixture['output']):
        torch.testing.assert_close(out, expected, rtol=0, atol=atol)
    loss = sum((out * weight).sum() for out, weight in zip(outputs, fixture['grad_weight']))
    grads = torch.autograd.grad(loss, inputs)
    for key, grad in zip(fixture['forward_args'], grads):
        torch.testing.assert_close(grad, fixture['input_grads'][key], rtol=0, atol=atol)


def carafe_loop(features: torch.Tensor, masks: torch.Tensor, kernel_size: int, group_size: int,
                scale_factor: int) -> torch.Tensor:
    """CARAFE straight from the formula of spec/carafe.md, one output pixel and one tap at a time.

    Vectorised only over batch and channels; differentiable (autograd), so it is the reference for the
    gradients too. Slow: keep shapes small.
    """
    n, channels, height, width = features.shape
    k, s, r = kernel_size, scale_factor, (kernel_size - 1) // 2
    group_of_channel = torch.arange(channels) // (channels // group_size)
    rows = []
    for p in range(height * s):
        row = []
        for q in range(width * s):
            acc = features.new_zeros(n, channels)
            for a in range(k):
                for b in range(k):
                    y, x = p // s + a - r, q // s + b - r
                    if 0 <= y < height and 0 <= x < width:
                        weight = masks[:, group_of_channel * k * k + a * k + b, p, q]
                        acc = acc + weight * features[:, :, y, x]
            row.append(acc)
        rows.append(torch.stack(row, dim=-1))
    return torch.stack(rows, dim=-2)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- every upsampler once: the matrix of test_amp.py, test_compile.py and test_determinism.py -----------------

#: ``build_upsampler`` configs keyed by test id (DySample in its four styles).
UPSAMPLER_MATRIX = {
    'portable_carafe': dict(type='portable_carafe', compressed_channels=16),
    'dysample_lp': dict(type='dysample', style='lp', groups=4),
    'dysample_lp_dyscope': dict(type='dysample', style='lp', groups=4, dyscope=True),
    'dysample_pl': dict(type='dysample', style='pl', groups=4),
    'dysample_pl_dyscope': dict(type='dysample', style='pl', groups=4, dyscope=True),
    'dlu': dict(type='dlu', compressed_channels=16),
    'ddf_up': dict(type='ddf_up'),
    'lda_aqu': dict(type='lda_aqu'),
    'fade': dict(type='fade'),
    'fade_lite': dict(type='fade_lite'),
    'sapa': dict(type='sapa'),
    'sapadeform': dict(type='sapadeform'),
    'freqfusion': dict(type='freqfusion', compressed_channels=16, feature_resample=True),
    'frfu': dict(type='frfu'),
}
#: Matrix entries whose forward calls a compiled op (CARAFE, DLU or DDF) when upsample_plugin._C is loaded.
COMPILED_OP_UPSAMPLERS = ('portable_carafe', 'dlu', 'ddf_up', 'fade', 'fade_lite', 'sapa', 'freqfusion', 'frfu')
#: (name, op backend) pairs: 'compiled' runs the compiled ops, 'reference' forces the pure-PyTorch ones
#: (``UPSAMPLE_PLUGIN_FORCE_REFERENCE=1``; the only implementation of the upsamplers without a compiled op).
MATRIX_CASES = ([(name, 'compiled') for name in COMPILED_OP_UPSAMPLERS]
                + [(name, 'reference') for name in UPSAMPLER_MATRIX])
#: Width of the matrix modules: a multiple of 32 (SAPA's GroupNorm(32, .)) and of s^2 * groups (DySample 'pl').
MATRIX_CHANNELS = 32


def use_op_backend(monkeypatch, backend: str) -> None:
    """Make the modules' ops run ``backend`` ('compiled' or 'reference') for the rest of the test; skips the test
    when 'compiled' is asked for and upsample_plugin._C is not built."""
    import pytest

    from upsample_plugin.ops import compiled_available
    if backend == 'compiled' and not compiled_available('cpu'):
        pytest.skip('upsample_plugin._C is not built: no compiled ops to run')
    monkeypatch.setenv('UPSAMPLE_PLUGIN_FORCE_REFERENCE', '1' if backend == 'reference' else '0')


def build_matrix_upsampler(name: str, seed: int = 0, std: float = 0.1) -> torch.nn.Module:
    """``UPSAMPLER_MATRIX[name]`` at ``MATRIX_CHANNELS`` channels and x2, every parameter perturbed by N(0, std^2).

    The official inits zero the offset predictors (DySample, DLU, LDA-AQU) and start the kernels near uniform;
    the perturbation makes offsets, kernels, gates and attention non-trivial, so every path carries signal.
    """
    from upsample_plugin import build_upsampler
    with torch.random.fork_rng(devices=[]):  # the constructors' own init draws from the global generator
        torch.manual_seed(seed)
        module = build_upsampler(UPSAMPLER_MATRIX[name], MATRIX_CHANNELS, 2)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * std)
    return module


def smooth_inputs(module: torch.nn.Module, n: int, height: int, width: int, seed: int = 1) -> tuple:
    """Forward arguments for ``module``: ``(x,)`` or, for guided upsamplers, ``(x, guide)`` with the x2 guide.

    Feature-map-like (coarse noise, bicubic-upsampled to the size) rather than white noise: the gradient of a
    bilinear sample with respect to its position jumps where the position crosses a pixel, by the local second
    difference of the map, which white noise makes as large as the signal.
    """
    generator = torch.Generator().manual_seed(seed)

    def smooth(size):
        coarse = torch.randn(n, MATRIX_CHANNELS, max(size[0] // 2, 1), max(size[1] // 2, 1), generator=generator)
        return torch.nn.functional.interpolate(coarse, size=size, mode='bicubic', align_corners=True)

    x = smooth((height, width))
    return (x, smooth((2 * height, 2 * width))) if module.needs_guide else (x,)


# ---- memory layouts of the property tests (test_properties_ops.py, test_properties_upsamplers.py) -----------

#: Memory layouts every op must accept with unchanged results.
LAYOUTS = ('contiguous', 'channels_last', 'strided', 'transposed')


def with_layout(tensor: torch.Tensor, layout: str) -> torch.Tensor:
    """The values of a 4-D ``tensor`` in another memory layout.

    ``'strided'`` is every other column of a twice-as-wide buffer whose gaps hold NaN, so an op that ignores the
    strides reads NaN; ``'transposed'`` stores H and W swapped (the view of a transposed contiguous tensor).
    """
    if layout == 'contiguous':
        return tensor.contiguous()
    if layout == 'channels_last':
        return tensor.contiguous(memory_format=torch.channels_last)
    if layout == 'strided':
        buffer = tensor.new_full((*tensor.shape[:-1], 2 * tensor.shape[-1]), float('nan'))
        buffer[..., ::2] = tensor
        return buffer[..., ::2]
    if layout == 'transposed':
        return tensor.transpose(-1, -2).contiguous().transpose(-1, -2)
    raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')


def random_tensor(gen: torch.Generator, shape, dtype=torch.float64) -> torch.Tensor:
    """Standard normal values drawn in float64 (the same values for every dtype, up to rounding)."""
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)


# ---- CPU builds of the CUDA kernels' per-element functions (test_compiled_ops/_dlu/_ddf.py) ----------------------

CSRC_INCLUDE = Path(__file__).parents[1] / 'upsample_plugin' / 'ops' / 'csrc' / 'include'


def compile_element_harness(tmp_path_factory, name: str, source: str):
    """Compile ``source`` (C++ including the ops' ``*_common.h`` headers and registering a ``TORCH_LIBRARY`` of
    test ops) into a small CPU library, so the HOST_DEVICE bodies of the CUDA kernels run without a GPU.
    Skips the calling test when no compiler is available. Returns nothing: the ops are under ``torch.ops``."""
    import pytest
    from torch.utils.cpp_extension import load
    build = tmp_path_factory.mktemp(name)
    path = build / f'{name}.cpp'
    path.write_text(source)
    try:
        load(f'upsample_plugin_{name}', sources=[str(path)], extra_include_paths=[str(CSRC_INCLUDE)],
             extra_cflags=['-O1', '-w'], build_directory=str(build), is_python_module=False)
    except Exception as err:  # noqa: BLE001 - no compiler on this machine
        pytest.skip(f'cannot compile the element harness: {err}')
