"""Reference weighted soft-target cross-entropy: the ground truth and the ``torch`` backend.

See paper §2.4, Eq. (3); docs/labeling.md#loss.

Notation: logits x (N×C), targets y (N×C, real-valued in [0, 1]), per-sample weights w (N),
optional keep-mask m (N×C, nonzero = keep), normaliser D = N (``batch``) or N·C (``elements``).

* ``sigmoid`` (Caffe ``SigmoidCrossEntropyLoss`` with real targets):
  L = (1/D) Σ_i w_i Σ_j m_ij ℓ_ij,  ℓ_ij = max(x,0) − x·y + log(1 + e^{−|x|}),
  ∂L/∂x_ij = w_i m_ij (σ(x_ij) − y_ij) / D.
* ``softmax`` (Eq. 3 as softmax cross-entropy against q_i = y_i / Σ_j y_ij, LSRO's form), over the
  kept classes of a row: L = (1/D) Σ_i w_i Σ_j q_ij (lse_i − x_ij), ∂L/∂x_ij = w_i (p_ij − q_ij) / D
  with p = softmax over kept classes. Rows whose kept target mass Σ_j y_ij is ≤ 0 contribute 0.
  With ``elements`` (D = N·C) this is the batch mean of Eq. (3) including its 1/C.

Samples with w_i = 0 and elements with m_ij = 0 are skipped entirely (their targets may be NaN).
:func:`soft_cross_entropy_reference` is written with independent torch functions and torch
autograd (the ground truth of the tests); :func:`forward` is the closed form, loss and gradient in
one call, used by the ``torch`` backend of :func:`kernels.weighted_soft_cross_entropy`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy_reference(logits: torch.Tensor, targets: torch.Tensor,
                                 weights: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                                 *, mode: str = "sigmoid", normalize: str = "batch") -> torch.Tensor:
    """Differentiable reference loss built from ``F.binary_cross_entropy_with_logits`` / ``log_softmax``.

    Inputs must be finite where kept. Computes in ``logits.dtype`` (use float64 for checks).
    """
    n, c = logits.shape
    denom = max(1, n if normalize == "batch" else n * c)
    keep = torch.ones_like(logits, dtype=torch.bool) if mask is None else mask != 0
    w = torch.ones(n, dtype=logits.dtype, device=logits.device) if weights is None else weights.to(logits.dtype)
    keep = keep & (w != 0)[:, None]
    y = torch.where(keep, targets.to(logits.dtype), torch.zeros_like(logits))
    if mode == "sigmoid":
        per_elem = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        per_elem = torch.where(keep, per_elem, torch.zeros_like(per_elem))
        return (per_elem.sum(dim=1) * w).sum() / denom
    if mode != "softmax":
        raise ValueError(f"unknown mode {mode!r}")
    # masked classes leave the softmax: a very negative finite logit (exp underflows to 0), then
    # their terms are dropped by the where (no -inf, so autograd stays finite).
    x = torch.where(keep, logits, torch.full_like(logits, -1e30))
    logp = torch.log_softmax(x, dim=1)
    mass = y.sum(dim=1, keepdim=True)
    active = mass > 0
    q = torch.where(active, y / torch.where(active, mass, torch.ones_like(mass)), torch.zeros_like(y))
    terms = torch.where(keep & active, -q * logp, torch.zeros_like(logp))
    return (terms.sum(dim=1) * w).sum() / denom


def forward(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
            mask: torch.Tensor | None, mode: str, inv_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form loss and gradient ∂L/∂x (see module doc), computed in ``logits.dtype``.

    Args:
        logits, targets: N×C, same dtype and device.
        weights: (N,) per-sample weights or None (all 1).
        mask: N×C uint8 keep-mask or None (keep all).
        mode: ``sigmoid`` or ``softmax``.
        inv_norm: 1/D.

    Returns:
        (0-d loss, N×C gradient of the loss with respect to ``logits``).
    """
    x = logits
    keep = None if mask is None else mask != 0
    if weights is not None:
        live = (weights != 0)[:, None]
        keep = live if keep is None else keep & live
    y = targets if keep is None else torch.where(keep, targets, 0.0)   # skipped targets may be NaN
    scale = inv_norm if weights is None else weights[:, None] * inv_norm
    if mode == "sigmoid":
        elem = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        grad = (torch.sigmoid(x) - y) * scale
        if keep is not None:
            elem = torch.where(keep, elem, 0.0)
            grad = torch.where(keep, grad, 0.0)
        return (elem * scale).sum(), grad
    if keep is not None:   # masked classes leave the softmax
        x = torch.where(keep, x, float("-inf"))
    m = x.amax(dim=1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, 0.0)           # rows with nothing kept
    logp = x - m - torch.log(torch.exp(x - m).sum(dim=1, keepdim=True))
    mass = y.sum(dim=1, keepdim=True)
    active = mass > 0
    q = y / torch.where(active, mass, 1.0)
    active = active if keep is None else active & keep
    grad = torch.where(active, (torch.exp(logp) - q) * scale, 0.0)
    loss = torch.where(active, -q * logp * scale, 0.0).sum()
    return loss, grad
