"""Convert state dicts of the official upsampler repositories to the plugin's parameter names.

The plugin keeps the official names wherever it can (the module-level upsamplers load the official state dicts
of ``tests/data/official`` with ``strict=True``; ``UpsampleFPN`` uses mmdet's ``lateral_convs`` / ``fpn_convs`` /
``upsample_modules``), so most official keys pass through unchanged. What does change, per official source
(spec/necks.md and the per-method specs name the classes):

* ``FPN_UPSAMPLE`` (``tiny-smart/detection-with-upsamplers``, the released DySample / FADE / SAPA detection
  code): with ``add_extra_convs`` it builds one upsampler per extra level that ``forward`` never calls
  (spec/necks.md quirk 3); the plugin does not build them, so their keys are dropped.
* ``build_upsampler(type='pixelshuffle')`` of the tiny-smart repositories (``FPN_UPSAMPLE``,
  ``UPerHead_Upsample``, ``SegformerHead_Upsample``) is an ``nn.Sequential(conv, PixelShuffle)``: ``N.0.weight``
  becomes mmcv ``PixelShufflePack``'s ``N.upsample_conv.weight`` (the plugin's ``pixel_shuffle``, same math).
* DySample's ``scope`` conv has a bias in the tiny-smart copies (and in ``tiny-smart/dysample`` before efcf8ae):
  the key keeps its name, the plugin's DySample needs ``scope_bias=True`` (the report says so).
* Checkpoints saved from a ``DataParallel`` / ``DistributedDataParallel`` wrapper lose their ``module.`` prefix
  (as mmengine's ``load_checkpoint`` does by default).

* The NVlabs SegFormer head of ``poppinace/fade`` (``segformer/segformer_head.py``) loads into the plugin's
  ``NVlabsSegFormerHead`` with its own names (``linear_c*``, ``linear_fuse``, ``linear_pred``, ``upsamplers.N``);
  the ``conv_seg`` that mmseg 0.x's ``BaseDecodeHead`` builds and NVlabs never uses is dropped.
* FreqFusion's ``FreqFusionCARAFEFPN`` (``Linwei-Chen/FreqFusion``, mmdet 2.28.1 fork) holds its four modules in
  ``alignment``: ``alignment.N.*`` becomes ``upsample_modules.N.*`` of ``UpsampleFPN(topology='fpn_carafe')``
  with ``upsample_cfg=dict(type='freqfusion', ...)``. FRFU's ``FPN_CARAFE_Upsample`` keeps mmdet's names.

and what cannot be converted raises ``ValueError`` with the reason: the NeurIPS SAPA of ``poppinace/sapa``
(LayerNorm + Linear, not implemented, see ``upsamplers/sapa.py``), and any key no rule of the detected source
accounts for.

Each official module or neck is one entry of :data:`UPSAMPLER_SOURCES` / :data:`CONTAINER_SOURCES`, named after it,
with its renaming rules (:class:`KeyRule`: a full-match regular expression and its replacement, or ``None`` to
drop). A state dict is either a whole detector/segmentor (``neck.``, ``decode_head.`` and
``roi_head.mask_head.upsample.`` are converted, every other key passes through unchanged), a bare neck/decode head
or a bare upsampler. The source of each part is detected from its keys and shapes, or forced with ``source=``.

Usage::

    conversion = convert_state_dict(official_state_dict)   # or source='fpn_upsample'
    model.load_state_dict(conversion.state_dict, strict=True)
    print(conversion.summary())                             # sources, renamed / dropped keys, plugin config
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import torch

Shapes = Mapping[str, Tuple[int, ...]]

#: The keys of an mmcv ``ConvModule``: its conv and its norm layer (mmcv names BN/SyncBN ``bn``, GN ``gn``, ...).
CONV_MODULE = (r'(?:conv\.(?:weight|bias)|(?:bn|gn|ln|in)\.'
               r'(?:weight|bias|running_mean|running_var|num_batches_tracked))')
#: How many unmatched keys an error message lists.
_MAX_LISTED = 12


class UnsupportedSourceError(ValueError):
    """A state dict recognised as an official source that cannot be converted (the message says why)."""


@dataclass(frozen=True)
class KeyRule:
    """Keys that fully match ``pattern`` become ``match.expand(target)``; ``target=None`` drops them.

    The default target keeps the key: such rules only declare that the official key is known (and has the
    plugin's name), so that an unknown key is reported instead of silently passed on.
    """

    pattern: str
    target: Optional[str] = r'\g<0>'
    why: str = ''

    def apply(self, key: str) -> Tuple[bool, Optional[str]]:
        """(matched, new key or None when dropped)."""
        match = re.fullmatch(self.pattern, key)
        if match is None:
            return False, None
        return True, None if self.target is None else match.expand(self.target)


def _keep(*patterns: str) -> Tuple[KeyRule, ...]:
    return tuple(KeyRule(p) for p in patterns)


def _always(shapes: Shapes) -> bool:
    return True


def _no_cfg(shapes: Shapes) -> Dict[str, Any]:
    return {}


@dataclass(frozen=True)
class UpsamplerSource:
    """One official upsampler module: how to recognise its state dict and rename it.

    ``required`` keys must be present and ``accepts`` must hold for auto-detection; ``cfg_from_shapes`` gives the
    plugin ``upsample_cfg`` entries that decide which parameters exist (others must match the original config);
    a non-empty ``unsupported`` is the reason why a recognised state dict cannot be converted.
    """

    name: str
    official: str
    plugin_type: str
    rules: Tuple[KeyRule, ...]
    required: Tuple[str, ...]
    accepts: Callable[[Shapes], bool] = _always
    cfg_from_shapes: Callable[[Shapes], Dict[str, Any]] = _no_cfg
    unsupported: str = ''


# ---------------------------------------------------------------------------------------------- upsampler modules
def _carafe_cfg(shapes: Shapes) -> Dict[str, Any]:
    return dict(compressed_channels=shapes['channel_compressor.weight'][0],
                encoder_kernel=shapes['content_encoder.weight'][-1])


def _dlu_cfg(shapes: Shapes) -> Dict[str, Any]:
    # DLU's kernel space has k_up^2 channels (one group, spec/dlu.md).
    return dict(compressed_channels=shapes['channel_compressor.weight'][0],
                encoder_kernel=shapes['kernel_space_generator.weight'][-1],
                up_kernel=math.isqrt(shapes['kernel_space_generator.weight'][0]))


def _dysample_cfg(shapes: Shapes) -> Dict[str, Any]:
    """init_pos has 2*G*s^2 channels; the offset conv 2*G*s^2 outputs ('lp') or 2*G ('pl'). For 'lp' the ratio
    is not in the state dict: the groups assume x2, the ratio of every neck/head step."""
    points = shapes['init_pos'][1]
    offsets = shapes['offset.weight'][0]
    style = 'lp' if offsets == points else 'pl'
    cfg: Dict[str, Any] = dict(style=style, groups=offsets // 2 if style == 'pl' else points // 8,
                               dyscope='scope.weight' in shapes)
    if 'scope.bias' in shapes:
        cfg['scope_bias'] = True
    return cfg


def _is_fade_lite(shapes: Shapes) -> bool:
    # FADE-Lite's content encoder is depthwise over the k_up^2 kernel channels (spec/fade.md).
    return shapes['ker_generator.content_encoder.weight'][1] == 1


def _fade_cfg(shapes: Shapes) -> Dict[str, Any]:
    return dict(type='fade_lite' if _is_fade_lite(shapes) else 'fade',
                up_kernel_size=math.isqrt(shapes['ker_generator.content_encoder.weight'][0]),
                gating='gate_generator.conv.weight' in shapes)


def _sapa_cfg(shapes: Shapes) -> Dict[str, Any]:
    return dict(norm='norm_y.weight' in shapes, qkv_bias='q.bias' in shapes)


def _is_conv_q(shapes: Shapes) -> bool:
    return len(shapes['q.weight']) == 4


def _pixel_shuffle_cfg(shapes: Shapes) -> Dict[str, Any]:
    weight = shapes.get('upsample_conv.weight') or shapes['0.weight']
    return dict(upsample_kernel=weight[-1])


def _deconv_cfg(shapes: Shapes) -> Dict[str, Any]:
    return dict(kernel_size=shapes['weight'][-1])


def _freqfusion_cfg(shapes: Shapes) -> Dict[str, Any]:
    """One group (the official module crashes for more, spec/freqfusion.md quirk 1): the encoders have k**2
    outputs. The sampler's offset conv reads 8 similarity channels with ``'sim'`` (SegNeXt), C_m + 8 otherwise."""
    compressor = shapes['hr_channel_compressor.weight']
    cfg: Dict[str, Any] = dict(hr_channels=compressor[1], compressed_channels=compressor[0],
                               lowpass_kernel=math.isqrt(shapes['content_encoder.weight'][0]),
                               encoder_kernel=shapes['content_encoder.weight'][-1],
                               use_high_pass='content_encoder2.weight' in shapes,
                               hamming_window=len(shapes['hamming_lowpass']) == 4,
                               feature_resample='dysampler.offset.weight' in shapes)
    if cfg['use_high_pass']:
        cfg['highpass_kernel'] = math.isqrt(shapes['content_encoder2.weight'][0])
    if cfg['feature_resample']:
        cfg.update(feature_resample_group=shapes['dysampler.hr_offset.weight'][0] // 2,
                   feature_resample_norm='dysampler.norm_hr.weight' in shapes,
                   direction_feat='sim' if shapes['dysampler.offset.weight'][1] == 8 else 'sim_concat')
    return cfg


def _frfu_cfg(shapes: Shapes) -> Dict[str, Any]:
    """``offset`` has 2*G*s^2 outputs: the groups assume x2, the ratio of every neck/head step."""
    return dict(groups=shapes['offset.weight'][0] // 8, sample_k=math.isqrt(shapes['sample_kernel.weight'][0]))


def _lda_aqu_cfg(shapes: Shapes) -> Dict[str, Any]:
    return dict(rpb='relative_position_bias_table' in shapes)


#: mmcv ``CARAFEPack`` (``mmcv/ops/carafe.py``), built by mmdet ``FPN_CARAFE`` / ``FCNMaskHead`` and by the
#: tiny-smart ``build_upsampler('carafe')``.
CARAFE_PACK_RULES = _keep(r'(?:channel_compressor|content_encoder)\.(?:weight|bias)')
#: ``DLUPack`` (``Fu0511/Dynamic-Lightweight-Upsampling`` ``custom/ops/dlu.py``).
DLU_PACK_RULES = _keep(r'(?:channel_compressor|kernel_space_generator|conv_offset)\.(?:weight|bias)')
#: ``DySample`` (``tiny-smart/dysample`` ``dysample.py``); ``scope.bias`` exists in the integration copies and
#: in the official file before commit efcf8ae (spec/dysample.md), the plugin's ``scope_bias=True``.
DYSAMPLE_RULES = _keep(r'offset\.(?:weight|bias)', r'scope\.(?:weight|bias)', r'init_pos')
#: ``LDA_AQU`` (``duzw9311/LDA-AQU`` ``mmdet/models/necks/fpn_lau.py``); ``base_offset`` is not persistent.
LDA_AQU_RULES = _keep(r'proj_[qk]\.weight', r'conv_offset\.0\.weight', r'conv_offset\.1\.norm\.(?:weight|bias)',
                      r'conv_offset\.3\.(?:weight|bias)', r'layer_norm\.norm\.(?:weight|bias)',
                      r'relative_position_bias_table')
#: ``FADE`` / ``FADELite`` (``poppinace/fade`` ``FADE_L2H.py`` and the tiny-smart copies without the gate).
FADE_RULES = _keep(r'gate_generator\.conv\.(?:weight|bias)', r'ker_generator\.compressor_en\.(?:weight|bias)',
                   r'ker_generator\.compressor_de\.weight', r'ker_generator\.content_encoder\.(?:weight|bias)')
#: SAPA-B (``tiny-smart/sapa`` ``sapa_base.py`` and its tiny-smart copies): GroupNorm + 1x1 convs.
SAPA_RULES = _keep(r'norm_[xy]\.(?:weight|bias)', r'[qk]\.(?:weight|bias)')
#: SAPA-D (``tiny-smart/sapa`` ``sapa_deform.py``).
SAPA_DEFORM_RULES = _keep(r'norm_[xy]\.(?:weight|bias)', r'(?:q|k|offset)\.(?:weight|bias)')
#: ``DDFUpPack`` (``theFoxofSky/ddfnet`` ``ddf/ddf.py``).
DDF_UP_PACK_RULES = _keep(r'spatial_branch\.\d+\.0\.(?:weight|bias)', r'spatial_branch\.\d+\.1\.0\.(?:weight|bias)',
                          r'channel_branch\.\d+\.[13]\.(?:weight|bias)', r'channel_branch\.\d+\.4\.std')
#: ``FreqFusion`` (``Linwei-Chen/FreqFusion`` ``FreqFusion.py`` and its mmdet / SegNeXt / Mask2Former copies).
FREQFUSION_RULES = _keep(r'hamming_(?:lowpass|highpass)', r'(?:hr|lr)_channel_compressor\.(?:weight|bias)',
                         r'content_encoder2?\.(?:weight|bias)', r'dysampler\.init_pos',
                         r'dysampler\.(?:offset|direct_scale|hr_offset|hr_direct_scale)\.(?:weight|bias)',
                         r'dysampler\.norm_(?:hr|lr)\.(?:weight|bias)')
#: ``FRFU`` / ``RRFU`` (``yisi-xj/Relaxed-Receptive-Field-for-Adaptive-Upsampling`` ``frfu.py``, ``*/rrfu.py``);
#: ``coord_base`` is not persistent.
FRFU_RULES = _keep(r'(?:offset|offset_mask|sample_kernel|kernel_mask)\.(?:weight|bias)')
#: mmcv ``PixelShufflePack`` (mmdet ``FPN_CARAFE``'s ``pixel_shuffle``), the plugin's ``pixel_shuffle``.
PIXEL_SHUFFLE_PACK_RULES = _keep(r'upsample_conv\.(?:weight|bias)')
#: The tiny-smart ``build_upsampler('pixelshuffle')``: ``nn.Sequential(Conv2d(C, C*s*s, 3), PixelShuffle(s))``.
PIXEL_SHUFFLE_SEQUENTIAL_RULES = (KeyRule(r'0\.(weight|bias)', r'upsample_conv.\1',
                                          why='nn.Sequential conv -> PixelShufflePack.upsample_conv'),)
#: ``nn.ConvTranspose2d`` (mmcv ``deconv``, the tiny-smart ``build_upsampler('deconv')``).
CONV_TRANSPOSE_RULES = _keep(r'weight', r'bias')

UPSAMPLER_SOURCES: Dict[str, UpsamplerSource] = OrderedDict((s.name, s) for s in (
    UpsamplerSource('carafe_pack', 'mmcv CARAFEPack (mmcv/ops/carafe.py)', 'carafe', CARAFE_PACK_RULES,
                    ('channel_compressor.weight', 'content_encoder.weight'), cfg_from_shapes=_carafe_cfg),
    UpsamplerSource('dlu_pack', 'DLUPack (Fu0511/Dynamic-Lightweight-Upsampling custom/ops/dlu.py)', 'dlu',
                    DLU_PACK_RULES, ('kernel_space_generator.weight', 'conv_offset.weight'),
                    cfg_from_shapes=_dlu_cfg),
    UpsamplerSource('dysample', 'DySample (tiny-smart/dysample dysample.py and its tiny-smart copies)', 'dysample',
                    DYSAMPLE_RULES, ('offset.weight', 'init_pos'), cfg_from_shapes=_dysample_cfg),
    UpsamplerSource('lda_aqu', 'LDA_AQU (duzw9311/LDA-AQU mmdet/models/necks/fpn_lau.py)', 'lda_aqu',
                    LDA_AQU_RULES, ('proj_q.weight', 'conv_offset.3.weight'), cfg_from_shapes=_lda_aqu_cfg),
    UpsamplerSource('fade', 'FADE / FADELite (poppinace/fade FADE_L2H.py and the tiny-smart copies)', 'fade',
                    FADE_RULES, ('ker_generator.content_encoder.weight',), cfg_from_shapes=_fade_cfg),
    UpsamplerSource('sapa', 'SAPA-B (tiny-smart/sapa sapa_base.py and the tiny-smart copies)', 'sapa', SAPA_RULES,
                    ('q.weight', 'k.weight'), accepts=_is_conv_q, cfg_from_shapes=_sapa_cfg),
    UpsamplerSource('sapa_deform', 'SAPADeform (tiny-smart/sapa sapa_deform.py and the tiny-smart copies)',
                    'sapadeform', SAPA_DEFORM_RULES, ('q.weight', 'offset.weight'), cfg_from_shapes=_sapa_cfg),
    UpsamplerSource('ddf_up_pack', 'DDFUpPack (theFoxofSky/ddfnet ddf/ddf.py)', 'ddf_up', DDF_UP_PACK_RULES,
                    ('spatial_branch.0.0.weight',)),
    UpsamplerSource('freqfusion', 'FreqFusion (Linwei-Chen/FreqFusion FreqFusion.py and its copies)', 'freqfusion',
                    FREQFUSION_RULES, ('hr_channel_compressor.weight', 'content_encoder.weight'),
                    cfg_from_shapes=_freqfusion_cfg),
    UpsamplerSource('frfu', 'FRFU / RRFU (yisi-xj/Relaxed-Receptive-Field-for-Adaptive-Upsampling frfu.py)', 'frfu',
                    FRFU_RULES, ('offset_mask.weight', 'sample_kernel.weight'), cfg_from_shapes=_frfu_cfg),
    UpsamplerSource('pixel_shuffle_pack', 'mmcv PixelShufflePack (mmdet FPN_CARAFE pixel_shuffle)',
                    'pixel_shuffle', PIXEL_SHUFFLE_PACK_RULES, ('upsample_conv.weight',),
                    cfg_from_shapes=_pixel_shuffle_cfg),
    UpsamplerSource('pixel_shuffle_sequential',
                    "nn.Sequential(conv, PixelShuffle) (tiny-smart build_upsampler('pixelshuffle'))",
                    'pixel_shuffle', PIXEL_SHUFFLE_SEQUENTIAL_RULES, ('0.weight',),
                    cfg_from_shapes=_pixel_shuffle_cfg),
    UpsamplerSource('conv_transpose', "nn.ConvTranspose2d (mmcv / tiny-smart 'deconv')", 'deconv',
                    CONV_TRANSPOSE_RULES, ('weight',), accepts=lambda shapes: len(shapes['weight']) == 4,
                    cfg_from_shapes=_deconv_cfg),
    UpsamplerSource('sapa_neurips', 'SAPA (poppinace/sapa SAPA.py, NeurIPS 2022 form)', 'sapa', SAPA_RULES,
                    ('q.weight', 'k.weight'), accepts=lambda shapes: len(shapes['q.weight']) == 2,
                    unsupported='the NeurIPS SAPA projects with LayerNorm + Linear; the plugin implements the '
                                "extension's GroupNorm + 1x1-conv form only (upsamplers/sapa.py, spec/sapa.md "
                                'quirk 8), whose per-pixel LayerNorm cannot be rewritten as its GroupNorm'),
))

#: What the tiny-smart ``build_upsampler`` (``FPN_UPSAMPLE``, ``UPerHead_Upsample``, ``SegformerHead_Upsample``)
#: can build with parameters (``nearest``/``bilinear``/``sierra`` have none).
TINY_SMART_UPSAMPLERS = ('carafe_pack', 'dysample', 'fade', 'sapa', 'sapa_deform', 'pixel_shuffle_sequential',
                         'conv_transpose', 'sapa_neurips')
#: What mmdet ``FPN_CARAFE`` / ``FCNMaskHead`` build with parameters through mmcv's ``build_upsample_layer``.
MMDET_UPSAMPLERS = ('carafe_pack', 'pixel_shuffle_pack', 'conv_transpose')


# ------------------------------------------------------------------------------------------- necks and heads
@dataclass(frozen=True)
class ContainerSource:
    """An official neck or decode head: rules for its own keys, the upsamplers it can hold, its signature.

    ``rules(shapes)`` returns the rules for the container's own keys (``FPN_UPSAMPLE`` needs the shapes to tell
    its unused upsamplers); other keys under ``<upsampler_attr>.N.`` (``upsample_modules``, NVlabs:
    ``upsamplers``) are converted by the upsampler source detected among ``upsamplers``. ``accepts(shapes, upsampler_source_names)`` is the layout signature used by
    auto-detection; ``plugin_class`` / ``plugin_args`` start the plugin config reported for the part.
    """

    name: str
    kind: str
    official: str
    plugin_class: str
    rules: Callable[[Shapes], Tuple[KeyRule, ...]]
    upsamplers: Tuple[str, ...]
    accepts: Callable[[Shapes, Set[str]], bool]
    plugin_args: Dict[str, Any] = field(default_factory=dict)
    notes: Tuple[str, ...] = ()
    unsupported: str = ''
    upsampler_attr: str = 'upsample_modules'
    #: The plugin's name of the upsampler list when it differs (FreqFusion's ``alignment`` -> ``upsample_modules``).
    plugin_upsampler_attr: Optional[str] = None


def _lateral_kernels(shapes: Shapes) -> List[int]:
    indices = sorted(int(m.group(1)) for m in (re.fullmatch(r'lateral_convs\.(\d+)\.conv\.weight', k)
                                               for k in shapes) if m)
    return [shapes[f'lateral_convs.{i}.conv.weight'][-1] for i in indices]


def _has_stride2_lateral(shapes: Shapes) -> bool:
    """FPN_CARAFE layout (spec/necks.md (B)): the extra levels are 3x3 stride-2 *laterals*."""
    return 3 in _lateral_kernels(shapes)


def fpn_carafe_rules(shapes: Shapes) -> Tuple[KeyRule, ...]:
    """mmdet ``FPN_CARAFE`` (``mmdet/models/necks/fpn_carafe.py``, mmdet 2.x and 3.x alike): the plugin's
    ``UpsampleFPN(topology='fpn_carafe')`` has the same ``lateral_convs`` / ``fpn_convs`` / ``upsample_modules``."""
    return _keep(rf'(?:lateral_convs|fpn_convs)\.\d+\.{CONV_MODULE}')


def unified_fpn_rules(shapes: Shapes) -> Tuple[KeyRule, ...]:
    """DLU's ``UNIFIED_FPN`` (``custom/models/necks/unified_fpn.py``): a copy of ``FPN_CARAFE``, same names."""
    return fpn_carafe_rules(shapes)


def fpn_lau_rules(shapes: Shapes) -> Tuple[KeyRule, ...]:
    """LDA-AQU's ``FPN_LAU`` (``mmdet/models/necks/fpn_lau.py``): a copy of mmdet 2.25 ``FPN_CARAFE``."""
    return fpn_carafe_rules(shapes)


def fpn_rules(shapes: Shapes) -> Tuple[KeyRule, ...]:
    """mmdet ``FPN`` (``mmdet/models/necks/fpn.py``): the plugin's ``UpsampleFPN(topology='fpn')``, interpolation
    only (no ``upsample_modules``); ``add_extra_convs`` convs are ``fpn_convs`` in both."""
    return _keep(rf'(?:lateral_convs|fpn_convs)\.\d+\.{CONV_MODULE}')


def fpn_upsample_rules(shapes: Shapes) -> Tuple[KeyRule, ...]:
    """``FPN_UPSAMPLE`` (``tiny-smart/detection-with-upsamplers`` ``mmdet/models/necks/fpn_upsample.py``).

    Its laterals are the backbone levels only, so it calls ``upsample_modules[0 .. laterals-2]``; with
    ``add_extra_convs`` it also builds one upsampler per extra level that ``forward`` never uses
    (spec/necks.md quirk 3). The plugin builds none of them: their keys are dropped.
    """
    used = len(_lateral_kernels(shapes)) - 1
    indices = sorted({int(m.group(1)) for m in (re.fullmatch(r'upsample_modules\.(\d+)\..+', k) for k in shapes)
                      if m})
    unused = [i for i in indices if i >= used]
    rules = list(fpn_rules(shapes))
    if unused:
        rules.append(KeyRule(rf'upsample_modules\.(?:{"|".join(map(str, unused))})\..+', None,
                             why='FPN_UPSAMPLE builds an upsampler per add_extra_convs level that forward never '
                                 'calls (spec/necks.md quirk 3); the plugin does not build it'))
    return tuple(rules)


def uper_head_upsample_rules(shapes: Shapes) -> Tuple[KeyRule, ...]:
    """``UPerHead_Upsample`` (``tiny-smart/segmentation-with-upsamplers``
    ``mmseg/models/decode_heads/uper_head_upsample.py``), also stock mmseg ``UPerHead``: the plugin's
    ``UpsampleUPerHead`` extends ``UPerHead`` and keeps ``upsample_modules``."""
    return _keep(rf'psp_modules\.\d+\.1\.{CONV_MODULE}', rf'(?:bottleneck|fpn_bottleneck)\.{CONV_MODULE}',
                 rf'(?:lateral_convs|fpn_convs)\.\d+\.{CONV_MODULE}', r'conv_seg\.(?:weight|bias)')


def segformer_head_upsample_rules(shapes: Shapes) -> Tuple[KeyRule, ...]:
    """``SegformerHead_Upsample`` (``tiny-smart/segmentation-with-upsamplers``
    ``mmseg/models/decode_heads/segformer_head_upsample.py``, and FRFU's working copy in
    ``yisi-xj/Relaxed-Receptive-Field-for-Adaptive-Upsampling`` ``ADE20K_segmentation/segformer_head_upsample.py``),
    also stock mmseg ``SegformerHead``: the plugin's ``UpsampleSegformerHead`` has the same ``convs`` /
    ``fusion_conv`` / six ``upsample_modules``."""
    return _keep(rf'convs\.\d+\.{CONV_MODULE}', rf'fusion_conv\.{CONV_MODULE}', r'conv_seg\.(?:weight|bias)')


def segformer_head_fade_rules(shapes: Shapes) -> Tuple[KeyRule, ...]:
    """The NVlabs-codebase SegFormer head of ``poppinace/fade`` (``segformer/segformer_head.py``): the plugin's
    ``NVlabsSegFormerHead`` has its names; mmseg 0.x's unused ``conv_seg`` is dropped."""
    return _keep(r'linear_c[1-4]\.proj\.(?:weight|bias)', rf'linear_fuse\.{CONV_MODULE}',
                 r'linear_pred\.(?:weight|bias)') + (
        KeyRule(r'conv_seg\.(?:weight|bias)', None,
                why="mmseg 0.x BaseDecodeHead's conv_seg, never used by the NVlabs head (linear_pred classifies)"),)


_FPN_UPSAMPLE_NOTE = ('the released FPN_UPSAMPLE configs build the mmdet FPN layout (max-pooled P6, 3 upsamplers): '
                      "load into UpsampleFPN(topology='fpn'); the plugin's detection configs default to "
                      "'fpn_carafe' (--cfg-options model.neck.topology=fpn)")

CONTAINER_SOURCES: Dict[str, ContainerSource] = OrderedDict((s.name, s) for s in (
    ContainerSource('segformer_head_fade', 'decode_head',
                    'SegFormerHead (NVlabs codebase; poppinace/fade segformer/segformer_head.py)',
                    'NVlabsSegFormerHead', segformer_head_fade_rules,
                    ('fade', 'carafe_pack', 'sapa', 'sapa_deform', 'dysample', 'sapa_neurips'),
                    accepts=lambda shapes, ups: any(re.fullmatch(r'linear_c\d\.proj\.weight', k) for k in shapes),
                    upsampler_attr='upsamplers'),
    ContainerSource('fpn_lau', 'neck', 'FPN_LAU (duzw9311/LDA-AQU mmdet/models/necks/fpn_lau.py)', 'UpsampleFPN',
                    fpn_lau_rules, ('lda_aqu', 'carafe_pack', 'pixel_shuffle_pack', 'conv_transpose'),
                    accepts=lambda shapes, ups: 'lda_aqu' in ups, plugin_args=dict(topology='fpn_carafe')),
    ContainerSource('unified_fpn', 'neck',
                    'UNIFIED_FPN (Fu0511/Dynamic-Lightweight-Upsampling custom/models/necks/unified_fpn.py)',
                    'UpsampleFPN', unified_fpn_rules, ('dlu_pack',) + MMDET_UPSAMPLERS,
                    accepts=lambda shapes, ups: 'dlu_pack' in ups, plugin_args=dict(topology='fpn_carafe'),
                    notes=('UNIFIED_FPN counts end_level exclusively (spec/dlu.md quirk 7): for end_level != -1 '
                           "the plugin's (mmdet's, inclusive) end_level is the official one minus 1",)),
    ContainerSource('freqfusion_carafe_fpn', 'neck',
                    'FreqFusionCARAFEFPN (Linwei-Chen/FreqFusion mmdetection/mmdet/models/necks/fpn_carafe.py)',
                    'UpsampleFPN', fpn_carafe_rules, ('freqfusion',),
                    accepts=lambda shapes, ups: 'freqfusion' in ups and _has_stride2_lateral(shapes),
                    plugin_args=dict(topology='fpn_carafe'), upsampler_attr='alignment',
                    plugin_upsampler_attr='upsample_modules'),
    ContainerSource('fpn_carafe_upsample', 'neck',
                    'FPN_CARAFE_Upsample (yisi-xj/Relaxed-Receptive-Field-for-Adaptive-Upsampling '
                    'COCO2017_{detection,instance,panoptic}/fpn_carafe.py)',
                    'UpsampleFPN', fpn_carafe_rules, ('frfu',),
                    accepts=lambda shapes, ups: 'frfu' in ups and _has_stride2_lateral(shapes),
                    plugin_args=dict(topology='fpn_carafe'),
                    notes=("the official neck trains FRFU from Xavier-uniform weights (spec/frfu.md quirk 1): "
                           "upsample_cfg init='xavier' reproduces that init for new training; loaded weights "
                           "are unaffected",)),
    ContainerSource('fpn_carafe', 'neck', 'FPN_CARAFE (mmdet/models/necks/fpn_carafe.py, mmdet 2.x and 3.x)',
                    'UpsampleFPN', fpn_carafe_rules, MMDET_UPSAMPLERS,
                    accepts=lambda shapes, ups: _has_stride2_lateral(shapes),
                    plugin_args=dict(topology='fpn_carafe')),
    ContainerSource('fpn_upsample', 'neck',
                    'FPN_UPSAMPLE (tiny-smart/detection-with-upsamplers mmdet/models/necks/fpn_upsample.py)',
                    'UpsampleFPN', fpn_upsample_rules, TINY_SMART_UPSAMPLERS,
                    accepts=lambda shapes, ups: bool(ups) and not _has_stride2_lateral(shapes),
                    plugin_args=dict(topology='fpn'), notes=(_FPN_UPSAMPLE_NOTE,)),
    ContainerSource('fpn', 'neck', 'FPN (mmdet/models/necks/fpn.py)', 'UpsampleFPN', fpn_rules, (),
                    accepts=lambda shapes, ups: not _has_stride2_lateral(shapes),
                    plugin_args=dict(topology='fpn')),
    ContainerSource('uper_head_upsample', 'decode_head',
                    'UPerHead_Upsample (tiny-smart/segmentation-with-upsamplers '
                    'mmseg/models/decode_heads/uper_head_upsample.py; also mmseg UPerHead)',
                    'UpsampleUPerHead', uper_head_upsample_rules, TINY_SMART_UPSAMPLERS,
                    accepts=lambda shapes, ups: True),
    ContainerSource('segformer_head_upsample', 'decode_head',
                    'SegformerHead_Upsample (tiny-smart/segmentation-with-upsamplers '
                    'mmseg/models/decode_heads/segformer_head_upsample.py; also mmseg SegformerHead)',
                    'UpsampleSegformerHead', segformer_head_upsample_rules, TINY_SMART_UPSAMPLERS + ('frfu',),
                    accepts=lambda shapes, ups: True),
))

#: Every source name accepted by ``source=``.
SOURCES: Tuple[str, ...] = tuple(CONTAINER_SOURCES) + tuple(UPSAMPLER_SOURCES)

#: Parts of a whole detector/segmentor state dict that are converted: (prefix, kind). Every other key (backbone,
#: RPN, box head, auxiliary head, ...) passes through unchanged.
COMPONENT_PREFIXES = (('neck.', 'neck'), ('decode_head.', 'decode_head'),
                      ('roi_head.mask_head.upsample.', 'mask_head_upsample'))
#: Top-level keys that mark a whole-model state dict.
_MODEL_PREFIXES = ('backbone.', 'neck.', 'decode_head.', 'roi_head.', 'rpn_head.', 'bbox_head.')
#: mmdet ``FCNMaskHead`` builds its learned upsampler with mmcv's ``build_upsample_layer``.
_MASK_HEAD_UPSAMPLERS = ('carafe_pack', 'conv_transpose')


# --------------------------------------------------------------------------------------------------- reports
@dataclass
class ComponentReport:
    """What happened to one converted part of the state dict.

    ``renamed`` maps official -> plugin key for the keys whose name changed (unchanged keys are not listed),
    ``dropped`` official key -> why, ``plugin_cfg`` the plugin config the part loads into, as far as the keys
    tell (entries that decide which parameters exist; other hyper-parameters must match the original config).
    """

    prefix: str
    source: str
    official: str
    plugin_cfg: Dict[str, Any]
    renamed: Dict[str, str] = field(default_factory=dict)
    dropped: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


@dataclass
class Conversion:
    """A converted state dict and one :class:`ComponentReport` per converted part."""

    state_dict: 'OrderedDict[str, torch.Tensor]'
    components: List[ComponentReport]
    passed_through: int = 0

    def summary(self) -> str:
        lines = []
        for part in self.components:
            where = part.prefix or '(bare state dict)'
            lines.append(f'{where}: {part.source} = {part.official}')
            lines.append(f'  loads into: {part.plugin_cfg}')
            lines.append(f'  {len(part.renamed)} keys renamed, {len(part.dropped)} dropped')
            lines.extend(f'  renamed {old} -> {new}' for old, new in part.renamed.items())
            lines.extend(f'  dropped {key}: {why}' for key, why in part.dropped.items())
            lines.extend(f'  note: {note}' for note in part.notes)
        if self.passed_through:
            lines.append(f'{self.passed_through} keys outside the converted parts passed through unchanged')
        return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------- conversion
def _shapes(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def _list_keys(keys: Sequence[str]) -> str:
    shown = ', '.join(keys[:_MAX_LISTED])
    return shown + (f', ... ({len(keys) - _MAX_LISTED} more)' if len(keys) > _MAX_LISTED else '')


def _apply_rules(state_dict: Mapping[str, torch.Tensor], rules: Sequence[KeyRule]
                 ) -> Tuple['OrderedDict[str, torch.Tensor]', Dict[str, str], Dict[str, str], List[str]]:
    """(converted, renamed, dropped, unmatched) under ``rules`` (first matching rule wins)."""
    converted: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    renamed, dropped, unmatched = {}, {}, []
    for key, value in state_dict.items():
        for rule in rules:
            matched, new_key = rule.apply(key)
            if not matched:
                continue
            if new_key is None:
                dropped[key] = rule.why
            else:
                if new_key != key:
                    renamed[key] = new_key
                converted[new_key] = value
            break
        else:
            unmatched.append(key)
    return converted, renamed, dropped, unmatched


def _try_upsampler(source: UpsamplerSource, state_dict: Mapping[str, torch.Tensor]):
    """(converted, renamed, dropped, unmatched, recognised) of ``state_dict`` as ``source``."""
    converted, renamed, dropped, unmatched = _apply_rules(state_dict, source.rules)
    shapes = _shapes(state_dict)
    recognised = (not unmatched and all(k in shapes for k in source.required) and source.accepts(shapes))
    return converted, renamed, dropped, unmatched, recognised


def _detect_upsampler(state_dict: Mapping[str, torch.Tensor], candidates: Sequence[str], where: str):
    """The first source among ``candidates`` that accounts for every key; ValueError if none or unsupported."""
    closest = None
    for name in candidates:
        source = UPSAMPLER_SOURCES[name]
        converted, renamed, dropped, unmatched, recognised = _try_upsampler(source, state_dict)
        if recognised:
            if source.unsupported:
                raise UnsupportedSourceError(f'{where} is a {source.official} state dict, which cannot be '
                                             f'converted: {source.unsupported}')
            return source, converted, renamed, dropped
        if closest is None or len(unmatched) < len(closest[1]):
            closest = (name, unmatched or [f'(missing {", ".join(source.required)})'])
    hint = f'; closest: {closest[0]}, unmatched {_list_keys(closest[1])}' if closest else ''
    raise ValueError(f'{where}: no official upsampler among {list(candidates)} has the keys '
                     f'{_list_keys(sorted(state_dict))}{hint}')


def _upsampler_cfg(source: UpsamplerSource, state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    cfg = dict(type=source.plugin_type)
    cfg.update(source.cfg_from_shapes(_shapes(state_dict)))
    return cfg


def _upsampler_notes(source: UpsamplerSource, state_dict: Mapping[str, torch.Tensor]) -> List[str]:
    if source.name == 'dysample' and 'scope.bias' in state_dict:
        return ['scope has a bias (tiny-smart integration copies, or tiny-smart/dysample before efcf8ae): build '
                "the plugin's DySample with scope_bias=True"]
    if source.name == 'freqfusion':
        return ['comp_feat_upsample, semi_conv and hr_residual (default True) and lr_channels change no parameter '
                'shape: set them as in the original config']
    return []


def convert_upsampler(state_dict: Mapping[str, torch.Tensor], source: Optional[str] = None,
                      prefix: str = '', candidates: Sequence[str] = tuple(UPSAMPLER_SOURCES)
                      ) -> Tuple['OrderedDict[str, torch.Tensor]', ComponentReport]:
    """Convert a bare upsampler state dict (keys relative to the module); ``prefix`` only labels the report."""
    where = f'upsampler {prefix!r}' if prefix else 'upsampler state dict'
    if source is not None:
        chosen = UPSAMPLER_SOURCES[source]
        converted, renamed, dropped, unmatched, _ = _try_upsampler(chosen, state_dict)
        if unmatched:
            raise ValueError(f'{where} as source {source!r} ({chosen.official}): official keys that no rule '
                             f'matches: {_list_keys(unmatched)}')
        if chosen.unsupported:
            raise UnsupportedSourceError(f'{chosen.official} cannot be converted: {chosen.unsupported}')
    else:
        chosen, converted, renamed, dropped = _detect_upsampler(state_dict, candidates, where)
    report = ComponentReport(prefix, chosen.name, chosen.official, _upsampler_cfg(chosen, state_dict),
                             renamed, dropped, _upsampler_notes(chosen, state_dict))
    return converted, report


def _split_upsamplers(state_dict: Mapping[str, torch.Tensor], rules: Sequence[KeyRule],
                      attr: str = 'upsample_modules'):
    """Container keys (under its own rules) and the keys under ``<attr>.N.`` that no container rule matches,
    grouped by N for the upsampler sources."""
    own: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    groups: Dict[int, 'OrderedDict[str, torch.Tensor]'] = {}
    for key, value in state_dict.items():
        match = re.fullmatch(rf'{re.escape(attr)}\.(\d+)\.(.+)', key)
        if match and not any(rule.apply(key)[0] for rule in rules):
            groups.setdefault(int(match.group(1)), OrderedDict())[match.group(2)] = value
        else:
            own[key] = value
    return own, dict(sorted(groups.items()))


def _try_container(source: ContainerSource, state_dict: Mapping[str, torch.Tensor], prefix: str):
    """``state_dict`` as ``source``: ``(converted, report)``, or ``(None, problems)`` with the official keys no
    rule matches (or why its upsamplers do not fit). The report's ``plugin_cfg`` is the plugin config to build."""
    shapes = _shapes(state_dict)
    rules = source.rules(shapes)
    own, groups = _split_upsamplers(state_dict, rules, source.upsampler_attr)
    converted, renamed, dropped, unmatched = _apply_rules(own, rules)
    if unmatched:
        return None, unmatched
    upsamplers = {}
    for index, group in groups.items():
        try:
            upsamplers[index] = convert_upsampler(group, prefix=f'{prefix}{source.upsampler_attr}.{index}.',
                                                  candidates=source.upsamplers)
        except UnsupportedSourceError:
            raise
        except ValueError as error:
            return None, [str(error)]
    kinds = {index: report.source for index, (_, report) in upsamplers.items()}
    if len(set(kinds.values())) > 1:
        return None, [f'upsamplers of different kinds {kinds}: an official neck/head builds all from one config']
    if not source.accepts(shapes, set(kinds.values())):
        return None, [f'every key has a rule, but the layout is not {source.official}\'s']

    notes = list(source.notes)
    upsample_cfg: Dict[str, Any] = dict(type='nearest' if source.kind == 'neck' else 'bilinear')
    for index, (group_converted, report) in upsamplers.items():
        head = f'{source.upsampler_attr}.{index}.'
        target = f'{source.plugin_upsampler_attr or source.upsampler_attr}.{index}.'
        official_names = {new: old for old, new in report.renamed.items()}
        for key, value in group_converted.items():
            converted[target + key] = value
            old = head + official_names.get(key, key)
            if old != target + key:
                renamed[old] = target + key
        dropped.update((head + key, why) for key, why in report.dropped.items())
        upsample_cfg = report.plugin_cfg
        notes.extend(note for note in report.notes if note not in notes)
    if not upsamplers and source.upsamplers:
        notes.append('no upsampler parameters: parameter-free upsampling (nearest or bilinear), which a state dict '
                     'cannot tell apart')
    plugin_cfg: Dict[str, Any] = dict(type=source.plugin_class, **source.plugin_args)
    kernels = _lateral_kernels(shapes)
    if source.kind == 'neck' and kernels:
        # Backbone laterals are 1x1 (the 3x3 ones are FPN_CARAFE's extra levels).
        plugin_cfg['in_channels'] = [shapes[f'lateral_convs.{i}.conv.weight'][1]
                                     for i, kernel in enumerate(kernels) if kernel == 1]
        plugin_cfg['out_channels'] = shapes['lateral_convs.0.conv.weight'][0]
        first_extra = f'fpn_convs.{len(kernels)}.conv.weight'
        if source.plugin_args.get('topology') == 'fpn' and first_extra in shapes:
            # mmdet FPN's add_extra_convs: only 'on_input' reads another width than the neck's.
            if shapes[first_extra][1] != plugin_cfg['out_channels']:
                plugin_cfg['add_extra_convs'] = 'on_input'
            else:
                notes.append("stride-2 extra convs on the laterals or the outputs: set add_extra_convs to "
                             "'on_lateral' or 'on_output' as in the original config (the keys do not tell)")
    plugin_cfg['upsample_cfg'] = upsample_cfg
    return converted, ComponentReport(prefix, source.name, source.official, plugin_cfg, renamed, dropped, notes)


def convert_container(state_dict: Mapping[str, torch.Tensor], kind: Optional[str] = None,
                      source: Optional[str] = None, prefix: str = ''
                      ) -> Tuple['OrderedDict[str, torch.Tensor]', ComponentReport]:
    """Convert a bare neck or decode-head state dict (keys relative to it); ``prefix`` only labels messages.

    With ``source`` the rules of that official class apply; otherwise the first source (of ``kind``, if given)
    whose rules account for every key and whose layout matches, in :data:`CONTAINER_SOURCES` order.
    """
    where = f'{prefix!r}' if prefix else 'state dict'
    if source is not None:
        chosen = CONTAINER_SOURCES[source]
        if chosen.unsupported:
            raise UnsupportedSourceError(f'{chosen.official} cannot be converted: {chosen.unsupported}')
        converted, info = _try_container(chosen, state_dict, prefix)
        if converted is None:
            raise ValueError(f'{where} as source {source!r} ({chosen.official}): official keys that no rule '
                             f'matches: {_list_keys(info)}')
        return converted, info

    shapes = _shapes(state_dict)
    closest: Optional[Tuple[str, List[str]]] = None
    for candidate in CONTAINER_SOURCES.values():
        if kind is not None and candidate.kind != kind:
            continue
        if candidate.unsupported:
            if candidate.accepts(shapes, set()):
                raise UnsupportedSourceError(f'{where} is a {candidate.official} state dict, which cannot be '
                                             f'converted: {candidate.unsupported}')
            continue
        converted, info = _try_container(candidate, state_dict, prefix)
        if converted is not None:
            return converted, info
        if closest is None or len(info) < len(closest[1]):
            closest = (candidate.name, info)
    kinds = kind or 'neck / decode head'
    hint = f'; closest: {closest[0]}, unmatched: {_list_keys(closest[1])}' if closest else ''
    raise ValueError(f'{where}: no official {kinds} source matches its keys{hint}. Known sources: '
                     f'{", ".join(SOURCES)}')


def _strip_wrapper_prefix(state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """Drop the ``module.`` prefix of (Distributed)DataParallel checkpoints, as mmengine's loader does."""
    if state_dict and all(k.startswith('module.') for k in state_dict):
        return OrderedDict((k[len('module.'):], v) for k, v in state_dict.items())
    return state_dict


def _check_state_dict(state_dict: Any) -> None:
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ValueError(f'state_dict must be a non-empty mapping of parameter names to tensors, got '
                         f'{type(state_dict).__name__}')
    not_tensors = [k for k, v in state_dict.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if not_tensors:
        raise ValueError(f'state_dict must map str keys to tensors; these entries do not: '
                         f'{_list_keys([str(k) for k in not_tensors])}')


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], source: Optional[str] = None) -> Conversion:
    """Convert an official state dict to the plugin's names.

    Args:
        state_dict: a whole detector/segmentor state dict (``backbone.``, ``neck.``, ``decode_head.``, ...), a
            bare neck / decode head state dict, or a bare upsampler state dict; a ``module.`` prefix on every key
            (DataParallel) is removed.
        source: force the official source of the neck / decode head (whole model or bare) or of a bare
            upsampler, one of :data:`SOURCES`; ``None`` detects it from the keys and shapes. Upsamplers inside a
            neck/head are always detected among those its official class can build.

    Returns:
        :class:`Conversion`: the state dict (tensors shared, not copied; official key order) and a report per
        converted part.

    Raises:
        ValueError: unknown ``source``; no source accounts for every key of a part (the message lists the
        official keys no rule matched); a recognised source that cannot be converted (with the reason).
    """
    _check_state_dict(state_dict)
    if source is not None and source not in SOURCES:
        raise ValueError(f'source must be one of {", ".join(SOURCES)}; got {source!r}')
    state_dict = _strip_wrapper_prefix(state_dict)

    if not any(k.startswith(_MODEL_PREFIXES) for k in state_dict):
        # A bare part: a neck / decode head, or an upsampler module.
        if source in UPSAMPLER_SOURCES:
            converted, report = convert_upsampler(state_dict, source=source)
        elif source is not None:
            converted, report = convert_container(state_dict, source=source)
        else:
            try:
                converted, report = convert_container(state_dict)
            except UnsupportedSourceError:
                raise
            except ValueError as container_error:
                if any(k.startswith(('lateral_convs.', 'fpn_convs.', 'conv_seg.', 'psp_modules.', 'linear_c'))
                       for k in state_dict):
                    raise  # a neck / head by its keys: its error is the informative one
                try:
                    converted, report = convert_upsampler(state_dict)
                except UnsupportedSourceError:
                    raise
                except ValueError as upsampler_error:
                    raise ValueError(f'cannot convert: not an official neck / decode head ({container_error}) '
                                     f'and not an official upsampler ({upsampler_error})') from None
        return Conversion(converted, [report])

    if source in UPSAMPLER_SOURCES:
        raise ValueError(f'source {source!r} names an upsampler module, but this is a whole-model state dict: give '
                         f'the source of its neck or decode head ({", ".join(CONTAINER_SOURCES)}) or none')
    parts: Dict[str, 'OrderedDict[str, torch.Tensor]'] = {p: OrderedDict() for p, _ in COMPONENT_PREFIXES}
    for key, value in state_dict.items():
        for part_prefix, _ in COMPONENT_PREFIXES:
            if key.startswith(part_prefix):
                parts[part_prefix][key[len(part_prefix):]] = value
                break
    present = [(p, kind) for p, kind in COMPONENT_PREFIXES if parts[p]]
    if not present:
        raise ValueError('whole-model state dict without a neck., decode_head. or roi_head.mask_head.upsample. '
                         'part: nothing of an official upsampler repository to convert')
    if source is not None and CONTAINER_SOURCES[source].kind not in {kind for _, kind in present}:
        raise ValueError(f'source {source!r} is a {CONTAINER_SOURCES[source].kind} source, but the state dict has '
                         f'no {CONTAINER_SOURCES[source].kind}.* keys')

    converted_parts: Dict[str, 'OrderedDict[str, torch.Tensor]'] = {}
    reports = []
    for part_prefix, kind in present:
        if kind == 'mask_head_upsample':
            part, report = convert_upsampler(parts[part_prefix], prefix=part_prefix, candidates=_MASK_HEAD_UPSAMPLERS)
        else:
            forced = source if source is not None and CONTAINER_SOURCES[source].kind == kind else None
            part, report = convert_container(parts[part_prefix], kind=kind, source=forced, prefix=part_prefix)
        converted_parts[part_prefix] = part
        report.renamed = {part_prefix + k: part_prefix + v for k, v in report.renamed.items()}
        report.dropped = {part_prefix + k: why for k, why in report.dropped.items()}
        reports.append(report)

    # Rebuild in the official key order: each converted part where its first key was.
    result: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    emitted = set()
    passed = 0
    for key, value in state_dict.items():
        part_prefix = next((p for p, _ in present if key.startswith(p)), None)
        if part_prefix is None:
            result[key] = value
            passed += 1
        elif part_prefix not in emitted:
            emitted.add(part_prefix)
            for sub_key, sub_value in converted_parts[part_prefix].items():
                full = part_prefix + sub_key
                if full in result:
                    raise ValueError(f'converted key {full!r} collides with an existing key')
                result[full] = sub_value
    return Conversion(result, reports, passed)


def convert_checkpoint(checkpoint: Mapping[str, Any], source: Optional[str] = None
                       ) -> Tuple[Dict[str, Any], Conversion]:
    """Convert a loaded checkpoint: ``{'state_dict': ..., 'meta': ...}`` (mmcv / mmengine files) or a bare state
    dict. Returns ``({'meta': ..., 'state_dict': converted}, conversion)``: the input's ``meta`` plus a
    ``upsample_plugin_conversion`` entry; training state (optimizer, schedulers, message hub) is left out, the
    converted file is for loading weights (mmengine ``load_checkpoint`` / ``load_from``)."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'checkpoint must be a dict (a state dict or {{"state_dict": ..., "meta": ...}}), got '
                         f'{type(checkpoint).__name__}')
    if 'state_dict' in checkpoint:
        state_dict = checkpoint['state_dict']
        meta = checkpoint.get('meta') or {}
        if not isinstance(meta, Mapping):
            raise ValueError(f"checkpoint['meta'] must be a dict, got {type(meta).__name__}")
    else:
        state_dict, meta = checkpoint, {}
    conversion = convert_state_dict(state_dict, source)
    meta = dict(meta)
    meta['upsample_plugin_conversion'] = [
        dict(prefix=r.prefix, source=r.source, official=r.official, renamed=len(r.renamed), dropped=sorted(r.dropped))
        for r in conversion.components]
    return dict(meta=meta, state_dict=conversion.state_dict), conversion


def load_checkpoint_file(path: str) -> Dict[str, Any]:
    """``torch.load`` a checkpoint file on the CPU with ``weights_only=True`` (safe unpickling).

    mmcv 1.x / mmdet 2.x files load as they are; for mmengine files the message hub's classes are registered as
    safe first (:func:`upsample_plugin.runner.trust_mm_checkpoints`), instead of turning ``weights_only`` off.
    """
    from .runner import trust_mm_checkpoints

    trust_mm_checkpoints()
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist') from None
    except Exception as error:  # torch raises UnpicklingError (or RuntimeError) for classes it will not load
        raise ValueError(f'{path!r} could not be loaded with weights_only=True ({type(error).__name__}: '
                         f'{str(error).splitlines()[0]}). If you trust the file, load it with '
                         f'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1') from None
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'{path!r} holds a {type(checkpoint).__name__}, not a checkpoint dict')
    return dict(checkpoint)
