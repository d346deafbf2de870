"""``predict(run_dir, data, out)``: score a shard set with a finished training run's model (``spl predict``).

The scoring itself and the ``preds.npz`` format live in :mod:`replication.inference.predictions`, which the
training loop uses too; this module only loads a finished run (``model.pt``, ``config.yaml``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from replication.data.shards import ShardSet
from replication.data.transforms import CaffeTestTransform
from replication.errors import ConfigError, ShardError
from replication.inference.predictions import score_images, write_preds
from replication.io_utils import check_output_path
from replication.locking import output_lock
from replication.training.checkpoint import MODEL, model_from_file
from replication.training.config import load_train_config, run_input_norm
from replication.training.distributed import resolve_device

log = logging.getLogger(__name__)


def predict(run_dir: Path, data: Path, out: Path, *, batch_size: int = 256, device: str | None = None) -> Path:
    """Score every record of the shard set ``data`` with the model trained in ``run_dir``; write ``out``.

    Uses the run's test transform (``data.crop``, ``data.load_size``, ``data.test_mode``) and
    its AMP/channels_last settings resolved for ``device`` (default: the run's ``device``).
    Refuses a shard set whose class names differ from the model's.
    """
    run_dir, data, out = Path(run_dir), Path(data), Path(out)
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be >= 1")
    out = check_output_path(out, ("the shard set", data))
    if out.exists() and not out.is_file():
        raise ConfigError(f"{out}: --out must be a predictions file (.npz), not a folder")
    with output_lock(out):  # one writer per preds file
        return _predict_locked(run_dir, data, out, batch_size=batch_size, device=device)


def _predict_locked(run_dir: Path, data: Path, out: Path, *, batch_size: int, device: str | None) -> Path:
    model, bundle = model_from_file(run_dir / MODEL)
    cfg = load_train_config(run_dir / "config.yaml")
    shard_set = ShardSet(data)
    if shard_set.class_names != bundle["class_names"]:
        raise ShardError(f"{data}: class names {shard_set.class_names[:5]}… differ from the model's in {run_dir}")
    dev = resolve_device(device or cfg.device)
    on_cuda = dev.type == "cuda"
    amp = on_cuda if cfg.amp is None else cfg.amp  # the same rule as training
    cl = on_cuda if cfg.channels_last is None else cfg.channels_last
    model.to(dev)
    if cl:
        model.to(memory_format=torch.channels_last)
    transform = CaffeTestTransform(cfg.data.crop, cfg.data.load_size, mode=cfg.data.test_mode,
                                   input_norm=run_input_norm(cfg))  # the normalisation the run trained with
    logits = score_images(
        model, shard_set, transform, batch_size=batch_size, device=dev, num_workers=cfg.data.num_workers,
        amp=amp, channels_last=cl, progress=True,
    )
    log.info("scored %d images of %s with %s", len(logits), data, run_dir)
    return write_preds(out, logits, shard_set.labels(), shard_set.keys(), shard_set.class_names)
