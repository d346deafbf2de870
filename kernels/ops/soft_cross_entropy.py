"""``weighted_soft_cross_entropy``: the training loss as a ``torch.autograd.Function``.

See paper §2.4, Eq. (3); docs/labeling.md#loss.

Forward computes the loss AND its gradient with respect to the logits in one pass (one kernel
launch on a GPU) and saves the gradient; backward only multiplies it by the incoming gradient.

Decisions recorded here and in docs/kernels.md:

* ``normalize="batch"`` divides by N (Caffe's ``SigmoidCrossEntropyLoss`` default, BATCH_SIZE),
  ``"elements"`` by N·C. Per-sample weights multiply the terms but never enter the normaliser
  (Caffe divides by the batch size regardless of weights; dividing by Σw would undo λ).
* ``mask`` (N×C, nonzero = keep; WIDER's ``wider_unspecified: ignore``): masked elements add
  neither loss nor gradient and their targets are never read (NaN is fine there). The normaliser
  stays N or N·C: it must be known before the single pass, and a count of kept elements would
  re-weight each batch by how many attributes happen to be specified in it.
* ``softmax`` mode: the softmax runs over the kept classes of a row; targets are normalised to
  sum 1 over them; rows whose target mass is ≤ 0 (no positive class) contribute nothing.
* Samples with weight 0 contribute nothing, and their targets are never read either.
* Only the logits get a gradient; targets/weights/mask that require grad are rejected.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from kernels.backends import _record, implementation, resolve_backend

MODES: tuple[str, ...] = ("sigmoid", "softmax")
NORMALIZE: tuple[str, ...] = ("batch", "elements")
_OP = "soft_cross_entropy"


class SoftCrossEntropyFunction(torch.autograd.Function):
    """Autograd wrapper: forward = backend's fused loss+grad, backward = saved grad × grad_output."""

    @staticmethod
    def forward(ctx, logits, targets, weights, mask, mode: str, inv_norm: float, impl):
        loss, grad = impl.forward(logits, targets, weights, mask, mode, inv_norm)
        ctx.save_for_backward(grad.to(logits.dtype))
        return loss.to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None, None, None, None, None


def _validate(logits, targets, weights, mask, mode: str, normalize: str) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError("weighted_soft_cross_entropy: logits must be a 2-D floating-point tensor (N×C)")
    if not isinstance(targets, torch.Tensor) or targets.shape != logits.shape:
        raise ValueError(f"weighted_soft_cross_entropy: targets must have the logits' shape "
                         f"{tuple(logits.shape)}, got {tuple(getattr(targets, 'shape', ()))}")
    if weights is not None and (not isinstance(weights, torch.Tensor) or weights.shape != logits.shape[:1]):
        raise ValueError(f"weighted_soft_cross_entropy: weights must have shape ({logits.shape[0]},), "
                         f"got {tuple(getattr(weights, 'shape', ()))}")
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape != logits.shape):
        raise ValueError(f"weighted_soft_cross_entropy: mask must have the logits' shape "
                         f"{tuple(logits.shape)}, got {tuple(getattr(mask, 'shape', ()))}")
    for name, t in (("targets", targets), ("weights", weights), ("mask", mask)):
        if t is not None and t.device != logits.device:
            raise ValueError(f"weighted_soft_cross_entropy: {name} on {t.device}, logits on {logits.device}")
        if t is not None and t.requires_grad:
            raise ValueError(f"weighted_soft_cross_entropy: no gradient is computed for {name}; "
                             "pass it detached")
    if mode not in MODES:
        raise ValueError(f"weighted_soft_cross_entropy: mode must be one of {MODES}, got {mode!r}")
    if normalize not in NORMALIZE:
        raise ValueError(f"weighted_soft_cross_entropy: normalize must be one of {NORMALIZE}, got {normalize!r}")
    if logits.shape[0] >= 2**31:
        raise ValueError("weighted_soft_cross_entropy: more rows than the kernels' 32-bit row index allows")


def weighted_soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                                weights: torch.Tensor | None = None, *, mask: torch.Tensor | None = None,
                                mode: str = "sigmoid", normalize: str = "batch",
                                backend: str = "auto") -> torch.Tensor:
    """Weighted soft-target cross-entropy, differentiable with respect to ``logits``.

    See paper §2.4, Eq. (3); docs/labeling.md#loss.

    ``sigmoid``: L = (1/D) Σ_i w_i Σ_j m_ij [max(x,0) − x·y + log(1 + e^{−|x|})] (Caffe's
    SigmoidCrossEntropyLoss with real-valued targets). ``softmax``: Eq. (3) read as softmax
    cross-entropy against q_i = y_i / Σ_j y_ij, L = (1/D) Σ_i w_i Σ_j q_ij (logsumexp(x_i) − x_ij).
    D = N (``batch``) or N·C (``elements``); see the module docstring for weights and mask.

    Args:
        logits: N×C raw scores (float32 or float64; float64 stays float64 on CPU backends).
        targets: N×C soft targets in [0, 1].
        weights: optional per-sample weights (N,) (real images 1, generated λ).
        mask: optional N×C keep-mask (nonzero = keep, 0 = ignore).
        mode: ``sigmoid`` or ``softmax``.
        normalize: ``batch`` or ``elements``.
        backend: ``auto``, ``torch``, ``numba``, ``numba-cuda`` or ``cupy``.

    Returns:
        0-d loss tensor in ``logits.dtype`` (float16/bfloat16 logits are computed in float32).
    """
    _validate(logits, targets, weights, mask, mode, normalize)
    name = resolve_backend(_OP, backend, logits, mode)
    dtype = logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32
    if name in ("numba-cuda", "cupy"):
        dtype = torch.float32  # GPU kernels compute in float32 (cast back below)
    x = logits if logits.dtype == dtype else logits.to(dtype)
    y = targets.detach().to(dtype).contiguous()
    w = weights.detach().to(dtype).contiguous() if weights is not None else None
    m = None
    if mask is not None:
        m = (mask.detach() if mask.dtype == torch.bool else mask.detach() != 0).contiguous().view(torch.uint8)
    n, c = logits.shape
    inv_norm = 1.0 / max(1, n if normalize == "batch" else n * c)
    loss = SoftCrossEntropyFunction.apply(x.contiguous(), y, w, m, mode, inv_norm, implementation(_OP, name))
    _record(_OP, name)
    return loss if loss.dtype == logits.dtype else loss.to(logits.dtype)
