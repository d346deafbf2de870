"""``wider-attribute``: WIDER-Attribute person crops with 14 attributes.

See docs/datasets.md#wider-attribute-wider-attribute.

Layout under ``root`` (the official release: the annotation zip unpacked next to the image tgz)::

    wider_attribute_trainval.json   wider_attribute_test.json
    Image/train/0--Parade/0_Parade_marchingband_1_5.jpg ...
    Image/val/...   Image/test/...

``images[].file_name`` in the official JSON is relative to the image folder and starts with its
subset (``train/…``, ``val/…``, ``test/…``); the image folder is ``root/Image`` by default
(:data:`DEFAULT_IMAGE_DIR`; ``open_split(..., image_dir=...)`` names another one, relative to
``root`` or absolute). Split ``train`` reads ``wider_attribute_trainval.json`` (28,340 boxes),
split ``test`` reads ``wider_attribute_test.json`` (29,177 boxes).

Facts and decisions (docs/datasets.md):

* **One sample per person box.** ``images[].targets[]`` each become a record whose image is the
  crop ``bbox = [x, y, w, h]`` of the full image; key = ``f"{file_name}#{target_index}"``. The
  records of one image are consecutive, and the decoded image is cached across them.
* **Labels** are the 14 values of ``targets[].attribute`` kept as they are: 1 positive,
  −1 negative, 0 unspecified (``label_kind = "wider"``). A vector of another length, or a value
  outside {−1, 0, 1}, is a :class:`DataSourceError` naming the file, the image and the target.
* **Attribute order** comes from ``attribute_id_map`` (keys "0".."13") and must equal
  :data:`ATTRIBUTES` (Male, Long hair, …, Stripe); a different map is an error.
* **Clamping.** Box edges are rounded to whole pixels (``x0 = round(x)``, ``x1 = round(x + w)``,
  as PIL's ``crop`` does) and clamped to the image. A box whose width or height in the JSON is
  not positive is dropped when the split is opened and counted (``stats["empty_box"]``, logged).
  A box that lies entirely outside its image (zero area after clamping) can only be seen once
  the image is decoded: ``record.load()`` raises :class:`BadImageError` naming the image, target
  and box, so ``--on-bad-image`` decides (stop by default; skip and count).
* ``seed`` is unused; ``tiny`` keeps the first :data:`TINY_RECORDS` records.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from replication.data.sources import SourceRecord, SourceSplit, load_json, read_image, relative_image_path
from replication.errors import BadImageError, DataSourceError

log = logging.getLogger(__name__)

DATASET = "wider-attribute"
ANNOTATION_FILES = {"train": "wider_attribute_trainval.json", "test": "wider_attribute_test.json"}
DEFAULT_IMAGE_DIR = "Image"
ATTRIBUTES = [
    "Male", "Long hair", "Sunglasses", "Hat", "T-shirt", "Long sleeve", "Formal",
    "Shorts", "Jeans", "Long pants", "Skirt", "Face mask", "Logo", "Stripe",
]
TINY_RECORDS = 64


def _norm(name: str) -> str:
    """Attribute-name comparison key: case, spaces, '-' and '_' ignored ("T-shirt" == "t shirt")."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def check_attribute_map(data: dict, path: Path) -> list[str]:
    """Validate ``attribute_id_map`` against :data:`ATTRIBUTES` and return the names in id order."""
    amap = data.get("attribute_id_map")
    if not isinstance(amap, dict):
        raise DataSourceError(f"{path}: missing field 'attribute_id_map' at top level")
    try:
        items = sorted((int(k), str(v)) for k, v in amap.items())
    except ValueError:
        raise DataSourceError(f"{path}: attribute_id_map keys are not integers: {sorted(amap)}") from None
    ids = [k for k, _ in items]
    names = [v for _, v in items]
    if ids != list(range(len(ATTRIBUTES))) or [_norm(n) for n in names] != [_norm(n) for n in ATTRIBUTES]:
        raise DataSourceError(
            f"{path}: attribute_id_map {dict(items)} does not match the 14 WIDER attributes {ATTRIBUTES}"
        )
    return list(ATTRIBUTES)


