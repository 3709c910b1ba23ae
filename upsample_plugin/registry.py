"""The upsampler registry and the builder every neck and head of the plugin uses.

The plugin registers its upsamplers in mmengine's *root* ``MODELS`` registry. mmcv's
:func:`mmcv.cnn.build_upsample_layer` always looks names up there (it switches to the root registry whatever
the default scope is), and the scoped registries of mmdet and mmseg fall back to it, so one registration
serves ``build_upsample_layer``, ``MODELS.build`` in any scope and ``custom_imports`` in any mm config.

``UPSAMPLE_LAYERS`` is the mmcv-1.x name of that registry, kept so old code reads naturally.

mmengine is optional: without it (plain PyTorch, other detection frameworks) the upsamplers are kept in the
plugin's own table only, :func:`build_upsampler` builds them from it, and ``UPSAMPLE_LAYERS`` is ``None``.
"""
from __future__ import annotations

import copy
import inspect
import warnings
from typing import Any, Dict, Mapping, Optional, Type, Union

import torch.nn as nn

from .ops._checks import check_int

try:
    from mmengine.registry import MODELS
except ImportError:  # torch-only install: the plugin's own table (_PLUGIN_UPSAMPLERS) is the registry
    MODELS = None

UPSAMPLE_LAYERS = MODELS

#: Plugin classes by plugin type name, filled by :func:`register_upsampler`. ``build_upsampler`` resolves
#: these names to the plugin's own classes even when another package already owns the name in ``MODELS``.
_PLUGIN_UPSAMPLERS: Dict[str, Type[nn.Module]] = {}

#: Type names whose meaning in ``build_upsampler`` differs from ``MODELS``: mmcv's ``carafe`` is CUDA-only,
#: the builder's ``carafe`` is the plugin's portable CARAFE (same parameters, same state-dict keys).
_BUILDER_ALIASES = {'carafe': 'portable_carafe'}


def register_upsampler(name: str):
    """Class decorator: register an upsampler under ``name`` in mmengine's root ``MODELS`` (when mmengine is
    installed) and in the plugin's table that :func:`build_upsampler` reads.

    A name already registered by another package is left to that package (mmengine would refuse to
    overwrite it anyway): the plugin warns once and keeps its class reachable through
    :func:`build_upsampler`. Re-registering the same class (a module reload) is a no-op.
    """

    def decorator(cls: Type[nn.Module]) -> Type[nn.Module]:
        _PLUGIN_UPSAMPLERS[name] = cls
        if MODELS is None:
            return cls
        existing = MODELS.module_dict.get(name)
        if existing is None:
            MODELS.register_module(name=name, module=cls)
        elif existing.__qualname__ != cls.__qualname__ or existing.__module__ != cls.__module__:
            warnings.warn(
                f'upsample_plugin: the type name {name!r} is already registered in mmengine MODELS by '
                f'{existing.__module__}.{existing.__qualname__}; that registration is kept, so '
                f'build_upsample_layer(dict(type={name!r})) builds it. upsample_plugin.build_upsampler still '
                f'builds the plugin\'s {cls.__qualname__}.', stacklevel=2)
        return cls

    return decorator


class UnknownUpsamplerError(KeyError, ValueError):
    """``upsample_cfg['type']`` names no registered upsampler. A ``KeyError`` (mmengine's registries raise
    that for unknown names) and a ``ValueError`` (the plugin's error for a bad argument): catch either."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ''  # KeyError would quote the message


def plugin_upsamplers() -> Dict[str, Type[nn.Module]]:
    """The plugin's upsampler classes by type name (a copy)."""
    return dict(_PLUGIN_UPSAMPLERS)


def _resolve_type(layer_type: Union[str, type]) -> type:
    if inspect.isclass(layer_type):
        return layer_type
    if not isinstance(layer_type, str):
        raise ValueError(f'upsample_cfg["type"] must be a registered name (str) or a class, got {layer_type!r}')
    name = _BUILDER_ALIASES.get(layer_type, layer_type)
    if name in _PLUGIN_UPSAMPLERS:
        return _PLUGIN_UPSAMPLERS[name]
    cls = MODELS.get(name) if MODELS is not None else None
    if cls is None:
        known = sorted(set(_PLUGIN_UPSAMPLERS) | set(_BUILDER_ALIASES) | {'nearest', 'bilinear', 'deconv',
                                                                         'pixel_shuffle'})
        raise UnknownUpsamplerError(f'upsample_cfg type {layer_type!r} is not a registered upsampler; '
                                    f'known: {known}')
    return cls


