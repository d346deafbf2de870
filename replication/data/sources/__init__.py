"""Dataset adapters: each turns one raw dataset split into a :class:`SourceSplit` (docs/datasets.md).

An adapter only *reads* the official files and describes the records; ``replication.data.build``
decodes, resizes and writes them into shards. Adapters register themselves by name in
:data:`SOURCES` and are opened with :func:`open_source`.
"""
from __future__ import annotations

import importlib
import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Protocol

import cv2
import numpy as np

from replication.errors import BadImageError, DataSourceError
from replication.vocabulary import DATASETS


@dataclass
class SourceRecord:
    """One sample: a source id, its label vector (float32, C) and a loader for its BGR uint8 image."""

    key: str
    label: np.ndarray
    load: Callable[[], np.ndarray]


@dataclass
class SourceSplit:
    """A raw dataset split described as records, ready to be written into shards.

    ``stats`` carries counts a user should see (e.g. images dropped because missing on disk).
    ``default_size`` is the side the images are stored at (Caffe's 256 for photos).
    """

    dataset: str
    split: str
    class_names: list[str]
    label_kind: str  # "binary" or "wider" (−1/0/1)
    records: list[SourceRecord]
    encoding: str = "jpeg"
    default_size: int = 256
    stats: dict = field(default_factory=dict)


class SourceOpener(Protocol):
    def __call__(self, root: Path | None, split: str, *, seed: int = 0, tiny: bool = False,
                 **options) -> SourceSplit: ...


# name -> "module:function" (dataset ``nus-wide`` lives in module ``nus_wide``); modules are imported
# lazily so a missing optional one never breaks the rest.
SOURCES: dict[str, str] = {name: f"replication.data.sources.{name.replace('-', '_')}:open_split" for name in DATASETS}
SPLITS = ("train", "test")


def open_source(
    name: str, root: str | Path | None, split: str, *, seed: int = 0, tiny: bool = False, **options: object
) -> SourceSplit:
    """Open split ``split`` of source ``name`` whose raw files live under ``root``.

    ``options`` are source-specific keyword arguments (e.g. ``image_dir`` for wider-attribute).
    """
    if name not in SOURCES:
        raise DataSourceError(f"unknown data source {name!r}; expected one of {sorted(SOURCES)}")
    if split not in SPLITS:
        raise DataSourceError(f"unknown split {split!r} for {name}; expected one of {SPLITS}")
    module_name, func = SOURCES[name].split(":")
    opener: SourceOpener = getattr(importlib.import_module(module_name), func)
    try:
        out = opener(Path(root) if root is not None else None, split, seed=seed, tiny=tiny, **options)
    except TypeError as e:
        if options and "unexpected keyword" in str(e):
            raise DataSourceError(f"source {name!r} does not take the option(s) {sorted(options)}") from None
        raise
    if not out.records:
        raise DataSourceError(f"{root}: the {split} split of {name} has no records (empty split)")
    return out


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as BGR uint8 with OpenCV; :class:`BadImageError` naming the file otherwise.

    Any decoder failure is a bad image (``--on-bad-image`` decides): ``None`` from OpenCV, a
    ``cv2.error`` (e.g. a header declaring more than ``CV_IO_MAX_IMAGE_PIXELS`` pixels) or any other
    exception the decoder raises.
    """
    p = Path(path)
    if not p.is_file():
        raise BadImageError(f"{p}: image file not found")
    try:
        data = np.fromfile(p, dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except (cv2.error, OSError, ValueError, MemoryError) as e:
        msg = " ".join(str(e).split())[:160]
        raise BadImageError(f"{p}: image could not be decoded ({type(e).__name__}: {msg})") from None
    if img is None:
        raise BadImageError(f"{p}: corrupt or unreadable image")
    return img


def relative_image_path(rel: str, where: str) -> str:
    """``rel`` as a normalised ``/`` path (``./a.jpg`` → ``a.jpg``); :class:`DataSourceError` naming
    ``where`` when it is absolute or leaves its folder through ``..`` (a listed image must lie under
    the dataset folder)."""
    text = rel.replace("\\", "/")
    norm = posixpath.normpath(text) if text else text
    if not text or text.startswith("/") or PureWindowsPath(rel).drive or norm in (".", "..") \
            or norm.startswith("../"):
        raise DataSourceError(f"{where}: image path {rel!r} is empty, absolute or leaves the dataset folder "
                              "(paths must be relative to it, without '..')")
    return norm


def read_text(path: Path, what: str, *, encoding: str = "utf-8") -> str:
    """The text of ``path``; a one-line :class:`DataSourceError` naming it when it is not valid ``encoding``."""
    require_file(path, what)
    try:
        return path.read_bytes().decode(encoding)
    except UnicodeDecodeError as e:
        raise DataSourceError(f"{path}: {what} is not valid UTF-8 text (byte {e.start}: {e.reason})") from None


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else a one-line :class:`DataSourceError` naming it and ``what`` it is."""
    if not path.is_file():
        raise DataSourceError(f"{path}: missing {what}")
    return path


def load_json(path: Path, what: str) -> object:
    """Load a JSON annotation file with a one-line error for a missing or malformed file."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataSourceError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from None
