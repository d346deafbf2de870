"""``coco2014``: MS-COCO 2014 as a multi-label classification set (docs/datasets.md#ms-coco-2014-coco2014).

Layout under ``root`` (the official release, unchanged)::

    annotations/instances_train2014.json   annotations/instances_val2014.json
    train2014/COCO_train2014_000000000009.jpg ...
    val2014/COCO_val2014_000000000042.jpg ...

Split ``train`` reads ``instances_train2014.json`` and ``train2014/`` (82,783 images); split
``test`` reads ``instances_val2014.json`` and ``val2014/`` (40,504 images), as SRN and the paper do.

Facts and decisions (docs/datasets.md):

* **Class index.** The 80 category ids run 1–90 with gaps; class index = position of the id in
  ascending id order, whatever order ``categories[]`` lists them in. Class names are
  ``categories[].name`` in that order.
* **All images kept.** Every entry of ``images[]`` becomes a record, also those with no
  annotation (an all-zero label row), as SRN did. Crowd annotations (``iscrowd = 1``) count.
* **Record order** is the order of ``images[]`` in the JSON (deterministic for a given file).
* **Errors.** An annotation whose ``category_id`` is not in ``categories[]``, or whose
  ``image_id`` is not in ``images[]``, is a :class:`DataSourceError` naming the file and the id;
  so are duplicate image or category ids, a ``file_name`` listed twice (``./a.jpg`` and ``a.jpg``
  count as one), a ``file_name`` that is absolute or leaves the image folder through ``..``, and
  missing top-level fields. Image files are not
  checked at open time: a missing or corrupt one raises :class:`BadImageError` from
  ``record.load()`` and the builder's ``--on-bad-image`` decides (stop, or skip and count).
* ``seed`` is unused (nothing is random); ``tiny`` keeps the first :data:`TINY_RECORDS` records
  after the whole annotation file has been validated (a smoke build on the real files).
"""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np

from replication.data.sources import SourceRecord, SourceSplit, load_json, read_image, relative_image_path
from replication.errors import DataSourceError

log = logging.getLogger(__name__)

DATASET = "coco2014"
SPLIT_FILES = {"train": "train2014", "test": "val2014"}  # our split -> COCO's name
TINY_RECORDS = 64


def annotation_path(root: Path, split: str) -> Path:
    """Path of the instances JSON for ``split`` (``train`` → train2014, ``test`` → val2014)."""
    return root / "annotations" / f"instances_{SPLIT_FILES[split]}.json"


def _field(obj: object, key: str, path: Path, where: str = "top level") -> list:
    """``obj[key]`` as a list, or a one-line error naming the file and the missing field."""
    if not isinstance(obj, dict) or key not in obj:
        raise DataSourceError(f"{path}: missing field {key!r} at {where}")
    value = obj[key]
    if not isinstance(value, list):
        raise DataSourceError(f"{path}: field {key!r} at {where} is not a list")
    return value


def _get(entry: object, key: str, path: Path, where: str) -> object:
    """``entry[key]`` for one JSON record, or a one-line error naming the file and the record."""
    if not isinstance(entry, dict) or key not in entry:
        raise DataSourceError(f"{path}: {where} has no field {key!r}")
    return entry[key]


def _int(entry: object, key: str, path: Path, where: str) -> int:
    """``entry[key]`` as an int, or a one-line error naming the file, the record and the value."""
    value = _get(entry, key, path, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise DataSourceError(f"{path}: {where} field {key!r} is not an integer id: {value!r}")
    return int(value)


def category_index(categories: list, path: Path) -> tuple[dict[int, int], list[str]]:
    """Map COCO category id → class index (ascending id order) and return the names in that order."""
    by_id: dict[int, str] = {}
    for i, cat in enumerate(categories):
        cid = _int(cat, "id", path, f"categories[{i}]")
        if cid in by_id:
            raise DataSourceError(f"{path}: duplicate category id {cid}")
        by_id[cid] = str(_get(cat, "name", path, f"categories[{i}]"))
    ids = sorted(by_id)
    return {cid: k for k, cid in enumerate(ids)}, [by_id[cid] for cid in ids]


def parse_instances(data: object, path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Parse an ``instances_*.json`` object into (class names, file names, labels N×C float32).

    Labels are multi-hot over the categories in ascending id order; images without any
    annotation keep an all-zero row.
    """
    images = _field(data, "images", path)
    annotations = _field(data, "annotations", path)
    categories = _field(data, "categories", path)
    if not categories:
        raise DataSourceError(f"{path}: 'categories' is empty")
    cat_to_index, class_names = category_index(categories, path)

    row_of: dict[int, int] = {}
    file_names: list[str] = []
    for i, img in enumerate(images):
        iid = _int(img, "id", path, f"images[{i}]")
        if iid in row_of:
            raise DataSourceError(f"{path}: duplicate image id {iid}")
        row_of[iid] = len(file_names)
        file_names.append(str(_get(img, "file_name", path, f"images[{i}]")))

    labels = np.zeros((len(file_names), len(class_names)), dtype=np.float32)
    for j, ann in enumerate(annotations):
        iid = _int(ann, "image_id", path, f"annotations[{j}]")
        cid = _int(ann, "category_id", path, f"annotations[{j}]")
        if cid not in cat_to_index:
            raise DataSourceError(f"{path}: annotation {ann.get('id', j)} has unknown category id {cid}")
        if iid not in row_of:
            raise DataSourceError(f"{path}: annotation {ann.get('id', j)} refers to unknown image id {iid}")
        labels[row_of[iid], cat_to_index[cid]] = 1.0
    return class_names, file_names, labels


def open_split(root: Path | None, split: str, *, seed: int = 0, tiny: bool = False) -> SourceSplit:
    """Describe split ``split`` of MS-COCO 2014 under ``root`` as records (key = ``file_name``)."""
    if root is None:
        raise DataSourceError("coco2014 needs --root: the folder holding annotations/, train2014/, val2014/")
    root = Path(root)
    path = annotation_path(root, split)
    data = load_json(path, "COCO annotation file")
    class_names, file_names, labels = parse_instances(data, path)
    image_dir = root / SPLIT_FILES[split]
    records = []
    first: dict[str, int] = {}  # normalised file name -> first images[] index (./a.jpg and a.jpg are one file)
    for i, name in enumerate(file_names):
        norm = relative_image_path(name, f"{path}: images[{i}]")
        if norm in first:
            raise DataSourceError(f"{path}: images[{i}] names the file {name!r} of images[{first[norm]}] again")
        first[norm] = i
        records.append(SourceRecord(key=name, label=labels[i], load=partial(read_image, image_dir / norm)))
    no_annotation = int((labels.sum(1) == 0).sum())
    log.info(
        "%s: %d images, %d classes, %d without annotation (kept, all-zero labels)",
        path, len(records), len(class_names), no_annotation,
    )
    if len(class_names) != 80:
        log.warning("%s: %d categories (MS-COCO 2014 has 80)", path, len(class_names))
    stats = {"images_listed": len(records), "no_annotation": no_annotation}
    if tiny:
        records = records[:TINY_RECORDS]
    return SourceSplit(
        dataset=DATASET,
        split=split,
        class_names=class_names,
        label_kind="binary",
        records=records,
        encoding="jpeg",
        default_size=256,
        stats=stats,
    )
