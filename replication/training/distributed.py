"""torchrun / DistributedDataParallel plumbing (docs/pipeline.md#scale): process group, device, gathers, flags.

Launched by ``torchrun --nproc_per_node=K`` (environment ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``), training joins a process group: NCCL when the device is CUDA, gloo on CPU.
A plain ``python``/``spl`` call is a single process (world size 1) with no process group.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from replication.errors import ConfigError


@dataclass
class DistInfo:
    """This process's place in the job and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cuda`` gets the local rank."""
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine")
    return torch.device(name)


def init_distributed(device: str | None) -> DistInfo:
    """Join the torchrun process group if the environment asks for one; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    info = DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)
    if world > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
            info.owns_group = True
    elif dev.type == "cuda":
        torch.cuda.set_device(dev)
    return info


def shutdown(info: DistInfo) -> None:
    """Leave the process group if this run created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.distributed:
        dist.barrier()


def any_rank(info: DistInfo, flags: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of ``flags`` over ranks (identity in a single process)."""
    if info.distributed:
        flags = flags.to(info.device if info.device.type == "cuda" else "cpu")
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return flags.cpu()


def mean_over_ranks(info: DistInfo, values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ranks (identity in a single process)."""
    if info.distributed:
        values = values.to(info.device if info.device.type == "cuda" else "cpu").clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= info.world_size
    return values.cpu()


def rank_indices(n: int, info: DistInfo) -> np.ndarray:
    """This rank's test indices ``range(rank, n, world)`` — every index on exactly one rank, no padding."""
    return np.arange(info.rank, n, info.world_size, dtype=np.int64)


def gather_rows(info: DistInfo, n: int, indices: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """Assemble per-rank ``rows`` (len(indices) × C) into an n × C array on rank 0 (None elsewhere).

    Checks that every index 0 … n−1 was scored exactly once over all ranks.
    """
    parts = [(indices, rows)]
    if info.distributed:
        gathered: list = [None] * info.world_size
        dist.all_gather_object(gathered, (indices, rows))
        parts = gathered
    if not info.is_main:
        return None
    counts = np.zeros(n, dtype=np.int64)
    out = np.full((n, rows.shape[1]), np.nan, dtype=rows.dtype)
    for idx, r in parts:
        np.add.at(counts, idx, 1)
        out[idx] = r
    if not (counts == 1).all():
        raise RuntimeError(
            f"distributed evaluation scored {int((counts == 0).sum())} images never and "
            f"{int((counts > 1).sum())} more than once"
        )
    return out
