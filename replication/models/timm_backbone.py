"""Optional timm backbones (``model: timm/<name>``, extra ``[timm]``), built with random weights.

Decision (docs/classifier.md#recipe): users with timm weights cached can fine-tune e.g. ``timm/resnetv2_101``
(a pre-activation ResNet-101) or ``timm/resnet101``; pass the weights with ``pretrained: PATH``
(our strict loader), never downloaded here.
"""
from __future__ import annotations

from torch import nn

from replication.errors import ConfigError


def timm_available() -> bool:
    """True when the optional ``timm`` package can be imported."""
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def build_timm_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=C)``; ConfigError without timm."""
    try:
        import timm  # optional extra: loaded only for timm/<name> models
    except ImportError:
        raise ConfigError(f"model timm/{name}: timm is not installed (pip install 'spl-replication[timm]')") from None
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    except RuntimeError as e:  # timm raises RuntimeError for unknown model names
        raise ConfigError(f"model timm/{name}: {e}") from None
