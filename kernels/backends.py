"""Backend names, availability checks, the ``auto`` rule, and the record of which backend ran.

Four backends implement every op (docs/kernels.md#the-auto-rule):

* ``torch``      — the reference, written with plain torch ops (any device, any float dtype);
* ``numba``      — Numba ``@njit(parallel=True)`` kernels on CPU tensors (one pass per row);
* ``numba-cuda`` — ``numba.cuda`` kernels with shared-memory reductions (no warp shuffles), so the
  same kernels also run under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) on CPU tensors;
* ``cupy``       — CUDA C in ``kernels/cuda/*.cu`` compiled through ``cupy.RawModule`` (CUDA tensors).

``backend="auto"`` (decision):

* CUDA tensor: ``cupy`` if it is usable, else ``numba-cuda`` (real GPU, not the simulator), else
  ``torch``;
* CPU tensor: ``numba`` when the tensor has at least ``AUTO_NUMBA_MIN_ELEMENTS["<op>.<variant>"]``
  elements (variant = rule or loss mode) and Numba imports, else ``torch``. The thresholds come
  from ``spl bench kernels`` on the development CPU (see docs/kernels.md for the measurement).

``auto`` never hides what ran: :func:`last_backend` returns the backend that served the most
recent call in this thread, and every choice is logged at DEBUG level. An explicitly named backend
that cannot serve the tensor raises :class:`BackendUnavailableError`; it never falls back.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
import threading

import torch

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("torch", "numba", "numba-cuda", "cupy")

# The CuPy kernels keep a whole row in registers (PyTorch's persistent-softmax layout), padded to
# a power of two; beyond this class count they are not instantiated (every dataset here has C <= 81).
CUPY_MAX_CLASSES = 1024

# Smallest number of elements (N*C) of a CPU tensor for which ``auto`` picks ``numba`` over
# ``torch``, per "<op>.<rule or mode>"; None = never. Chosen from benchmarks/results/kernels.csv
# (see docs/kernels.md, "Choosing the auto threshold", for the measurement).
# In short: the numba rules beat the torch backend at every measured size from 1.9k elements (its
# finiteness check and sort dominate), so they run from 1024 elements (below, the gain is < 30 µs
# and would not repay a cold JIT compile). The numba softmax loss is as fast or faster at every
# size; the numba sigmoid loss wins only below ~4k elements (by ~0.05 ms) and loses 1.7-2.8x from
# ~20k (scalar libm exp/log1p against torch's vectorised ops), so it stays on torch.
AUTO_NUMBA_MIN_ELEMENTS: dict[str, int | None] = {
    "assign_labels.spl": 1024,
    "assign_labels.pseudo": 1024,
    "assign_labels.random": 1024,
    "assign_labels.smooth": None,          # a fill: torch.full is already optimal
    "soft_cross_entropy.sigmoid": None,
    "soft_cross_entropy.softmax": 1024,
}

_state = threading.local()


class BackendUnavailableError(RuntimeError):
    """A backend was named explicitly but cannot run here (package missing, wrong device, ...)."""


def last_backend() -> str | None:
    """Name of the backend that served the most recent kernels call in this thread (or None)."""
    return getattr(_state, "last", None)


def _record(op: str, name: str) -> None:
    _state.last = name
    log.debug("kernels.%s ran on backend %s", op, name)


def cuda_simulator_enabled() -> bool:
    """True when ``NUMBA_ENABLE_CUDASIM=1`` was set (numba.cuda then runs kernels on the CPU)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


@functools.cache
def _numba_status() -> str | None:
    """None when Numba CPU kernels can run, else the reason they cannot."""
    try:
        import numba  # noqa: F401
    except Exception as e:  # pragma: no cover - numba is a dependency
        return f"numba does not import ({type(e).__name__}: {e})"
    return None


