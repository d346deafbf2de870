"""``spl gan quality``: measure a GAN run's samples against its training images (issue #12; docs/gan.md#sample-quality).

The I/O around :mod:`replication.gan.quality`: it samples M images from a GAN run directory (as
``spl gan sample`` does, :mod:`gan_tf_port.sample`), reads M of the real training images the run
recorded in ``source.json`` (seeded choice, preprocessed as the GAN saw them: resized to its size,
RGB), passes both through a finished classifier run (its ``model.pt`` and the test transform of its
``config.yaml``), and writes the measures to ``quality.json`` in the GAN run directory
(``quality-<checkpoint name>.json`` for a checkpoint other than the run's ``checkpoint.pt``).

This module sits on layer 5 (docs/architecture.md) because it needs both a GAN run
(:mod:`replication.gan.run`) and a classifier run (:mod:`replication.training`), two groups of layer 4.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from gan_tf_port.sample import iter_samples
from gan_tf_port.train import CHECKPOINT, resolve_device
from replication.data.shards import ShardSet
from replication.data.transforms import CaffeTestTransform
from replication.errors import ConfigError, ShardError
from replication.gan.config import load_gan_config
from replication.gan.images import ShardGanImages
from replication.gan.quality import (
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    PR_K,
    classifier_features,
    frechet_distance_features,
    kernel_inception_distance,
    label_statistics,
    precision_recall,
)
from replication.gan.run import load_run_generator, open_run_checkpoint
from replication.io_utils import atomic_write_json
from replication.locking import output_lock
from replication.training.checkpoint import MODEL, model_from_file
from replication.training.config import load_train_config, run_input_norm

log = logging.getLogger(__name__)

QUALITY = "quality.json"
DEFAULT_N = 5000


def quality_path(run: Path, ckpt_path: Path) -> Path:
    """``quality.json`` for the run's own ``checkpoint.pt``; ``quality-<stem>.json`` for any other checkpoint."""
    if ckpt_path.resolve() == (run / CHECKPOINT).resolve():
        return run / QUALITY
    return run / f"quality-{ckpt_path.stem}.json"


def load_classifier(run: Path) -> tuple[nn.Module, CaffeTestTransform, list[str]]:
    """The model of a finished classifier run (``model.pt``), its test transform and class names."""
    model, bundle = model_from_file(run / MODEL)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run / 'config.yaml'}: missing; {run} is not a classifier run directory")
    cfg = load_train_config(run / "config.yaml")
    transform = CaffeTestTransform(cfg.data.crop, cfg.data.load_size, mode=cfg.data.test_mode,
                                   input_norm=run_input_norm(cfg))  # the run's own test-time preprocessing
    return model.eval(), transform, list(bundle["class_names"])


