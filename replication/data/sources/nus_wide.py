"""``nus-wide``: NUS-WIDE with its 81 concepts, in SRN's split (docs/datasets.md#nus-wide-nus-wide).

Layout under ``root`` (the official ConceptsList/ImageList/Groundtruth archives plus the images)::

    ConceptsList/Concepts81.txt                         81 concept names, one a line
    ImageList/TrainImagelist.txt  ImageList/TestImagelist.txt   one image a line, e.g. actor\\0001_2124494179.jpg
    Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt  (and _Test.txt): one 0/1 a line
    Flickr/<folder>/<file>.jpg                          the images

Facts and decisions (docs/datasets.md):

* **Paths.** Image-list lines use Windows backslashes; they are normalised to ``/`` and taken
  relative to ``Flickr/``. A drive letter or a leading ``…/Flickr/`` prefix (as in the full
  ``Imagelist.txt``) is stripped. The record key is that normalised relative path.
* **Labels.** Column c is ``Labels_<concept c>_{Train,Test}.txt`` with the concepts in the order of
  ``Concepts81.txt`` (alphabetical). Each file must have exactly as many lines as the image list
  (trailing blank lines ignored) and only 0/1 values; anything else is a :class:`DataSourceError`
  naming the file (and the line).
* **SRN's split.** Images missing on disk are dropped first (``stats["missing_on_disk"]``), then
  images present on disk but with no positive label among the 81 (``stats["no_label"]``). Both
  counts are logged and recorded in the shard manifest. SRN reports 119,986 train / 80,283 test
  images after this filtering; the official lists hold 161,789 / 107,859. Report the N used.
* ``seed`` is unused; ``tiny`` keeps the first :data:`TINY_RECORDS` kept records (the whole split
  is still read and filtered, so the stats are those of the full split).
"""
from __future__ import annotations

import logging
import re
from functools import partial
from pathlib import Path

import numpy as np

from replication.data.sources import SourceRecord, SourceSplit, read_image, read_text
from replication.errors import DataSourceError

log = logging.getLogger(__name__)

DATASET = "nus-wide"
LIST_FILES = {"train": "TrainImagelist.txt", "test": "TestImagelist.txt"}
LABEL_SUFFIX = {"train": "Train", "test": "Test"}
IMAGE_DIR = "Flickr"
TINY_RECORDS = 64
EXPECTED_CONCEPTS = 81
_DRIVE = re.compile(r"^[A-Za-z]:/")


def _read_lines(path: Path, what: str) -> list[str]:
    """Lines of a text file, stripped, with trailing blank lines removed (error if missing)."""
    lines = [line.strip() for line in read_text(path, what).splitlines()]  # UTF-8, else one line naming it
    while lines and not lines[-1]:
        lines.pop()
    return lines


def normalise_path(line: str) -> str:
    """Normalise one image-list entry to a ``/``-separated path relative to ``Flickr/``.

    ``actor\\0001_2124494179.jpg`` → ``actor/0001_2124494179.jpg``; a drive letter and any prefix
    up to and including a ``Flickr/`` component are removed.
    """
    p = line.strip().replace("\\", "/")
    p = _DRIVE.sub("", p)
    parts = [s for s in p.split("/") if s and s != "."]
    if IMAGE_DIR in parts:
        parts = parts[len(parts) - parts[::-1].index(IMAGE_DIR):]
    if ".." in parts:
        raise DataSourceError(f"image list entry {line.strip()!r} leaves the {IMAGE_DIR} folder through '..'")
    return "/".join(parts)


def read_concepts(root: Path) -> list[str]:
    """The concept names of ``ConceptsList/Concepts81.txt`` in file order (blank lines skipped)."""
    path = root / "ConceptsList" / "Concepts81.txt"
    concepts = [c for c in _read_lines(path, "NUS-WIDE concept list") if c]
    if not concepts:
        raise DataSourceError(f"{path}: no concept names")
    dup = sorted({c for c in concepts if concepts.count(c) > 1})
    if dup:
        raise DataSourceError(f"{path}: duplicate concept names {dup}")
    if len(concepts) != EXPECTED_CONCEPTS:
        log.warning("%s: %d concepts (NUS-WIDE has %d)", path, len(concepts), EXPECTED_CONCEPTS)
    return concepts


def read_image_list(root: Path, split: str) -> list[str]:
    """Normalised relative paths of ``ImageList/{Train,Test}Imagelist.txt``, one per line."""
    path = root / "ImageList" / LIST_FILES[split]
    lines = _read_lines(path, "NUS-WIDE image list")
    for i, line in enumerate(lines):
        if not line:
            raise DataSourceError(f"{path}: line {i + 1} is empty")
    return [normalise_path(line) for line in lines]


def read_label_column(path: Path, n: int) -> np.ndarray:
    """One ``Labels_<concept>_<Split>.txt`` file as a uint8 vector of length ``n`` (values 0/1)."""
    lines = _read_lines(path, "NUS-WIDE label file")
    if len(lines) != n:
        raise DataSourceError(f"{path}: {len(lines)} lines but the image list has {n}")
    values = np.array(lines)
    ones = values == "1"
    bad = ~(ones | (values == "0"))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataSourceError(f"{path}: line {i + 1} is {lines[i]!r}, expected 0 or 1")
    return ones.astype(np.uint8)


def read_labels(root: Path, split: str, concepts: list[str], n: int) -> np.ndarray:
    """The N×C label matrix of a split, column c from ``Labels_<concepts[c]>_<Split>.txt``."""
    folder = root / "Groundtruth" / "TrainTestLabels"
    labels = np.zeros((n, len(concepts)), dtype=np.float32)
    for c, concept in enumerate(concepts):
        labels[:, c] = read_label_column(folder / f"Labels_{concept}_{LABEL_SUFFIX[split]}.txt", n)
    return labels


def open_split(root: Path | None, split: str, *, seed: int = 0, tiny: bool = False) -> SourceSplit:
    """Describe split ``split`` of NUS-WIDE under ``root`` in SRN's filtering (key = relative path)."""
    if root is None:
        raise DataSourceError(
            "nus-wide needs --root: the folder holding ConceptsList/, ImageList/, Groundtruth/, Flickr/"
        )
    root = Path(root)
    concepts = read_concepts(root)
    paths = read_image_list(root, split)
    labels = read_labels(root, split, concepts, len(paths))
    image_dir = root / IMAGE_DIR

    on_disk = np.array([(image_dir / p).is_file() for p in paths], dtype=bool)
    has_label = labels.sum(1) > 0
    keep = on_disk & has_label
    stats = {
        "listed": len(paths),
        "missing_on_disk": int((~on_disk).sum()),
        "no_label": int((on_disk & ~has_label).sum()),
        "kept": int(keep.sum()),
    }
    log.info(
        "NUS-WIDE %s: %d listed, %d missing on disk, %d with no label among the %d concepts, %d kept",
        split, stats["listed"], stats["missing_on_disk"], stats["no_label"], len(concepts), stats["kept"],
    )
    records = [
        SourceRecord(key=paths[i], label=labels[i], load=partial(read_image, image_dir / paths[i]))
        for i in np.flatnonzero(keep)
    ]
    if tiny:
        records = records[:TINY_RECORDS]
    return SourceSplit(
        dataset=DATASET,
        split=split,
        class_names=list(concepts),
        label_kind="binary",
        records=records,
        encoding="jpeg",
        default_size=256,
        stats=stats,
    )
