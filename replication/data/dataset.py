"""A torch ``Dataset`` over a real shard set, optionally followed by a labelled generated shard set.

Items are ``(image, target, weight)``: the transformed image (float32 C×H×W), the target vector
(float32, C — WIDER's −1/0/1 kept as stored; generated images take their row of the label
file) and the per-sample loss weight (1 for real images, λ = ``generated_weight`` for generated
ones, docs/labeling.md#loss). Real records come first (indices ``0 … N−1``), then generated ones; the sampler
shuffles them together, with no fixed per-batch ratio (as LSRO).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from replication.data.labelfile import read_label_file
from replication.data.shards import ShardSet
from replication.errors import ShardError


def check_training_labels(shards: ShardSet) -> None:
    """Refuse (one line, naming the set) real labels that are not finite or outside the set's label kind.

    Reading the labels opens, and so verifies, every shard in this process before any worker starts.
    """
    labels = shards.labels()
    bad = ~np.isfinite(labels).all(axis=1)
    if bad.any():
        raise ShardError(f"{shards.path}: {int(bad.sum())} label rows are not finite (first at record "
                         f"{int(np.argmax(bad))}); an unlabeled set cannot be the real training set")
    low = -1.0 if shards.label_kind == "wider" else 0.0
    if labels.size and (labels.min() < low or labels.max() > 1):
        raise ShardError(f"{shards.path}: label values must lie in [{low:g}, 1] for {shards.label_kind} labels, "
                         f"found {labels.min():.4g}..{labels.max():.4g}")


class ShardDataset(Dataset):
    """Real shards (+ generated shards with a label file); items ``(image, target, weight)``."""

    def __init__(
        self,
        real: str | Path | ShardSet,
        transform: Callable[[np.ndarray], torch.Tensor],
        *,
        generated: str | Path | ShardSet | None = None,
        label_file: str | Path | None = None,
        generated_weight: float = 1.0,
    ) -> None:
        self.real = real if isinstance(real, ShardSet) else ShardSet(real)
        check_training_labels(self.real)
        self.transform = transform
        self.class_names = self.real.class_names
        self.generated: ShardSet | None = None
        self.generated_labels: np.ndarray | None = None
        self.generated_weight = float(generated_weight)
        if generated is not None:
            self.generated = generated if isinstance(generated, ShardSet) else ShardSet(generated)
            if self.generated.class_names != self.class_names:
                raise ShardError(
                    f"{self.generated.path}: class names differ from the real shard set {self.real.path}"
                )
            if label_file is None:
                raise ShardError(f"{self.generated.path}: generated images need a label file to be trained on")
            self.generated_labels, _ = read_label_file(label_file, self.generated)
        elif label_file is not None:
            raise ShardError(f"{label_file}: a label file was given without its generated shard set")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_real(self) -> int:
        return len(self.real)

    def __len__(self) -> int:
        return len(self.real) + (len(self.generated) if self.generated is not None else 0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_real = len(self.real)
        if index < n_real:
            item = self.real[index]
            target, weight = item.label, 1.0
        else:
            assert self.generated is not None and self.generated_labels is not None
            item = self.generated[index - n_real]
            target, weight = self.generated_labels[index - n_real], self.generated_weight
        return (
            self.transform(item.image),
            torch.from_numpy(np.asarray(target, dtype=np.float32)),
            torch.tensor(weight, dtype=torch.float32),
        )
