"""Data-parallel helpers for ``torchrun`` (WORLD_SIZE > 1): NCCL on GPU, gloo on CPU.

Decision: instead of wrapping G and D in ``DistributedDataParallel`` the trainer all-reduces
(averages) gradients itself after each backward. The result is the same as DDP's, and it sidesteps
DDP's limits that both GANs hit: several forward passes of D per backward (real and fake
separately), D used inside G's loss while frozen, and the gradient penalty's double backward.
Parameters start identical (same seed, then broadcast from rank 0); batch norm statistics stay
per rank (no SyncBatchNorm, as with plain DDP) and rank 0's are checkpointed.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment (0, 1, 0 when not distributed)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def init(device: torch.device) -> tuple[int, int, bool]:
    """Join the process group when WORLD_SIZE > 1 (if not already joined); returns (rank, world_size,
    whether this call created the group: its creator leaves it, :func:`leave`)."""
    rank, world, _ = env_world()
    created = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        created = True
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), created
    return 0, 1, created


def leave() -> None:
    """Wait for every rank, then destroy the process group.

    A process that exits with its gloo group alive can die of SIGABRT at exit (gloo's threads outlive the
    interpreter, or see the other rank's sockets close): torchrun then reports the run as failed although
    training finished (seen once in the test suite, rank 1 of 2 on CPU).
    """
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, 0)


def grad_sync(world_size: int) -> Callable[[nn.Module], None]:
    """A ``sync(module)`` that replaces each gradient by its mean over ranks (one flat all-reduce)."""
    def sync(module: nn.Module) -> None:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n
    return sync


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (a no-op when not distributed)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj: object) -> list:
    """Every rank's ``obj`` as a list indexed by rank (``[obj]`` when not distributed)."""
    if not dist.is_initialized():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
