"""Run a trained classifier over a shard set and write ``preds.npz`` (``spl predict``).

``preds.npz`` holds ``logits`` (N×C float32), ``labels`` (N×C float32 as stored: multi-hot,
WIDER −1/0/1, or NaN rows for unlabeled generated sets), ``keys`` (N record keys) and
``class_names`` (C). The same scoring code evaluates the test set at the end of training
(each rank scores ``range(rank, N, world)``, gathered on rank 0: every image exactly once) and
scores generated images for the labeling rules (SPEC §5).
"""
from __future__ import annotations

import logging
import os
import signal
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from replication.data.shards import ShardSet
from replication.data.transforms import CaffeTestTransform
from replication.errors import ShardError
from replication.io_utils import atomic_write
from replication.models import build_model

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
        for images in tqdm(loader, desc="predict", unit="batch", disable=not progress, leave=False):
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


def write_preds(path: str | os.PathLike, logits: np.ndarray, labels: np.ndarray, keys: list[str], class_names: list[str]) -> Path:
    """Atomically write ``preds.npz`` with the four fields of :data:`PRED_FIELDS`."""
    path = Path(path)
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.float32)
    if logits.shape != labels.shape or logits.shape[0] != len(keys) or logits.shape[1] != len(class_names):
        raise ValueError(f"preds do not line up: logits {logits.shape}, labels {labels.shape}, {len(keys)} keys, {len(class_names)} classes")

    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, logits=logits, labels=labels, keys=np.asarray(keys, dtype=str), class_names=np.asarray(class_names, dtype=str))

    atomic_write(path, _w)
    return path


def read_preds(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``preds.npz``: dict with ``logits``, ``labels``, ``keys`` (list of str), ``class_names`` (list)."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: predictions file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in PRED_FIELDS if k not in z.files]
            if missing:
                raise ShardError(f"{path}: not a preds.npz (missing {', '.join(missing)})")
            return {
                "logits": z["logits"].astype(np.float32),
                "labels": z["labels"].astype(np.float32),
                "keys": [str(k) for k in z["keys"]],
                "class_names": [str(c) for c in z["class_names"]],
            }
    except (OSError, ValueError) as e:
        raise ShardError(f"{path}: unreadable predictions file ({e})") from None


def predict(run_dir: Path, data: Path, out: Path, *, batch_size: int = 256, device: str | None = None) -> Path:
    """Score every record of the shard set ``data`` with the model trained in ``run_dir``; write ``out``.

    Uses the run's test transform (``data.crop``, ``data.load_size``, ``data.test_mode``) and
    its AMP/channels_last settings resolved for ``device`` (default: the run's ``device``).
    Refuses a shard set whose class names differ from the model's.
    """
    from replication.train import load_train_config  # local import: train imports this module
    from replication.training.checkpoint import MODEL, load_model_file
    from replication.training.distributed import resolve_device

    run_dir, data, out = Path(run_dir), Path(data), Path(out)
    bundle = load_model_file(run_dir / MODEL)
    cfg = load_train_config(run_dir / "config.yaml")
    shard_set = ShardSet(data)
    if shard_set.class_names != bundle["class_names"]:
        raise ShardError(f"{data}: class names {shard_set.class_names[:5]}… differ from the model's in {run_dir}")
    dev = resolve_device(device or cfg.device)
    model = build_model(bundle["model"], bundle["num_classes"])
    model.load_state_dict(bundle["state_dict"])
    on_cuda = dev.type == "cuda"
    amp = on_cuda if cfg.amp is None else cfg.amp  # the same rule as training
    cl = on_cuda if cfg.channels_last is None else cfg.channels_last
    model.to(dev)
    if cl:
        model.to(memory_format=torch.channels_last)
    transform = CaffeTestTransform(cfg.data.crop, cfg.data.load_size, mode=cfg.data.test_mode)
    logits = score_images(
        model, shard_set, transform, batch_size=batch_size, device=dev, num_workers=cfg.data.num_workers,
        amp=amp, channels_last=cl, progress=True,
    )
    log.info("scored %d images of %s with %s", len(logits), data, run_dir)
    return write_preds(out, logits, shard_set.labels(), shard_set.keys(), shard_set.class_names)
