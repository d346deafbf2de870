"""``numba`` backend of the weighted soft-target cross-entropy: loss and gradient in one pass.

See paper §2.4, Eq. (3); docs/labeling.md#loss.

Works in the logits' dtype (float64 inputs give float64 gradients, so ``gradcheck`` applies) with
float64 accumulators; the formulas are those of :mod:`kernels.reference.soft_cross_entropy`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange


@njit(parallel=True, cache=True, error_model="numpy")
def _sigmoid_kernel(x, y, w, has_w, mask, has_mask, inv_norm, grad):  # pragma: no cover - compiled
    n, c = x.shape
    total = 0.0
    for i in prange(n):
        wi = w[i] * 1.0 if has_w else 1.0
        row = 0.0
        for j in range(c):
            if wi == 0.0 or (has_mask and mask[i, j] == 0):
                grad[i, j] = 0.0
                continue
            xv = x[i, j] * 1.0
            yv = y[i, j] * 1.0
            e = math.exp(-abs(xv))
            row += max(xv, 0.0) - xv * yv + math.log1p(e)
            s = 1.0 / (1.0 + e) if xv >= 0.0 else e / (1.0 + e)
            grad[i, j] = wi * (s - yv) * inv_norm
        total += wi * row
    return total * inv_norm


@njit(parallel=True, cache=True, error_model="numpy")
def _softmax_kernel(x, y, w, has_w, mask, has_mask, inv_norm, grad):  # pragma: no cover - compiled
    n, c = x.shape
    total = 0.0
    for i in prange(n):
        wi = w[i] * 1.0 if has_w else 1.0
        # pass 1: max over kept logits and the kept target mass
        m = -np.inf
        mass = 0.0
        for j in range(c):
            if has_mask and mask[i, j] == 0:
                continue
            if x[i, j] > m:
                m = x[i, j] * 1.0
            mass += y[i, j]
        if wi == 0.0 or not (mass > 0.0) or m == -np.inf:
            # zero weight, no kept class or no target mass (a NaN mass counts as none, as in
            # the reference): no loss, no gradient
            for j in range(c):
                grad[i, j] = 0.0
            continue
        # pass 2: partition function
        z = 0.0
        for j in range(c):
            if not (has_mask and mask[i, j] == 0):
                z += math.exp(x[i, j] - m)
        lse = m + math.log(z)
        inv_mass = 1.0 / mass
        inv_z = 1.0 / z
        # pass 3: loss terms q (lse - x) and gradient w (p - q) / D
        row = 0.0
        for j in range(c):
            if has_mask and mask[i, j] == 0:
                grad[i, j] = 0.0
                continue
            q = y[i, j] * inv_mass
            row += q * (lse - x[i, j])
            grad[i, j] = wi * (math.exp(x[i, j] - m) * inv_z - q) * inv_norm
        total += wi * row
    return total * inv_norm


def forward(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
            mask: torch.Tensor | None, mode: str, inv_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and ∂L/∂logits in one parallel pass (CPU tensors of one float dtype; mask uint8 or None)."""
    x = logits.detach().contiguous().numpy()
    y = targets.detach().contiguous().numpy()
    w = weights.detach().contiguous().numpy() if weights is not None else np.ones(1, dtype=x.dtype)
    m = mask.contiguous().numpy() if mask is not None else np.ones((1, 1), dtype=np.uint8)
    grad = np.empty_like(x)
    kernel = _sigmoid_kernel if mode == "sigmoid" else _softmax_kernel
    loss = kernel(x, y, w, weights is not None, m, mask is not None, float(inv_norm), grad)
    return torch.tensor(loss, dtype=logits.dtype), torch.from_numpy(grad)
