"""Reference (``torch`` backend) label-assignment rules, in the input's dtype.

See paper §2.3, Eqs. (1)–(2); docs/labeling.md.

Each function takes the baseline model's scores ``s`` (N×C logits) and returns the labels in the
same dtype (the public :func:`kernels.assign_labels` casts to float32), plus the number of rows of
``s`` holding a non-finite value, so every backend reports bad rows the same way.
"""
from __future__ import annotations

import torch


def count_nonfinite_rows(scores: torch.Tensor) -> int:
    """Number of rows of ``scores`` that hold at least one NaN or ±Inf (0 when all are finite)."""
    if scores.numel() == 0:
        return 0
    finite = torch.isfinite(scores)
    if bool(finite.all()):
        return 0
    return int((~finite).any(dim=1).sum())


def spl(scores: torch.Tensor, from_probs: bool, inv_temperature: float) -> tuple[torch.Tensor, int]:
    """SPL soft labels, Eq. (2): ``y = softmax(v / T)`` per row, with ``v = sigmoid(s)`` if ``from_probs``.

    Args:
        scores: N×C logits (any float dtype; the computation runs in that dtype).
        from_probs: take the softmax over sigmoid(s) (the default, docs/labeling.md#label-rules) instead of
            over s itself.
        inv_temperature: 1/T.

    Returns:
        (labels N×C whose rows sum to 1, number of non-finite rows of ``scores``).
    """
    bad = count_nonfinite_rows(scores)
    v = torch.sigmoid(scores) if from_probs else scores
    return torch.softmax(v * inv_temperature, dim=1), bad


def top_k(keys: torch.Tensor, k: int) -> tuple[torch.Tensor, int]:
    """Pseudo labels, Eq. (1): 1 for the ``k`` largest ``keys`` of each row, 0 elsewhere.

    Ties are broken towards the lower class index (a stable descending sort), the rule every
    backend follows, so results agree exactly across backends. ``k`` must be in [1, C].
    """
    bad = count_nonfinite_rows(keys)
    out = torch.zeros_like(keys)
    if keys.numel():
        order = torch.sort(keys, dim=1, descending=True, stable=True).indices[:, :k]
        out.scatter_(1, order, 1.0)
    return out, bad


def smooth(scores: torch.Tensor) -> torch.Tensor:
    """Label smoothing rule: every entry ``1/C``."""
    return torch.full_like(scores, 1.0 / scores.shape[1])
