"""TF1's Adam (``tf.train.AdamOptimizer``) as a PyTorch optimiser.

TF1 updates ``θ ← θ − lr_t · m / (sqrt(v) + ε)`` with ``lr_t = lr · sqrt(1 − β2^t) / (1 − β1^t)``:
its ε is added to the *uncorrected* sqrt(v) ("epsilon hat" in Kingma & Ba's §2 note).
``torch.optim.Adam`` adds ε to the bias-corrected sqrt(v̂), which equals TF's update only with
``ε_torch = ε / sqrt(1 − β2^t)`` (3.2e-7 instead of 1e-8 at t = 1). The difference is tiny but
real in the first steps, so the ports use this class by default (``adam: tf``); ``adam: torch``
selects ``torch.optim.Adam``. The update follows TF's ``ApplyAdam`` kernel expression by
expression (``m += (g − m)(1 − β1)``, ``v += (g² − v)(1 − β2)``, ``θ −= (m·lr_t)/(sqrt(v) + ε)``,
with float32 β powers and TF's float32 constants ``T(1) − β1``, ``T(1) − β2`` and ``ε``: TF's kernel
(``tensorflow/core/kernels/training_ops.cc``, ``ApplyAdamNonCuda``) evaluates ``T(1) − beta2()`` in
the variable's type, so 1 − β2 is 0.00099998713 in float32 for β2 = 0.999, not the float64
0.0010000000475 that ``1.0 − 0.999`` would give), so rounding is TF's too.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch.optim import Optimizer


def tf_constants(beta1: float, beta2: float, eps: float, dtype: torch.dtype) -> tuple[float, float, float]:
    """(1 − β1, 1 − β2, ε) as TF's ``ApplyAdam`` kernel sees them for variables of ``dtype``.

    TF casts β1, β2 and ε to the variable's type T and computes ``T(1) − β`` in T, so for float32
    1 − β2 = 1 − fl32(0.999) = 0.00099998713 (float64: 0.0010000000475). Other dtypes keep T too.
    """
    np_t = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16}.get(dtype, np.float32)
    one = np_t(1.0)
    return float(one - np_t(beta1)), float(one - np_t(beta2)), float(np_t(eps))


class TFAdam(Optimizer):
    """Adam with TF1 semantics (defaults: TF's β2 0.999, ε 1e-8; the GANs pass lr 2e-4, β1 0.5)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if lr <= 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid Adam hyper-parameters lr={lr} betas={betas} eps={eps}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))
        self._bufs: dict[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] = {}

    def _scratch(self, params: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Two reusable buffers shaped like each parameter (not optimiser state: never saved)."""
        pairs = []
        for p in params:
            pair = self._bufs.get(p)
            if pair is None or pair[0].shape != p.shape or pair[0].device != p.device or pair[0].dtype != p.dtype:
                pair = self._bufs[p] = (torch.empty_like(p), torch.empty_like(p))
            pairs.append(pair)
        return [a for a, _ in pairs], [b for _, b in pairs]

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One TF1 Adam update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            params, grads, ms, vs = [], [], [], []
            lr_t = 0.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["beta1_power"] = float(np.float32(b1))
                    state["beta2_power"] = float(np.float32(b2))
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                else:  # TF multiplies its float32 β powers after each update
                    state["beta1_power"] = float(np.float32(state["beta1_power"]) * np.float32(b1))
                    state["beta2_power"] = float(np.float32(state["beta2_power"]) * np.float32(b2))
                state["step"] += 1
                # lr_t = lr · sqrt(1 − β2^t) / (1 − β1^t), evaluated in float32 as TF does
                one = np.float32(1.0)
                lr_t = float(np.float32(group["lr"]) * np.sqrt(one - np.float32(state["beta2_power"]))
                             / (one - np.float32(state["beta1_power"])))
                params.append(p)
                grads.append(p.grad)
                ms.append(state["exp_avg"])
                vs.append(state["exp_avg_sq"])
            if not params:
                continue
            # TF's ApplyAdam: m += (g − m)(1 − β1); v += (g² − v)(1 − β2); θ −= (m·lr_t) / (sqrt(v) + ε),
            # each operation rounded to float32 on its own (no fused multiply-add), in place on two
            # scratch buffers per parameter that live as long as the optimiser: a fresh out-of-place
            # temporary per operation (in the 2-thread profile an out-of-place op on the largest tensor took
            # ~5x its in-place twin; docs/gan.md, "CPU step speed")
            c1, c2, eps = tf_constants(b1, b2, group["eps"], params[0].dtype)
            s1, s2 = self._scratch(params)
            for g, m, s in zip(grads, ms, s1):
                torch.sub(g, m, out=s)
            torch._foreach_mul_(s1, c1)
            torch._foreach_add_(ms, s1)
            for g, s in zip(grads, s1):
                torch.mul(g, g, out=s)
            torch._foreach_sub_(s1, vs)
            torch._foreach_mul_(s1, c2)
            torch._foreach_add_(vs, s1)
            for v, s in zip(vs, s2):
                torch.sqrt(v, out=s)
            torch._foreach_add_(s2, eps)
            for m, s in zip(ms, s1):
                torch.mul(m, lr_t, out=s)
            torch._foreach_div_(s1, s2)
            torch._foreach_sub_(params, s1)
        return loss


def make_adam(params: Iterable[torch.nn.Parameter], *, kind: str = "tf", lr: float = 2e-4,
              beta1: float = 0.5, beta2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """The GANs' optimiser: TF1 Adam (``kind='tf'``, default) or ``torch.optim.Adam`` (``kind='torch'``)."""
    if kind == "tf":
        return TFAdam(params, lr=lr, betas=(beta1, beta2), eps=eps)
    if kind == "torch":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps)
    raise ValueError(f"unknown adam kind {kind!r}; expected 'tf' or 'torch'")
