"""The wider-attribute adapter on a small fixture in the official WIDER-Attribute layout and JSON fields."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from replication.data.sources import open_source, read_image, wider_attribute
from replication.errors import BadImageError, DataSourceError

ATTRIBUTE_ID_MAP = {
    "0": "Male", "1": "Long hair", "2": "Sunglasses", "3": "Hat", "4": "T-shirt", "5": "Long sleeve",
    "6": "Formal", "7": "Shorts", "8": "Jeans", "9": "Long Pants", "10": "Skirt", "11": "Face Mask",
    "12": "Logo", "13": "Stripe",
}
PARADE = "train/0--Parade/0_Parade_marchingband_1_5.jpg"
HANDSHAKE = "val/1--Handshaking/1_Handshaking_Handshaking_1_3.jpg"
H, W = 60, 80
A1 = [1, -1, 0, 0, 1, -1, -1, 0, 1, 1, -1, -1, 0, 1]
A2 = [-1] * 14
A3 = [0, 1, 1, -1, 0, 0, 0, 0, 0, 0, 0, 1, -1, 0]
# (bbox [x, y, w, h], attributes, expected crop bounds (x0, y0, x1, y1) after rounding and clamping)
PARADE_TARGETS = [
    ([10, 5, 20, 30], A1, (10, 5, 30, 35)),  # inside
    ([-5, 40, 30, 40], A2, (0, 40, 25, 60)),  # sticks out left and bottom
    ([70.4, 10.6, 50, 20], A3, (70, 11, 80, 31)),  # sticks out right; fractional edges rounded
]


def make_image(seed: int) -> np.ndarray:
    """A gradient image: every pixel differs, so a crop at the wrong offset cannot match."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([(3 * x + seed) % 256, (4 * y) % 256, (x + 2 * y) % 256], -1).astype(np.uint8)


def write_wider(root: Path, name: str = "wider_attribute_trainval.json", images=None, image_dir: str = "Image") -> Path:
    """The official JSON (images[].file_name/scene_id/targets, attribute_id_map, scene_id_map) + JPEGs."""
    if images is None:
        images = [
            {"file_name": PARADE, "scene_id": 0,
             "targets": [{"attribute": a, "bbox": b} for b, a, _ in PARADE_TARGETS]},
            {"file_name": HANDSHAKE, "scene_id": 1, "targets": [{"attribute": A3, "bbox": [0, 0, 8, 9]}]},
        ]
    for k, img in enumerate(images):
        p = root / image_dir / img["file_name"]
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), make_image(k))
    data = {"images": images, "attribute_id_map": ATTRIBUTE_ID_MAP,
            "scene_id_map": {"0": "Parade", "1": "Handshaking"}}
    path = root / name
    path.write_text(json.dumps(data))
    return path


def test_one_record_per_box_with_wider_labels(tmp_path):
    write_wider(tmp_path)
    src = wider_attribute.open_split(tmp_path, "train")
    assert src.class_names == wider_attribute.ATTRIBUTES and src.label_kind == "wider"
    assert [r.key for r in src.records] == [f"{PARADE}#0", f"{PARADE}#1", f"{PARADE}#2", f"{HANDSHAKE}#0"]
    for r, a in zip(src.records, [A1, A2, A3, A3]):
        np.testing.assert_array_equal(r.label, np.array(a, np.float32))  # −1/0/1 kept as they are
    assert src.stats == {"images": 2, "boxes": 4, "empty_box": 0}


def test_boxes_clamped_to_the_image(tmp_path):
    write_wider(tmp_path)
    full = read_image(tmp_path / "Image" / PARADE)
    src = wider_attribute.open_split(tmp_path, "train")
    for r, (_, _, (x0, y0, x1, y1)) in zip(src.records, PARADE_TARGETS):
        crop = r.load()
        assert crop.shape == (y1 - y0, x1 - x0, 3)
        np.testing.assert_array_equal(crop, full[y0:y1, x0:x1])
        assert crop.flags["C_CONTIGUOUS"]


def test_full_image_decoded_once_per_image(tmp_path, monkeypatch):
    write_wider(tmp_path)
    calls: list[Path] = []

    def counting_read(path):
        calls.append(Path(path))
        return read_image(path)

    monkeypatch.setattr(wider_attribute, "read_image", counting_read)
    src = wider_attribute.open_split(tmp_path, "train")
    for r in src.records:
        r.load()
    assert [p.name for p in calls] == [Path(PARADE).name, Path(HANDSHAKE).name]


def test_test_split_and_image_dir_option(tmp_path):
    write_wider(tmp_path, "wider_attribute_test.json", image_dir="pictures")
    src = wider_attribute.open_split(tmp_path, "test", image_dir="pictures")
    assert len(src.records) == 4
    assert src.records[3].load().shape == (9, 8, 3)
    with pytest.raises(
        BadImageError, match=r"Image/train/0--Parade/0_Parade_marchingband_1_5.jpg: image file not found"
    ):
        wider_attribute.open_split(tmp_path, "test").records[0].load()


