"""Load pretrained weights into a classifier with a strict, explained key check (docs/classifier.md#recipe).

The paper fine-tunes from ImageNet weights; nothing is downloaded here. ``pretrained`` is one of:

* ``PATH``: a state dict in our layout (``torch.save(model.state_dict())``, or a dict with a
  ``state_dict``/``model`` entry, e.g. a finished classifier run's ``model.pt`` written by
  :func:`replication.training.checkpoint.save_model` — read, like every file here, with
  ``torch.load(weights_only=True)``; a DDP ``module.`` prefix is stripped; a
  ``.safetensors`` file works too) — e.g. the output of ``spl weights convert``, whose sidecar
  ``PATH.json`` says which input normalisation the weights expect (:func:`expected_input_norm`);
* ``timm:<name>``: timm's pretrained weights ``name`` from the local Hugging Face / torch hub cache
  (:func:`replication.models.timm_backbone.cached_weights_file`, offline), or ``timm:FILE``: a local
  timm ``.safetensors``/``.pth`` file. They load as they are into ``model: timm/<arch>``, and through
  :func:`replication.models.timm_convert.convert_resnetv2_state_dict` into our pre-activation ResNets.

Every key must match: the error lists the missing and unexpected keys and the shape mismatches.
The only exception is the new FC: when its shape differs (C differs from the pretrained head), or
when ``new_head=True`` (``pretrained_head: new``: the file's head belongs to another task with the
same C, e.g. the 10-way single-digit pretraining), it is left at its fresh initialisation (and a
file without BN ``num_batches_tracked`` counters keeps the model's).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from replication.errors import ConfigError
from replication.io_utils import atomic_torch_save, atomic_write_json
from replication.models.preact_resnet import PreActResNet
from replication.models.timm_convert import convert_resnetv2_state_dict, is_resnetv2_state
from replication.vocabulary import INPUT_NORM_RGB_STATS, INPUT_NORMS

log = logging.getLogger(__name__)

TIMM_SOURCE = "timm:"
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
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


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def read_state_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (``.safetensors``, else a ``torch.save`` file); one-line ConfigError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: pretrained weights not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # optional: comes with timm

            obj: object = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise ConfigError(f"{path}: reading .safetensors needs the safetensors package (pip install safetensors)") \
            from None
    except Exception as e:
        raise ConfigError(f"{path}: cannot read pretrained weights ({_one_line(e)})") from None
    return _extract_state_dict(obj, path)


def _timm_target(source: str) -> tuple[str, bool]:
    """``timm:X`` → ``(X, X is a file)``: a path when it exists, has a separator or a weights suffix."""
    target = source[len(TIMM_SOURCE):]
    is_file = os.sep in target or target.endswith(_WEIGHT_SUFFIXES) or Path(target).is_file()
    return target, is_file


def read_weights(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict, file it came from)`` for a ``pretrained`` value (module docstring); offline."""
    text = os.fspath(source)
    if text.startswith(TIMM_SOURCE):
        target, is_file = _timm_target(text)
        if is_file:
            return read_state_file(target), target
        # optional extra: timm is loaded only for timm:<name> weights
        from replication.models.timm_backbone import cached_weights_file

        path = cached_weights_file(target)
        return read_state_file(path), str(path)
    return read_state_file(text), text


def sidecar_path(weights: str | os.PathLike) -> Path:
    """Where ``spl weights convert`` writes the JSON that describes ``weights``: ``<weights>.json``."""
    return Path(os.fspath(weights) + ".json")


def norm_from_stats(mean: tuple[float, ...], std: tuple[float, ...], where: str) -> str:
    """The :data:`~replication.vocabulary.INPUT_NORMS` name of an RGB mean/std (0–1 scale); ConfigError if none."""
    for name, (m, s) in INPUT_NORM_RGB_STATS.items():
        if len(mean) == len(m) == len(std) and all(abs(a - b) < 1e-3 for a, b in zip((*mean, *std), (*m, *s))):
            return name
    raise ConfigError(f"{where}: input mean {tuple(mean)} / std {tuple(std)} is none of {', '.join(INPUT_NORMS)}; "
                      "choose one explicitly (data.input_norm, or --input-norm)")


def _hf_config_norm(path: Path) -> str | None:
    """The input normalisation in the ``config.json`` beside a Hugging Face snapshot's weights, if any."""
    cfg_file = path.parent / "config.json"
    if not cfg_file.is_file():
        return None
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8")).get("pretrained_cfg", {})
    except (json.JSONDecodeError, AttributeError):
        return None
    if "mean" in cfg and "std" in cfg:
        return norm_from_stats(tuple(cfg["mean"]), tuple(cfg["std"]), str(cfg_file))
    return None


