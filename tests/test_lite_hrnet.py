"""Lite-HRNet backbone (Yu et al., CVPR 2021; spec/lite_hrnet.md): shapes, official structure and quirks, CCW
forward against the spec's step-by-step definition, gradients, learned fuse upsamplers, bad input, the paper's
parameter/operation counts, and a short toy training run that learns."""
import importlib
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope

import upsample_plugin  # noqa: F401  (registers LiteHRNet and the upsamplers)
from upsample_plugin.models.backbones.lite_hrnet import (ARCHS, LITE_HRNET_18, ConditionalChannelWeighting,
                                                         CrossResolutionWeighting, LiteHRModule, LiteHRNet,
                                                         ShuffleUnit, SpatialWeighting)
from upsample_plugin.models.backbones.lite_hrnet_complexity import paper_operation_count, pose_model

for _name in ('dysample', 'dlu', 'fade'):
    importlib.import_module(f'upsample_plugin.upsamplers.{_name}')

ROOT = Path(__file__).parents[1]


pytestmark = pytest.mark.usefixtures('one_thread')  # conftest.py


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and running statistics far from the init, so every term of a reference matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            values = torch.rand(tensor.shape, generator=gen, dtype=torch.float64)
            if name.endswith('running_var'):
                tensor.copy_(0.5 + values)
            else:
                tensor.copy_(values - 0.5)
    return module


def halved(size, times):
    for _ in range(times):
        size = -(-size // 2)
    return size


# ------------------------------------------------------------------------------------------------ shapes, registry
@pytest.mark.parametrize('arch', sorted(ARCHS))
def test_outputs_are_the_branches_finest_first(arch):
    model = LiteHRNet(arch=arch).eval()
    widths = list(ARCHS[arch]['stages_spec']['num_channels'][-1])
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 96))
    assert isinstance(outputs, tuple)
    assert [tuple(o.shape) for o in outputs] == [(2, c, 16 >> i, 24 >> i) for i, c in enumerate(widths)]
    assert model.out_channels == widths


def test_iterative_head_outputs_widths_c0_c0_c1_c2():
    model = LiteHRNet(arch='18', with_head=True).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outputs] == [40, 40, 80, 160] == model.out_channels
    assert [o.shape[-1] for o in outputs] == [16, 8, 4, 2]


def test_any_input_size_gives_the_rounded_up_pyramid():
    # 61 x 47 is not a multiple of 32: the official fuse layers fail there (2x upsampled maps are one pixel too
    # large); here an upsampled map is cropped to its target branch.
    model = LiteHRNet(arch='18').eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 61, 47))
    assert [tuple(o.shape[-2:]) for o in outputs] == [(halved(61, 2 + i), halved(47, 2 + i)) for i in range(4)]


@pytest.mark.parametrize('scope', ['mmseg', 'mmdet', None])
def test_registered_for_mmseg_and_mmdet(scope):
    if scope is None:
        from mmengine.registry import MODELS
        model = MODELS.build(dict(type='LiteHRNet', arch='18'))
    else:
        registry = importlib.import_module(f'{scope}.registry').MODELS
        with DefaultScope.overwrite_default_scope(scope):
            model = registry.build(dict(type='LiteHRNet', arch='18'))
    assert type(model) is LiteHRNet


