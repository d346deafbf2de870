"""A deterministic, resumable stream of real image batches for the GAN trainers.

The source is either a tensor N×C×H×W (uint8 0–255, or float already in [−1, 1]) or any map-style
dataset whose items are such C×H×W tensors (read through a ``DataLoader`` with ``num_workers``).
Data epoch e uses the permutation and flip mask drawn from ``numpy.random.default_rng([seed, e])``,
so the stream's whole state is ``(epoch, position)``: a resumed run reads exactly the batches the
uninterrupted run would have read. The partial last batch of every data epoch is dropped (both
repositories do). uint8 pixels map to ``x / 127.5 − 1`` (both repositories' scaling); an optional
random horizontal flip (p = 0.5 per image, from the same seeded mask) and an optional batch
``transform`` follow. With ``world_size`` > 1 each global batch of ``batch_size × world_size``
indices is split into contiguous per-rank slices.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 0–255 → float32 ``x / 127.5 − 1`` in [−1, 1]; float input is returned as float32."""
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1.0
    return x.float()


class BatchStream:
    """Endless iterator over real batches (B×C×H×W float32 in [−1, 1] on ``device``)."""

    def __init__(self, images: torch.Tensor | Dataset, batch_size: int, *, seed: int = 0, flip: bool = False,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0, device: torch.device | str = "cpu",
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.images = images
        self.n = len(images)
        self.batch_size, self.seed, self.flip = int(batch_size), int(seed), bool(flip)
        self.rank, self.world_size = int(rank), int(world_size)
        self.num_workers = int(num_workers)
        self.device = torch.device(device)
        self.transform = transform
        self.batches_per_epoch = self.n // (self.batch_size * self.world_size)
        if self.batches_per_epoch == 0:
            raise ValueError(f"{self.n} images cannot fill one batch of {self.batch_size} × {self.world_size} ranks")
        self.epoch = 0
        self.pos = 0
        self._plan_epoch: int | None = None
        self._perm: np.ndarray | None = None
        self._flips: np.ndarray | None = None
        self._loader_it: Iterator | None = None

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"epoch", "pos"}``: the next batch to be read."""
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a state saved by :meth:`state_dict`."""
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._loader_it = None

    # -- plan ------------------------------------------------------------------------------
    def _ensure_plan(self) -> None:
        if self._plan_epoch != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._perm = rng.permutation(self.n)
            self._flips = rng.random(self.n) < 0.5
            self._plan_epoch = self.epoch
            self._loader_it = None

    def batch_indices(self, pos: int) -> np.ndarray:
        """This rank's indices of batch ``pos`` of the current data epoch."""
        self._ensure_plan()
        start = (pos * self.world_size + self.rank) * self.batch_size
        return self._perm[start:start + self.batch_size]

    def _loader(self) -> Iterator:
        samplers: Sequence[list[int]] = [self.batch_indices(p).tolist()
                                         for p in range(self.pos, self.batches_per_epoch)]
        loader = DataLoader(self.images, batch_sampler=samplers, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda", persistent_workers=False)
        return iter(loader)

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> torch.Tensor:
        if self.pos >= self.batches_per_epoch:
            self.epoch += 1
            self.pos = 0
        self._ensure_plan()
        idx = self.batch_indices(self.pos)
        if isinstance(self.images, torch.Tensor):
            x = self.images[torch.from_numpy(idx)]
        else:
            if self._loader_it is None:
                self._loader_it = self._loader()
            x = next(self._loader_it)
            if isinstance(x, (list, tuple)):
                x = x[0]
        self.pos += 1
        x = to_unit_range(x.to(self.device, non_blocking=True))
        if self.flip:
            mask = torch.from_numpy(self._flips[idx]).to(self.device)
            x = torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)
        if self.transform is not None:
            x = self.transform(x)
        return x
