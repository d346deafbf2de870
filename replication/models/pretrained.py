"""Load pretrained weights into a classifier with a strict, explained key check (docs/classifier.md#recipe).

The paper fine-tunes from ImageNet weights; nothing can be downloaded here, so ``--pretrained
PATH`` loads a state dict saved in our layout (``torch.save(model.state_dict())``, or a dict with
a ``state_dict``/``model`` entry, e.g. our ``model.pt``; a DDP ``module.`` prefix is stripped).
Every key must match: the error lists the missing and unexpected keys and the shape mismatches.
The only exception is the new FC: when its shape differs (C differs from the pretrained head), it
is left at its fresh initialisation.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from replication.errors import ConfigError

_MAX_LISTED = 8


def classifier_prefix(model: nn.Module) -> str:
    """State-dict prefix of ``model.get_classifier()`` (e.g. ``"fc."``)."""
    head = model.get_classifier()
    for name, module in model.named_modules():
        if module is head:
            return name + "."
    raise ValueError("the classifier returned by get_classifier() is not a submodule of the model")


def _extract_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" … (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Load the state dict at ``path`` into ``model`` with a strict key check.

    The classifier (``get_classifier()``) is skipped when its weight shapes differ from the file's
    (a new C-way FC); it is loaded when they match. Any other missing key, unexpected key or shape
    mismatch raises :class:`ConfigError` naming the file and listing them. Returns
    ``{"skipped": [...]}`` — the keys left at their fresh initialisation.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: pretrained weights not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{path}: cannot read pretrained weights ({type(e).__name__}: {e})") from None
    state = _extract_state_dict(obj, path)
    own = model.state_dict()
    head = classifier_prefix(model)
    head_keys = [k for k in own if k.startswith(head)]
    head_differs = any(k not in state or state[k].shape != own[k].shape for k in head_keys)
    skipped: list[str] = []
    if head_differs:
        skipped = head_keys
        state = {k: v for k, v in state.items() if not k.startswith(head)}
    missing = [k for k in own if k not in state and k not in skipped]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)}≠{tuple(own[k].shape)}"
        for k in own if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {_listing(shapes)}")
        raise ConfigError(f"{path}: state dict does not fit the model; " + "; ".join(parts))
    model.load_state_dict(state, strict=not skipped)
    return {"skipped": skipped}
