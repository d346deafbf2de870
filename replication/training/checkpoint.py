"""Training checkpoints: atomic writes, exact-resume state (docs/pipeline.md#reliability).

``checkpoint.pt`` in the run directory holds the model, optimiser and scheduler states, the
position (epoch, batch within the epoch, global iteration), the history so far, the RNG states
(torch CPU and CUDA, NumPy, ``random``), the world size and the resolved config. It is replaced
atomically (write to a temporary name, fsync, rename), so an interruption at any moment leaves
the previous good checkpoint in place. ``model.pt`` is the final model alone (with its class
names), which :mod:`replication.predict` loads.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from replication.errors import ConfigError
from replication.io_utils import atomic_torch_save

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
MODEL_FORMAT = "spl-classifier/1"


def rng_states() -> dict[str, Any]:
    """Snapshot of every RNG a training step may touch."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore a :func:`rng_states` snapshot."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (plus the RNG states) to ``path``."""
    atomic_torch_save({**state, "rng": rng_states()}, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; ConfigError naming the file otherwise."""
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None


def save_model(path: Path, model: nn.Module, *, name: str, class_names: list[str], config: dict) -> None:
    """Atomically write the final model: ``{format, model, num_classes, class_names, state_dict, config}``."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
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
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(f"{path}: unreadable model file ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{path}: not a model file written by spl train")
    return obj
