"""Resumable, rank-aware batch order and per-sample augmentation seeds (exact resume: docs/pipeline.md#reliability).

Epoch ``e`` visits ``perm_e`` = a permutation of the N training indices drawn from
``(seed, e)`` alone — real and generated images shuffled together with no fixed per-batch ratio
(as LSRO). The real images keep one order across rows (paired seeds, docs/decisions.md): their
permutation and augmentation seeds come from the stream a real-only run draws, and the generated
images, their seeds and the slots they take come from a second stream, so seed ``s`` shows the
same real images in the same order, with the same crops and flips, in every row of a table.
Global batches are consecutive chunks of ``batch_size``; the last partial chunk is
dropped (decision: Caffe has no epochs, it cycles through its LMDB, so a fixed number of full
batches per epoch is the closest fixed-size analogue; a different tail is dropped every epoch).
Under DDP rank ``r`` of ``W`` takes ``chunk[r::W]`` of every global batch, so the global batch
and the data order do not depend on the number of processes.

The iteration schedule (``schedule: iterations``; docs/decisions.md, "Equal-iteration schedule") uses
:class:`IterationBatchSampler` instead: every batch holds exactly ``r`` real and ``g`` generated images
(:func:`~replication.training.config.mix_counts`, N : M), iteration ``t`` taking positions
``[t·r, (t+1)·r)`` of an endless real stream and ``[t·g, (t+1)·g)`` of an endless generated stream.
Each stream is a concatenation of passes; pass ``p`` of the real stream is exactly epoch ``p`` of a
real-only run (:func:`epoch_order` of N: same permutation, same augmentation seeds), pass ``p`` of the
generated stream a permutation of the M generated images with seeds from a stream of its own. No tail
is dropped (a pass runs on into the next, as Caffe cycles through its LMDB), so a batch is a pure
function of (seed, t): a resume at iteration t replays exactly, and with the same seed every row sees
the same real images in the same order with the same crops (a row with generated images ``r`` per
batch, the baseline ``B``).

Each visited position carries its own augmentation seed, also drawn from ``(seed, e)``:
:class:`SeededDataset` runs the wrapped dataset's ``__getitem__`` under that seed (torch, NumPy
and ``random``), restoring the caller's RNG state afterwards. Crops and flips are therefore a
pure function of (seed, epoch, position), whatever the number of DataLoader workers, and a run
resumed at batch ``b`` replays exactly what the uninterrupted run would have seen.
"""
from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def epoch_order(n: int, seed: int, epoch: int, num_real: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(permutation of ``range(n)``, per-position augmentation seeds) of epoch ``epoch``.

    Indices below ``num_real`` (default: all ``n``) are real images. Their relative order and their
    seeds do not depend on how many generated images follow them: with ``num_real = k`` the real
    subsequence equals ``epoch_order(k, seed, epoch)`` exactly.
    """
    num_real = n if num_real is None else int(num_real)
    if not 0 <= num_real <= n:
        raise ValueError(f"num_real={num_real} outside [0, {n}]")
    rng = np.random.default_rng([int(seed), int(epoch), 0x5EED])
    real_perm = rng.permutation(num_real)
    real_seeds = rng.integers(0, 2**62, size=num_real, dtype=np.int64)
    if num_real == n:
        return real_perm, real_seeds
    m = n - num_real
    gen = np.random.default_rng([int(seed), int(epoch), 0x6E4])
    gen_perm = num_real + gen.permutation(m)
    gen_seeds = gen.integers(0, 2**62, size=m, dtype=np.int64)
    is_gen = np.zeros(n, dtype=bool)
    is_gen[gen.permutation(n)[:m]] = True   # which positions hold generated images
    perm = np.empty(n, dtype=np.int64)
    seeds = np.empty(n, dtype=np.int64)
    perm[~is_gen], seeds[~is_gen] = real_perm, real_seeds
    perm[is_gen], seeds[is_gen] = gen_perm, gen_seeds
    return perm, seeds


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, augmentation seed)`` for one epoch, this rank's share, from ``start_batch``."""

    def __init__(
        self, n: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1,
        start_batch: int = 0, num_real: int | None = None
    ) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by the world size {world_size}")
        if n < batch_size:
            raise ValueError(f"{n} training images are fewer than one batch of {batch_size}")
        self.n, self.batch_size = n, batch_size
        self.seed, self.epoch = seed, epoch
        self.rank, self.world_size = rank, world_size
        self.start_batch = start_batch
        self.num_real = n if num_real is None else num_real

    @staticmethod
    def batches_per_epoch(n: int, batch_size: int) -> int:
        """Full global batches per epoch (the partial tail is dropped)."""
        return n // batch_size

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch(self.n, self.batch_size) - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm, seeds = epoch_order(self.n, self.seed, self.epoch, self.num_real)
        for b in range(self.start_batch, self.batches_per_epoch(self.n, self.batch_size)):
            lo = b * self.batch_size
            pos = range(lo + self.rank, lo + self.batch_size, self.world_size)
            yield [(int(perm[p]), int(seeds[p])) for p in pos]


class SeededDataset(Dataset):
    """Wraps a training dataset: item ``(index, seed)`` → ``(*base[index], is_real)`` under that seed.

    ``is_real`` is True for indices below ``num_real`` (real images come first in
    :class:`~replication.data.dataset.ShardDataset`), which the WIDER ``ignore`` rule needs.
    """

    def __init__(self, base: Dataset, num_real: int) -> None:
        self.base = base
        self.num_real = int(num_real)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        torch_state = torch.get_rng_state()
        np_state = np.random.get_state()
        py_state = random.getstate()
        try:
            # Only the CPU generator: torch.manual_seed would also reseed every CUDA generator and
            # costs ~1-2 ms per call; the transforms draw from the CPU generator alone.
            torch.random.default_generator.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            out = self.base[index]
        finally:
            torch.set_rng_state(torch_state)
            np.random.set_state(np_state)
            random.setstate(py_state)
        return (*out, torch.tensor(index < self.num_real))


def generated_pass(m: int, seed: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """(permutation of ``range(m)``, augmentation seeds) of pass ``p`` over the M generated images."""
    rng = np.random.default_rng([int(seed), int(p), 0x6E4, 0x17E2])
    return rng.permutation(m), rng.integers(0, 2**62, size=m, dtype=np.int64)


class _Stream:
    """An endless stream of ``(index, seed)`` built from passes ``order(p)``, offset by ``first`` (cached passes)."""

    def __init__(self, count: int, order, first: int = 0) -> None:
        self.count, self.order, self.first = count, order, first
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def take(self, lo: int, hi: int) -> list[tuple[int, int]]:
        out = []
        for pos in range(lo, hi):
            p, k = divmod(pos, self.count)
            if p not in self._cache:
                self._cache = {p: self.order(p)}   # positions only move forward: keep one pass
            perm, seeds = self._cache[p]
            out.append((self.first + int(perm[k]), int(seeds[k])))
        return out


class IterationBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, augmentation seed)`` for iterations ``start … stop − 1`` of the iteration schedule.

    Real images are indices ``0 … num_real − 1``, generated ones ``num_real … num_real + num_generated − 1``
    (as in :class:`~replication.data.dataset.ShardDataset`); each global batch is its ``real_per_batch``
    real items, then its generated items, and rank ``r`` of ``W`` takes ``batch[r::W]``.
    """

    def __init__(self, num_real: int, num_generated: int, real_per_batch: int, generated_per_batch: int, *,
                 seed: int, start: int, stop: int, rank: int = 0, world_size: int = 1) -> None:
        batch = real_per_batch + generated_per_batch
        if batch % world_size:
            raise ValueError(f"batch size {batch} is not divisible by the world size {world_size}")
        if real_per_batch < 1 or (generated_per_batch > 0 and num_generated < 1):
            raise ValueError(f"a batch of {real_per_batch} real + {generated_per_batch} generated images needs both "
                             f"kinds (N={num_real}, M={num_generated})")
        self.r, self.g = real_per_batch, generated_per_batch
        self.start, self.stop = int(start), int(stop)
        self.rank, self.world_size = rank, world_size
        self.real = _Stream(num_real, lambda p: epoch_order(num_real, seed, p))
        self.gen = _Stream(max(num_generated, 1), lambda p: generated_pass(num_generated, seed, p), first=num_real)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def batch(self, t: int) -> list[tuple[int, int]]:
        """The global batch of iteration ``t`` (0-based)."""
        items = self.real.take(t * self.r, (t + 1) * self.r)
        if self.g:
            items += self.gen.take(t * self.g, (t + 1) * self.g)
        return items

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for t in range(self.start, self.stop):
            yield self.batch(t)[self.rank::self.world_size]
