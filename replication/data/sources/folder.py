"""``folder``: bring-your-own multi-label data as image files plus one CSV per split.

See docs/datasets.md#your-own-data-folder.

Layout under ``root``::

    train.csv   test.csv        header ``path,labels``; one image a row
    classes.txt                 optional: the class names, one a line, in index order
    <any sub-folders>/<images>  paths in the CSV are relative to ``root``

A CSV row looks like ``photos/0001.jpg,cat;dog`` (labels separated by ``;``; an empty labels
field is an image with no positive label, an all-zero row). Use ``/`` in paths (``\\`` is
accepted and normalised). A path must stay under ``root``: an absolute path or one that leaves it
through ``..`` is refused, and two rows naming the same file (``./a.jpg`` and ``a.jpg``) are refused
as duplicates. The CSV and ``classes.txt`` must be UTF-8.

Decisions (docs/datasets.md):

* **CSV name.** Split ``train`` reads ``root/train.csv`` and split ``test`` reads
  ``root/test.csv`` — the names are fixed, since ``spl data build`` has no option for them.
* **Class index.** If ``root/classes.txt`` exists it is authoritative: its order is the class
  index, and a label missing from it is a :class:`DataSourceError` naming the CSV and line.
  Otherwise the classes are the sorted union of the labels found in *both* ``train.csv`` and
  ``test.csv`` (whichever exist), so the two splits built separately share one index.
* **Key** = the path as written in the CSV (backslashes normalised to ``/``).
* Image files are not opened when the split is opened; a missing or corrupt image raises
  :class:`BadImageError` from ``record.load()`` and ``--on-bad-image`` decides.
* ``seed`` is unused; ``tiny`` keeps the first :data:`TINY_RECORDS` rows.
"""
from __future__ import annotations

import csv
import io
import logging
from functools import partial
from pathlib import Path

import numpy as np

from replication.data.sources import (
    SPLITS,
    SourceRecord,
    SourceSplit,
    read_image,
    read_text,
    relative_image_path,
    require_file,
)
from replication.errors import DataSourceError

log = logging.getLogger(__name__)

DATASET = "folder"
HEADER = ["path", "labels"]
LABEL_SEP = ";"
CLASSES_FILE = "classes.txt"
TINY_RECORDS = 64


def csv_path(root: Path, split: str) -> Path:
    """The CSV of a split: ``root/{split}.csv``."""
    return root / f"{split}.csv"


def read_csv(path: Path) -> list[tuple[int, str, list[str]]]:
    """Rows of a split CSV as ``(line number, path, labels)``; a one-line error for a malformed file."""
    require_file(path, "folder-source CSV (header path,labels)")
    rows: list[tuple[int, str, list[str]]] = []
    text = read_text(path, "folder-source CSV", encoding="utf-8-sig")
    with io.StringIO(text, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header] != HEADER:
                raise DataSourceError(f"{path}: the first line must be the header 'path,labels', got {header}")
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != 2:
                    raise DataSourceError(f"{path}: line {line} has {len(row)} fields, expected 2 (path,labels)")
                rel = row[0].strip().replace("\\", "/")
                if not rel:
                    raise DataSourceError(f"{path}: line {line} has an empty path")
                labels = [s.strip() for s in row[1].split(LABEL_SEP) if s.strip()]
                rows.append((line, rel, labels))
        except csv.Error as e:
            raise DataSourceError(f"{path}: malformed CSV at line {reader.line_num} ({e})") from None
    return rows


def read_classes(path: Path) -> list[str]:
    """Class names of ``classes.txt`` (one a line, blank lines skipped, no duplicates)."""
    names = [line.strip() for line in read_text(path, "class list", encoding="utf-8-sig").splitlines()
             if line.strip()]
    if not names:
        raise DataSourceError(f"{path}: no class names")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataSourceError(f"{path}: duplicate class name {name!r}")
        seen.add(name)
    return names


def class_names_for(root: Path) -> list[str]:
    """The shared class list: ``classes.txt`` if present, else the sorted union over both split CSVs."""
    classes = root / CLASSES_FILE
    if classes.is_file():
        return read_classes(classes)
    union: set[str] = set()
    for split in SPLITS:
        path = csv_path(root, split)
        if path.is_file():
            for _, _, labels in read_csv(path):
                union.update(labels)
    return sorted(union)


def open_split(root: Path | None, split: str, *, seed: int = 0, tiny: bool = False) -> SourceSplit:
    """Describe split ``split`` of a folder + CSV dataset under ``root`` (key = the CSV path)."""
    if root is None:
        raise DataSourceError("folder needs --root: the folder holding train.csv / test.csv and the images")
    root = Path(root)
    path = csv_path(root, split)
    rows = read_csv(path)
    class_names = class_names_for(root)
    index = {name: k for k, name in enumerate(class_names)}
    records: list[SourceRecord] = []
    first_line: dict[str, tuple[int, str]] = {}
    for line, rel, labels in rows:
        norm = relative_image_path(rel, f"{path}: line {line}")
        if norm in first_line:
            prev, prev_rel = first_line[norm]
            alias = "" if prev_rel == rel else f" (written {prev_rel!r} there: the same file)"
            raise DataSourceError(f"{path}: line {line} repeats the path {rel!r} of line {prev}{alias}")
        first_line[norm] = (line, rel)
        label = np.zeros(len(class_names), dtype=np.float32)
        for name in labels:
            if name not in index:
                raise DataSourceError(f"{path}: line {line} has label {name!r}, not in {root / CLASSES_FILE}")
            label[index[name]] = 1.0
        records.append(SourceRecord(key=rel, label=label, load=partial(read_image, root / rel)))
    if rows and not class_names:
        raise DataSourceError(f"{path}: no labels in any split CSV, so there are no classes")
    no_label = sum(1 for _, _, labels in rows if not labels)
    log.info("%s: %d images, %d classes, %d without labels", path, len(records), len(class_names), no_label)
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
        stats={"rows": len(rows), "no_label": no_label},
    )
