"""Scoring a shard set with a classifier, and the ``preds.npz`` format (written and read only here).

``preds.npz`` holds ``logits`` (N×C float32), ``labels`` (N×C float32 as stored: multi-hot,
WIDER −1/0/1, or NaN rows for unlabeled generated sets), ``keys`` (N record keys) and
``class_names`` (C). The same scoring code evaluates the test set at the end of training
(each rank scores ``range(rank, N, world)``, gathered on rank 0: every image exactly once) and
scores generated images for the labeling rules (paper §2.3, Eqs. (1)–(2); docs/labeling.md#label-rules).
"""
from __future__ import annotations

import logging
import os
import signal
import zipfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from replication.console.progress import progress_on
from replication.data.shards import ShardSet
from replication.errors import ShardError
from replication.io_utils import atomic_write

log = logging.getLogger(__name__)

PRED_FIELDS = ("logits", "labels", "keys", "class_names")


def ignore_sigint(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers ignore Ctrl-C, so the main process alone handles it
    (it checkpoints and stops; a worker killed by SIGINT would crash the loader instead)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _IndexedImages(Dataset):
    """Transformed images of ``shard_set`` at ``indices`` (item: image tensor)."""

    def __init__(self, shard_set: ShardSet, transform: Callable, indices: np.ndarray) -> None:
        self.shard_set, self.transform, self.indices = shard_set, transform, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.shard_set[int(self.indices[i])].image)


@torch.no_grad()
def score_images(
    model: nn.Module,
    shard_set: ShardSet,
    transform: Callable,
    indices: np.ndarray | None = None,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Logits (len(indices) × C, float32) of ``model`` in eval mode for the records ``indices``.

    With ``amp`` the forward runs under bf16 autocast and the logits are returned in float32.
    The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    if indices is None:
        indices = np.arange(len(shard_set), dtype=np.int64)
    loader = DataLoader(
        _IndexedImages(shard_set, transform, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=ignore_sigint if num_workers else None,
    )
    was_training = model.training
    model.eval()
    outs = []
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp else nullcontext()
    try:
        for images in tqdm(loader, desc="predict", unit="batch", disable=not progress_on(progress), leave=False):
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = model(images)
            outs.append(logits.float().cpu())
    finally:
        model.train(was_training)
    if not outs:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(outs).numpy().astype(np.float32, copy=False)


def write_preds(path: str | os.PathLike, logits: np.ndarray, labels: np.ndarray, keys: list[str],
                class_names: list[str]) -> Path:
    """Atomically write ``preds.npz`` with the four fields of :data:`PRED_FIELDS`."""
    path = Path(path)
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.float32)
    if logits.shape != labels.shape or logits.shape[0] != len(keys) or logits.shape[1] != len(class_names):
        raise ValueError(f"preds do not line up: logits {logits.shape}, labels {labels.shape}, "
                         f"{len(keys)} keys, {len(class_names)} classes")

    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, logits=logits, labels=labels, keys=np.asarray(keys, dtype=str),
                     class_names=np.asarray(class_names, dtype=str))

    atomic_write(path, _w)
    return path


class PredictionsError(ShardError):
    """A predictions ``.npz`` is missing, unreadable or lacks a field (one line naming the file)."""


@dataclass(frozen=True)
class Predictions:
    """The arrays of a predictions ``.npz``: scores (N×C), labels (N×C) and the optional names."""

    scores: np.ndarray
    labels: np.ndarray
    scores_are: str  # "logits" or "probs"
    keys: list[str] | None = None
    class_names: list[str] | None = None


def load_predictions(path: str | os.PathLike) -> Predictions:
    """Read any predictions ``.npz``: ``logits`` (or ``probs``) and ``labels``, optionally ``keys``/``class_names``.

    Raises :class:`PredictionsError` naming the file when it is missing, unreadable or lacks a field.
    """
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"{path}: predictions file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise PredictionsError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})".splitlines()[0]) from None
    scores_are = next((k for k in ("logits", "probs") if k in arrays), None)
    if scores_are is None:
        raise PredictionsError(f"{path}: no 'logits' (or 'probs') array; has {sorted(arrays)}")
    if "labels" not in arrays:
        raise PredictionsError(f"{path}: no 'labels' array; has {sorted(arrays)}")
    names = {k: [str(x) for x in arrays[k].tolist()] for k in ("keys", "class_names") if k in arrays}
    return Predictions(scores=arrays[scores_are], labels=arrays["labels"], scores_are=scores_are,
                       keys=names.get("keys"), class_names=names.get("class_names"))


def read_preds(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``preds.npz`` written by :func:`write_preds`.

    Fields: ``logits``, ``labels`` (float32), ``keys``, ``class_names``.
    """
    preds = load_predictions(path)
    present = {"logits": preds.scores_are == "logits", "labels": True,
               "keys": preds.keys is not None, "class_names": preds.class_names is not None}
    missing = [k for k in PRED_FIELDS if not present[k]]
    if missing:
        raise PredictionsError(f"{path}: not a preds.npz (missing {', '.join(missing)})")
    return {
        "logits": preds.scores.astype(np.float32),
        "labels": preds.labels.astype(np.float32),
        "keys": preds.keys,
        "class_names": preds.class_names,
    }
