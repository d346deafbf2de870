"""Collapse diagnosis of the demo's generator (issue #19 item 2; docs/gan.md and docs/experiments.md).

Trains one candidate GAN for a fixed budget of CPU seconds and measures its samples against a fixed
real reference in a classifier's features, so that candidates trained on different data (250
labelled canvases, the 5,000-canvas pool) are measured against the same distribution:

* ``port``: the faithful TF port (:class:`gan_tf_port.train.GanTrainer`, DCGAN or WGAN-GP), any batch
  and width;
* ``peer``: the standard PyTorch DCGAN (:mod:`replication.gan.torch_dcgan`), fed by the same seeded
  :class:`gan_tf_port.data.BatchStream`.

Both the faithful eval-mode samples and training-mode-BN samples (``batch_stats``, a diagnosis) are
measured. Command line (one torch thread)::

    python -m replication.gan.diagnosis --kind port --arch dcgan --batch 64 --width 64 \\
        --data SHARDS --reference POOL_SHARDS --classifier CLASSIFIER_RUN --cap 120 --out result.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from torch import nn

from gan_tf_port.data import BatchStream
from gan_tf_port.grid import save_grid
from gan_tf_port.sample import iter_samples
from gan_tf_port.train import GanTrainer, TrainConfig
from replication.gan.images import ShardGanImages, load_gan_images
from replication.gan.quality import (
    classifier_features,
    frechet_distance_features,
    kernel_inception_distance,
    label_statistics,
    precision_recall,
)
from replication.gan.quality_step import load_classifier
from replication.gan.torch_dcgan import build_peer, peer_iteration
from replication.io_utils import atomic_write_json

SIZE = 32


def _until_cap(step: Callable[[], Any], cap_s: float, max_iters: int | None) -> tuple[int, float]:
    """Call ``step`` until the process's CPU seconds since the start reach ``cap_s`` (or ``max_iters``)."""
    t0, it = time.process_time(), 0
    while time.process_time() - t0 < cap_s and (max_iters is None or it < max_iters):
        step()
        it += 1
    return it, time.process_time() - t0


def train_port(images: torch.Tensor, *, arch: str, batch: int, width: int, cap_s: float, seed: int = 0,
               max_iters: int | None = None, g_steps: int = 2) -> tuple[nn.Module, int, float]:
    """The faithful port trained for ``cap_s`` CPU seconds; returns (G in training mode, iterations, CPU s).
    ``g_steps``: DCGAN G steps per D step (carpedm20's 2; 1 is the diagnosis of the collapse's suspect)."""
    cfg = TrainConfig(arch=arch, size=SIZE, width=width, batch_size=batch, epochs=10**6, seed=seed,
                      sample_every=0, checkpoint_every=10**9, progress=False, device="cpu", g_steps=g_steps)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = GanTrainer(cfg, images, tmp)
        iters, cpu = _until_cap(trainer.one_iteration, cap_s, max_iters)
    return trainer.G, iters, cpu


def train_peer(images: torch.Tensor, *, batch: int, width: int, cap_s: float, seed: int = 0,
               max_iters: int | None = None) -> tuple[nn.Module, int, float]:
    """The peer PyTorch DCGAN trained for ``cap_s`` CPU seconds on the same seeded data stream."""
    gan = build_peer(width, seed=seed)
    stream = BatchStream(images, batch, seed=seed)
    noise = torch.Generator().manual_seed(seed + 1)
    iters, cpu = _until_cap(lambda: peer_iteration(gan, next(stream), gan.G.sample_z(batch, noise)), cap_s, max_iters)
    return gan.G, iters, cpu


def reference_features(model: nn.Module, transform: Callable, shards: str | Path, n: int,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features and logits of ``n`` real images (chosen with ``seed``) of ``shards``, prepared as the GANs see them."""
    images = ShardGanImages(shards, SIZE)
    idx = np.sort(np.random.default_rng(seed).choice(len(images), min(n, len(images)), replace=False))

    def batches():
        for s in range(0, len(idx), 256):
            yield np.stack([images[int(i)].permute(1, 2, 0).numpy() for i in idx[s:s + 256]])
    return classifier_features(model, batches(), transform)


def measure(generator: nn.Module, model: nn.Module, transform: Callable, real_f: np.ndarray, n: int, *,
            seed: int = 0, batch_stats: bool = False) -> dict[str, Any]:
    """FD, KID, k-NN precision/recall (k = 3) and label statistics of ``n`` samples against ``real_f``."""
    fake_f, fake_logits = classifier_features(
        model, iter_samples(generator, n, seed=seed, batch=256, batch_stats=batch_stats), transform)
    kid, kid_std, _ = kernel_inception_distance(real_f, fake_f, seed=seed)
    precision, recall = precision_recall(real_f, fake_f)
    return {"fd": frechet_distance_features(real_f, fake_f), "kid": kid, "kid_std": kid_std,
            "precision": precision, "recall": recall, "labels": label_statistics(fake_logits)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train one candidate, measure it (eval-mode and batch-statistics samples), write JSON and a grid."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("port", "peer"), required=True)
    ap.add_argument("--arch", default="dcgan", choices=("dcgan", "wgan-gp"))
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--data", required=True, help="training shard set")
    ap.add_argument("--reference", required=True, help="shard set of the real reference")
    ap.add_argument("--classifier", required=True, help="classifier run directory (model.pt, config.yaml)")
    ap.add_argument("--cap", type=float, default=120.0, help="CPU seconds of training")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--g-steps", type=int, default=2, help="port DCGAN: G steps per D step (carpedm20: 2)")
    ap.add_argument("--out", required=True, help="result JSON; the 8×8 grids go beside it")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    images = load_gan_images(a.data, SIZE)
    if a.kind == "port":
        g, iters, cpu = train_port(images, arch=a.arch, batch=a.batch, width=a.width, cap_s=a.cap, seed=a.seed,
                                   g_steps=a.g_steps)
    else:
        g, iters, cpu = train_peer(images, batch=a.batch, width=a.width, cap_s=a.cap, seed=a.seed)
    while not (Path(a.classifier) / "model.pt").is_file():  # the classifier may still be training
        time.sleep(10)
    model, transform, _ = load_classifier(Path(a.classifier))
    real_f, real_logits = reference_features(model, transform, a.reference, a.n, a.seed)
    out = Path(a.out)
    result: dict[str, Any] = {"kind": a.kind, "arch": a.arch, "batch": a.batch, "width": a.width, "g_steps": a.g_steps,
                              "data": a.data, "num_images": len(images), "iterations": iters, "cpu_s": cpu,
                              "n": a.n, "real_labels": label_statistics(real_logits)}
    for mode, bs in (("eval", False), ("batch_stats", True)):
        result[mode] = measure(g, model, transform, real_f, a.n, seed=a.seed, batch_stats=bs)
        grid = next(iter_samples(g, 64, seed=a.seed, batch=64, batch_stats=bs))
        save_grid(grid, out.with_name(f"{out.stem}-{mode}.png"), 8, 8)
    atomic_write_json(out, result)
    head = ("kind", "arch", "batch", "width", "num_images", "iterations", "cpu_s")
    click.echo(json.dumps({k: result[k] for k in head}
                          | {m: {k: result[m][k] for k in ("fd", "precision", "recall")}
                             | {"top3": result[m]["labels"]["distinct_top3"]} for m in ("eval", "batch_stats")}))
    return result


if __name__ == "__main__":
    main()