def test_attribute_vector_not_length_14(tmp_path):
    path = write_wider(tmp_path)
    data = json.loads(path.read_text())
    data["images"][0]["targets"][1]["attribute"] = [1] * 13
    path.write_text(json.dumps(data))
    with pytest.raises(
        DataSourceError,
        match=(
            rf"wider_attribute_trainval.json: image {PARADE} target 1 has an attribute vector of length 13, "
            r"expected 14"
        ),
    ):
        wider_attribute.open_split(tmp_path, "train")


def test_attribute_value_out_of_range(tmp_path):
    path = write_wider(tmp_path)
    data = json.loads(path.read_text())
    data["images"][1]["targets"][0]["attribute"][3] = 2
    path.write_text(json.dumps(data))
    with pytest.raises(DataSourceError, match=rf"image {HANDSHAKE} target 0 has attribute values"):
        wider_attribute.open_split(tmp_path, "train")


def test_attribute_map_must_match(tmp_path):
    path = write_wider(tmp_path)
    data = json.loads(path.read_text())
    data["attribute_id_map"]["0"], data["attribute_id_map"]["1"] = "Long hair", "Male"
    path.write_text(json.dumps(data))
    with pytest.raises(DataSourceError, match="attribute_id_map .* does not match"):
        wider_attribute.open_split(tmp_path, "train")


def test_missing_annotation_file(tmp_path):
    write_wider(tmp_path)
    with pytest.raises(DataSourceError, match="wider_attribute_test.json: missing WIDER-Attribute annotation file"):
        wider_attribute.open_split(tmp_path, "test")


def test_malformed_json(tmp_path):
    write_wider(tmp_path).write_text('{"images": [{"file_name": }')
    with pytest.raises(DataSourceError, match="wider_attribute_trainval.json: malformed JSON"):
        wider_attribute.open_split(tmp_path, "train")


def test_empty_and_outside_boxes(tmp_path):
    images = [{"file_name": PARADE, "scene_id": 0, "targets": [
        {"attribute": A1, "bbox": [10, 10, 0, 20]},  # zero width in the JSON: dropped and counted
        {"attribute": A2, "bbox": [W + 5, 0, 10, 10]},  # entirely right of the image: fails at load
        {"attribute": A3, "bbox": [1, 1, 4, 4]},
    ]}]
    write_wider(tmp_path, images=images)
    src = wider_attribute.open_split(tmp_path, "train")
    assert [r.key for r in src.records] == [f"{PARADE}#1", f"{PARADE}#2"]
    assert src.stats["empty_box"] == 1 and src.stats["boxes"] == 3
    with pytest.raises(BadImageError, match=rf"{PARADE}: box {PARADE}#1 .* lies outside the 80x60 image"):
        src.records[0].load()
    assert src.records[1].load().shape == (4, 4, 3)


def test_corrupt_image_raises_on_load(tmp_path):
    write_wider(tmp_path)
    (tmp_path / "Image" / HANDSHAKE).write_bytes(b"\x89PNG\r\n broken")
    src = wider_attribute.open_split(tmp_path, "train")
    with pytest.raises(BadImageError, match=r"1_Handshaking_Handshaking_1_3.jpg: corrupt or unreadable image"):
        src.records[3].load()


def test_empty_split(tmp_path):
    write_wider(tmp_path, images=[])
    with pytest.raises(DataSourceError, match="no records"):
        open_source("wider-attribute", tmp_path, "train")


def test_build_end_to_end_and_skip(tmp_path):
    from replication.data.build import build_shards
    from replication.data.shards import ShardSet

    write_wider(tmp_path / "raw")
    out = build_shards("wider-attribute", split="train", root=tmp_path / "raw", out=tmp_path / "s", size=32,
                       progress=False)
    shards = ShardSet(out)
    assert shards.label_kind == "wider" and shards.class_names == wider_attribute.ATTRIBUTES
    assert shards.keys() == [f"{PARADE}#0", f"{PARADE}#1", f"{PARADE}#2", f"{HANDSHAKE}#0"]
    np.testing.assert_array_equal(shards.labels(), np.array([A1, A2, A3, A3], np.float32))
    full = read_image(tmp_path / "raw" / "Image" / PARADE)
    ref = cv2.resize(full[40:60, 0:25], (32, 32), interpolation=cv2.INTER_LINEAR)
    assert shards[1].image.shape == (32, 32, 3)
    assert np.abs(shards[1].image.astype(int) - ref.astype(int)).mean() < 3.0  # JPEG q95 of a gradient

    (tmp_path / "raw" / "Image" / HANDSHAKE).write_bytes(b"junk")
    out = build_shards("wider-attribute", split="train", root=tmp_path / "raw", out=tmp_path / "k", size=32,
                       on_bad_image="skip", progress=False)
    shards = ShardSet(out)
    assert len(shards) == 3 and shards.manifest["extra"]["skipped_images"] == 1
