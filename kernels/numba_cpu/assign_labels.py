"""``numba`` backend of the label-assignment rules: one parallel pass per row, no temporaries.

See paper §2.3, Eqs. (1)–(2); docs/labeling.md.

Every kernel writes straight into the float32 output and counts the rows holding a non-finite
score, so the caller can reject them without a separate pass over the input. ``spl`` computes in
float32 with the vectorisable :func:`kernels.numba_cpu.fastexp.exp32` (the scalar libm ``exp``
made it 7× slower than torch; see docs/kernels.md); ``top_k`` compares in the input's dtype.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from kernels.numba_cpu.fastexp import exp32

# Largest 1/T for which exp(sigmoid(s)/T) <= e^80 cannot overflow float32: below it the SPL
# softmax over probabilities needs no max pass (softmax is shift-invariant).
_NO_SHIFT_MAX_INV_T = 80.0


# error_model="numpy": no ZeroDivisionError branch on `/`, which would stop LLVM vectorising;
# fastmath without nnan/ninf: sums may be reassociated, but non-finite tests keep their meaning.
@njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz", "arcp"})
def _spl_kernel(scores, out, from_probs, inv_t, shift):  # pragma: no cover - compiled
    n, c = scores.shape
    inv_t32 = np.float32(inv_t)
    one = np.float32(1.0)
    bad = 0
    for i in prange(n):
        row, dst = scores[i], out[i]
        # pass 1 (only for logits or a tiny T): the row maximum of v / T, for a stable softmax
        m = np.float32(0.0)
        if shift:
            m = np.float32(-np.inf)
            for j in range(c):
                s = np.float32(row[j])
                v = (one / (one + exp32(-s)) if from_probs else s) * inv_t32
                m = max(m, v)
        # pass 2: e = exp(v / T - max) into the output row, their sum, and a non-finite probe:
        # s * 0 is 0 for finite s and NaN for NaN/±Inf (a plain sum: it vectorises, unlike a test)
        total = np.float32(0.0)
        probe = row[0] * 0.0
        for j in range(c):
            probe += row[j] * 0.0
            s = np.float32(row[j])
            v = (one / (one + exp32(-s)) if from_probs else s) * inv_t32
            e = exp32(v - m)
            dst[j] = e
            total += e
        # pass 3 (over the output row only): normalise
        inv = one / total
        for j in range(c):
            dst[j] *= inv
        bad += 0 if probe == 0.0 else 1
    return bad


@njit(parallel=True, cache=True, error_model="numpy")
def _top_k_kernel(keys, out, k):  # pragma: no cover - compiled
    n, c = keys.shape
    bad = 0
    for i in prange(n):
        row_bad = 0
        for j in range(c):
            if not math.isfinite(keys[i, j]):
                row_bad = 1
        # k rounds: the best element strictly after the previous pick in the order
        # (value descending, index ascending); no marks needed, ties go to the lower index.
        pv = np.inf
        pj = -1
        for _ in range(k):
            bv = -np.inf
            bj = -1
            for j in range(c):
                v = keys[i, j]
                if (v < pv or (v == pv and j > pj)) and (bj < 0 or v > bv):
                    bv = v
                    bj = j
            pv = bv
            pj = bj
        # selected = at or before the k-th pick in that order
        for j in range(c):
            v = keys[i, j]
            out[i, j] = 1.0 if (v > pv or (v == pv and j <= pj)) else 0.0
        bad += row_bad
    return bad


@njit(parallel=True, cache=True)
def _fill_kernel(out, value):  # pragma: no cover - compiled
    n, c = out.shape
    for i in prange(n):
        for j in range(c):
            out[i, j] = value


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """A zero-copy numpy view of a contiguous CPU float32/float64 tensor."""
    return t.detach().contiguous().numpy()


def spl(scores: torch.Tensor, from_probs: bool, inv_temperature: float) -> tuple[torch.Tensor, int]:
    """SPL soft labels, Eq. (2), as :func:`kernels.reference.assign_labels.spl` (float32 output)."""
    out = torch.empty(scores.shape, dtype=torch.float32)
    shift = not from_probs or inv_temperature > _NO_SHIFT_MAX_INV_T
    bad = _spl_kernel(_as_numpy(scores), out.numpy(), bool(from_probs), float(inv_temperature), shift)
    return out, int(bad)


def top_k(keys: torch.Tensor, k: int) -> tuple[torch.Tensor, int]:
    """Pseudo labels, Eq. (1): the k largest keys per row set to 1 (ties to the lower index)."""
    out = torch.empty(keys.shape, dtype=torch.float32)
    bad = _top_k_kernel(_as_numpy(keys), out.numpy(), int(k))
    return out, int(bad)


def smooth(scores: torch.Tensor) -> torch.Tensor:
    """Label smoothing: every entry 1/C."""
    out = torch.empty(scores.shape, dtype=torch.float32)
    _fill_kernel(out.numpy(), np.float32(1.0 / scores.shape[1]))
    return out
