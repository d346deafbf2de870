"""``numba-cuda`` backend of the weighted soft-target cross-entropy: one launch, fwd + grad.

See paper §2.4, Eq. (3); docs/labeling.md#loss.

Blocks loop over groups of R rows (a block-uniform loop, so every ``syncthreads`` is reached by
all threads); W threads per row stride over its columns and reduce through shared memory. Each
thread accumulates its share of the loss in float64; at the end a block reduction writes one
partial per block, and the last block to finish (atomic ticket, ``threadfence`` before it) adds the
partials in a fixed order, writes the loss and resets the ticket counter: the whole forward is one
kernel launch. float32 computation, float64 loss accumulation.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import cuda, float32, float64, int32

from kernels.numba_cuda import runtime
from kernels.numba_cuda.assign_labels import _reduce_max, _reduce_sum

TPB = runtime.THREADS_PER_BLOCK


@cuda.jit(device=True)
def _block_sum(acc_sh, tid, v):  # pragma: no cover - runs on the device
    acc_sh[tid] = v
    cuda.syncthreads()
    s = TPB // 2
    while s > 0:
        if tid < s:
            acc_sh[tid] += acc_sh[tid + s]
        cuda.syncthreads()
        s //= 2
    total = acc_sh[0]
    cuda.syncthreads()
    return total


@cuda.jit(cache=True)
def _sce_kernel(x, y, w, has_w, mask, has_mask, softmax, inv_norm,
                grad, partials, counter, loss):  # pragma: no cover - runs on the device
    sh = cuda.shared.array(TPB, float32)
    sh2 = cuda.shared.array(TPB, float32)
    acc_sh = cuda.shared.array(TPB, float64)
    last = cuda.shared.array(1, int32)
    tx = cuda.threadIdx.x
    wd = cuda.blockDim.x
    rows = cuda.blockDim.y
    base = cuda.threadIdx.y * wd
    tid = base + tx
    n = x.shape[0]
    c = x.shape[1]
    acc = 0.0
    group = cuda.blockIdx.x
    while group * rows < n:  # uniform over the block
        row = group * rows + cuda.threadIdx.y
        wr = float32(0.0)
        if row < n:
            wr = w[row] if has_w else float32(1.0)
        live = row < n and wr != 0.0
        if not softmax:
            if row < n:
                for j in range(tx, c, wd):
                    g = float32(0.0)
                    if live and not (has_mask and mask[row, j] == 0):
                        xv = x[row, j]
                        yv = y[row, j]
                        e = math.exp(-abs(xv))
                        acc += wr * (max(xv, float32(0.0)) - xv * yv + math.log1p(e))
                        s = float32(1.0) / (float32(1.0) + e) if xv >= 0.0 else e / (float32(1.0) + e)
                        g = wr * (s - yv) * inv_norm
                    grad[row, j] = g
        else:
            m = float32(-math.inf)
            mass = float32(0.0)
            if live:
                for j in range(tx, c, wd):
                    if not (has_mask and mask[row, j] == 0):
                        if x[row, j] > m:
                            m = x[row, j]
                        mass += y[row, j]
            sh[base + tx] = m
            sh2[base + tx] = mass
            cuda.syncthreads()
            _reduce_max(sh, base, tx, wd)
            _reduce_sum(sh2, base, tx, wd)
            m = sh[base]
            mass = sh2[base]
            cuda.syncthreads()
            active = live and mass > 0.0
            z = float32(0.0)
            if active:
                for j in range(tx, c, wd):
                    if not (has_mask and mask[row, j] == 0):
                        z += math.exp(x[row, j] - m)
            sh[base + tx] = z
            cuda.syncthreads()
            _reduce_sum(sh, base, tx, wd)
            z = sh[base]
            cuda.syncthreads()
            if row < n:
                lse = m + math.log(z) if active else float32(0.0)
                for j in range(tx, c, wd):
                    g = float32(0.0)
                    if active and not (has_mask and mask[row, j] == 0):
                        q = y[row, j] / mass
                        acc += wr * q * (lse - x[row, j])
                        g = wr * (math.exp(x[row, j] - m) / z - q) * inv_norm
                    grad[row, j] = g
        group += cuda.gridDim.x
    total = _block_sum(acc_sh, tid, acc)
    if tid == 0:
        partials[cuda.blockIdx.x] = total
        cuda.threadfence()  # the partial is visible to all blocks before the ticket is taken
        ticket = cuda.atomic.add(counter, 0, 1)
        last[0] = 1 if ticket == cuda.gridDim.x - 1 else 0
    cuda.syncthreads()
    if last[0] == 1:
        t = 0.0
        b = tid
        while b < cuda.gridDim.x:
            t += cuda.atomic.add(partials, b, 0.0)  # an L2 read: never a stale cached value
            b += TPB
        total = _block_sum(acc_sh, tid, t)
        if tid == 0:
            loss[0] = total * inv_norm
            counter[0] = 0


def forward(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
            mask: torch.Tensor | None, mode: str, inv_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss (0-d float32) and ∂L/∂logits (float32) in one kernel launch; mask is uint8 or None."""
    dev = logits.device
    n, c = logits.shape
    x = runtime.as_float32(logits)
    grad = torch.empty((n, c), dtype=torch.float32, device=dev)
    if n == 0:
        return torch.zeros((), dtype=torch.float32, device=dev), grad
    loss = torch.empty(1, dtype=torch.float32, device=dev)  # written by the kernel's last block
    y = runtime.as_float32(targets)
    w = runtime.as_float32(weights) if weights is not None else runtime.dummy(dev, 1, torch.float32)
    m = mask.contiguous() if mask is not None else runtime.dummy(dev, 2, torch.uint8)
    wd, r = runtime.layout(c)
    grid = min((n + r - 1) // r, runtime.max_blocks(dev))
    partials = torch.empty(grid, dtype=torch.float64, device=dev)
    ticket = runtime.counter(dev)
    with runtime.launch_context(dev) as stream:
        _sce_kernel[grid, (wd, r), stream](
            runtime.to_array(x), runtime.to_array(y), runtime.to_array(w), weights is not None,
            runtime.to_array(m), mask is not None, mode == "softmax", np.float32(inv_norm),
            runtime.to_array(grad), runtime.to_array(partials), runtime.to_array(ticket),
            runtime.to_array(loss))
    return loss[0], grad