def expected_input_norm(source: str | os.PathLike | None) -> str | None:
    """The input normalisation the weights of ``source`` expect, or None when nothing says (our layout: Caffe).

    ``PATH``: the ``input_norm`` of its sidecar ``PATH.json`` if there is one. ``timm:<name>``: from
    timm's pretrained config. ``timm:FILE``: from a ``config.json`` beside it (a Hugging Face
    snapshot), else :class:`ConfigError` asking for ``data.input_norm``.
    """
    if source is None:
        return None
    text = os.fspath(source)
    if text.startswith(TIMM_SOURCE):
        target, is_file = _timm_target(text)
        if is_file:
            norm = _hf_config_norm(Path(target))
            if norm is None:
                raise ConfigError(f"{text}: cannot tell which input normalisation these weights expect "
                                  f"(no config.json beside them); set data.input_norm to one of "
                                  f"{', '.join(INPUT_NORMS)}")
            return norm
        # optional extra: timm is loaded only for timm:<name> weights
        from replication.models.timm_backbone import mean_std

        return norm_from_stats(*mean_std(target), where=text)
    side = sidecar_path(text)
    if not side.is_file():
        return None
    try:
        norm = json.loads(side.read_text(encoding="utf-8"))["input_norm"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{side}: malformed weights sidecar ({_one_line(e)})") from None
    if norm not in INPUT_NORMS:
        raise ConfigError(f"{side}: input_norm {norm!r} is not one of {', '.join(INPUT_NORMS)}")
    return norm


def _convert(state: dict[str, torch.Tensor], where: str) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    try:
        return convert_resnetv2_state_dict(state)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def load_pretrained(model: nn.Module, path: str | os.PathLike, *, new_head: bool = False) -> dict[str, list[str]]:
    """Load the weights of ``path`` (a ``pretrained`` value: module docstring) into ``model``, strictly.

    ``timm:`` weights are converted first when ``model`` is one of our pre-activation ResNets.
    The classifier (``get_classifier()``) is skipped when its weight shapes differ from the file's
    (a new C-way FC) or when ``new_head``; otherwise it is loaded. Any other missing key, unexpected key or shape
    mismatch raises :class:`ConfigError` naming the file and listing them. Returns
    ``{"skipped": [...]}`` — the keys left at their fresh initialisation.
    """
    is_timm = os.fspath(path).startswith(TIMM_SOURCE)
    state, path = read_weights(path)
    if is_timm and isinstance(model, PreActResNet) and is_resnetv2_state(state):
        state, report = _convert(state, path)
        if report["stem_negative_scale"]:
            log.warning("%s: %d of %d stem channels have a negative BN scale; moving that BN before the max-pool "
                        "is approximate for them", path, report["stem_negative_scale"], report["stem_channels"])
    own = model.state_dict()
    for k, v in own.items():  # files without BN counters (some timm files) keep the model's
        if k.endswith(".num_batches_tracked") and k not in state:
            state[k] = v
    head = classifier_prefix(model)
    head_keys = [k for k in own if k.startswith(head)]
    head_differs = any(k not in state or state[k].shape != own[k].shape for k in head_keys)
    skipped: list[str] = []
    if head_differs or new_head:
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


def convert_weights(source: str, out: str | os.PathLike, *, input_norm: str | None = None) -> dict[str, object]:
    """Convert timm ResNetV2 weights (``timm:<name>`` from the cache, or a file) into our layout at ``out``.

    Writes ``out`` (a state dict for :func:`load_pretrained`) and the sidecar ``out.json``: the source,
    the model it fits, the number of stem channels with a negative BN scale, and the input
    normalisation the weights expect (``input_norm``, else from timm's config:
    :func:`expected_input_norm`). Returns the sidecar's content.
    """
    if not source.startswith(TIMM_SOURCE):
        source = TIMM_SOURCE + source  # a bare file is a timm checkpoint here
    if input_norm is not None and input_norm not in INPUT_NORMS:
        raise ConfigError(f"input normalisation {input_norm!r} is not one of {', '.join(INPUT_NORMS)}")
    norm = input_norm or expected_input_norm(source)
    state, path = read_weights(source)
    ours, report = _convert(state, path)
    atomic_torch_save(ours, out)
    info: dict[str, object] = {"source": source, "source_file": str(path), **report, "input_norm": norm}
    atomic_write_json(sidecar_path(out), info)
    return info