# ----------------------------------------------------------------------------------- official structure and keys
def _bn(prefix):
    return [f'{prefix}.{n}' for n in ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')]


def _conv_module(prefix, norm=True):
    """mmcv ConvModule: ``conv`` (biased only without a norm) and ``bn``."""
    return [f'{prefix}.conv.weight'] + (_bn(f'{prefix}.bn') if norm else [f'{prefix}.conv.bias'])


def official_state_dict_keys(extra):
    """The state-dict keys of the official ``LiteHRNet(extra)`` (HRNet/Lite-HRNet models/backbones/litehrnet.py),
    enumerated from how its constructors name their submodules (read from that code, not from this plugin)."""
    keys = []
    for name in ('conv1', 'branch1.0', 'branch1.1', 'expand_conv', 'depthwise_conv', 'linear_conv'):
        keys += _conv_module(f'stem.{name}')
    spec = extra['stages_spec']
    before = [extra['stem']['out_channels']]
    for s in range(extra['num_stages']):
        widths = list(spec['num_channels'][s])
        for i, width in enumerate(widths):  # transition: dw conv, bn, 1x1 conv, bn, relu
            steps = ([''] if width != before[i] else []) if i < len(before) else \
                [f'.{k}' for k in range(i + 1 - len(before))]
            for step in steps:
                keys += [f'transition{s}.{i}{step}.0.weight', *_bn(f'transition{s}.{i}{step}.1'),
                         f'transition{s}.{i}{step}.2.weight', *_bn(f'transition{s}.{i}{step}.3')]
        n = len(widths)
        for m in range(spec['num_modules'][s]):
            prefix = f'stage{s}.{m}'
            for b in range(spec['num_blocks'][s]):
                if spec['module_type'][s] == 'LITE':
                    block = f'{prefix}.layers.{b}'
                    keys += _conv_module(f'{block}.cross_resolution_weighting.conv1')
                    keys += _conv_module(f'{block}.cross_resolution_weighting.conv2')
                    for br in range(n):
                        keys += _conv_module(f'{block}.depthwise_convs.{br}')
                        keys += _conv_module(f'{block}.spatial_weighting.{br}.conv1', norm=False)
                        keys += _conv_module(f'{block}.spatial_weighting.{br}.conv2', norm=False)
                else:
                    for br in range(n):
                        for c in range(3):
                            keys += _conv_module(f'{prefix}.layers.{br}.{b}.branch2.{c}')
            for i in range(n):
                for j in range(n):
                    path = f'{prefix}.fuse_layers.{i}.{j}'
                    if j > i:  # 1x1 conv, bn, nn.Upsample
                        keys += [f'{path}.0.weight', *_bn(f'{path}.1')]
                    for k in range(i - j):  # dw conv, bn, 1x1 conv, bn (, relu)
                        keys += [f'{path}.{k}.0.weight', *_bn(f'{path}.{k}.1'), f'{path}.{k}.2.weight',
                                 *_bn(f'{path}.{k}.3')]
        before = widths
    if extra['with_head']:
        for i in range(len(before)):
            keys += _conv_module(f'head_layer.projects.{i}.depthwise_conv')
            keys += _conv_module(f'head_layer.projects.{i}.pointwise_conv')
    return keys


@pytest.mark.parametrize('arch,with_head', [('18', True), ('18', False), ('30', False), ('naive-18', True)])
def test_nearest_default_has_the_official_state_dict_keys(arch, with_head):
    model = LiteHRNet(arch=arch, with_head=with_head)
    expected = official_state_dict_keys(dict(ARCHS[arch], with_head=with_head))
    assert len(expected) == len(set(expected))
    assert sorted(model.state_dict()) == sorted(expected)
    # The fuse upsampling is the official parameter-free nn.Upsample(scale_factor=2**(j - i), mode='nearest').
    module = model.stage2[0]
    for i in range(4):
        for j in range(i + 1, 4):
            up = module.fuse_layers[i][j][2]
            assert type(up) is nn.Upsample and up.mode == 'nearest' and up.scale_factor == 2.0 ** (j - i)


# --------------------------------------------------------------------------------- official fuse quirk (spec #1)
def official_fuse_loop(module, x):
    """The official LiteHRModule.forward fuse loop, verbatim in behaviour (in-place ``+=`` on branch 0)."""
    out = [t.clone() for t in module.layers(list(x))]
    fused = []
    for i in range(len(module.fuse_layers)):
        y = out[0] if i == 0 else module.fuse_layers[i][0](out[0])
        for j in range(module.num_branches):
            y += out[j] if i == j else module.fuse_layers[i][j](out[j])
        fused.append(F.relu(y))
    return fused


def small_module(fuse_mode, branches=3, **kwargs):
    widths = [8, 16, 32][:branches]
    module = LiteHRModule(branches, 1, widths, reduce_ratio=4, module_type='LITE', multiscale_output=True,
                          fuse_mode=fuse_mode, **kwargs)
    return randomize(module.double()).eval()


def branch_inputs(widths, size=8, batch=2, seed=1, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, size >> i, size >> i, generator=gen, dtype=torch.float64,
                        requires_grad=requires_grad) for i, c in enumerate(widths)]


