"""``cupy`` backend of the label-assignment rules: kernels of ``kernels/cuda/assign_labels.cu``.

See paper §2.3, Eqs. (1)–(2); docs/labeling.md.

One launch per call (plus the zeroing of the bad-row counter, and the ``.item()`` read that
rejects non-finite rows); each row stays in registers between loading and storing, so a bulk
relabel reads the scores once and writes the labels once. float32 computation.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels.cupy_cuda.module import RowConfig, as_cupy, current_stream, device_index, get_kernel

_OP = "assign_labels"


def _launch_rows(kind: str, x: torch.Tensor, *scalars) -> tuple[torch.Tensor, int]:
    import cupy  # CuPy is optional: loaded only when the cupy backend runs

    x = x.detach().to(torch.float32).contiguous()
    n, c = x.shape
    out = torch.empty((n, c), dtype=torch.float32, device=x.device)
    if n == 0:
        return out, 0
    bad = torch.zeros(1, dtype=torch.int32, device=x.device)
    cfg = RowConfig.for_classes(c)
    dev = device_index(x)
    kernel = get_kernel(dev, _OP, f"{kind}<{cfg.log2}>", cfg.log2)
    with cupy.cuda.Device(dev), current_stream(dev):
        kernel((cfg.blocks_for(n),), cfg.block,
               (as_cupy(x), as_cupy(out), np.int32(n), np.int32(c), *scalars, as_cupy(bad)))
    return out, int(bad.item())


def spl(scores: torch.Tensor, from_probs: bool, inv_temperature: float) -> tuple[torch.Tensor, int]:
    """SPL soft labels, Eq. (2) (see :func:`kernels.reference.assign_labels.spl`)."""
    return _launch_rows("spl_rows", scores, np.int32(bool(from_probs)), np.float32(inv_temperature))


def top_k(keys: torch.Tensor, k: int) -> tuple[torch.Tensor, int]:
    """Pseudo labels, Eq. (1): the k largest keys per row set to 1 (ties to the lower index)."""
    return _launch_rows("top_k_rows", keys, np.int32(k))


def smooth(scores: torch.Tensor) -> torch.Tensor:
    """Label smoothing: every entry 1/C (the ``fill_value`` kernel)."""
    import cupy  # CuPy is optional: loaded only when the cupy backend runs

    n, c = scores.shape
    out = torch.empty((n, c), dtype=torch.float32, device=scores.device)
    if n == 0:
        return out
    dev = device_index(scores)
    kernel = get_kernel(dev, _OP, "fill_value", RowConfig.for_classes(c).log2)
    blocks = min((n * c + 255) // 256, 65535)
    with cupy.cuda.Device(dev), current_stream(dev):
        kernel((blocks,), (256,), (as_cupy(out), np.int64(n * c), np.float32(1.0 / c)))
    return out
