"""The coco2014 adapter on a small fixture in the official MS-COCO 2014 layout and JSON fields."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from replication.data.sources import coco2014, open_source, read_image
from replication.errors import BadImageError, DataSourceError

# Category ids with gaps, listed out of order: index follows ascending id (1, 3, 90).
CATEGORIES = [
    {"supercategory": "indoor", "id": 90, "name": "toothbrush"},
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "vehicle", "id": 3, "name": "car"},
]
CLASS_NAMES = ["person", "car", "toothbrush"]
# image id -> category ids of its annotations (7 has none; 42's only annotation is a crowd one)
IMAGES = {9: [1, 90], 42: [3], 7: [], 100: [1, 1]}
EXPECTED = {9: [1, 0, 1], 42: [0, 1, 0], 7: [0, 0, 0], 100: [1, 0, 0]}


def file_name(coco_split: str, image_id: int) -> str:
    return f"COCO_{coco_split}_{image_id:012d}.jpg"


def make_image(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3)
    cv2.rectangle(img, (5, 5), (w // 2, h // 2), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return img


def write_coco(root: Path, coco_split: str = "train2014", images: dict = IMAGES, categories=CATEGORIES) -> Path:
    """Write ``annotations/instances_<split>.json`` and the JPEGs in the official layout."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / coco_split).mkdir(parents=True, exist_ok=True)
    imgs, anns, ann_id = [], [], 1
    for iid, cats in images.items():
        name = file_name(coco_split, iid)
        img = make_image(iid)
        cv2.imwrite(str(root / coco_split / name), img)
        imgs.append({"license": 1, "file_name": name, "coco_url": "", "height": img.shape[0],
                     "width": img.shape[1], "date_captured": "2013-11-14 16:28:13", "flickr_url": "", "id": iid})
        for cid in cats:
            anns.append({"segmentation": [[1, 1, 10, 1, 10, 10]], "area": 81.0, "iscrowd": int(iid == 42),
                         "image_id": iid, "bbox": [1.0, 1.0, 9.0, 9.0], "category_id": cid, "id": ann_id})
            ann_id += 1
    data = {"info": {"description": "fixture"}, "licenses": [{"url": "", "id": 1, "name": "x"}],
            "images": imgs, "annotations": anns, "categories": categories}
    path = root / "annotations" / f"instances_{coco_split}.json"
    path.write_text(json.dumps(data))
    return path


def test_category_ids_in_ascending_order_and_empty_images_kept(tmp_path):
    write_coco(tmp_path)
    src = coco2014.open_split(tmp_path, "train")
    assert src.class_names == CLASS_NAMES
    assert src.label_kind == "binary" and src.default_size == 256 and src.encoding == "jpeg"
    assert [r.key for r in src.records] == [file_name("train2014", i) for i in IMAGES]
    for r, iid in zip(src.records, IMAGES):
        np.testing.assert_array_equal(r.label, np.array(EXPECTED[iid], np.float32))
        assert r.label.dtype == np.float32
    assert src.stats["no_annotation"] == 1  # image 7 kept with an all-zero row


def test_test_split_reads_val2014_and_load_returns_pixels(tmp_path):
    write_coco(tmp_path, "val2014", images={5: [3]})
    src = coco2014.open_split(tmp_path, "test")
    assert [r.key for r in src.records] == [file_name("val2014", 5)]
    img = src.records[0].load()
    expected = cv2.imread(str(tmp_path / "val2014" / file_name("val2014", 5)), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(img, expected)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DataSourceError, match="instances_train2014.json: missing COCO annotation file"):
        coco2014.open_split(tmp_path, "train")


def test_malformed_json(tmp_path):
    path = write_coco(tmp_path)
    path.write_text('{"images": [')
    with pytest.raises(DataSourceError, match=r"instances_train2014.json: malformed JSON"):
        coco2014.open_split(tmp_path, "train")