def build_upsampler(cfg: Optional[Mapping[str, Any]], in_channels: int, scale_factor: int = 2) -> nn.Module:
    """Build an upsampler from a config, filling its channel and scale arguments.

    Every class names its arguments its own way (``channels``, ``in_channels``, ``scale``, ``up_factor``...);
    a neck only knows its width and the scale. Values given in ``cfg`` win over the filled ones (a guided
    upsampler may take a guide of another width).

    Args:
        cfg: ``dict(type=NAME, **kwargs)``. ``NAME`` is a plugin upsampler (``dysample``, ``dlu``, ...) or one
            of mmcv's names: ``nearest``/``bilinear`` (``nn.Upsample``; bilinear with ``align_corners=False``),
            ``deconv`` (3x3 transposed conv, stride = scale), ``pixel_shuffle`` (3x3 conv + pixel shuffle) and
            ``carafe`` (the plugin's portable CARAFE). ``None`` means nearest.
        in_channels: channels of the low-resolution input (the output keeps them), an integer >= 1.
        scale_factor: integer upsampling ratio >= 1.

    Raises:
        ValueError: a malformed ``cfg``, a ``type`` that is neither a str nor a class, ``in_channels`` or
            ``scale_factor`` not an integer >= 1 (the constructors check their own arguments the same way).
        UnknownUpsamplerError: (a ``KeyError`` and a ``ValueError``) an unregistered ``type`` name.
    """
    if cfg is None:
        cfg = dict(type='nearest')
    if not isinstance(cfg, Mapping) or 'type' not in cfg:
        raise ValueError(f'upsample_cfg must be a dict with a "type" key, got {cfg!r}')
    check_int('in_channels', in_channels)
    check_int('scale_factor', scale_factor)
    kwargs = dict(copy.deepcopy(dict(cfg)))
    layer_type = kwargs.pop('type')

    if layer_type in ('nearest', 'bilinear'):
        kwargs.setdefault('scale_factor', scale_factor)
        kwargs.setdefault('mode', layer_type)
        if kwargs['mode'] == 'bilinear':
            kwargs.setdefault('align_corners', False)
        return nn.Upsample(**kwargs)
    if layer_type == 'deconv':
        kwargs.setdefault('kernel_size', 3)
        kwargs.setdefault('stride', scale_factor)
        kernel_size, stride = kwargs['kernel_size'], kwargs['stride']
        # Exact `stride`x output for odd kernels: pad (k-1)/2 and add the missing rows back.
        kwargs.setdefault('padding', (kernel_size - 1) // 2)
        kwargs.setdefault('output_padding', stride - 1 - (kernel_size - 1) + 2 * kwargs['padding'])
        return nn.ConvTranspose2d(in_channels, kwargs.pop('out_channels', in_channels), **kwargs)
    if layer_type == 'pixel_shuffle':
        try:
            from mmcv.cnn.bricks.upsample import PixelShufflePack
        except ImportError as err:
            raise ImportError(f'upsample_cfg type "pixel_shuffle" is mmcv\'s PixelShufflePack; install mmcv to use it '
                              f'({err})') from err
        kwargs.setdefault('upsample_kernel', 3)
        return PixelShufflePack(in_channels, kwargs.pop('out_channels', in_channels),
                                kwargs.pop('scale_factor', scale_factor), **kwargs)

    cls = _resolve_type(layer_type)
    for name in getattr(cls, 'channel_args', ()):
        kwargs.setdefault(name, in_channels)
    scale_arg = getattr(cls, 'scale_arg', None)
    if scale_arg is not None and not any(alias in kwargs for alias in getattr(cls, 'scale_aliases', ())):
        kwargs.setdefault(scale_arg, scale_factor)
    return cls(**kwargs)