def test_official_fuse_mode_reproduces_the_in_place_loop():
    module = small_module('official')
    x = branch_inputs([8, 16, 32])
    with torch.no_grad():
        expected = official_fuse_loop(module, x)
        actual = module(x)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-12)


def test_official_fuse_mode_closed_form_for_two_branches():
    # Two branches a0, a1 after the blocks: the official loop gives relu(2 a0 + U(a1)) and, because branch 0 was
    # overwritten in place by that pre-ReLU sum s0, relu(2 D(s0) + a1), D being the path 0 -> 1.
    module = small_module('official', branches=2)
    x = branch_inputs([8, 16])
    with torch.no_grad():
        a0, a1 = module.layers(list(x))
        s0 = 2 * a0 + module.fuse_layers[0][1](a1)
        expected = [F.relu(s0), F.relu(2 * module.fuse_layers[1][0](s0) + a1)]
        actual = module(x)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-12)


def test_sum_fuse_mode_adds_every_branch_once_and_differs_from_official():
    fixed, official = small_module('sum'), small_module('official')
    x = branch_inputs([8, 16, 32])
    with torch.no_grad():
        blocks = fixed.layers(list(x))
        expected = [F.relu(sum(blocks[j] if i == j else fixed.fuse_layers[i][j](blocks[j]) for j in range(3)))
                    for i in range(3)]
        actual, quirky = fixed(x), official(x)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-12)
    assert all((a - q).abs().max() > 1e-3 for a, q in zip(actual, quirky))


def test_official_mode_calls_the_path_from_branch_0_twice_in_training():
    # As the official loop does: BN running statistics of that path are updated twice per forward.
    module = small_module('official', branches=2).train()
    norm = module.fuse_layers[1][0][0][1]
    before = int(norm.num_batches_tracked)
    module(branch_inputs([8, 16]))
    assert int(norm.num_batches_tracked) == before + 2
    assert int(module.fuse_layers[0][1][1].num_batches_tracked) == before + 1


def test_single_scale_output_is_trimmed_only_without_fuse():
    # Spec quirk 2, kept: with fuse layers and multiscale_output=False only branch 0 is fused (one output);
    # without fuse layers the list is trimmed to branch 0.
    x = branch_inputs([8, 16])
    for with_fuse in (True, False):
        module = LiteHRModule(2, 1, [8, 16], 4, 'LITE', multiscale_output=False, with_fuse=with_fuse).double()
        assert len(module.eval()(x)) == 1


# -------------------------------------------------------------------------------- CCW against the spec "Forward"
def conv_bn(module, x, act=None):
    """A ConvModule by hand: conv (+ eval-mode batch norm) + activation."""
    conv = module.conv
    y = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    if getattr(module, 'with_norm', False):
        bn = module.bn
        y = (y - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps)
        y = y * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
    return act(y) if act else y