def test_unknown_category_id(tmp_path):
    path = write_coco(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 12  # one of COCO's gaps
    path.write_text(json.dumps(data))
    with pytest.raises(DataSourceError, match=r"instances_train2014.json: .*unknown category id 12$"):
        coco2014.open_split(tmp_path, "train")


def test_annotation_for_unknown_image(tmp_path):
    path = write_coco(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"][0]["image_id"] = 555
    path.write_text(json.dumps(data))
    with pytest.raises(DataSourceError, match=r"instances_train2014.json: .*unknown image id 555"):
        coco2014.open_split(tmp_path, "train")


def test_missing_top_level_field(tmp_path):
    path = write_coco(tmp_path)
    data = json.loads(path.read_text())
    del data["categories"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataSourceError, match="missing field 'categories'"):
        coco2014.open_split(tmp_path, "train")


def test_corrupt_image_raises_on_load(tmp_path):
    write_coco(tmp_path)
    bad = tmp_path / "train2014" / file_name("train2014", 42)
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    src = coco2014.open_split(tmp_path, "train")  # opening does not decode images
    rec = next(r for r in src.records if r.key == bad.name)
    with pytest.raises(BadImageError, match=bad.name):
        rec.load()


def test_empty_split(tmp_path):
    write_coco(tmp_path, images={})
    with pytest.raises(DataSourceError, match="no records"):
        open_source("coco2014", tmp_path, "train")


def test_tiny_keeps_first_records(tmp_path, monkeypatch):
    write_coco(tmp_path)
    monkeypatch.setattr(coco2014, "TINY_RECORDS", 2)
    src = coco2014.open_split(tmp_path, "train", tiny=True)
    assert [r.key for r in src.records] == [file_name("train2014", i) for i in list(IMAGES)[:2]]


def test_build_end_to_end(tmp_path):
    from replication.data.build import build_shards
    from replication.data.shards import ShardSet

    write_coco(tmp_path / "raw")
    out = build_shards("coco2014", split="train", root=tmp_path / "raw", out=tmp_path / "shards", progress=False)
    shards = ShardSet(out)
    assert len(shards) == len(IMAGES)
    assert shards.class_names == CLASS_NAMES and shards.label_kind == "binary"
    assert shards.keys() == [file_name("train2014", i) for i in IMAGES]
    np.testing.assert_array_equal(shards.labels(), np.array([EXPECTED[i] for i in IMAGES], np.float32))
    item = shards[0]
    assert item.image.shape == (256, 256, 3)
    # Same pixels as a Caffe-style bilinear resize of the source image, up to JPEG q95 loss.
    ref = cv2.resize(read_image(tmp_path / "raw" / "train2014" / item.key), (256, 256), interpolation=cv2.INTER_LINEAR)
    assert np.abs(item.image.astype(int) - ref.astype(int)).mean() < 2.0


def test_build_skips_corrupt_image(tmp_path):
    from replication.data.build import build_shards
    from replication.data.shards import ShardSet

    write_coco(tmp_path / "raw")
    (tmp_path / "raw" / "train2014" / file_name("train2014", 9)).write_bytes(b"garbage")
    with pytest.raises(BadImageError, match=file_name("train2014", 9)):
        build_shards("coco2014", split="train", root=tmp_path / "raw", out=tmp_path / "stop", size=32, progress=False)
    assert not (tmp_path / "stop" / "manifest.json").exists()
    out = build_shards("coco2014", split="train", root=tmp_path / "raw", out=tmp_path / "skip", size=32,
                       on_bad_image="skip", progress=False)
    shards = ShardSet(out)
    assert len(shards) == len(IMAGES) - 1
    assert file_name("train2014", 9) not in shards.keys()
    assert shards.manifest["extra"]["skipped_images"] == 1
    assert shards[0].image.shape == (32, 32, 3)


def test_cli_build_and_bad_input(tmp_path):
    from click.testing import CliRunner

    from replication.cli import cli
    from replication.data.shards import ShardSet

    write_coco(tmp_path / "raw")
    runner = CliRunner()
    args = ["data", "build", "coco2014", "--root", str(tmp_path / "raw"), "--split", "train", "--size", "32"]
    result = runner.invoke(cli, args + ["--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert ShardSet(tmp_path / "out").keys() == [file_name("train2014", i) for i in IMAGES]

    result = runner.invoke(cli, [*args[:5], "--split", "test", "--out", str(tmp_path / "out2")])
    assert result.exit_code == 1
    assert "instances_val2014.json: missing COCO annotation file" in result.output
