"""``digits-mosaic``: the embedded default dataset, built from scikit-learn's bundled digits.

See docs/datasets.md#digits-mosaic-the-embedded-default.

Each sample is a 32×32 RGB canvas holding 1–4 *distinct* handwritten digits (8×8 originals from
``sklearn.datasets.load_digits``, upscaled to 12–16 px), placed at random positions in random
bright colours on a noisy dark background. The label is the multi-hot set of digit classes
present (C = 10).

Design decisions (docs/decisions.md):

* **Labels per image.** The number of digits n ∈ {1, 2, 3, 4} is drawn with probabilities
  (0.1, 0.2, 0.4, 0.3), so the mean is 2.9 labels per image — MS-COCO's figure.
* **Co-occurrence.** Classes fall into three "scenes" — round {0, 6, 8, 9}, straight {1, 4, 7},
  curly {2, 3, 5}. The first digit is uniform over classes; each further digit comes from the
  first digit's scene with probability 0.6 (if one is left), else uniformly from the remaining
  classes. Real datasets have such structure (a fork appears with a knife); it gives the
  pre-trained model something to transfer into SPL's soft labels.
* **No leakage.** The 1,797 digit instances are split once, by a fixed permutation independent of
  the build seed, into disjoint train (70 %) and test (30 %) pools.
* **Determinism.** Everything is drawn from ``np.random.default_rng([seed, split_id])``.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import cv2
import numpy as np

from replication.data.sources import SourceRecord, SourceSplit

CLASS_NAMES = [str(d) for d in range(10)]
SIZE = 32
DIGIT_MIN, DIGIT_MAX = 12, 16
COUNT_PROBS = (0.1, 0.2, 0.4, 0.3)  # P(n = 1..4): mean 2.9 labels per image
SCENES = ((0, 6, 8, 9), (1, 4, 7), (2, 3, 5))
SAME_SCENE_PROB = 0.6
DEFAULT_COUNTS = {"train": 5000, "test": 2000}
TINY_COUNTS = {"train": 240, "test": 120}
POOL_SPLIT_SEED = 20190708  # fixed: the pools never depend on the build seed
TRAIN_POOL_FRACTION = 0.7


def digit_pools() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The disjoint train/test pools of (8×8 float images scaled to [0, 1], class targets)."""
    from sklearn.datasets import load_digits  # heavy: scikit-learn is loaded only to build digits-mosaic

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    order = np.random.default_rng(POOL_SPLIT_SEED).permutation(len(images))
    cut = int(round(TRAIN_POOL_FRACTION * len(images)))
    idx = {"train": order[:cut], "test": order[cut:]}
    return {k: (images[v], digits.target[v].astype(np.int64)) for k, v in idx.items()}


def sample_classes(rng: np.random.Generator) -> list[int]:
    """Draw the distinct digit classes of one canvas (count and co-occurrence as in the module doc)."""
    n = int(rng.choice(4, p=COUNT_PROBS)) + 1
    first = int(rng.integers(10))
    chosen = [first]
    scene = next(s for s in SCENES if first in s)
    while len(chosen) < n:
        same = [c for c in scene if c not in chosen]
        if same and rng.random() < SAME_SCENE_PROB:
            chosen.append(int(rng.choice(same)))
        else:
            rest = [c for c in range(10) if c not in chosen]
            chosen.append(int(rng.choice(rest)))
    return chosen


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A bright, saturated BGR colour."""
    hsv = np.array([[[rng.integers(180), rng.integers(150, 256), rng.integers(190, 256)]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def compose_canvas(
    rng: np.random.Generator, classes: list[int], pool_images: np.ndarray, pool_targets: np.ndarray
) -> np.ndarray:
    """Render one BGR uint8 32×32 canvas with one instance of each class in ``classes``."""
    canvas = rng.normal(18.0, 6.0, size=(SIZE, SIZE, 3)).clip(0, 255).astype(np.float32)
    occupied = np.zeros((SIZE, SIZE), dtype=np.float32)
    for c in classes:
        candidates = np.flatnonzero(pool_targets == c)
        glyph = pool_images[int(rng.choice(candidates))]
        side = int(rng.integers(DIGIT_MIN, DIGIT_MAX + 1))
        alpha = cv2.resize(glyph, (side, side), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)
        # Pick the least-overlapping of a few random positions so digits stay legible.
        best, best_overlap = (0, 0), np.inf
        for _ in range(8):
            y, x = int(rng.integers(0, SIZE - side + 1)), int(rng.integers(0, SIZE - side + 1))
            overlap = float((occupied[y : y + side, x : x + side] * alpha).sum())
            if overlap < best_overlap:
                best, best_overlap = (y, x), overlap
        y, x = best
        a = alpha[..., None]
        region = canvas[y : y + side, x : x + side]
        canvas[y : y + side, x : x + side] = region * (1.0 - a) + _random_colour(rng) * a
        occupied[y : y + side, x : x + side] = np.maximum(occupied[y : y + side, x : x + side], alpha)
    return canvas.round().clip(0, 255).astype(np.uint8)


def generate(split: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` canvases of ``split``: (N×32×32×3 BGR uint8 images, N×10 float32 multi-hot labels)."""
    pools = digit_pools()
    images_pool, targets_pool = pools[split]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.zeros((n, 10), dtype=np.float32)
    for i in range(n):
        classes = sample_classes(rng)
        images[i] = compose_canvas(rng, classes, images_pool, targets_pool)
        labels[i, classes] = 1.0
    return images, labels


def open_split(root: Path | None, split: str, *, seed: int = 0, tiny: bool = False) -> SourceSplit:
    """Describe the digits-mosaic ``split`` (``root`` is ignored: the data ships with scikit-learn)."""
    n = (TINY_COUNTS if tiny else DEFAULT_COUNTS)[split]
    images, labels = generate(split, n, seed)
    records = [
        SourceRecord(key=f"{split}-{seed}-{i:06d}", label=labels[i], load=partial(_identity, images[i]))
        for i in range(n)
    ]
    return SourceSplit(
        dataset="digits-mosaic",
        split=split,
        class_names=list(CLASS_NAMES),
        label_kind="binary",
        records=records,
        encoding="png",
        default_size=SIZE,
        stats={"labels_per_image": float(labels.sum(1).mean())},
    )


def _identity(image: np.ndarray) -> np.ndarray:
    return image
