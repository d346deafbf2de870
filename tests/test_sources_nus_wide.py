"""The nus-wide adapter on a small fixture in the official NUS-WIDE layout (CRLF files, backslash paths)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from replication.data.sources import nus_wide, open_source
from replication.errors import BadImageError, DataSourceError

CONCEPTS = ["animal", "beach", "dog", "sky", "zebra"]
# (list entry as in TrainImagelist.txt, on disk?, positive concepts)
TRAIN = [
    ("actor\\0001_2124494179.jpg", True, ["animal"]),
    ("actor\\0002_174174086.jpg", False, ["beach"]),  # missing on disk
    ("beach\\0003_1136234593.jpg", True, []),  # no label among the concepts
    ("beach\\0004_2094823.jpg", True, ["beach", "dog"]),
    ("zebra\\0005_77321.jpg", False, []),  # missing (counted as missing, not as no-label)
]
TEST = [("sky\\0010_5.jpg", True, ["sky", "zebra"]), ("sky\\0011_6.jpg", True, ["animal"])]


def write_nus(root: Path, train=TRAIN, test=TEST, concepts=CONCEPTS) -> None:
    """Official names: ConceptsList/, ImageList/, Groundtruth/TrainTestLabels/, Flickr/ (CRLF text)."""
    for d in ("ConceptsList", "ImageList", "Groundtruth/TrainTestLabels", "Flickr"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "ConceptsList" / "Concepts81.txt").write_bytes(("\r\n".join(concepts) + "\r\n").encode())
    for split, rows, list_name in (("Train", train, "TrainImagelist.txt"), ("Test", test, "TestImagelist.txt")):
        (root / "ImageList" / list_name).write_bytes(("\r\n".join(r[0] for r in rows) + "\r\n").encode())
        for c in concepts:
            col = "".join(f"{int(c in r[2])}\r\n" for r in rows)
            (root / "Groundtruth" / "TrainTestLabels" / f"Labels_{c}_{split}.txt").write_bytes(col.encode())
        for k, (entry, on_disk, _) in enumerate(rows):
            if on_disk:
                p = root / "Flickr" / entry.replace("\\", "/")
                p.parent.mkdir(parents=True, exist_ok=True)
                img = np.full((40, 30, 3), 20 * k, np.uint8)
                img[5:15, 5:15] = (0, 0, 255)
                cv2.imwrite(str(p), img)


def multi_hot(names: list[str]) -> np.ndarray:
    return np.array([float(c in names) for c in CONCEPTS], np.float32)


def test_backslash_paths_missing_and_unlabelled_dropped_and_counted(tmp_path):
    write_nus(tmp_path)
    src = nus_wide.open_split(tmp_path, "train")
    assert src.class_names == CONCEPTS and src.label_kind == "binary"
    assert [r.key for r in src.records] == ["actor/0001_2124494179.jpg", "beach/0004_2094823.jpg"]
    np.testing.assert_array_equal(src.records[0].label, multi_hot(["animal"]))
    np.testing.assert_array_equal(src.records[1].label, multi_hot(["beach", "dog"]))
    assert src.stats == {"listed": 5, "missing_on_disk": 2, "no_label": 1, "kept": 2}
    img = src.records[1].load()
    np.testing.assert_array_equal(img, cv2.imread(str(tmp_path / "Flickr/beach/0004_2094823.jpg")))


def test_test_split_reads_test_lists(tmp_path):
    write_nus(tmp_path)
    src = nus_wide.open_split(tmp_path, "test")
    assert [r.key for r in src.records] == ["sky/0010_5.jpg", "sky/0011_6.jpg"]
    np.testing.assert_array_equal(src.records[0].label, multi_hot(["sky", "zebra"]))
    assert src.stats["missing_on_disk"] == 0 and src.stats["no_label"] == 0


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("actor\\0001_2124494179.jpg", "actor/0001_2124494179.jpg"),
        ("C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg", "actor/0001_2124494179.jpg"),
        ("  water/0002_x.jpg \r", "water/0002_x.jpg"),
    ],
)
def test_normalise_path(entry, expected):
    assert nus_wide.normalise_path(entry) == expected


def test_missing_image_list(tmp_path):
    write_nus(tmp_path)
    (tmp_path / "ImageList" / "TrainImagelist.txt").unlink()
    with pytest.raises(DataSourceError, match=r"TrainImagelist.txt: missing NUS-WIDE image list"):
        nus_wide.open_split(tmp_path, "train")


def test_missing_label_file(tmp_path):
    write_nus(tmp_path)
    (tmp_path / "Groundtruth/TrainTestLabels/Labels_dog_Train.txt").unlink()
    with pytest.raises(DataSourceError, match=r"Labels_dog_Train.txt: missing"):
        nus_wide.open_split(tmp_path, "train")


def test_label_file_line_count_must_match_list(tmp_path):
    write_nus(tmp_path)
    path = tmp_path / "Groundtruth/TrainTestLabels/Labels_sky_Train.txt"
    path.write_text("0\n1\n0\n")
    with pytest.raises(DataSourceError, match=r"Labels_sky_Train.txt: 3 lines but the image list has 5"):
        nus_wide.open_split(tmp_path, "train")


def test_label_file_bad_value(tmp_path):
    write_nus(tmp_path)
    path = tmp_path / "Groundtruth/TrainTestLabels/Labels_sky_Train.txt"
    path.write_text("0\n0\n2\n0\n0\n")
    with pytest.raises(DataSourceError, match=r"Labels_sky_Train.txt: line 3 is '2'"):
        nus_wide.open_split(tmp_path, "train")


def test_corrupt_image_raises_on_load(tmp_path):
    write_nus(tmp_path)
    bad = tmp_path / "Flickr/actor/0001_2124494179.jpg"
    bad.write_bytes(b"")  # an empty file exists on disk, so it is kept, then fails to decode
    src = nus_wide.open_split(tmp_path, "train")
    with pytest.raises(BadImageError, match="0001_2124494179.jpg"):
        src.records[0].load()


def test_empty_split_when_nothing_on_disk(tmp_path):
    write_nus(tmp_path, train=[(e, False, lab) for e, _, lab in TRAIN])
    with pytest.raises(DataSourceError, match="no records"):
        open_source("nus-wide", tmp_path, "train")


def test_build_end_to_end_and_skip(tmp_path):
    from replication.data.build import build_shards
    from replication.data.shards import ShardSet

    write_nus(tmp_path / "raw")
    out = build_shards("nus-wide", split="train", root=tmp_path / "raw", out=tmp_path / "s", size=24, progress=False)
    shards = ShardSet(out)
    assert shards.keys() == ["actor/0001_2124494179.jpg", "beach/0004_2094823.jpg"]
    np.testing.assert_array_equal(shards.labels(), np.stack([multi_hot(["animal"]), multi_hot(["beach", "dog"])]))
    assert shards[1].image.shape == (24, 24, 3)
    assert shards.manifest["extra"]["missing_on_disk"] == 2 and shards.manifest["extra"]["no_label"] == 1

    (tmp_path / "raw/Flickr/actor/0001_2124494179.jpg").write_bytes(b"junk")
    out = build_shards("nus-wide", split="train", root=tmp_path / "raw", out=tmp_path / "k", size=24,
                       on_bad_image="skip", progress=False)
    shards = ShardSet(out)
    assert shards.keys() == ["beach/0004_2094823.jpg"]
    assert shards.manifest["extra"]["skipped_images"] == 1
