"""Write a label file for a generated shard set with one of the paper's rules (``spl label assign``).

The rules themselves (random, pseudo, smooth, spl — paper §2.3, Eqs. (1)–(2);
docs/labeling.md#label-rules) are the pure function :func:`kernels.assign_labels`; this module is
the I/O around it: it reads the baseline model's
predictions on the generated images (``preds.npz`` from :func:`replication.inference.predict.predict`),
checks that they belong to exactly that generated shard set (same keys in the same order, same
class names), and writes the labels with :func:`replication.data.labelfile.write_label_file`,
tied to the generated set's content hash. ``random`` and ``smooth`` ignore the scores, so they
may be omitted for them.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from kernels import assign_labels
from replication.data.labelfile import write_label_file
from replication.data.shards import ShardSet
from replication.errors import ConfigError, ShardError
from replication.inference.predictions import read_preds
from replication.io_utils import check_output_path
from replication.locking import output_lock
from replication.vocabulary import RULES, SCORELESS_RULES, SPL_INPUTS

log = logging.getLogger(__name__)



def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_scores(scores: str | os.PathLike, shard_set: ShardSet) -> np.ndarray:
    """Logits (M×C) from ``scores`` after checking they were computed on ``shard_set``'s records."""
    path = Path(scores)
    preds = read_preds(path)
    keys = shard_set.keys()
    if preds["class_names"] != shard_set.class_names:
        raise ShardError(f"{path}: class names differ from the generated shard set {shard_set.path}")
    if len(preds["keys"]) != len(keys):
        raise ShardError(f"{path}: scores {len(preds['keys'])} images, "
                         f"the generated shard set {shard_set.path} has {len(keys)}")
    if preds["keys"] != keys:
        first = next(i for i, (a, b) in enumerate(zip(preds["keys"], keys)) if a != b)
        raise ShardError(
            f"{path}: keys do not match the generated shard set {shard_set.path} "
            f"(first difference at row {first}: {preds['keys'][first]!r} vs {keys[first]!r})"
        )
    logits = preds["logits"]
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        raise ShardError(f"{path}: {int(bad.sum())} score rows are not finite")
    return logits


def assign_label_file(
    rule: str,
    scores: Path | None,
    generated: Path,
    out: Path,
    *,
    k: int = 3,
    spl_input: str = "probs",
    temperature: float = 1.0,
    seed: int = 0,
) -> Path:
    """Label the generated shard set ``generated`` with ``rule`` and write the label file ``out``.

    ``scores`` is a ``preds.npz`` of the baseline model on ``generated`` (required for ``pseudo``
    and ``spl``; ignored, and optional, for ``random`` and ``smooth``). ``k`` is K of the random and
    pseudo rules; ``spl_input`` and ``temperature`` select v and T of SPL's softmax(v/T) (Eq. 2);
    ``seed`` drives the random rule. Returns ``out``.
    """
    if rule not in RULES:
        raise ConfigError(f"unknown labeling rule {rule!r}; expected one of {', '.join(RULES)}")
    if spl_input not in SPL_INPUTS:
        raise ConfigError(f"--spl-input {spl_input!r}: expected one of {', '.join(SPL_INPUTS)}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ConfigError(f"--temperature {temperature}: T of softmax(v/T) must be a finite number > 0")
    out = Path(out)
    if out.exists() and not out.is_file() or out.is_symlink():
        raise ConfigError(f"{out}: --out must be a label file (.h5), not a folder or a symbolic link")
    check_output_path(out, ("the generated shard set", generated), ("the scores file", scores))
    with output_lock(out):
        return _assign_locked(rule, scores, Path(generated), out, k=k, spl_input=spl_input, temperature=temperature,
                              seed=seed)


def _assign_locked(rule: str, scores: Path | None, generated: Path, out: Path, *, k: int, spl_input: str,
                   temperature: float, seed: int) -> Path:
    shard_set = ShardSet(generated)
    m, c = len(shard_set), shard_set.num_classes
    if not 1 <= k <= c and rule in ("random", "pseudo"):
        raise ConfigError(f"--k {k}: must be between 1 and the number of classes ({c})")
    params: dict = {"k": k, "spl_input": spl_input, "temperature": temperature, "seed": seed}
    if scores is None:
        if rule not in SCORELESS_RULES:
            raise ConfigError(f"rule {rule!r} needs --scores (the baseline model's preds.npz on {generated})")
        logits = np.zeros((m, c), dtype=np.float32)  # only the shape is used by these rules
    else:
        logits = load_scores(scores, shard_set)
        params.update(scores=str(Path(scores).resolve()), scores_sha256=_file_sha256(Path(scores)))
    gen = torch.Generator().manual_seed(int(seed))
    labels = assign_labels(
        torch.from_numpy(logits), rule, k=k, spl_input=spl_input, temperature=temperature, generator=gen
    )
    labels = labels.detach().cpu().numpy().astype(np.float32)
    write_label_file(out, labels, shard_set, rule=rule, params=params)
    log.info("%s labels for %d generated images of %s → %s", rule, m, generated, out)
    return out
