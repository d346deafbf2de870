"""Non-GAN outliers for the control rows (issue #13): real canvases with their blocks put in other places.

Pure functions on arrays; reading the training shards and writing the shard set happens in
:func:`replication.experiments.stepfns.shuffled_fn`.

An image of H × W pixels is cut into a ``grid`` × ``grid`` array of blocks of ``H // grid`` ×
``W // grid`` pixels (4 × 4 blocks of 8 × 8 px for the 32 × 32 digit canvases). The blocks are
put back in a seeded random order that is never the identity; pixels beyond the last whole block
(when H or W is not a multiple of ``grid``) stay where they were. The result keeps every pixel
value and all local texture (strokes, their thickness, the background) of a real image but
breaks its global layout, so a digit is split across blocks and no longer a digit: an outlier no
GAN made (docs/decisions.md, "Controls (issue #13)").
"""
from __future__ import annotations

import numpy as np


def block_permutation(grid: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of the ``grid²`` block places that is not the identity (redrawn until it is not)."""
    if grid < 2:
        raise ValueError(f"block grid must be ≥ 2 to permute anything, got {grid}")
    n = grid * grid
    while True:
        perm = rng.permutation(n)
        if (perm != np.arange(n)).any():
            return perm


def split_blocks(image: np.ndarray, grid: int) -> np.ndarray:
    """The ``grid²`` blocks of ``image`` (H × W or H × W × C) in row-major order: (grid², bh, bw[, C])."""
    bh, bw = image.shape[0] // grid, image.shape[1] // grid
    if bh < 1 or bw < 1:
        raise ValueError(f"image of {image.shape[0]}×{image.shape[1]} px is smaller than a {grid}×{grid} grid")
    core = image[: bh * grid, : bw * grid]
    blocks = core.reshape(grid, bh, grid, bw, *image.shape[2:]).swapaxes(1, 2)
    return blocks.reshape(grid * grid, bh, bw, *image.shape[2:])


def shuffle_blocks(image: np.ndarray, grid: int, perm: np.ndarray) -> np.ndarray:
    """``image`` with block ``perm[k]`` put in place ``k`` (row-major); a new array, the input is unchanged."""
    blocks = split_blocks(image, grid)
    perm = np.asarray(perm)
    if sorted(perm.tolist()) != list(range(grid * grid)):
        raise ValueError(f"not a permutation of the {grid * grid} blocks: {perm.tolist()}")
    bh, bw = blocks.shape[1], blocks.shape[2]
    moved = blocks[perm].reshape(grid, grid, bh, bw, *image.shape[2:]).swapaxes(1, 2)
    out = image.copy()
    out[: bh * grid, : bw * grid] = moved.reshape(grid * bh, grid * bw, *image.shape[2:])
    return out


def block_shuffle(image: np.ndarray, grid: int, seed: int | tuple[int, ...]) -> np.ndarray:
    """``image`` with its blocks permuted by :func:`block_permutation` drawn from ``seed`` (same seed, same image)."""
    return shuffle_blocks(image, grid, block_permutation(grid, np.random.default_rng(seed)))


def source_order(n_real: int, count: int, seed: int) -> np.ndarray:
    """Which real canvas each of ``count`` outliers is made from: a seeded permutation of the ``n_real``
    canvases, repeated (each repetition a fresh permutation) when ``count`` > ``n_real``."""
    if n_real < 1:
        raise ValueError("no real canvases to shuffle")
    rng = np.random.default_rng(seed)
    reps = -(-count // n_real)
    return np.concatenate([rng.permutation(n_real) for _ in range(reps)])[:count]


__all__ = ["block_permutation", "split_blocks", "shuffle_blocks", "block_shuffle", "source_order"]
