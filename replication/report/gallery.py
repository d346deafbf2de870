"""A gallery of generated images with the soft labels the rules gave them (what a reader of the paper wants to see).

Each cell shows one generated image and, below it, its SPL label (Eq. 2) as the top classes with
their weights, next to the smooth label (1/C for every class). With SPL over sigmoid
probabilities the weights stay close to 1/C (ratio at most e; paper §2.3, Eqs. (1)–(2);
docs/labeling.md#label-rules), which the gallery makes visible: the top SPL weight is printed
beside 1/C.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from replication.data.labelfile import read_label_file
from replication.data.shards import ShardSet
from replication.io_utils import atomic_write

log = logging.getLogger(__name__)


def top_classes(label: np.ndarray, class_names: list[str], k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` largest entries of a label vector as ``(class name, weight)``, largest first (stable)."""
    order = np.argsort(-np.asarray(label, dtype=np.float64), kind="stable")[:k]
    return [(class_names[i], float(label[i])) for i in order]


def describe_label(rule: str, label: np.ndarray, class_names: list[str], k: int = 3) -> str:
    """One line per rule: ``"spl: 3 .152, 8 .131, 0 .120"``; a constant vector prints as ``"smooth: all .100"``."""
    label = np.asarray(label, dtype=np.float64)
    if label.size and np.allclose(label, label[0]):
        return f"{rule}: all {label[0]:.3f}".replace("0.", ".", 1)
    parts = [f"{name} {w:.3f}".replace(" 0.", " .") for name, w in top_classes(label, class_names, k)]
    return f"{rule}: " + ", ".join(parts)


def draw_gallery(samples: str | Path, label_files: Mapping[str, str | Path], out: str | Path, *, n: int = 16,
                 cols: int = 4, k: int = 3, title: str = "") -> Path:
    """Save a PNG of the first ``n`` generated images of ``samples`` with one label line per rule.

    ``label_files`` maps a rule name (``spl``, ``smooth``, …) to its label file for ``samples``;
    each is checked against the shard set (:func:`replication.data.labelfile.read_label_file`).
    """
    import matplotlib  # heavy: loaded only when a gallery is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shards = ShardSet(samples)
    labels = {rule: read_label_file(path, shards)[0] for rule, path in label_files.items()}
    n = min(n, len(shards))
    cols = max(1, min(cols, n))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.2 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        image = shards[i].image[:, :, ::-1]  # BGR → RGB
        ax.imshow(image, interpolation="nearest")
        text = "\n".join(describe_label(rule, lab[i], shards.class_names, k) for rule, lab in labels.items())
        ax.set_title(text, fontsize=7, loc="left", family="monospace")
    c = shards.num_classes
    fig.suptitle(f"{title}\n(top-{k} classes and weights; 1/C = {1 / c:.3f} for C = {c})", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    log.info("gallery of %d images → %s", n, out)
    return out


__all__ = ["draw_gallery", "top_classes", "describe_label"]