def ccw_reference(block, x):
    """spec/lite_hrnet.md "Forward", steps 1-5, one operation at a time."""
    halves = [(t[:, :t.shape[1] // 2], t[:, t.shape[1] // 2:]) for t in x]
    b = [h[1] for h in halves]
    smallest = b[-1].shape[-2:]
    pooled = torch.cat([F.adaptive_avg_pool2d(t, smallest) for t in b[:-1]] + [b[-1]], dim=1)
    crw = block.cross_resolution_weighting
    weights = conv_bn(crw.conv2, conv_bn(crw.conv1, pooled, F.relu), torch.sigmoid)
    offsets = [0]
    for t in b:
        offsets.append(offsets[-1] + t.shape[1])
    b = [t * F.interpolate(weights[:, offsets[i]:offsets[i + 1]], size=t.shape[-2:], mode='nearest')
         for i, t in enumerate(b)]
    b = [conv_bn(dw, t) for dw, t in zip(block.depthwise_convs, b)]
    out = []
    for i, t in enumerate(b):
        sw = block.spatial_weighting[i]
        gate = conv_bn(sw.conv2, conv_bn(sw.conv1, t.mean(dim=(2, 3), keepdim=True), F.relu), torch.sigmoid)
        t = t * gate
        cat = torch.cat([halves[i][0], t], dim=1)
        half = cat.shape[1] // 2
        # channel shuffle, 2 groups: output channel 2k + g is input channel g * half + k
        order = [g * half + k for k in range(half) for g in range(2)]
        out.append(cat[:, order])
    return out


def test_ccw_matches_the_step_by_step_reference():
    block = randomize(ConditionalChannelWeighting([8, 16, 32], stride=1, reduce_ratio=4).double()).eval()
    x = branch_inputs([8, 16, 32], size=12)  # 12, 6, 3: non-square pooling windows on the last branch
    with torch.no_grad():
        actual, expected = block(x), ccw_reference(block, x)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-12)


def test_cross_resolution_weights_are_computed_at_the_smallest_resolution():
    # The weight map of branch 0 (8x8) is the 2x2 map of the last branch broadcast by nearest upsampling: the
    # ratio output / input is constant on each 4x4 block.
    crw = randomize(CrossResolutionWeighting([4, 8, 16], ratio=4).double()).eval()
    x = [t.abs() + 1 for t in branch_inputs([4, 8, 16], size=8)]
    with torch.no_grad():
        ratio = crw(x)[0] / x[0]
    blocks = ratio.view(2, 4, 2, 4, 2, 4)
    torch.testing.assert_close(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks), rtol=1e-12, atol=0)


# -------------------------------------------------------------------------------------------------------- gradients
def test_ccw_gradcheck():
    block = randomize(ConditionalChannelWeighting([8, 16], stride=1, reduce_ratio=4).double()).eval()
    x = branch_inputs([8, 16], size=4, batch=1, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: tuple(block([a, b])), tuple(x))


@pytest.mark.parametrize('fuse_mode', ['official', 'sum'])
def test_fuse_layer_gradcheck(fuse_mode):
    module = LiteHRModule(3, 1, [4, 8, 16], 2, 'NAIVE', multiscale_output=True, fuse_mode=fuse_mode)
    module = randomize(module.double()).eval()
    x = branch_inputs([4, 8, 16], size=4, batch=1, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: tuple(module._fuse(list(t))), tuple(x))


def test_fuse_layer_with_dysample_gradcheck():
    module = LiteHRModule(2, 1, [4, 8], 2, 'NAIVE', multiscale_output=True,
                          upsample_cfg=dict(type='dysample', groups=2))
    module = randomize(module.double()).eval()
    x = branch_inputs([4, 8], size=4, batch=1, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: tuple(module._fuse(list(t))), tuple(x))


def test_backward_through_the_whole_backbone_reaches_every_parameter():
    model = LiteHRNet(arch='18', with_head=True, upsample_cfg=dict(type='dysample'), upsample_chain=True).train()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    sum(o.square().mean() for o in model(x)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_activation_checkpointing_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = LiteHRNet(arch='naive-18').train()
    checkpointed = LiteHRNet(arch='naive-18', with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    outs = [model(x) for model in (plain, checkpointed)]
    for model, out in zip((plain, checkpointed), outs):
        sum(o.sum() for o in out).backward()
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


# ------------------------------------------------------------------------------------- learned fuse upsampling
def fuse_steps(extra, chain):
    """(width, ratio) of every upsampling module the fuse layers of ``extra`` hold."""
    spec, steps = extra['stages_spec'], []
    for s in range(extra['num_stages']):
        widths = spec['num_channels'][s]
        for _ in range(spec['num_modules'][s]):
            for i in range(len(widths)):
                for j in range(i + 1, len(widths)):
                    steps += [(widths[i], 2)] * (j - i) if chain else [(widths[i], 2 ** (j - i))]
    return steps


def dysample_lp_params(width, ratio, groups=4):
    return (width + 1) * 2 * groups * ratio * ratio  # the offset 1x1 conv (spec/dysample.md)


def dlu_params(width, ratio, compressed=16, kernel=5, encoder=3):
    # compressor 1x1, kernel-space generator k_e x k_e (k_up^2 outputs), offset conv k_e x k_e (2 s^2 outputs)
    return ((width + 1) * compressed + (compressed * encoder ** 2 + 1) * kernel ** 2
            + (compressed * encoder ** 2 + 1) * 2 * ratio * ratio)


@pytest.mark.parametrize('name,cfg,chain,per_module', [
    ('dysample', dict(type='dysample', style='lp', groups=4), True, dysample_lp_params),
    ('dysample', dict(type='dysample', style='lp', groups=4), False, dysample_lp_params),
    ('dlu', dict(type='dlu', compressed_channels=16), True, dlu_params),
])
def test_learned_fuse_upsamplers_build_run_and_add_their_parameters(name, cfg, chain, per_module):
    nearest = LiteHRNet(arch='18')
    learned = LiteHRNet(arch='18', upsample_cfg=cfg, upsample_chain=chain)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    expected = sum(per_module(width, ratio) for width, ratio in fuse_steps(LITE_HRNET_18, chain))
    assert count(learned) - count(nearest) == expected
    # The official keys stay; the upsamplers add keys under fuse_layers.<i>.<j>.2 only.
    added = set(learned.state_dict()) - set(nearest.state_dict())
    assert set(nearest.state_dict()) <= set(learned.state_dict())
    assert added and all('.fuse_layers.' in k and k.split('.fuse_layers.')[1].split('.')[2] == '2' for k in added)
    with torch.no_grad():
        outputs = learned.eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outputs] == [(1, c, 16 >> i, 16 >> i) for i, c in enumerate([40, 80, 160, 320])]


def test_nearest_checkpoint_loads_into_a_learned_fuse_model():
    nearest = LiteHRNet(arch='18')
    learned = LiteHRNet(arch='18', upsample_cfg=dict(type='dlu', compressed_channels=16), upsample_chain=True)
    result = learned.load_state_dict(nearest.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.split('.fuse_layers.')[1].split('.')[2] == '2' for k in result.missing_keys)


def test_init_weights_is_the_official_init_and_keeps_the_upsamplers_own():
    model = LiteHRNet(arch='18', upsample_cfg=dict(type='dlu', compressed_channels=16), upsample_chain=True)
    model.init_weights()
    upsampler_parts = {id(m) for up in model.fuse_upsamplers() for m in up.modules()}
    for module in model.modules():
        if id(module) in upsampler_parts:
            continue
        if isinstance(module, nn.Conv2d) and module.weight.numel() >= 4000:
            assert abs(module.weight.std().item() - 0.001) < 2e-4
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            assert not module.bias.any()
        if isinstance(module, nn.BatchNorm2d):
            assert (module.weight == 1).all() and not module.bias.any()
    dlus = [m for up in model.fuse_upsamplers() for m in up.modules() if type(m).__name__ == 'DLUPack']
    assert len(dlus) == len(fuse_steps(LITE_HRNET_18, chain=True))
    for dlu in dlus:
        assert not dlu.conv_offset.weight.any()  # DLU's own init: zero offsets
        assert dlu.channel_compressor.weight.std() > 0.05  # Xavier, not N(0, 0.001^2)


def test_guided_upsamplers_are_refused():
    with pytest.raises(ValueError, match="'fade' is a guided upsampler"):
        LiteHRNet(arch='18', upsample_cfg=dict(type='fade'))


# ---------------------------------------------------------------------------------------------- freezing, norms
def test_frozen_stages_and_norm_eval():
    model = LiteHRNet(arch='18', frozen_stages=1, norm_eval=True).train()
    frozen = [model.stem, model.transition0, model.stage0]
    assert all(not p.requires_grad for part in frozen for p in part.parameters())
    assert all(p.requires_grad for p in model.stage1.parameters())
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))


