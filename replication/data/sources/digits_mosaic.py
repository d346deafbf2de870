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

``layout="single"`` (``spl data build digits-mosaic --layout single``; the pretraining source of
issue #13, docs/decisions.md "Pretraining on the embedded data") draws one digit per canvas with the
same rendering and one-hot labels over the same 10 class names. Both of its splits come from the
*training* pool only, never the test pool: the training pool is cut once, by a fixed permutation,
into a part for the single-digit ``train`` split (85 %) and a held-out part for its ``test`` split
(15 %), so the source task's own test set shares no glyph with its training set either. Sizes:
10,000 / 1,000 canvases (tiny: 240 / 120), or ``canvases`` (``--canvases``). The class is uniform
over the 10 digits.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import cv2
import numpy as np

from replication.data.sources import SourceRecord, SourceSplit
from replication.errors import DataSourceError

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
NUM_DIGITS = 1797  # instances in sklearn's load_digits
LAYOUTS = ("mosaic", "single")
SINGLE_COUNTS = {"train": 10000, "test": 1000}
SINGLE_HELD_OUT_SEED = 20190709  # fixed: the single-digit splits never depend on the build seed
SINGLE_HELD_OUT_FRACTION = 0.15


def pool_indices() -> dict[str, np.ndarray]:
    """Indices into ``load_digits()`` of the disjoint train (70 %) and test (30 %) pools."""
    order = np.random.default_rng(POOL_SPLIT_SEED).permutation(NUM_DIGITS)
    cut = int(round(TRAIN_POOL_FRACTION * NUM_DIGITS))
    return {"train": order[:cut], "test": order[cut:]}


def single_pool_indices() -> dict[str, np.ndarray]:
    """Indices into ``load_digits()`` the single-digit ``train``/``test`` splits draw from.

    Both are parts of the *training* pool of :func:`pool_indices` (module docstring); the test pool is
    never used.
    """
    train_pool = pool_indices()["train"]
    order = np.random.default_rng(SINGLE_HELD_OUT_SEED).permutation(len(train_pool))
    cut = int(round(SINGLE_HELD_OUT_FRACTION * len(train_pool)))
    return {"train": train_pool[order[cut:]], "test": train_pool[order[:cut]]}


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits: (8×8 float images scaled to [0, 1], class targets)."""
    from sklearn.datasets import load_digits  # heavy: scikit-learn is loaded only to build digits-mosaic

    digits = load_digits()
    if len(digits.images) != NUM_DIGITS:  # pragma: no cover - a different scikit-learn release
        raise ValueError(f"load_digits() returned {len(digits.images)} digits, expected {NUM_DIGITS}")
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def digit_pools() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The disjoint train/test pools of (8×8 float images scaled to [0, 1], class targets)."""
    images, targets = _load_digits()
    return {k: (images[v], targets[v]) for k, v in pool_indices().items()}


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
    rng: np.random.Generator, classes: list[int], pool_images: np.ndarray, pool_targets: np.ndarray,
    picked: list[int] | None = None,
) -> np.ndarray:
    """Render one BGR uint8 32×32 canvas with one instance of each class in ``classes``.

    ``picked``, if given, receives the pool index of each glyph drawn (the random draws are the same).
    """
    canvas = rng.normal(18.0, 6.0, size=(SIZE, SIZE, 3)).clip(0, 255).astype(np.float32)
    occupied = np.zeros((SIZE, SIZE), dtype=np.float32)
    for c in classes:
        candidates = np.flatnonzero(pool_targets == c)
        pick = int(rng.choice(candidates))
        if picked is not None:
            picked.append(pick)
        glyph = pool_images[pick]
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


def generate_single(split: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` single-digit canvases of ``split`` (module docstring, ``layout="single"``).

    Returns (N×32×32×3 BGR uint8 images, N×10 float32 one-hot labels, N indices into
    ``load_digits()`` of the glyph drawn on each canvas).
    """
    images_all, targets_all = _load_digits()
    allowed = single_pool_indices()[split]
    pool_images, pool_targets = images_all[allowed], targets_all[allowed]
    rng = np.random.default_rng([seed, 2 if split == "train" else 3])  # streams apart from the mosaic's 0/1
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.zeros((n, 10), dtype=np.float32)
    glyphs = np.empty(n, dtype=np.int64)
    for i in range(n):
        c = int(rng.integers(10))
        picked: list[int] = []
        images[i] = compose_canvas(rng, [c], pool_images, pool_targets, picked)
        labels[i, c] = 1.0
        glyphs[i] = allowed[picked[0]]
    return images, labels, glyphs


def open_split(root: Path | None, split: str, *, seed: int = 0, tiny: bool = False, layout: str = "mosaic",
               canvases: int | None = None) -> SourceSplit:
    """Describe the digits-mosaic ``split`` (``root`` is ignored: the data ships with scikit-learn).

    ``layout`` is ``mosaic`` (1–4 digits per canvas, the target dataset) or ``single`` (one digit
    per canvas from the training pool: the pretraining source). ``canvases`` overrides the number of
    canvases generated (default: module constants; ``tiny`` ones with ``tiny``).
    """
    if layout not in LAYOUTS:
        raise DataSourceError(f"digits-mosaic: unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if canvases is not None and int(canvases) < 1:
        raise DataSourceError(f"digits-mosaic: canvases must be >= 1, got {canvases}")
    single = layout == "single"
    counts = TINY_COUNTS if tiny else (SINGLE_COUNTS if single else DEFAULT_COUNTS)
    n = int(canvases) if canvases is not None else counts[split]
    if single:
        images, labels, glyphs = generate_single(split, n, seed)
        stats = {"layout": "single", "glyphs": len(single_pool_indices()[split]),
                 "distinct_glyphs_used": len(np.unique(glyphs))}
    else:
        images, labels = generate(split, n, seed)
        stats = {"labels_per_image": float(labels.sum(1).mean())}
    prefix = "single-" if single else ""
    records = [
        SourceRecord(key=f"{prefix}{split}-{seed}-{i:06d}", label=labels[i], load=partial(_identity, images[i]))
        for i in range(n)
    ]
    return SourceSplit(
        dataset="digits-single" if single else "digits-mosaic",
        split=split,
        class_names=list(CLASS_NAMES),
        label_kind="binary",
        records=records,
        encoding="png",
        default_size=SIZE,
        stats=stats,
    )


def _identity(image: np.ndarray) -> np.ndarray:
    return image
