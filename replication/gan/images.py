"""Real images for the GANs: shard-set images preprocessed as the trainers read them.

Preprocessing (decision, docs/gan.md — the paper used the images "without any pre-processing" and
"randomly flipped"):

* resize each stored image to the GAN size with antialiasing: ``cv2.INTER_AREA`` when shrinking
  (area averaging = antialiased; the 256×256 photo shards → 64×64), bilinear ``cv2.INTER_LINEAR``
  when enlarging, untouched when the size already matches (digits-mosaic 32×32 → 32×32);
  ``resize: bilinear`` forces plain bilinear. Aspect ratio is not kept (shards are square already);
* BGR (OpenCV) → RGB, the channel order both TF repositories read;
* scale to [−1, 1] as ``x / 127.5 − 1`` (inside the trainer);
* random horizontal flip, p = 0.5 per image per epoch, from the run's seed (``flip``; default on
  for photos, off for digits-mosaic because a mirrored digit is not a digit);
* carpedm20's per-image min–max stretch to [−1, 1] (:func:`minmax_stretch`), off by default.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from gan_tf_port.grid import save_grid
from replication.console.progress import progress_on
from replication.data.shards import ShardSet


def preprocess_gan_image(image_bgr: np.ndarray, size: int, resize: str = "area") -> np.ndarray:
    """BGR uint8 H×W×3 → RGB uint8 3×size×size (antialiased resize, see the module docstring)."""
    h, w = image_bgr.shape[:2]
    if (h, w) != (size, size):
        shrink = h > size or w > size
        interp = cv2.INTER_AREA if (resize == "area" and shrink) else cv2.INTER_LINEAR
        image_bgr = cv2.resize(image_bgr, (size, size), interpolation=interp)
    return np.ascontiguousarray(image_bgr[:, :, ::-1].transpose(2, 0, 1))


def minmax_stretch(x: torch.Tensor) -> torch.Tensor:
    """carpedm20's per-image min–max stretch: each image's values mapped linearly onto [−1, 1]."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    return (x - lo) / (hi - lo).clamp_min(1e-8) * 2.0 - 1.0


class ShardGanImages(Dataset):
    """Map-style dataset over a shard set: item i = preprocessed RGB uint8 tensor 3×size×size."""

    def __init__(self, path: str | Path, size: int, resize: str = "area") -> None:
        self.shards = ShardSet(path)
        self.size, self.resize = size, resize

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(preprocess_gan_image(self.shards[i].image, self.size, self.resize))


def load_gan_images(path: str | Path, size: int, resize: str = "area", progress: bool = False) -> torch.Tensor:
    """All images of a shard set, preprocessed, as one uint8 tensor N×3×size×size (RGB)."""
    ds = ShardGanImages(path, size, resize)
    out = torch.empty((len(ds), 3, size, size), dtype=torch.uint8)
    for i in tqdm(range(len(ds)), desc="load GAN images", unit="img", disable=not progress_on(progress)):
        out[i] = ds[i]
    return out


def save_real_grid(images: torch.Tensor | Dataset, path: Path, n: int) -> Path:
    """Save the first ``n`` training images as the GAN sees them (no flip, no min–max stretch) as a grid PNG.

    Written once per run as ``samples/real.png`` beside the fixed-z grids, so generated and real
    images can be compared at the same size and layout.
    """
    if not path.exists():
        first = [images[i] for i in range(min(n, len(images)))]
        save_grid(torch.stack(first).permute(0, 2, 3, 1).numpy(), path)
    return path


__all__ = ["ShardGanImages", "load_gan_images", "minmax_stretch", "preprocess_gan_image", "save_real_grid"]