@functools.cache
def _numba_cuda_status(on_gpu: bool) -> str | None:
    """None when numba.cuda can run kernels on tensors of this kind (GPU or simulated CPU)."""
    try:
        from numba import cuda  # numba-cuda is optional: loaded only when the CUDA backend runs
    except Exception as e:
        return f"numba.cuda does not import ({type(e).__name__}: {e})"
    if cuda_simulator_enabled():
        if on_gpu:
            return "NUMBA_ENABLE_CUDASIM=1: numba.cuda is the CPU simulator and cannot take CUDA tensors"
        return None
    if not on_gpu:
        return "numba-cuda on CPU tensors needs the simulator (set NUMBA_ENABLE_CUDASIM=1 before importing numba)"
    try:
        if not cuda.is_available():
            return "numba.cuda finds no CUDA device"
    except Exception as e:
        return f"numba.cuda fails ({type(e).__name__}: {e})"
    return None


@functools.cache
def _cupy_status() -> str | None:
    """None when CuPy can launch kernels on this machine's CUDA devices."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import cupy  # CuPy is optional: loaded only when the cupy backend runs
    except Exception as e:
        return f"cupy does not import ({type(e).__name__}: {e})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "cupy finds no CUDA device"
    except Exception as e:
        return f"cupy cannot reach the CUDA runtime ({type(e).__name__}: {e})"
    return None


def unavailable_reason(name: str, device: torch.device | str) -> str | None:
    """Why backend ``name`` cannot run on tensors of ``device`` (None when it can)."""
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    if name == "torch":
        return None
    if name == "numba":
        return "numba (CPU) needs CPU tensors" if on_gpu else _numba_status()
    if name == "numba-cuda":
        return _numba_cuda_status(on_gpu)
    if name == "cupy":
        if not on_gpu:
            return "cupy needs CUDA tensors"
        return _cupy_status()
    raise ValueError(f"unknown backend {name!r}; expected one of {('auto',) + BACKENDS}")


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that can run on tensors of ``device`` on this machine, reference first."""
    return [b for b in BACKENDS if unavailable_reason(b, device) is None]


def _reason_for(name: str, tensor: torch.Tensor) -> str | None:
    reason = unavailable_reason(name, tensor.device)
    if reason is None and name == "cupy" and tensor.dim() == 2 and tensor.shape[1] > CUPY_MAX_CLASSES:
        reason = f"the cupy kernels support at most {CUPY_MAX_CLASSES} classes, got {tensor.shape[1]}"
    return reason


def resolve_backend(op: str, backend: str, tensor: torch.Tensor, variant: str | None = None) -> str:
    """Return the concrete backend that serves ``op`` for ``tensor`` (``auto`` rule in the module doc).

    ``variant`` (the rule or loss mode) selects the CPU threshold ``AUTO_NUMBA_MIN_ELEMENTS[op.variant]``.

    Raises:
        ValueError: ``backend`` is not a known name.
        BackendUnavailableError: a named backend cannot run on this tensor here.
    """
    if backend != "auto":
        reason = _reason_for(backend, tensor)
        if reason is not None:
            raise BackendUnavailableError(f"kernels.{op}: backend {backend!r} unavailable: {reason}")
        return backend
    if tensor.device.type == "cuda":
        for name in ("cupy", "numba-cuda"):
            reason = _reason_for(name, tensor)
            if reason is None:
                return name
            log.debug("kernels.%s: auto skips %s: %s", op, name, reason)
        return "torch"
    threshold = AUTO_NUMBA_MIN_ELEMENTS.get(f"{op}.{variant}")
    if threshold is not None and tensor.numel() >= threshold and _numba_status() is None:
        return "numba"
    return "torch"


_FAMILY = {"torch": "reference", "numba": "numba_cpu", "numba-cuda": "numba_cuda", "cupy": "cupy_cuda"}


def implementation(op: str, name: str):
    """The module ``kernels.<family>.<op>`` implementing ``op`` for backend ``name`` (imported lazily)."""
    return importlib.import_module(f"kernels.{_FAMILY[name]}.{op}")
