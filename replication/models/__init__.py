"""Classifier models by name: ``build_model(name, num_classes)`` and a strict pretrained loader.

Registered names: ``preact_resnet18``, ``preact_resnet34``, ``preact_resnet50``,
``preact_resnet101``, ``preact_resnet152``, ``preact_resnet_small`` (see
:mod:`replication.models.preact_resnet`), and ``timm/<name>`` for any timm architecture when the
optional ``timm`` extra is installed (random weights; see :mod:`replication.models.timm_backbone`).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from replication.errors import ConfigError
from replication.models.preact_resnet import PreActResNet, preact_resnet, preact_resnet_small
from replication.models.pretrained import classifier_prefix, load_pretrained

__all__ = [
    "MODELS",
    "PreActResNet",
    "build_model",
    "classifier_prefix",
    "list_models",
    "load_pretrained",
    "register_model",
]

#: name → builder(num_classes, **kwargs) -> nn.Module
MODELS: dict[str, Callable[..., nn.Module]] = {
    **{f"preact_resnet{d}": partial(preact_resnet, d) for d in (18, 34, 50, 101, 152)},
    "preact_resnet_small": preact_resnet_small,
}

TIMM_PREFIX = "timm/"


def register_model(name: str, builder: Callable[..., nn.Module]) -> None:
    """Add ``builder(num_classes, **kwargs)`` to the registry under ``name``."""
    if name in MODELS:
        raise ValueError(f"model {name!r} is already registered")
    MODELS[name] = builder


def list_models() -> list[str]:
    """Registered model names (timm models are reached as ``timm/<name>``)."""
    return sorted(MODELS)


def build_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build the classifier ``name`` with a C-way output (C = ``num_classes``), randomly initialised.

    Every returned module has ``get_classifier()`` returning its final linear layer.
    Unknown names raise :class:`ConfigError`.
    """
    if name.startswith(TIMM_PREFIX):
        # optional extra: timm is loaded only for timm/<name> models
        from replication.models.timm_backbone import build_timm_model

        return build_timm_model(name[len(TIMM_PREFIX):], num_classes, **kwargs)
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(list_models())} or timm/<name>")
    return MODELS[name](num_classes, **kwargs)
