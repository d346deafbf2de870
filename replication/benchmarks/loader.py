"""``spl bench loader``: images/s of reading + decoding + transforming shards vs loose JPEG files.

Both paths decode with OpenCV and apply the same Caffe train transform (random 224 crop of a
256×256 image, flip, mean subtraction); only the storage differs. Synthetic photo-like images
(smoothed noise, JPEG q95) are written once into a temporary folder, then each configuration is
timed over full passes with ``DataLoader`` at 0, 1 and 2 workers.
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
from torch.utils.data import DataLoader, Dataset

from replication.data.dataset import ShardDataset
from replication.data.shards import ShardWriter, encode_image
from replication.data.sources import read_image
from replication.data.transforms import CaffeTrainTransform


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


def _time_loader(dataset, workers: int, batch: int, passes: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    next(iter(loader))  # warm-up: worker start-up and first reads
    start = time.perf_counter()
    seen = 0
    for _ in range(passes):
        for item in loader:
            seen += (item[0] if isinstance(item, (list, tuple)) else item).shape[0]
    return seen / (time.perf_counter() - start)


def run_loader_benchmark(n: int = 512, size: int = 256, crop: int = 224, batch: int = 24,
                         workers: tuple[int, ...] = (0, 1, 2), passes: int = 2) -> dict:
    """Measure images/s for shards and loose JPEGs at each worker count; returns the result dict."""
    transform = CaffeTrainTransform(crop=crop, load_size=size, flip=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = synthetic_photos(n, size)
        (tmp / "jpeg").mkdir()
        files = []
        with ShardWriter(tmp / "shards", dataset="bench", split="train", class_names=["a", "b", "c"],
                         encoding="jpeg") as w:
            for i, img in enumerate(images):
                data = encode_image(img, "jpeg", 95)
                w.add(encoded=data, label=[1, 0, 1], key=str(i))
                files.append(tmp / "jpeg" / f"{i:06d}.jpg")
                files[-1].write_bytes(data)
        shard_ds = ShardDataset(tmp / "shards", transform)
        loose_ds = LooseJpegDataset(files, transform)
        for k in workers:
            for name, ds in (("shards", shard_ds), ("loose-jpeg", loose_ds)):
                rows.append({"storage": name, "workers": k, "images_per_s": round(_time_loader(ds, k, batch, passes), 1)})
    return {
        "benchmark": "loader",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "opencv": cv2.__version__},
        "conditions": {"images": n, "stored_size": size, "crop": crop, "batch": batch, "passes": passes,
                       "jpeg_quality": 95, "transform": repr(transform)},
        "results": rows,
    }


@click.command(name="loader")
@click.option("--n", "n", type=int, default=512, show_default=True, help="Images in the synthetic set.")
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--crop", type=int, default=224, show_default=True)
@click.option("--workers", default="0,1,2", show_default=True, help="Comma-separated DataLoader worker counts.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/loader.json"), show_default=True)
@click.option("--quick", is_flag=True, help="A few images, one pass (for tests).")
def command(n, size, crop, workers, out, quick) -> None:
    """Images/s for shards vs loose JPEG files at 0, 1, 2 DataLoader workers (JSON)."""
    kw = dict(n=n, size=size, crop=crop, workers=tuple(int(w) for w in workers.split(",")))
    if quick:
        kw.update(n=48, size=64, crop=56, passes=1)
    result = run_loader_benchmark(**kw)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for row in result["results"]:
        click.echo(f"{row['storage']:>10}  workers={row['workers']}  {row['images_per_s']:8.1f} img/s")
    click.echo(f"wrote {out}")
