"""Launch plumbing shared by the ``numba-cuda`` kernels: block layout, arrays, streams, devices.

On a GPU, torch tensors are handed to the kernels zero-copy through ``__cuda_array_interface__``
(``cuda.as_cuda_array(..., sync=False)``: no host synchronisation, because the kernels are
launched on torch's current stream). Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) they are
CPU tensors passed as numpy views, and the simulator copies them in and out.

Block layout (decision): 128 threads as (W, R) with W = min(128, next power of two ≥ C) threads
per row and R = 128 / W rows per block; each thread strides over the row's columns, and row
reductions go through shared memory with ``cuda.syncthreads()`` (no warp shuffles).
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from kernels.backends import cuda_simulator_enabled

THREADS_PER_BLOCK = 128
# Blocks per SM for the grid-stride loss kernel (its grid is capped so the last block sums few partials).
BLOCKS_PER_SM = 16
# Under the simulator blocks run one after another in Python threads: keep 2 so the multi-block
# reduction is still exercised, at the smallest cost.
SIMULATOR_MAX_BLOCKS = 2


def layout(c: int) -> tuple[int, int]:
    """(threads per row W, rows per block R) for C classes, W·R = 128."""
    w = 1
    while w < c and w < THREADS_PER_BLOCK:
        w *= 2
    return w, THREADS_PER_BLOCK // w


def to_array(t: torch.Tensor):
    """A kernel argument viewing ``t`` (contiguous) without copying on a GPU."""
    t = t.detach().contiguous()
    if cuda_simulator_enabled():
        return t.numpy()
    from numba import cuda  # numba-cuda is optional: loaded only when the CUDA backend runs

    return cuda.as_cuda_array(t, sync=False)


def max_blocks(device: torch.device) -> int:
    """Grid cap for grid-stride kernels on ``device``."""
    if cuda_simulator_enabled():
        return SIMULATOR_MAX_BLOCKS
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device()) * BLOCKS_PER_SM


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


@functools.cache
def _external_stream(index: int, ptr: int):
    from numba import cuda  # numba-cuda is optional: loaded only when the CUDA backend runs

    with cuda.gpus[index]:
        return cuda.default_stream() if ptr == 0 else cuda.external_stream(ptr)


@contextlib.contextmanager
def launch_context(device: torch.device) -> Iterator[object]:
    """Select the numba device matching ``device`` and yield the stream to launch on.

    On a GPU that is torch's current stream (so no synchronisation is needed around the launch);
    under the simulator it is 0.
    """
    if cuda_simulator_enabled():
        yield 0
        return
    from numba import cuda  # numba-cuda is optional: loaded only when the CUDA backend runs

    index = device.index if device.index is not None else torch.cuda.current_device()
    with cuda.gpus[index]:
        yield _external_stream(index, torch.cuda.current_stream(index).cuda_stream)


def dummy(device: torch.device, ndim: int, dtype: torch.dtype) -> torch.Tensor:
    """A one-element placeholder for an absent optional argument (never read by the kernels).

    Memoised per device, so a call does not pay a fill launch for it.
    """
    return _dummy(str(device), ndim, dtype)


@functools.cache
def _dummy(device: str, ndim: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros((1,) * ndim, dtype=dtype, device=device)


def counter(device: torch.device) -> torch.Tensor:
    """A zeroed uint32-compatible ticket counter for the last-block reduction of the loss kernel.

    On a GPU one counter per (device, stream) is kept and the kernel's last block resets it to 0,
    so no fill launch is needed per call; under the simulator a fresh one is made each call.
    """
    if cuda_simulator_enabled():
        return torch.zeros(1, dtype=torch.int32)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _persistent_counter(index, torch.cuda.current_stream(index).cuda_stream)


@functools.cache
def _persistent_counter(index: int, stream_ptr: int) -> torch.Tensor:
    return torch.zeros(1, dtype=torch.int32, device=f"cuda:{index}")


def as_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a contiguous float32 tensor (no copy when it already is one)."""
    return t.detach().to(torch.float32).contiguous()
