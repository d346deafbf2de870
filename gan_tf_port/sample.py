"""Draw images from a trained generator (``docs/gan.md``): eval-mode batch norm, seeded noise, in batches.

Batch norm in inference mode uses the moving averages, as both repositories' samplers do
(carpedm20 ``sampler`` = ``generator(train=False)``; LynnHo ``generator(z, training=False)``).
Noise for sample i comes from one CPU ``torch.Generator`` seeded with ``seed`` and drawn batch
after batch, so the same (seed, batch) always yields the same images on the same device.

``batch_stats=True`` is a diagnosis, not the faithful sampler: batch norm normalises each sampling batch
with its own statistics (training-mode BN), in a copy of the generator so its moving averages stay
untouched. With decay 0.9 the moving averages remember only ≈ 3 DCGAN iterations (docs/gan.md,
"Collapse diagnosis"), so eval-mode samples can lag a fast-moving generator; comparing the two
separates that lag from a collapse of the generator itself. The images then depend on ``batch``.
"""
from __future__ import annotations

import copy
import os
import pickle
import re
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from gan_tf_port import build
from gan_tf_port.grid import to_uint8
from gan_tf_port.io import damaged_zip_member

MODEL_KEYS = ("arch", "size", "width", "channels", "z_dim")


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds pickled objects other than tensors and plain containers (refused unread)."""


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a trainer checkpoint (a dict written by :func:`gan_tf_port.train.train`).

    Checkpoints hold only tensors and plain containers, so they are loaded with ``weights_only=True``:
    a file that needs any other type (e.g. a pickled payload that would run code) raises
    :class:`UnsafeCheckpointError` (one line, naming the file) and nothing in it is executed.
    """
    bad = damaged_zip_member(path) if os.path.isfile(path) else None
    if bad is not None:  # truncated or flipped bits: torch.load would not notice a flip inside a tensor
        raise UnsafeCheckpointError(f"{path}: damaged checkpoint (its zip member {bad} fails its CRC-32 check)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported [^.]*", str(e))
        detail = " ".join((found.group(0) if found else str(e)).split())[:120]  # one line
        raise UnsafeCheckpointError(f"{path}: refusing to load a checkpoint holding objects other than tensors and "
                                    f"plain values ({detail[:160]})") from None
    if not isinstance(ckpt, dict) or not {"model", "G", "iteration"} <= set(ckpt):
        raise UnsafeCheckpointError(f"{path}: not a gan_tf_port checkpoint")
    return ckpt


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the generator saved in checkpoint ``path`` (its ``model`` spec and ``G`` weights), in eval mode."""
    ckpt = load_checkpoint(path)
    spec = ckpt["model"]
    g, _ = build(spec["arch"], size=spec["size"], width=spec["width"], channels=spec["channels"], z_dim=spec["z_dim"])
    g.load_state_dict(ckpt["G"])
    return g.to(device).eval()


@torch.no_grad()
def iter_samples(generator: nn.Module, n: int, *, seed: int = 0, batch: int = 256,
                 device: str | torch.device | None = None, batch_stats: bool = False) -> Iterator[np.ndarray]:
    """Yield ``n`` images as uint8 RGB arrays b×H×W×C, ``batch`` at a time, with eval-mode BN
    (``batch_stats=True``: each batch's own BN statistics, a diagnosis; see the module docstring)."""
    if n < 0 or batch < 1:
        raise ValueError(f"need n >= 0 and batch >= 1, got n={n}, batch={batch}")
    device = torch.device(device) if device is not None else next(generator.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    if batch_stats:  # a copy in training mode: batch statistics, and the original's moving averages unchanged
        copied = copy.deepcopy(generator).train()
        for start in range(0, n, batch):
            b = min(batch, n - start)
            yield to_uint8(copied(generator.sample_z(b, gen).to(device)))
        return
    was_training = generator.training
    generator.eval()
    try:
        for start in range(0, n, batch):
            b = min(batch, n - start)
            z = generator.sample_z(b, gen).to(device)
            yield to_uint8(generator(z))
    finally:
        generator.train(was_training)


def sample_images(generator: nn.Module, n: int, *, seed: int = 0, batch: int = 256,
                  device: str | torch.device | None = None, batch_stats: bool = False) -> np.ndarray:
    """``n`` generated images as one uint8 RGB array n×H×W×C (see :func:`iter_samples`)."""
    parts = list(iter_samples(generator, n, seed=seed, batch=batch, device=device, batch_stats=batch_stats))
    if not parts:
        return np.zeros((0, generator.size, generator.size, generator.channels), dtype=np.uint8)
    return np.concatenate(parts)