# ------------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('x,match', [
    (torch.randn(3, 64, 64), r'x must be 4-D \(N, C, H, W\)'),
    (torch.randn(1, 4, 64, 64), r'x must have shape \(N, 3, H, W\)'),
    (torch.zeros(1, 3, 64, 64, dtype=torch.int64), 'floating-point'),
])
def test_backbone_rejects_bad_images(x, match):
    with pytest.raises(ValueError, match=match):
        LiteHRNet(arch='18')(x)


def test_module_rejects_branches_that_are_not_a_halving_pyramid():
    module = LiteHRModule(2, 1, [8, 16], 4, 'LITE', multiscale_output=True)
    x = [torch.randn(1, 8, 16, 16), torch.randn(1, 16, 9, 8)]
    with pytest.raises(ValueError, match=r"x\[1\] must have shape \(N, C, H, W\) = \(1, 16, 8, 8\) \(branch 0's "
                                         r'16x16 halved 1 times, rounding up\), got \(1, 16, 9, 8\)'):
        module(x)


@pytest.mark.parametrize('x,match', [
    ([torch.randn(1, 8, 8, 8)], r'x must be a list of 2 branch tensors \(N, C_i, H_i, W_i\) with C_i = \[8, 16\]'),
    ([torch.randn(1, 8, 8, 8), torch.randn(1, 12, 4, 4)], r'x\[1\] must have shape \(N, C, H, W\) = \(1, 16, 4, 4\)'),
    ([torch.randn(1, 8, 8, 8), torch.randn(1, 16, 4)], r'x\[1\] must be 4-D'),
    (torch.randn(1, 8, 8, 8), 'must be a list of 2 branch tensors'),
])
def test_ccw_rejects_bad_branch_lists(x, match):
    with pytest.raises(ValueError, match=match):
        ConditionalChannelWeighting([8, 16], stride=1, reduce_ratio=4)(x)


