"""Label files: soft/hard label vectors for a *generated* shard set, stored apart from its pixels.

One set of generated images serves all four labeling rules (docs/datasets.md#label-files): each rule writes a
small HDF5 file holding ``labels`` (M×C float32) and, as attributes, the content hash of the
generated shard set it labels, the rule and its parameters, and the SHA-256 of the labels' bytes
(HDF5 keeps no checksum, so flipped bits would otherwise read silently). Reading checks both hashes,
the row count and the class count, that every value is finite and in [0, 1], and refuses a mismatch
with a one-line error naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from replication.data.shards import ShardSet
from replication.errors import ShardError
from replication.io_utils import atomic_write_hdf5

LABEL_FILE_VERSION = 1


def write_label_file(
    path: str | os.PathLike,
    labels: np.ndarray,
    shard_set: ShardSet,
    *,
    rule: str,
    params: dict | None = None,
) -> None:
    """Atomically write ``labels`` (M×C) as the label file of ``shard_set`` produced by ``rule``."""
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 2 or labels.shape != (len(shard_set), shard_set.num_classes):
        raise ShardError(
            f"{path}: labels of shape {labels.shape} do not fit the shard set {shard_set.path} "
            f"({len(shard_set)}×{shard_set.num_classes})"
        )
    if not np.isfinite(labels).all():
        raise ShardError(f"{path}: {int((~np.isfinite(labels)).any(1).sum())} label rows are not finite")

    def fill(f: h5py.File) -> None:
        f.create_dataset("labels", data=labels)
        f.attrs["format_version"] = LABEL_FILE_VERSION
        f.attrs["shard_hash"] = shard_set.content_hash
        f.attrs["rule"] = rule
        f.attrs["params"] = json.dumps(params or {}, sort_keys=True)
        f.attrs["class_names"] = json.dumps(shard_set.class_names)
        f.attrs["labels_sha256"] = hashlib.sha256(labels.tobytes()).hexdigest()  # HDF5 has no checksum of its own

    atomic_write_hdf5(path, fill)


def read_label_file(path: str | os.PathLike, shard_set: ShardSet | None = None) -> tuple[np.ndarray, dict]:
    """Read a label file; with ``shard_set`` given, refuse it unless it labels exactly that set.

    Returns ``(labels M×C float32, meta)`` where meta has ``rule``, ``params`` and ``shard_hash``.
    """
    p = Path(path)
    if not p.is_file():
        raise ShardError(f"{p}: label file not found")
    try:
        with h5py.File(p, "r") as f:
            labels = np.asarray(f["labels"][:], dtype=np.float32)
            meta = {
                "rule": str(f.attrs["rule"]),
                "params": json.loads(f.attrs["params"]),
                "shard_hash": str(f.attrs["shard_hash"]),
                "class_names": json.loads(f.attrs["class_names"]),
            }
            digest = str(f.attrs["labels_sha256"]) if "labels_sha256" in f.attrs else None
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise ShardError(f"{p}: not a readable label file ({type(e).__name__}: {e})") from None
    if labels.ndim != 2:
        raise ShardError(f"{p}: labels have shape {labels.shape}, expected M×C")
    bad = ~np.isfinite(labels).all(axis=1)
    if bad.any():
        raise ShardError(f"{p}: {int(bad.sum())} label rows are not finite (first at row {int(np.argmax(bad))})")
    if labels.size and (labels.min() < 0 or labels.max() > 1):
        raise ShardError(f"{p}: label values must lie in [0, 1], found {labels.min():.4g}..{labels.max():.4g}")
    if digest is not None and hashlib.sha256(labels.tobytes()).hexdigest() != digest:
        raise ShardError(f"{p}: damaged label file (its labels fail their SHA-256 check)")
    if shard_set is not None:
        if meta["shard_hash"] != shard_set.content_hash:
            raise ShardError(
                f"{p}: label file was made for another shard set (hash {meta['shard_hash'][:12]}…), "
                f"not {shard_set.path} ({shard_set.content_hash[:12]}…)"
            )
        if labels.shape != (len(shard_set), shard_set.num_classes):
            raise ShardError(
                f"{p}: labels are {labels.shape[0]}×{labels.shape[1]}, shard set {shard_set.path} "
                f"is {len(shard_set)}×{shard_set.num_classes}"
            )
    return labels, meta
