"""Loader benchmark (``spl bench loader``): images/s of reading + decoding + transforming shards vs
loose JPEG files.

Both paths decode with OpenCV and apply the same Caffe train transform (random 224 crop of a
256×256 image, flip, mean subtraction); only the storage differs. Synthetic photo-like images
(smoothed noise, JPEG q95) are written once into a temporary folder, then each configuration is
timed over full passes with ``DataLoader`` at 0, 1 and 2 workers, after one warm-up batch
(worker start-up and first reads). ``images_per_s`` = images seen / total time of the passes.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from replication.benchmarks import harness
from replication.data.dataset import ShardDataset
from replication.data.shards import ShardWriter, encode_image
from replication.data.sources import read_image
from replication.data.transforms import CaffeTrainTransform


@dataclasses.dataclass
class LoaderConfig:
    """What to measure; ``quick()`` gives the tiny settings the tests use."""

    n: int = 512
    size: int = 256
    crop: int = 224
    batch: int = 24
    workers: tuple[int, ...] = (0, 1, 2)
    passes: int = 2

    @classmethod
    def quick(cls, workers: tuple[int, ...] = (0, 1, 2)) -> LoaderConfig:
        return cls(n=48, size=64, crop=56, workers=workers, passes=1)


class LooseJpegDataset(Dataset):
    """Reference path: one JPEG file per image, read with OpenCV."""

    def __init__(self, files: list[Path], transform) -> None:
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return self.transform(read_image(self.files[i]))


def synthetic_photos(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Photo-like BGR images: upsampled colour noise (JPEG sizes close to natural images)."""
    rng = np.random.default_rng(seed)
    return [
        cv2.resize(rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8), (size, size),
                   interpolation=cv2.INTER_CUBIC)
        for _ in range(n)
    ]


def _time_loader(dataset, workers: int, batch: int, passes: int) -> dict:
    """One result row's timing: images/s over ``passes`` full passes, per-pass seconds summarised."""
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    next(iter(loader))  # warm-up: worker start-up and first reads
    seen = [0]

    def one_pass() -> None:
        for item in loader:
            seen[0] += (item[0] if isinstance(item, (list, tuple)) else item).shape[0]

    timing = harness.time_calls(one_pass, warmup=0, reps=passes)
    return {"images_per_s": round(timing.rate(seen[0]), 1), "pass_s": harness.summarize(timing.samples)}


def _write_sets(tmp: Path, images: list[np.ndarray]) -> list[Path]:
    """The same images as one shard set (``tmp/shards``) and as loose JPEG files (returned)."""
    (tmp / "jpeg").mkdir()
    files = []
    with ShardWriter(tmp / "shards", dataset="bench", split="train", class_names=["a", "b", "c"],
                     encoding="jpeg") as w:
        for i, img in enumerate(images):
            data = encode_image(img, "jpeg", 95)
            w.add(encoded=data, label=[1, 0, 1], key=str(i))
            files.append(tmp / "jpeg" / f"{i:06d}.jpg")
            files[-1].write_bytes(data)
    return files


def run_loader(cfg: LoaderConfig) -> dict:
    """Measure images/s for shards and loose JPEGs at each worker count; returns the result record."""
    transform = CaffeTrainTransform(crop=cfg.crop, load_size=cfg.size, flip=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = _write_sets(tmp, synthetic_photos(cfg.n, cfg.size))
        datasets = (("shards", ShardDataset(tmp / "shards", transform)),
                    ("loose-jpeg", LooseJpegDataset(files, transform)))
        for k in cfg.workers:
            for name, ds in datasets:
                rows.append({"storage": name, "workers": k, **_time_loader(ds, k, cfg.batch, cfg.passes)})
    conditions = {"images": cfg.n, "stored_size": cfg.size, "crop": cfg.crop, "batch": cfg.batch,
                  "passes": cfg.passes, "jpeg_quality": 95, "transform": repr(transform),
                  "opencv": cv2.__version__}
    return harness.record("loader", harness.machine_info("cpu"), conditions, rows)