@pytest.mark.parametrize('build,match', [
    (lambda: LiteHRNet(), 'exactly one of extra'),
    (lambda: LiteHRNet(LITE_HRNET_18, arch='18'), 'exactly one of extra'),
    (lambda: LiteHRNet(arch='40'), "arch must be one of"),
    (lambda: LiteHRNet(dict(LITE_HRNET_18, num_stages=2)), r"\['num_modules'\] must have one entry per stage"),
    (lambda: LiteHRNet({k: v for k, v in LITE_HRNET_18.items() if k != 'stem'}), "extra must have the key 'stem'"),
    (lambda: LiteHRNet(arch='18', fuse_mode='hrnet'), 'fuse_mode must be one of'),
    (lambda: LiteHRNet(arch='18', frozen_stages=4), r'frozen_stages must be an integer in \[-1, 3\]'),
    (lambda: ConditionalChannelWeighting([8, 16], stride=2, reduce_ratio=4), 'stride must be 1'),
    (lambda: ConditionalChannelWeighting([8, 15], stride=1, reduce_ratio=4), 'must be even'),
    (lambda: LiteHRModule(2, 1, [8], 4, 'LITE'), 'num_branches=2 but in_channels lists 1'),
    (lambda: LiteHRModule(1, 1, [8], 4, 'DENSE'), "module_type must be 'LITE' or 'NAIVE'"),
    (lambda: ShuffleUnit(8, 12), r'in_channels \(8\) must equal out_channels'),
    (lambda: SpatialWeighting(2, ratio=4), 'leaves no hidden channel'),
])
def test_bad_arguments_raise_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# ------------------------------------------------------------------------------- the paper's parameters and FLOPs
# HRNet/Lite-HRNet README (COCO val2017 and MPII tables; spec/lite_hrnet.md "Checkable numbers"): the pose model
# (backbone + iterative head + 1x1 keypoint conv) at one input. FLOPs in M = 2**20, each module counted once
# (docs/lite_hrnet.md: the published numbers are reproduced within 0.08 M, not all to the last printed digit).
PAPER_FLOPS = [
    ('18', (256, 192), 17, 205.2), ('30', (256, 192), 17, 319.2), ('naive-18', (256, 192), 17, 194.8),
    ('wider-naive-18', (256, 192), 17, 311.1), ('18', (384, 288), 17, 461.6), ('30', (384, 288), 17, 717.8),
    ('18', (256, 256), 16, 273.4), ('30', (256, 256), 16, 425.3), ('naive-18', (256, 256), 16, 259.6),
]
PAPER_PARAMS = [('18', 1.1), ('30', 1.8), ('wider-naive-18', 1.3)]


