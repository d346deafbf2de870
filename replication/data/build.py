"""Build a shard set from a raw dataset split (``spl data build``), and summarise one (``spl data info``).

Images are stored as Caffe stored them (docs/datasets.md#stored-size-and-transforms): resized to
``size``×``size`` at build time (``convert_imageset --resize_height --resize_width``, i.e. ``cv::resize``
with bilinear interpolation, aspect ratio not kept), then encoded (JPEG q95 for photos, PNG for small
images).
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from replication.console.progress import progress_on
from replication.data.shards import SOURCE_REAL, ShardSet, ShardWriter, is_shard_set
from replication.data.sources import open_source
from replication.errors import BadImageError, DataSourceError
from replication.io_utils import check_output_path
from replication.vocabulary import BAD_IMAGE_POLICIES

log = logging.getLogger(__name__)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a BGR image to ``size``×``size`` with bilinear interpolation (Caffe's ``convert_imageset``)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def build_shards(
    source: str,
    *,
    split: str,
    out: str | Path,
    root: str | Path | None = None,
    size: int | None = None,
    seed: int = 0,
    tiny: bool = False,
    on_bad_image: str = "stop",
    count: int | None = None,
    overwrite: bool = False,
    records_per_shard: int = 1024,
    progress: bool = True,
    source_options: dict | None = None,
) -> Path:
    """Read split ``split`` of ``source`` under ``root`` and write it as a shard set at ``out``.

    ``on_bad_image="stop"`` raises :class:`BadImageError` naming the first unreadable image (the
    partial output is removed); ``"skip"`` leaves such images out and records how many in the
    manifest (``extra.skipped_images``) and the log. ``source_options`` go to the adapter (e.g.
    ``{"image_dir": "Image"}`` for wider-attribute). ``count`` keeps a seeded subset of the split
    (:func:`subset_indices`: ``count`` records drawn without replacement with ``seed``, written in the
    source's order) — a limited labelled set; images skipped as bad are not replaced. Returns ``out``.

    ``out`` may not be the working folder (or hold it), nor equal, hold or lie inside ``root``
    (:func:`replication.io_utils.check_output_path`); the raw dataset is never touched. The set is
    written beside ``out`` and swapped in only when complete (:class:`ShardWriter`), so a failed
    rebuild with ``overwrite`` keeps the previous set.
    """
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise DataSourceError(f"unknown --on-bad-image {on_bad_image!r}; expected one of {BAD_IMAGE_POLICIES}")
    if size is not None and int(size) < 1:
        raise DataSourceError(f"--size {size}: the stored side must be a whole number of pixels >= 1")
    out = check_output_path(out, ("--root", root))
    src = open_source(source, root, split, seed=seed, tiny=tiny, **(source_options or {}))
    side = int(src.default_size if size is None else size)
    skipped: list[str] = []
    extra = {"source": source, "size": side, "seed": seed, "tiny": tiny, **src.stats}
    records = src.records
    if count is not None:
        records = [records[i] for i in subset_indices(len(records), count, seed, where=f"{source}/{split}")]
        extra["subset"] = {"count": int(count), "of": len(src.records), "seed": seed}
    with ShardWriter(
        out,
        dataset=src.dataset,
        split=split,
        class_names=src.class_names,
        encoding=src.encoding,
        label_kind=src.label_kind,
        records_per_shard=records_per_shard,
        overwrite=overwrite,
        extra=extra,
    ) as writer:
        for record in tqdm(records, desc=f"build {source}/{split}", unit="img", disable=not progress_on(progress)):
            try:
                image = record.load()
            except BadImageError as e:
                if on_bad_image == "stop":
                    raise
                skipped.append(record.key)
                log.warning("skipping bad image: %s", e)
                continue
            writer.add(resize_square(image, side), label=record.label, key=record.key, source=SOURCE_REAL)
        if skipped:
            writer.extra["skipped_images"] = len(skipped)
            log.warning("%d bad images skipped while building %s", len(skipped), out)
        if len(writer) == 0:
            raise DataSourceError(f"{root}: no readable image in the {split} split of {source}")
    return out


def subset_indices(n: int, count: int, seed: int, *, where: str = "the split") -> list[int]:
    """Sorted indices of a seeded subset of ``count`` of ``n`` records (``numpy.random.default_rng``
    on ``(seed, 0x5B5E7)``, without replacement); the same ``(n, count, seed)`` gives the same subset."""
    if not 1 <= int(count) <= n:
        raise DataSourceError(f"{where}: a subset of {count} records needs 1 <= count <= {n} (the split's size)")
    rng = np.random.default_rng([int(seed), 0x5B5E7])
    return sorted(rng.choice(n, size=int(count), replace=False).tolist())


def summarize(path: str | Path) -> dict:
    """Summary of a shard set: count, classes, labels per image, per-class positive frequency."""
    shards = ShardSet(path)
    labels = shards.labels()
    summary = {
        "path": str(path),
        "dataset": shards.dataset,
        "split": shards.manifest.get("split"),
        "records": len(shards),
        "shards": len(shards.manifest["shards"]),
        "num_classes": shards.num_classes,
        "label_kind": shards.label_kind,
        "encoding": shards.manifest["encoding"],
        "extra": shards.manifest.get("extra", {}),
    }
    if np.isnan(labels).all():
        summary["labelled"] = False
    else:
        positives = (labels == 1).astype(np.float64)
        summary.update(
            labelled=True,
            labels_per_image=float(positives.sum(1).mean()),
            images_without_labels=int((positives.sum(1) == 0).sum()),
            class_frequency={n: float(f) for n, f in zip(shards.class_names, positives.mean(0))},
        )
    first = shards[0].image
    summary["image_shape"] = list(first.shape)
    return summary


__all__ = ["build_shards", "summarize", "resize_square", "is_shard_set", "subset_indices"]
