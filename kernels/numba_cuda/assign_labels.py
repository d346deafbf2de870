"""``numba-cuda`` backend of the label-assignment rules (paper §2.3, Eqs. (1)–(2); docs/labeling.md).

Block layout and plumbing in :mod:`kernels.numba_cuda.runtime`: W threads per row stride over
the row, and row reductions (max, sum, arg-max, any-non-finite) go through shared memory with
``cuda.syncthreads()`` — no warp shuffles — so the CUDA simulator runs the very same kernels.
Computation is in float32 (inputs are converted); outputs are float32.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import cuda, float32, int32

from kernels.numba_cuda import runtime

TPB = runtime.THREADS_PER_BLOCK


@cuda.jit(device=True)
def _reduce_max(sh, base, tx, w):  # pragma: no cover - runs on the device
    s = w // 2
    while s > 0:
        if tx < s:
            b = sh[base + tx + s]
            if b > sh[base + tx]:
                sh[base + tx] = b
        cuda.syncthreads()
        s //= 2


@cuda.jit(device=True)
def _reduce_sum(sh, base, tx, w):  # pragma: no cover - runs on the device
    s = w // 2
    while s > 0:
        if tx < s:
            sh[base + tx] += sh[base + tx + s]
        cuda.syncthreads()
        s //= 2


@cuda.jit(device=True)
def _reduce_argmax(shv, shj, base, tx, w):  # pragma: no cover - runs on the device
    # order: value descending, then index ascending; index -1 means "no candidate"
    s = w // 2
    while s > 0:
        if tx < s:
            ov = shv[base + tx + s]
            oj = shj[base + tx + s]
            mv = shv[base + tx]
            mj = shj[base + tx]
            if oj >= 0 and (mj < 0 or ov > mv or (ov == mv and oj < mj)):
                shv[base + tx] = ov
                shj[base + tx] = oj
        cuda.syncthreads()
        s //= 2


@cuda.jit(device=True)
def _transform(s, from_probs, inv_t):  # pragma: no cover - runs on the device
    if from_probs:
        return float32(1.0) / (float32(1.0) + math.exp(-s)) * inv_t
    return s * inv_t


@cuda.jit(device=True)
def _count_bad_row(sh, base, tx, w, bad, row_valid, bad_rows):  # pragma: no cover - runs on the device
    sh[base + tx] = bad
    cuda.syncthreads()
    _reduce_max(sh, base, tx, w)
    if tx == 0 and row_valid and sh[base] > 0:
        cuda.atomic.add(bad_rows, 0, 1)
    cuda.syncthreads()


@cuda.jit(cache=True)
def _spl_kernel(scores, out, from_probs, inv_t, bad_rows):  # pragma: no cover - runs on the device
    sh = cuda.shared.array(TPB, float32)
    tx = cuda.threadIdx.x
    w = cuda.blockDim.x
    base = cuda.threadIdx.y * w
    row = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    n = scores.shape[0]
    c = scores.shape[1]
    valid = row < n
    m = float32(-math.inf)
    bad = float32(0.0)
    if valid:
        for j in range(tx, c, w):
            s = scores[row, j]
            if not math.isfinite(s):
                bad = float32(1.0)
            v = _transform(s, from_probs, inv_t)
            if v > m:
                m = v
    sh[base + tx] = m
    cuda.syncthreads()
    _reduce_max(sh, base, tx, w)
    m = sh[base]
    cuda.syncthreads()
    total = float32(0.0)
    if valid:
        for j in range(tx, c, w):
            e = math.exp(_transform(scores[row, j], from_probs, inv_t) - m)
            out[row, j] = e
            total += e
    sh[base + tx] = total
    cuda.syncthreads()
    _reduce_sum(sh, base, tx, w)
    total = sh[base]
    cuda.syncthreads()
    if valid:
        for j in range(tx, c, w):  # each thread rescales the entries it wrote itself
            out[row, j] = out[row, j] / total
    _count_bad_row(sh, base, tx, w, bad, valid, bad_rows)


@cuda.jit(cache=True)
def _top_k_kernel(keys, out, k, bad_rows):  # pragma: no cover - runs on the device
    shv = cuda.shared.array(TPB, float32)
    shj = cuda.shared.array(TPB, int32)
    tx = cuda.threadIdx.x
    w = cuda.blockDim.x
    base = cuda.threadIdx.y * w
    row = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    n = keys.shape[0]
    c = keys.shape[1]
    valid = row < n
    bad = float32(0.0)
    if valid:
        for j in range(tx, c, w):
            if not math.isfinite(keys[row, j]):
                bad = float32(1.0)
    _count_bad_row(shv, base, tx, w, bad, valid, bad_rows)
    # k rounds: best element strictly after the previous pick in (value desc, index asc) order
    pv = float32(math.inf)
    pj = -1
    for _ in range(k):
        bv = float32(-math.inf)
        bj = -1
        if valid:
            for j in range(tx, c, w):
                v = keys[row, j]
                if (v < pv or (v == pv and j > pj)) and (bj < 0 or v > bv):
                    bv = v
                    bj = j
        shv[base + tx] = bv
        shj[base + tx] = bj
        cuda.syncthreads()
        _reduce_argmax(shv, shj, base, tx, w)
        pv = shv[base]
        pj = shj[base]
        cuda.syncthreads()
    if valid:
        for j in range(tx, c, w):
            v = keys[row, j]
            out[row, j] = float32(1.0) if (v > pv or (v == pv and j <= pj)) else float32(0.0)


@cuda.jit(cache=True)
def _fill_kernel(out, value):  # pragma: no cover - runs on the device
    n = out.shape[0]
    c = out.shape[1]
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    stride = cuda.gridDim.x * cuda.blockDim.x
    while i < n * c:
        out[i // c, i % c] = value
        i += stride


def _launch_rows(kernel, x: torch.Tensor, *args) -> tuple[torch.Tensor, int]:
    n, c = x.shape
    out = torch.empty((n, c), dtype=torch.float32, device=x.device)
    bad = torch.zeros(1, dtype=torch.int32, device=x.device)
    if n == 0:
        return out, 0
    w, r = runtime.layout(c)
    grid = (n + r - 1) // r
    with runtime.launch_context(x.device) as stream:
        out_a, bad_a = runtime.to_array(out), runtime.to_array(bad)
        kernel[grid, (w, r), stream](runtime.to_array(runtime.as_float32(x)), out_a, *args, bad_a)
    # (under the simulator out_a/bad_a are numpy views of out/bad, which it writes back into)
    return out, int(bad.item())


def spl(scores: torch.Tensor, from_probs: bool, inv_temperature: float) -> tuple[torch.Tensor, int]:
    """SPL soft labels, Eq. (2) (see :func:`kernels.reference.assign_labels.spl`)."""
    return _launch_rows(_spl_kernel, scores, bool(from_probs), np.float32(inv_temperature))


def top_k(keys: torch.Tensor, k: int) -> tuple[torch.Tensor, int]:
    """Pseudo labels, Eq. (1): the k largest keys per row set to 1 (ties to the lower index)."""
    return _launch_rows(_top_k_kernel, keys, int(k))


def smooth(scores: torch.Tensor) -> torch.Tensor:
    """Label smoothing: every entry 1/C."""
    n, c = scores.shape
    out = torch.empty((n, c), dtype=torch.float32, device=scores.device)
    if n == 0:
        return out
    grid = min((n * c + TPB - 1) // TPB, runtime.max_blocks(scores.device))
    with runtime.launch_context(scores.device) as stream:
        out_a = runtime.to_array(out)
        _fill_kernel[grid, TPB, stream](out_a, np.float32(1.0 / c))
    return out
