"""``assign_labels``: the labeling rules for generated images, behind one dispatcher.

See paper §2.3, Eqs. (1)–(2); docs/labeling.md.

Decisions recorded here and in docs/kernels.md:

* ``scores`` are the baseline model's logits (N×C). ``spl_input="probs"`` (default) takes the
  softmax of Eq. (2) over v = sigmoid(logits); ``"logits"`` over the logits; ``temperature`` T
  gives softmax(v / T).
* ``pseudo`` (Eq. 1) ranks the logits. sigmoid is strictly increasing, so this is the ranking of
  the confidences, without the ties float32 sigmoid creates when it saturates to 1.0. Exact ties
  go to the lower class index on every backend.
* ``random`` draws U(0, 1) keys (N×C float32, ``torch.rand`` with ``generator``) and keeps the k
  largest per row: exactly k distinct classes, uniformly. The keys come from torch, so a given
  generator state gives the same labels on every backend of a device.
* Non-finite scores are rejected for every rule with a ``ValueError`` naming how many rows are
  bad (the kernels of ``spl``/``pseudo`` count them in the same pass; otherwise torch checks).
"""
from __future__ import annotations

import math

import torch

from kernels.backends import _record, implementation, resolve_backend
from kernels.reference.assign_labels import count_nonfinite_rows

RULES: tuple[str, ...] = ("random", "pseudo", "smooth", "spl")
SPL_INPUTS: tuple[str, ...] = ("probs", "logits")
_OP = "assign_labels"


def _validate(scores: torch.Tensor, rule: str, k: int, spl_input: str, temperature: float) -> None:
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or not scores.is_floating_point():
        raise ValueError("assign_labels: scores must be a 2-D floating-point tensor (N×C logits), "
                         f"got {type(scores).__name__} {getattr(scores, 'shape', '')}")
    n, c = scores.shape
    if c < 1:
        raise ValueError("assign_labels: scores have no classes (C = 0)")
    if n >= 2**31 or n * c >= 2**62:
        raise ValueError(f"assign_labels: {n} rows is more than the kernels' 32-bit row index allows")
    if rule not in RULES:
        raise ValueError(f"assign_labels: unknown rule {rule!r}; expected one of {RULES}")
    if rule in ("random", "pseudo") and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= c):
        raise ValueError(f"assign_labels: k must be an integer in [1, C={c}] for rule {rule!r}, got {k!r}")
    if spl_input not in SPL_INPUTS:
        raise ValueError(f"assign_labels: spl_input must be one of {SPL_INPUTS}, got {spl_input!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"assign_labels: temperature must be a finite number > 0, got {temperature!r}")


def _random_keys(n: int, c: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U(0, 1) float32 keys drawn with ``generator`` on its own device, then moved to ``device``."""
    if generator is None:
        return torch.rand(n, c, device=device)
    return torch.rand(n, c, generator=generator, device=generator.device).to(device)


def assign_labels(scores: torch.Tensor, rule: str, *, k: int = 3, spl_input: str = "probs",
                  temperature: float = 1.0, generator: torch.Generator | None = None,
                  backend: str = "auto") -> torch.Tensor:
    """Labels for generated images from the baseline model's scores (paper §2.3, Eqs. (1)–(2); docs/labeling.md).

    Rules: ``random`` — k distinct classes chosen uniformly set to 1; ``pseudo`` — the top-k
    confidences set to 1 (Eq. 1); ``smooth`` — every entry 1/C; ``spl`` — y = softmax(v / T)
    with v = sigmoid(scores) (``spl_input="probs"``) or v = scores (``"logits"``) (Eq. 2).

    Args:
        scores: N×C logits of the baseline model (any float dtype, CPU or CUDA).
        rule: one of ``random``, ``pseudo``, ``smooth``, ``spl``.
        k: number of positives for ``random`` and ``pseudo`` (1 ≤ k ≤ C).
        spl_input: ``probs`` or ``logits``: what the SPL softmax runs over.
        temperature: T > 0 of the SPL softmax.
        generator: torch generator for ``random`` (reproducible for a given seed and device).
        backend: ``auto``, ``torch``, ``numba``, ``numba-cuda`` or ``cupy``
            (:func:`kernels.last_backend` tells which one ran).

    Returns:
        float32 N×C labels on the device of ``scores``.

    Raises:
        ValueError: bad arguments, or scores holding NaN/±Inf (the message says how many rows).
        kernels.BackendUnavailableError: the named backend cannot run here.
    """
    _validate(scores, rule, k, spl_input, temperature)
    name = resolve_backend(_OP, backend, scores, rule)
    impl = implementation(_OP, name)
    x = scores.detach()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)
    x = x.contiguous()
    n, c = x.shape
    bad = 0
    if rule in ("random", "smooth"):
        bad = count_nonfinite_rows(x)
    if bad == 0:
        if rule == "spl":
            out, bad = impl.spl(x, spl_input == "probs", 1.0 / float(temperature))
        elif rule == "pseudo":
            out, bad = impl.top_k(x, k)
        elif rule == "random":
            out, _ = impl.top_k(_random_keys(n, c, generator, x.device), k)
        else:
            out = impl.smooth(x)
    if bad:
        raise ValueError(f"assign_labels: {bad} of {n} rows of scores contain NaN or Inf; "
                         "the baseline model's outputs are not finite")
    _record(_OP, name)
    return out.to(torch.float32)
