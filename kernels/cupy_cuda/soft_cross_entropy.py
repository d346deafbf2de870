"""``cupy`` backend of the weighted soft-target cross-entropy (paper §2.4, Eq. (3); docs/labeling.md#loss).

``sce_forward`` of ``kernels/cuda/soft_cross_entropy.cu`` writes the loss and its gradient in ONE launch.

The grid is capped at ``BLOCKS_PER_SM`` blocks per SM (blocks loop over row groups) so the last
block sums at most a few thousand partials; the ticket counter lives per (device, stream) and is
reset by the kernel itself, so no fill launch precedes it. float32 computation, float64 loss sum.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels.cupy_cuda.module import (
    RowConfig,
    as_cupy,
    current_stream,
    device_index,
    get_kernel,
    persistent_counter,
    sm_count,
)

_OP = "soft_cross_entropy"
BLOCKS_PER_SM = 16


def forward(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
            mask: torch.Tensor | None, mode: str, inv_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss (0-d float32) and ∂L/∂logits (float32) in one kernel launch; mask is uint8 or None."""
    import cupy  # CuPy is optional: loaded only when the cupy backend runs

    x = logits.detach().to(torch.float32).contiguous()
    n, c = x.shape
    grad = torch.empty((n, c), dtype=torch.float32, device=x.device)
    if n == 0:
        return torch.zeros((), dtype=torch.float32, device=x.device), grad
    y = targets.detach().to(torch.float32).contiguous()
    w = weights.detach().to(torch.float32).contiguous() if weights is not None else x
    m = mask.contiguous() if mask is not None else x  # placeholders are never dereferenced
    dev = device_index(x)
    cfg = RowConfig.for_classes(c)
    grid = min(cfg.blocks_for(n), sm_count(dev) * BLOCKS_PER_SM)
    partials = torch.empty(grid, dtype=torch.float64, device=x.device)
    loss = torch.empty((), dtype=torch.float32, device=x.device)  # written by the last block
    mode_id = 0 if mode == "sigmoid" else 1
    kernel = get_kernel(dev, _OP, f"sce_forward<{cfg.log2}, {mode_id}>", cfg.log2)
    stream = current_stream(dev)
    counter = persistent_counter(dev, torch.cuda.current_stream(dev).cuda_stream)
    with cupy.cuda.Device(dev), stream:
        kernel((grid,), cfg.block,
               (as_cupy(x), as_cupy(y), as_cupy(w), as_cupy(m), as_cupy(grad), as_cupy(partials),
                as_cupy(counter), as_cupy(loss), np.int32(n), np.int32(c),
                np.int32(weights is not None), np.int32(mask is not None), np.float32(inv_norm)))
    return loss, grad