def clamp_box(bbox: list[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel bounds ``(x0, y0, x1, y1)`` of ``bbox = [x, y, w, h]`` rounded and clamped to a W×H image."""
    x, y, w, h = (float(v) for v in bbox)
    x0 = min(max(int(round(x)), 0), width)
    y0 = min(max(int(round(y)), 0), height)
    x1 = min(max(int(round(x + w)), 0), width)
    y1 = min(max(int(round(y + h)), 0), height)
    return x0, y0, x1, y1


class _LastImage:
    """Keeps the most recently decoded full image, so consecutive boxes of one image decode it once."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.image: np.ndarray | None = None

    def get(self, path: Path) -> np.ndarray:
        """The BGR image at ``path`` (decoded now, or reused from the previous call)."""
        if self.path != path or self.image is None:
            self.path, self.image = None, None
            self.image = read_image(path)
            self.path = path
        return self.image


class BoxLoader:
    """``record.load``: decode (or reuse) the full image and return the clamped crop of one box."""

    def __init__(self, cache: _LastImage, path: Path, bbox: list[float], key: str) -> None:
        self.cache, self.path, self.bbox, self.key = cache, path, list(bbox), key

    def __call__(self) -> np.ndarray:
        image = self.cache.get(self.path)
        x0, y0, x1, y1 = clamp_box(self.bbox, image.shape[1], image.shape[0])
        if x1 <= x0 or y1 <= y0:
            raise BadImageError(
                f"{self.path}: box {self.key} {self.bbox} lies outside the {image.shape[1]}x{image.shape[0]} image"
            )
        return np.ascontiguousarray(image[y0:y1, x0:x1])


def _target_fields(target: object, path: Path, where: str) -> tuple[np.ndarray, list[float]]:
    """Validated (attribute vector float32 (14,), bbox [x, y, w, h]) of one target."""
    if not isinstance(target, dict) or "attribute" not in target or "bbox" not in target:
        raise DataSourceError(f"{path}: {where} lacks 'attribute' or 'bbox'")
    attr, bbox = target["attribute"], target["bbox"]
    if not isinstance(attr, list) or len(attr) != len(ATTRIBUTES):
        n = len(attr) if isinstance(attr, list) else type(attr).__name__
        raise DataSourceError(f"{path}: {where} has an attribute vector of length {n}, expected {len(ATTRIBUTES)}")
    if any(isinstance(v, bool) or v not in (-1, 0, 1) for v in attr):
        raise DataSourceError(f"{path}: {where} has attribute values {attr}, expected only -1, 0, 1")
    if (
        not isinstance(bbox, list) or len(bbox) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    ):
        raise DataSourceError(f"{path}: {where} has bbox {bbox!r}, expected 4 finite numbers [x, y, w, h]")
    return np.asarray(attr, dtype=np.float32), [float(v) for v in bbox]


def open_split(
    root: Path | None,
    split: str,
    *,
    seed: int = 0,
    tiny: bool = False,
    image_dir: str | Path = DEFAULT_IMAGE_DIR,
) -> SourceSplit:
    """Describe split ``split`` of WIDER-Attribute under ``root``: one record per person box.

    ``image_dir`` is the folder that ``images[].file_name`` is relative to (default ``Image``,
    relative to ``root`` unless absolute).
    """
    if root is None:
        raise DataSourceError("wider-attribute needs --root: the folder holding the two JSON files and Image/")
    root = Path(root)
    path = root / ANNOTATION_FILES[split]
    data = load_json(path, "WIDER-Attribute annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataSourceError(f"{path}: missing field 'images' at top level")
    class_names = check_attribute_map(data, path)
    folder = Path(image_dir) if Path(image_dir).is_absolute() else root / image_dir
    cache = _LastImage()

    records: list[SourceRecord] = []
    first: dict[str, int] = {}
    empty_box = 0
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "file_name" not in img or not isinstance(img.get("targets"), list):
            raise DataSourceError(f"{path}: images[{i}] lacks 'file_name' or a 'targets' list")
        file_name = str(img["file_name"])
        norm = relative_image_path(file_name, f"{path}: images[{i}]")
        if norm in first:  # ./a.jpg and a.jpg are one file
            raise DataSourceError(f"{path}: images[{i}] names the file {file_name!r} of images[{first[norm]}] again")
        first[norm] = i
        image_path = folder / norm
        for t, target in enumerate(img["targets"]):
            where = f"image {file_name} target {t}"
            label, bbox = _target_fields(target, path, where)
            if bbox[2] <= 0 or bbox[3] <= 0:
                empty_box += 1
                log.warning("%s: %s has an empty box %s; dropped", path, where, bbox)
                continue
            key = f"{file_name}#{t}"
            records.append(SourceRecord(key=key, label=label, load=BoxLoader(cache, image_path, bbox, key)))
    stats = {"images": len(data["images"]), "boxes": len(records) + empty_box, "empty_box": empty_box}
    log.info("%s: %d images, %d person boxes, %d empty boxes dropped", path, stats["images"], stats["boxes"], empty_box)
    if tiny:
        records = records[:TINY_RECORDS]
    return SourceSplit(
        dataset=DATASET,
        split=split,
        class_names=class_names,
        label_kind="wider",
        records=records,
        encoding="jpeg",
        default_size=256,
        stats=stats,
    )
