"""Train benchmark (``spl bench train``): images/s of one classifier training step, synthetic tensors
vs the shard loader.

A step is exactly the training loop's: forward (optionally bf16 autocast, channels_last,
``torch.compile``), the loss of docs/classifier.md (``kernels.weighted_soft_cross_entropy``, float32),
backward, SGD (momentum 0.9, weight decay) step. Cases:

* ``embedded``: ``preact_resnet_small`` on 28×28 crops of 32×32 PNG shards (batch 64, the embedded
  presets'; ``embedded_batches`` times other batch sizes too);
* ``r101``: pre-activation ResNet-101 on 224×224 crops of 256×256 JPEG shards, at batch 24 and —
  on CUDA — at the largest power-of-two multiple of 24 that fits (``max_batch``); on CPU a
  reduced case (``cpu_r101_size``, default 112, batch 4), since full R101 steps take seconds.

Modes: ``eager`` (float32, NCHW), ``cl`` (float32, channels_last: what the embedded presets train
with, ``channels_last: true``), ``cl+amp`` (channels_last + bf16 autocast; CUDA only unless
``cpu_amp``), ``compile`` (``torch.compile`` of the cl+amp model; CUDA only unless ``cpu_compile``).
Each (case, batch, mode) is timed (:func:`replication.benchmarks.harness.time_calls`: warm-up steps,
then timed steps, device synchronised after each) with synthetic device tensors and with the shard
loader (``ShardDataset`` + ``DataLoader``, ``workers``) feeding it; the record holds both and the
loader/synthetic ratio. Speed is reported, never asserted.

**Achieved vs GEMM** (issue #20; the harness's, as ``spl bench gan``): each case's FLOPs per step
(forward + backward of the eager float32 step, counted once by ``FlopCounterMode``:
:func:`~replication.benchmarks.harness.count_flops`) give every synthetic row ``gflop_per_step``,
``gflops`` (over the median step time) and ``gemm_ratio`` against an fp32 ``gemm_n × gemm_n``
matmul timed on the same device and threads just before and after the row. A cl+amp or compile row
does the same operations in bf16 or fused; its ratio is still to the fp32 GEMM.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from kernels import last_backend
from replication.benchmarks import harness
from replication.data.dataset import ShardDataset
from replication.data.shards import ShardWriter
from replication.data.transforms import CaffeTrainTransform
from replication.models import build_model
from replication.training.config import load_train_config
from replication.training.loop import compute_loss

C = 80
CASES = ("embedded", "r101")  # "r101" is the reduced R101 case on CPU
MODES = ("eager", "cl", "cl+amp", "compile")


@dataclasses.dataclass
class TrainBenchConfig:
    """What to measure; ``None`` fields take the device-dependent defaults of :func:`run_train`."""

    device: str | None = None
    quick: bool = False
    workers: int | None = None
    max_batch: int = 768
    cpu_r101_size: int = 112
    cpu_amp: bool = False
    cpu_compile: bool = False
    steps: int | None = None
    cases: tuple[str, ...] | None = None      # subset of CASES (None: all)
    modes: tuple[str, ...] | None = None      # subset of MODES (None: the device's defaults)
    r101_batches: tuple[int | str, ...] | None = None  # CUDA R101 batches, ints or "max" (None: 24, max)
    embedded_batches: tuple[int, ...] | None = None    # embedded-model batches (None: 64; quick: 8)
    gemm_n: int = harness.GEMM_N              # side of the fp32 reference matmul (0: no GEMM figures)


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
        self.cl = self.amp or mode == "cl"
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


def _synthetic(batch: int, crop: int, classes: int, dev: torch.device) -> tuple[torch.Tensor, ...]:
    """A fixed batch: Caffe-range images, 30 % positive labels, unit weights."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 3, crop, crop, generator=g) * 255 - 117).to(dev)
    y = (torch.rand(batch, classes, generator=g) < 0.3).float().to(dev)
    return x, y, torch.ones(batch, device=dev)


def _time_synthetic(step: _Step, batch: int, crop: int, classes: int, warmup: int, steps: int) -> harness.Timing:
    x, y, w = _synthetic(batch, crop, classes, step.dev)
    return harness.time_calls(lambda: step(x, y, w), warmup=warmup, reps=steps, sync=harness.device_sync(step.dev))


def step_flops(model: str, classes: int, batch: int, crop: int, dev: torch.device) -> int:
    """FLOPs of one eager float32 training step (forward + backward; counted after one untimed step)."""
    step = _Step(model, classes, dev, "eager")
    x, y, w = _synthetic(batch, crop, classes, dev)
    step(x, y, w)
    return harness.count_flops(lambda: step(x, y, w))


def _time_loader(step: _Step, shards: Path, batch: int, crop: int, load: int, workers: int, warmup: int,
                 steps: int) -> float:
    ds = ShardDataset(shards, CaffeTrainTransform(crop, load, flip=True))
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=batch * (warmup + steps),
                                             generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True,
                        pin_memory=step.dev.type == "cuda", persistent_workers=False,
                        prefetch_factor=4 if workers else None)
    it = iter(loader)
    timing = harness.time_calls(lambda: step(*next(it)), warmup=warmup, reps=steps,
                                sync=harness.device_sync(step.dev))
    return timing.rate(batch * steps)


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
            step = None
            torch.cuda.empty_cache()
    return best


