"""Training checkpoints: atomic writes, exact-resume state (docs/pipeline.md#reliability).

``checkpoint.pt`` in the run directory holds the model, optimiser and scheduler states, the
position (epoch, batch within the epoch, global iteration), the history so far, the RNG states
(torch CPU and CUDA, NumPy, ``random``), the world size and the resolved config. It is replaced
atomically (write to a temporary name, fsync, rename), so an interruption at any moment leaves
the previous good checkpoint in place. ``model.pt`` is the final model alone (with its class
names), which :mod:`replication.inference.predict` loads.

Both files hold only tensors and plain containers (dicts, lists, numbers, strings; the NumPy and
``random`` RNG states are converted to a tensor and lists) and are read with
``torch.load(weights_only=True)``, which never runs code from the file: a run folder received from
someone else cannot execute anything when it is resumed or used for prediction.
"""
from __future__ import annotations

import math
import pickle
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from replication.errors import ConfigError
from replication.io_utils import atomic_torch_save, damaged_zip_member
from replication.models import build_model

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
MODEL_FORMAT = "spl-classifier/1"


def numpy_state_plain() -> dict[str, Any]:
    """NumPy's global RNG state as plain values (``get_state()`` holds an ndarray, which needs unpickling)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def set_numpy_state_plain(state: dict[str, Any]) -> None:
    """Restore a :func:`numpy_state_plain` snapshot exactly."""
    keys = np.asarray(state["keys"].numpy(), dtype=np.uint32)
    np.random.set_state((state["kind"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def python_state_plain() -> dict[str, Any]:
    """``random``'s state as a dict of plain values."""
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": list(internal), "gauss": gauss}


def set_python_state_plain(state: dict[str, Any]) -> None:
    """Restore a :func:`python_state_plain` snapshot exactly."""
    random.setstate((state["version"], tuple(state["internal"]), state["gauss"]))


def rng_states() -> dict[str, Any]:
    """Snapshot of every RNG a training step may touch (tensors and plain values only)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": numpy_state_plain(),
        "python": python_state_plain(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore a :func:`rng_states` snapshot."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    set_numpy_state_plain(states["numpy"])
    set_python_state_plain(states["python"])


def safe_load(path: Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code.

    A file that needs anything else (a pickled object, e.g. a payload that would run a command) is
    refused with a one-line :class:`ConfigError` naming the file, before any of it is executed.
    """
    bad = damaged_zip_member(path) if Path(path).is_file() else None
    if bad is not None:  # truncated or flipped bits: torch.load would not notice a flip inside a tensor
        raise ConfigError(f"{path}: damaged {what} (zip member {bad} fails its CRC-32 check); it cannot be read")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported [^.]*", str(e))
        detail = " ".join((found.group(0) if found else str(e)).split())[:120]   # one line
        raise ConfigError(f"{path}: refusing to load {what}: it holds objects other than tensors and plain "
                          f"values ({detail[:160]})") from None
    except Exception as e:
        msg = " ".join(str(e).split())[:200]
        raise ConfigError(f"{path}: unreadable {what} ({type(e).__name__}: {msg})") from None


def non_finite_keys(tree: Any, prefix: str = "") -> list[str]:
    """Dotted keys of a nested dict/list whose float values are NaN or infinite (``lr=.nan`` in a config)."""
    if isinstance(tree, dict):
        return [k for key, v in tree.items() for k in non_finite_keys(v, f"{prefix}{key}.")]
    if isinstance(tree, (list, tuple)):
        return [k for i, v in enumerate(tree) for k in non_finite_keys(v, f"{prefix}{i}.")]
    return [prefix.rstrip(".")] if isinstance(tree, float) and not math.isfinite(tree) else []


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (plus the RNG states) to ``path``."""
    atomic_torch_save({**state, "rng": rng_states()}, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; ConfigError naming the file otherwise."""
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint to resume from")
    ck = safe_load(path, "checkpoint")
    if not isinstance(ck, dict) or not {"model", "optimizer", "rng", "world_size", "config"} <= set(ck):
        raise ConfigError(f"{path}: not a checkpoint written by spl train")
    return ck


def save_model(path: Path, model: nn.Module | Mapping[str, torch.Tensor], *, name: str, class_names: list[str],
               config: dict) -> None:
    """Atomically write the final model: ``{format, model, num_classes, class_names, state_dict, config}``.

    ``model`` is the module or its state dict (the trainer passes the plain model's keys,
    :func:`replication.models.domain_bn.plain_state_dict`).
    """
    items = model.state_dict() if isinstance(model, nn.Module) else model
    state = {k: v.detach().cpu() for k, v in items.items()}
    atomic_torch_save(
        {
            "format": MODEL_FORMAT,
            "model": name,
            "num_classes": len(class_names),
            "class_names": list(class_names),
            "state_dict": state,
            "config": config,
        },
        path,
    )


def load_model_file(path: Path) -> dict[str, Any]:
    """Read a ``model.pt`` written by :func:`save_model`."""
    if not path.is_file():
        raise ConfigError(f"{path}: no trained model here (training has not finished)")
    obj = safe_load(path, "model file")
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{path}: not a model file written by spl train")
    missing = [k for k in ("model", "num_classes", "class_names", "state_dict") if k not in obj]
    if missing or not isinstance(obj["state_dict"], dict):
        raise ConfigError(f"{path}: model file lacks {', '.join(missing) or 'a state_dict'}")
    return obj


def model_from_file(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The network of a ``model.pt`` written by :func:`save_model`, built and loaded (train mode), and the
    file's contents; :class:`ConfigError` naming the file when its weights do not fit its model name."""
    bundle = load_model_file(path)
    try:
        model = build_model(bundle["model"], bundle["num_classes"])
        model.load_state_dict(bundle["state_dict"])
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        msg = " ".join(str(e).split())[:200]
        raise ConfigError(f"{path}: its weights do not fit model {bundle['model']!r} ({msg})") from None
    return model, bundle
