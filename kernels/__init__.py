"""Fused ops of the SPL replication (docs/kernels.md), each with four interchangeable backends.

Public API:

* :func:`assign_labels` — the labeling rules ``random``/``pseudo``/``smooth``/``spl`` (paper §2.3,
  Eqs. (1)–(2); docs/labeling.md);
* :func:`weighted_soft_cross_entropy` — the sigmoid/softmax soft-target loss with per-sample
  weights and an optional mask (docs/labeling.md#loss), a ``torch.autograd.Function``;
* :func:`last_backend` — which backend served the latest call in this thread (``auto`` is
  resolved per call: see :mod:`kernels.backends`); :func:`available_backends`,
  :func:`resolve_backend`, :class:`BackendUnavailableError`.

Backends: ``torch`` (reference), ``numba`` (CPU), ``numba-cuda`` (GPU, or the CUDA simulator),
``cupy`` (CUDA C in ``kernels/cuda``). This package never imports ``replication``.
"""
from kernels.backends import (
                              AUTO_NUMBA_MIN_ELEMENTS,
                              BACKENDS,
                              BackendUnavailableError,
                              available_backends,
                              last_backend,
                              resolve_backend,
)
from kernels.ops.assign_labels import RULES, assign_labels
from kernels.ops.soft_cross_entropy import MODES, NORMALIZE, weighted_soft_cross_entropy

__all__ = [
    "AUTO_NUMBA_MIN_ELEMENTS", "BACKENDS", "BackendUnavailableError", "MODES", "NORMALIZE", "RULES",
    "assign_labels", "available_backends", "last_backend", "resolve_backend",
    "weighted_soft_cross_entropy",
]