def _cases(cfg: TrainBenchConfig, on_cuda: bool) -> list[dict]:
    cases = [dict(case="embedded", model="preact_resnet_small", crop=28, load=32, encoding="png", classes=10,
                  batches=list(cfg.embedded_batches or [8 if cfg.quick else 64]))]
    if on_cuda:
        cases.append(dict(case="r101", model="preact_resnet101", crop=224, load=256, encoding="jpeg", classes=C,
                          batches=list(cfg.r101_batches or (24, "max"))))
    else:
        size = 32 if cfg.quick else cfg.cpu_r101_size
        cases.append(dict(case="r101-reduced", model="preact_resnet101", crop=size, load=size + size // 7,
                          encoding="jpeg", classes=C, batches=[2 if cfg.quick else 4]))
    if cfg.cases:
        cases = [c for c in cases if c["case"].split("-")[0] in cfg.cases]
    return cases


def _measure(case: dict, shards: Path, batch: int, mode: str, dev: torch.device, row: dict,
             flops: int | None = None, gemm_n: int = 0) -> None:
    """Fill ``row`` with the synthetic and loader-fed images/s of one (case, batch, mode), or an OOM error;
    with ``flops`` (per step) and ``gemm_n`` also the achieved GFLOP/s of the synthetic steps vs the GEMM."""
    step = None
    try:
        step = _Step(case["model"], case["classes"], dev, mode)
        args = (row["warmup"], row["steps"])
        gemm_before = harness.gemm_gflops(dev, gemm_n) if flops and gemm_n else None
        timing = _time_synthetic(step, batch, case["crop"], case["classes"], *args)
        row["synthetic_images_per_s"] = round(timing.rate(batch * row["steps"]), 1)
        row["step_s"] = harness.summarize(timing.samples)
        if gemm_before is not None:
            gemm = (gemm_before + harness.gemm_gflops(dev, gemm_n)) / 2
            row.update(gflop_per_step=round(flops / 1e9, 4),
                       **harness.achieved_vs_gemm(flops, harness.percentile(timing.samples, 50), gemm))
        row["loader_images_per_s"] = round(
            _time_loader(step, shards, batch, case["crop"], case["load"], row["workers"], *args), 1)
        row["loader_fraction"] = round(row["loader_images_per_s"] / row["synthetic_images_per_s"], 3)
    except torch.cuda.OutOfMemoryError:
        row["error"] = "out of memory"
    finally:
        del step  # free the model before emptying the CUDA cache
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def _try_flops(case: dict, batch: int, dev: torch.device) -> int | None:
    """:func:`step_flops` of a case, None when it does not fit (the rows then record their own error)."""
    try:
        return step_flops(case["model"], case["classes"], batch, case["crop"], dev)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def run_train(cfg: TrainBenchConfig) -> dict:
    """Time the cases, modes and feeds described in the module docstring; returns the result record."""
    dev = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_cuda = dev.type == "cuda"
    workers = cfg.workers if cfg.workers is not None else min(8, os.cpu_count() or 1)
    modes = (["eager"] + (["cl+amp"] if on_cuda or cfg.cpu_amp else [])
             + (["compile"] if on_cuda or cfg.cpu_compile else []))
    if cfg.quick:
        modes, workers = ["eager"], 0
    if cfg.modes:
        modes = list(cfg.modes)
    n_steps = cfg.steps or (2 if cfg.quick else 20 if on_cuda else 5)
    gemm_n = min(cfg.gemm_n, 256) if cfg.quick else cfg.gemm_n
    warmup = 1 if cfg.quick else 5 if on_cuda else 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in _cases(cfg, on_cuda):
            n_images = 32 if cfg.quick else max(256, 4 * 24)
            shards = _write_shards(Path(tmp) / case["case"], n_images, case["load"], case["encoding"], case["classes"])
            batches = [b if b != "max" else
                       _largest_batch(case["model"], case["classes"], dev, case["crop"], 24, cfg.max_batch)
                       for b in case["batches"]]
            for batch in dict.fromkeys(batches):
                flops = _try_flops(case, batch, dev) if gemm_n else None
                for mode in modes:
                    row = dict(case=case["case"], model=case["model"], input=case["crop"], batch=batch, mode=mode,
                               device=str(dev), steps=n_steps, warmup=warmup, workers=workers)
                    _measure(case, shards, batch, mode, dev, row, flops, gemm_n)
                    rows.append(row)
    conditions = {"quick": cfg.quick, "loss_backend": last_backend(), "optimizer": "SGD momentum 0.9 wd 1e-4",
                  "amp_dtype": "bfloat16", "modes": modes, "steps": n_steps, "warmup": warmup, "workers": workers,
                  "gemm_n": gemm_n}
    return harness.record("train", harness.machine_info(dev), conditions, rows)
