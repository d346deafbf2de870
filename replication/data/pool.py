"""The unlabeled pool (issue #19): the training canvases outside the labelled N, as images without labels.

With ``dataset.train_count = N`` the labelled training set is a seeded subset of the training split
(:func:`replication.data.build.subset_indices`). Every other canvas of the split is *unlabeled data*:
the GANs may train on it (``gan.data: all``) and the ``real`` ceiling rows draw M canvases from it
and label them with a rule from the baseline's scores. No step may read its labels
(docs/decisions.md, "The unlabeled pool").

That is made structural here rather than promised:

* :class:`ImageOnlyReader` opens a shard set's HDF5 files and reads only the ``images`` and ``keys``
  datasets (after checking each shard's SHA-256 against the manifest); it has no method that returns
  a label, and it never touches the ``labels`` dataset;
* :func:`write_image_view` writes the pool (or labelled + pool) from the full training split through
  that reader into a new shard set whose labels are NaN (``label_kind = "none"``), so every later
  step sees a set that holds no labels at all;
* :func:`write_real_draw` draws the M canvases of a ``real`` row from the pool the same way.

Records are identified by their key (the source's id); the pool is the full split's records whose
key is not a key of the labelled set, in the split's order. Image bytes are copied as stored (no
re-encoding), so a pool image is bit-identical to the canvas in the full split.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from replication.data.shards import SOURCE_REAL, ShardWriter, check_shard_digest, load_manifest
from replication.errors import ShardError

#: What a view holds: the pool only, or the labelled set and the pool (the whole training split).
VIEWS = ("pool", "all")
#: The stream of :func:`draw_indices` (a constant of its own, so the draw never repeats another seeded subset).
DRAW_STREAM = 0x9E41


class ImageOnlyReader:
    """Read a shard set's encoded images and keys, never its labels (module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.manifest = load_manifest(self.path)
        self.class_names: list[str] = list(self.manifest["class_names"])
        self._keys: list[list[str]] = []
        for entry in self.manifest["shards"]:
            shard = self.path / entry["file"]
            check_shard_digest(shard, entry["sha256"])
            try:
                with h5py.File(shard, "r") as f:
                    keys = [k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in f["keys"][:]]
                    n_images = f["images"].shape[0]
            except (OSError, KeyError) as e:
                raise ShardError(f"{shard}: cannot read its images and keys ({e})") from None
            if len(keys) != entry["count"] or n_images != entry["count"]:
                raise ShardError(f"{shard}: {len(keys)} keys and {n_images} images, the manifest says {entry['count']}")
            self._keys.append(keys)

    def __len__(self) -> int:
        return sum(len(k) for k in self._keys)

    @property
    def dataset(self) -> str:
        return self.manifest.get("dataset", "")

    def keys(self) -> list[str]:
        """All record keys in index order."""
        return [k for keys in self._keys for k in keys]

    def encoded(self, indices: list[int]) -> list[bytes]:
        """The stored image bytes of records ``indices`` (global indices, any order), read shard by shard."""
        starts = np.cumsum([0] + [len(k) for k in self._keys])
        out: dict[int, bytes] = {}
        by_shard: dict[int, list[int]] = {}
        for i in indices:
            if not 0 <= i < starts[-1]:
                raise IndexError(f"{self.path}: index {i} out of range for {starts[-1]} records")
            by_shard.setdefault(int(np.searchsorted(starts, i, side="right") - 1), []).append(i)
        for s, idx in by_shard.items():
            with h5py.File(self.path / self.manifest["shards"][s]["file"], "r") as f:
                images = f["images"]
                for i in idx:
                    out[i] = images[i - int(starts[s])].tobytes()
        return [out[i] for i in indices]


def pool_indices(full: ImageOnlyReader, labelled: ImageOnlyReader) -> list[int]:
    """Indices into ``full`` of the records whose key is not in ``labelled`` (the pool), in ``full``'s order.

    :class:`ShardError` when a labelled key is missing from ``full`` (the two sets are not one split).
    """
    full_keys = full.keys()
    labelled_keys = set(labelled.keys())
    missing = labelled_keys - set(full_keys)
    if missing:
        raise ShardError(f"{labelled.path}: {len(missing)} labelled records (e.g. {sorted(missing)[0]!r}) are not in "
                         f"the full training split {full.path}; they are not subsets of one split")
    return [i for i, k in enumerate(full_keys) if k not in labelled_keys]


def _write(reader: ImageOnlyReader, indices: list[int], out: Path, split: str, extra: dict) -> Path:
    """Copy records ``indices`` of ``reader`` into a new unlabeled shard set at ``out`` (NaN labels)."""
    if not indices:
        raise ShardError(f"{out}: no record to write (the pool of {reader.path} is empty)")
    keys = reader.keys()
    with ShardWriter(out, dataset=reader.dataset, split=split, class_names=reader.class_names,
                     encoding=reader.manifest["encoding"], label_kind="none", overwrite=True, extra=extra) as w:
        for start in range(0, len(indices), 1024):
            chunk = indices[start:start + 1024]
            for i, data in zip(chunk, reader.encoded(chunk), strict=True):
                w.add(encoded=data, label=None, key=keys[i], source=SOURCE_REAL)
    return out


def write_image_view(full: str | os.PathLike, labelled: str | os.PathLike, out: str | os.PathLike,
                     which: str) -> Path:
    """Write the unlabeled ``pool`` (``full`` minus ``labelled``) or ``all`` of ``full`` as an unlabeled set.

    ``all`` is the labelled images and the pool together (what the GANs train on with ``gan.data: all``),
    in the split's order. Labels are never read: both sets go through :class:`ImageOnlyReader`.
    """
    if which not in VIEWS:
        raise ValueError(f"unknown view {which!r}; expected one of {VIEWS}")
    full_r, lab_r = ImageOnlyReader(full), ImageOnlyReader(labelled)
    pool = pool_indices(full_r, lab_r)
    indices = pool if which == "pool" else list(range(len(full_r)))
    extra = {"view": which, "of": len(full_r), "labelled": len(lab_r), "pool": len(pool)}
    return _write(full_r, indices, Path(out), f"train-{which}-unlabeled", extra)


def draw_indices(n_pool: int, m: int, seed: int) -> list[int]:
    """Sorted indices of ``m`` of ``n_pool`` records, no replacement, ``default_rng([seed, DRAW_STREAM])``."""
    if not 1 <= m <= n_pool:
        raise ShardError(f"a draw of {m} real canvases needs 1 <= M <= {n_pool} (the size of the unlabeled pool); "
                         "lower sampling.count / gen_ratio or dataset.train_count")
    rng = np.random.default_rng([int(seed), DRAW_STREAM])
    return sorted(rng.choice(n_pool, size=m, replace=False).tolist())


def write_real_draw(pool: str | os.PathLike, m: int, seed: int, out: str | os.PathLike) -> Path:
    """Write ``m`` canvases of the unlabeled ``pool`` (:func:`draw_indices` with ``seed``) as an unlabeled set."""
    reader = ImageOnlyReader(pool)
    indices = draw_indices(len(reader), m, seed)
    return _write(reader, indices, Path(out), "real-draw", {"real_draw": {"m": m, "seed": seed, "of": len(reader)}})


__all__ = ["ImageOnlyReader", "VIEWS", "pool_indices", "write_image_view", "draw_indices", "write_real_draw"]