def _real_batches(images: ShardGanImages, indices: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    """The training images ``indices`` as the GAN saw them, RGB uint8 b×H×W×3, ``batch`` at a time."""
    for s in range(0, len(indices), batch):
        yield np.stack([images[int(i)].permute(1, 2, 0).numpy() for i in indices[s:s + batch]])


def _real_images(run: Path, source: dict) -> ShardGanImages:
    """The GAN's training shard set (checked against the content hash in ``source.json``), at the GAN's size."""
    cfg = load_gan_config(run / "config.yaml")
    data = Path(source.get("path") or cfg.data or "")
    try:
        shards = ShardSet(data)
    except ShardError as e:
        raise ShardError(f"{run / 'source.json'}: the GAN's training shards are not readable ({e})") from None
    if source.get("content_hash") and shards.content_hash != source["content_hash"]:
        raise ShardError(f"{data}: differs from the shard set the GAN run {run} was trained on (content hash)")
    return ShardGanImages(data, cfg.size, cfg.resize)


def gan_quality(run: str | Path, classifier: str | Path, n: int = DEFAULT_N, checkpoint: str | Path | None = None,
                seed: int = 0, *, batch: int = 256, device: str | None = None,
                out: str | Path | None = None) -> dict[str, Any]:
    """Measure the samples of the GAN run ``run`` in the features of the classifier run ``classifier``.

    Draws ``n`` samples (noise seed ``seed``, batches of ``batch``) from ``checkpoint`` (default: the
    run's ``checkpoint.pt``) and ``min(n, N)`` of the N real training images (chosen with ``seed``),
    and returns (and writes, atomically, to :func:`quality_path`) the Fréchet distance, KID, precision
    and recall (k = 3) between them, and the classifier's label statistics of both sets. ``out``: write
    the JSON there instead, leaving the GAN run untouched (the experiment runner's quality step).
    """
    run, classifier = Path(run), Path(classifier)
    if n < 2 or batch < 1:
        raise ConfigError(f"gan quality: need n >= 2 and batch >= 1, got n={n}, batch={batch}")
    source, ckpt_path, ckpt = open_run_checkpoint(run, checkpoint)
    out = quality_path(run, ckpt_path) if out is None else Path(out)
    with output_lock(out):
        return _quality_locked(run, classifier, n, seed, batch, device, source, ckpt_path, ckpt, out)


def _quality_locked(run: Path, classifier: Path, n: int, seed: int, batch: int, device: str | None, source: dict,
                    ckpt_path: Path, ckpt: dict, out: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    model, transform, class_names = load_classifier(classifier)
    if source.get("class_names") is not None and list(source["class_names"]) != class_names:
        raise ConfigError(f"{classifier / MODEL}: its classes differ from those of the GAN run's training shards "
                          f"({run / 'source.json'})")
    real_images = _real_images(run, source)
    if len(real_images) < 2:
        raise ShardError(f"{real_images.shards.path}: fewer than 2 training images")
    dev = resolve_device(device or "auto")
    model.to(dev)
    generator = load_run_generator(ckpt_path, dev)
    idx = np.sort(np.random.default_rng(seed).choice(len(real_images), min(n, len(real_images)), replace=False))
    fake_f, fake_logits = classifier_features(model, iter_samples(generator, n, seed=seed, batch=batch, device=dev),
                                              transform, device=dev)
    real_f, real_logits = classifier_features(model, _real_batches(real_images, idx, batch), transform, device=dev)
    t_features = time.perf_counter() - t0
    kid, kid_std, kid_size = kernel_inception_distance(real_f, fake_f, subsets=KID_SUBSETS,
                                                       subset_size=KID_SUBSET_SIZE, seed=seed)
    precision, recall = precision_recall(real_f, fake_f, PR_K)
    result = {
        "gan_run": str(run.resolve()),
        "checkpoint": str(ckpt_path.resolve()),
        "arch": ckpt["model"]["arch"],
        "iteration": int(ckpt["iteration"]),
        "classifier": str(classifier.resolve()),
        "classifier_model": type(model).__name__,
        "features": "input of the classifier's final linear layer",
        "feature_dim": int(real_f.shape[1]),
        "n_generated": int(len(fake_f)),
        "n_real": int(len(real_f)),
        "real_data": str(real_images.shards.path),
        "seed": seed,
        "batch": batch,
        "fd": frechet_distance_features(real_f, fake_f),
        "kid": kid,
        "kid_std": kid_std,
        "kid_subsets": KID_SUBSETS,
        "kid_subset_size": kid_size,
        "precision": precision,
        "recall": recall,
        "pr_k": PR_K,
        "labels": {"generated": label_statistics(fake_logits), "real": label_statistics(real_logits)},
    }
    result["seconds"] = {"features": round(t_features, 3), "total": round(time.perf_counter() - t0, 3)}
    atomic_write_json(out, result)
    log.info("%s: FD %.4g, KID %.4g, precision %.3f, recall %.3f → %s", run, result["fd"], kid, precision, recall, out)
    return result


__all__ = ["DEFAULT_N", "QUALITY", "gan_quality", "load_classifier", "quality_path"]
