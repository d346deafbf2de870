"""Sample grids and loss curves as PNG files (OpenCV and matplotlib; no ``replication`` import).

Images in [−1, 1] map to uint8 with ``round((x + 1) · 127.5)`` clipped to 0–255 (decision: the
repositories truncate through ``scipy.misc``; rounding is the unbiased choice and differs by at most 1).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch

from gan_tf_port.io import atomic_write, atomic_write_bytes


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """B×C×H×W float in [−1, 1] → B×H×W×C uint8 (RGB order kept)."""
    x = ((images.detach().float().cpu() + 1.0) * 127.5).round().clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def grid_shape(n: int) -> tuple[int, int]:
    """Rows × columns of carpedm20's ``image_manifold_size``: floor(√n) × ceil(√n), grown until it holds n."""
    rows, cols = int(math.floor(math.sqrt(n))), int(math.ceil(math.sqrt(n)))
    if rows * cols < n:
        rows += 1
    return rows, cols


def make_grid(images: np.ndarray, rows: int | None = None, cols: int | None = None) -> np.ndarray:
    """Tile B×H×W×C uint8 images row-major into one (rows·H)×(cols·W)×C image (empty cells black)."""
    b, h, w, c = images.shape
    if rows is None or cols is None:
        rows, cols = grid_shape(b)
    out = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i in range(min(b, rows * cols)):
        r, q = divmod(i, cols)
        out[r * h:(r + 1) * h, q * w:(q + 1) * w] = images[i]
    return out


def save_grid(images: np.ndarray | torch.Tensor, path: str | os.PathLike, rows: int | None = None,
              cols: int | None = None) -> None:
    """Write a grid of RGB images (uint8 B×H×W×C, or a float tensor B×C×H×W in [−1, 1]) as a PNG, atomically."""
    if isinstance(images, torch.Tensor):
        images = to_uint8(images)
    grid = make_grid(images, rows, cols)
    if grid.shape[2] == 3:
        grid = grid[..., ::-1]  # RGB → BGR for OpenCV
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(grid))
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the sample grid")
    atomic_write_bytes(path, buf.tobytes())


def plot_losses(history: Mapping[str, Sequence[float]], path: str | os.PathLike, title: str | None = None) -> None:
    """Plot every series of ``history`` (except ``iteration``) against ``history['iteration']`` into a PNG."""
    import matplotlib  # heavy: Matplotlib is loaded only when a figure is drawn

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    x = list(history.get("iteration", []))
    keys = [k for k in history if k != "iteration"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        for k in keys:
            ax.plot(x, list(history[k]), label=k, linewidth=1)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.grid(True, alpha=0.3)
        if keys:
            ax.legend(loc="best", fontsize=8)
        if title:
            ax.set_title(title)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
