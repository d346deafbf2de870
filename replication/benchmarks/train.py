"""``spl bench train``: images/s of one classifier training step, synthetic tensors vs the shard loader.

A step is exactly the training loop's: forward (optionally bf16 autocast, channels_last,
``torch.compile``), the SPEC §6 loss from ``kernels.weighted_soft_cross_entropy`` in float32,
backward, SGD (momentum 0.9, weight decay) step. Cases:

* ``embedded``: ``preact_resnet_small`` on 28×28 crops of 32×32 PNG shards (batch 64);
* ``r101``: pre-activation ResNet-101 on 224×224 crops of 256×256 JPEG shards, at batch 24 and —
  on CUDA — at the largest power-of-two multiple of 24 that fits (``--max-batch``); on CPU a
  reduced case (``--cpu-r101-size``, default 112, batch 4), since full R101 steps take seconds.

Modes: ``eager`` (float32, NCHW), ``cl+amp`` (channels_last + bf16 autocast; CUDA only unless
``--cpu-amp``), ``compile`` (``torch.compile`` of the cl+amp model; CUDA only unless
``--cpu-compile``). Each (case, batch, mode) is timed with synthetic device tensors and with the
shard loader (``ShardDataset`` + ``DataLoader``, ``--workers``) feeding it; the JSON records both
and the loader/synthetic ratio. Speed is reported, never asserted.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import click
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from replication.data.dataset import ShardDataset
from replication.data.shards import ShardWriter
from replication.data.transforms import CaffeTrainTransform
from replication.models import build_model
from replication.train import load_train_config
from replication.training.loop import compute_loss

C = 80


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _write_shards(path: Path, n: int, size: int, encoding: str, classes: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with ShardWriter(path, dataset="bench", split="train", class_names=[f"c{i}" for i in range(classes)],
                     encoding=encoding) as w:
        for i in range(n):
            small = rng.integers(0, 256, (max(size // 8, 4), max(size // 8, 4), 3), dtype=np.uint8)
            img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
            w.add(img, label=(rng.random(classes) < 0.3).astype(np.float32), key=str(i))
    return path


class _Step:
    """One training step of ``model`` as in :mod:`replication.training.loop`."""

    def __init__(self, name: str, classes: int, dev: torch.device, mode: str) -> None:
        self.dev, self.mode = dev, mode
        self.amp = mode in ("cl+amp", "compile")
        self.cl = self.amp
        torch.manual_seed(0)
        model = build_model(name, classes).to(dev)
        if self.cl:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.fwd = torch.compile(model) if mode == "compile" else model
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
        self.cfg = load_train_config({"kernel_backend": "auto"})

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> None:
        images = images.to(self.dev, non_blocking=True)
        if self.cl:
            images = images.contiguous(memory_format=torch.channels_last)
        targets, weights = targets.to(self.dev, non_blocking=True), weights.to(self.dev, non_blocking=True)
        with torch.autocast(device_type=self.dev.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.fwd(images)
        loss = compute_loss(logits, targets, weights, None, self.cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def _time_synthetic(step: _Step, batch: int, crop: int, classes: int, warmup: int, steps: int) -> float:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 3, crop, crop, generator=g) * 255 - 117).to(step.dev)
    y = (torch.rand(batch, classes, generator=g) < 0.3).float().to(step.dev)
    w = torch.ones(batch, device=step.dev)
    for _ in range(warmup):
        step(x, y, w)
    _sync(step.dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, y, w)
    _sync(step.dev)
    return batch * steps / (time.perf_counter() - t0)


def _time_loader(step: _Step, shards: Path, batch: int, crop: int, load: int, workers: int, warmup: int, steps: int) -> float:
    ds = ShardDataset(shards, CaffeTrainTransform(crop, load, flip=True))
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=batch * (warmup + steps),
                                             generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True,
                        pin_memory=step.dev.type == "cuda", persistent_workers=False,
                        prefetch_factor=4 if workers else None)
    it = iter(loader)
    for _ in range(warmup):
        step(*next(it))
    _sync(step.dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(*next(it))
    _sync(step.dev)
    return batch * steps / (time.perf_counter() - t0)


def _largest_batch(name: str, classes: int, dev: torch.device, crop: int, start: int, limit: int) -> int:
    """Largest ``start·2^k ≤ limit`` for which a cl+amp step fits in GPU memory."""
    best, batch = start, start
    while batch * 2 <= limit:
        batch *= 2
        try:
            step = _Step(name, classes, dev, "cl+amp")
            _time_synthetic(step, batch, crop, classes, warmup=1, steps=1)
            best = batch
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            step = None  # noqa: F841
            torch.cuda.empty_cache()
    return best


def run_train_benchmark(*, device: str | None = None, quick: bool = False, workers: int | None = None,
                        max_batch: int = 768, cpu_r101_size: int = 112, cpu_amp: bool = False,
                        cpu_compile: bool = False, steps: int | None = None) -> dict:
    """Time the cases, modes and feeds described in the module docstring; return the result dict."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_cuda = dev.type == "cuda"
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    modes = ["eager"] + (["cl+amp"] if on_cuda or cpu_amp else []) + (["compile"] if on_cuda or cpu_compile else [])
    if quick:
        modes, workers = ["eager"], 0
    n_steps = steps or (2 if quick else 20 if on_cuda else 5)
    warmup = 1 if quick else 5 if on_cuda else 2
    cases = [dict(case="embedded", model="preact_resnet_small", crop=28, load=32, encoding="png", classes=10,
                  batches=[8 if quick else 64])]
    if on_cuda:
        cases.append(dict(case="r101", model="preact_resnet101", crop=224, load=256, encoding="jpeg", classes=C,
                          batches=[24, "max"]))
    else:
        size = 32 if quick else cpu_r101_size
        cases.append(dict(case="r101-reduced", model="preact_resnet101", crop=size, load=size + size // 7,
                          encoding="jpeg", classes=C, batches=[2 if quick else 4]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            n_images = max(256, 4 * 24) if not quick else 32
            shards = _write_shards(Path(tmp) / case["case"], n_images, case["load"], case["encoding"], case["classes"])
            batches = [b if b != "max" else _largest_batch(case["model"], case["classes"], dev, case["crop"], 24, max_batch)
                       for b in case["batches"]]
            for batch in dict.fromkeys(batches):
                for mode in modes:
                    row = dict(case=case["case"], model=case["model"], input=case["crop"], batch=batch, mode=mode,
                               device=str(dev), steps=n_steps, warmup=warmup, workers=workers)
                    try:
                        step = _Step(case["model"], case["classes"], dev, mode)
                        row["synthetic_images_per_s"] = round(_time_synthetic(step, batch, case["crop"], case["classes"], warmup, n_steps), 1)
                        row["loader_images_per_s"] = round(_time_loader(step, shards, batch, case["crop"], case["load"], workers, warmup, n_steps), 1)
                        row["loader_fraction"] = round(row["loader_images_per_s"] / row["synthetic_images_per_s"], 3)
                    except torch.cuda.OutOfMemoryError:
                        row["error"] = "out of memory"
                    finally:
                        step = None
                        if on_cuda:
                            torch.cuda.empty_cache()
                    rows.append(row)
    from kernels import last_backend

    return {
        "benchmark": "train",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(dev) if on_cuda else None},
        "conditions": {"quick": quick, "loss_backend": last_backend(), "optimizer": "SGD momentum 0.9 wd 1e-4",
                       "amp_dtype": "bfloat16"},
        "results": rows,
    }


@click.command(name="train")
@click.option("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available).")
@click.option("--workers", type=int, default=None, help="DataLoader workers for the loader-fed runs (default min(8, CPUs)).")
@click.option("--max-batch", type=int, default=768, show_default=True, help="Upper bound of the largest-batch search (CUDA).")
@click.option("--cpu-r101-size", type=int, default=112, show_default=True, help="Input side of the reduced CPU R101 case.")
@click.option("--cpu-amp", is_flag=True, help="Also time channels_last + bf16 autocast on CPU.")
@click.option("--cpu-compile", is_flag=True, help="Also time torch.compile on CPU (slow to compile).")
@click.option("--steps", type=int, default=None, help="Timed steps per configuration.")
@click.option("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/train.json"), show_default=True)
@click.option("--quick", is_flag=True, help="Tiny sizes, eager only, no workers (for tests).")
def command(device, workers, max_batch, cpu_r101_size, cpu_amp, cpu_compile, steps, threads, out, quick) -> None:
    """Images/s of one training step (embedded model, R101): eager vs channels_last+AMP vs compile,
    synthetic tensors vs the shard loader (JSON)."""
    if threads:
        torch.set_num_threads(threads)
    result = run_train_benchmark(device=device, quick=quick, workers=workers, max_batch=max_batch,
                                 cpu_r101_size=cpu_r101_size, cpu_amp=cpu_amp, cpu_compile=cpu_compile, steps=steps)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for r in result["results"]:
        if "error" in r:
            click.echo(f"{r['case']:>14} b={r['batch']:<4} {r['mode']:>8}  {r['error']}")
        else:
            click.echo(f"{r['case']:>14} b={r['batch']:<4} {r['mode']:>8}  synthetic {r['synthetic_images_per_s']:9.1f} img/s"
                       f"  loader {r['loader_images_per_s']:9.1f} img/s  ({100 * r['loader_fraction']:.0f}%)")
    click.echo(f"wrote {out}")