@pytest.mark.parametrize('arch,size,joints,paper', PAPER_FLOPS, ids=lambda v: str(v))
def test_operation_count_reproduces_the_paper(arch, size, joints, paper):
    total, parts = paper_operation_count(pose_model(ARCHS[arch], joints), (1, 3, *size))
    assert abs(total - paper) < 0.1, (total, parts)


@pytest.mark.parametrize('arch,paper', PAPER_PARAMS)
def test_parameter_count_reproduces_the_paper(arch, paper):
    model = pose_model(ARCHS[arch])
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == paper


def test_brief_numbers_at_256x192_to_the_printed_digit_for_lite_hrnet_18():
    total, _ = paper_operation_count(pose_model(ARCHS['18']), (1, 3, 256, 192))
    assert round(total, 1) == 205.2


# ------------------------------------------------------------------------------------------------ configs, toy run
def test_config_family_deltas_are_the_fuse_upsamplers():
    from mmseg.registry import MODELS
    count = {}
    for up in ('nearest', 'dysample', 'dlu'):
        cfg = Config.fromfile(str(ROOT / 'configs' / 'lite_hrnet' /
                                  f'fcn_lite-hrnet-18_8xb2-160k_{up}_cityscapes-512x1024.py'))
        with DefaultScope.overwrite_default_scope('mmseg'):
            count[up] = sum(p.numel() for p in MODELS.build(cfg.model).parameters())
    steps = fuse_steps(LITE_HRNET_18, chain=True)
    assert count['dysample'] - count['nearest'] == sum(dysample_lp_params(w, r) for w, r in steps)
    assert count['dlu'] - count['nearest'] == sum(dlu_params(w, r) for w, r in steps)


def test_toy_run_learns(tmp_path):
    """A short mmengine Runner training of configs/toy/lite-hrnet-18_fcn_toy.py on freshly generated toy data:
    the training loss falls."""
    from mmengine.runner import Runner

    from upsample_plugin.run_logs import run_records, train_losses
    from upsample_plugin.toy_data import make_ade_semantic

    data = tmp_path / 'toy'
    make_ade_semantic(str(data), seed=0, splits=dict(train=8), min_size=96, max_size=128)
    cfg = Config.fromfile(str(ROOT / 'configs' / 'toy' / 'lite-hrnet-18_fcn_toy.py'))
    crop = (96, 96)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.model.data_preprocessor.size = crop
    cfg.train_dataloader.update(batch_size=4, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.data_root = str(data / 'ade')
    cfg.train_dataloader.dataset.pipeline[2].scale = (128, 128)
    cfg.train_dataloader.dataset.pipeline[3].crop_size = crop
    iterations = 24
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iterations, val_interval=iterations + 1)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.param_scheduler[0].end = iterations
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = iterations
    cfg.default_hooks.pop('visualization', None)
    cfg.log_level = 'WARNING'
    # Inside a scope that is undone afterwards: the Runner makes its own DefaultScope ('mmseg') the current one,
    # which would otherwise leak into later tests (an mmdet model then builds mmseg's losses).
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        Runner.from_cfg(cfg).train()
    losses = train_losses(run_records(cfg.work_dir))
    assert len(losses) == iterations and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:6]) / 6, sum(losses[-6:]) / 6
    assert last < 0.8 * first, losses
