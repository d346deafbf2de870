"""The folder adapter: images plus ``{split}.csv`` (header ``path,labels``, labels separated by ``;``)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from replication.data.sources import folder, open_source
from replication.errors import BadImageError, DataSourceError


def write_folder(root: Path, train: str | None, test: str | None = None, classes: str | None = None) -> None:
    """Write the CSVs (and classes.txt) as given and an image for every path they name."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("train.csv", train), ("test.csv", test), ("classes.txt", classes)):
        if text is not None:
            (root / name).write_text(text)
    for text in (train, test):
        for line in (text or "").splitlines()[1:]:
            rel = line.split(",")[0].strip().strip('"')
            if rel:
                p = root / rel.replace("\\", "/")
                p.parent.mkdir(parents=True, exist_ok=True)
                img = np.full((20, 30, 3), len(rel) * 7 % 256, np.uint8)
                cv2.imwrite(str(p), img)


TRAIN = "path,labels\nimgs/a.jpg,dog;cat\nimgs/b.png,\nimgs\\c.jpg, bird \n"
TEST = "path,labels\nimgs/t1.jpg,zebra\n"


def test_classes_are_sorted_union_of_both_splits(tmp_path):
    write_folder(tmp_path, TRAIN, TEST)
    train = folder.open_split(tmp_path, "train")
    test = folder.open_split(tmp_path, "test")
    assert train.class_names == test.class_names == ["bird", "cat", "dog", "zebra"]
    assert [r.key for r in train.records] == ["imgs/a.jpg", "imgs/b.png", "imgs/c.jpg"]
    np.testing.assert_array_equal(
        np.stack([r.label for r in train.records]),
        np.array([[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]], np.float32),
    )
    np.testing.assert_array_equal(test.records[0].label, np.array([0, 0, 0, 1], np.float32))
    assert train.stats == {"rows": 3, "no_label": 1}
    np.testing.assert_array_equal(train.records[1].load(), cv2.imread(str(tmp_path / "imgs/b.png")))


def test_classes_txt_is_authoritative(tmp_path):
    write_folder(tmp_path, TRAIN, TEST, classes="zebra\ndog\ncat\nbird\nhorse\n")
    src = folder.open_split(tmp_path, "train")
    assert src.class_names == ["zebra", "dog", "cat", "bird", "horse"]
    np.testing.assert_array_equal(src.records[0].label, np.array([0, 1, 1, 0, 0], np.float32))


def test_unknown_label_against_classes_txt(tmp_path):
    write_folder(tmp_path, TRAIN, classes="cat\ndog\n")
    with pytest.raises(DataSourceError, match=r"train.csv: line 4 has label 'bird', not in .*classes.txt"):
        folder.open_split(tmp_path, "train")


def test_missing_csv(tmp_path):
    write_folder(tmp_path, TRAIN)
    with pytest.raises(DataSourceError, match=r"test.csv: missing folder-source CSV"):
        folder.open_split(tmp_path, "test")


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,tags\na.jpg,x\n", "the first line must be the header 'path,labels'"),
        ("path,labels\na.jpg,x,y\n", "line 2 has 3 fields"),
        ("path,labels\n,x\n", "line 2 has an empty path"),
        ("path,labels\na.jpg,x\na.jpg,y\n", "line 3 repeats the path 'a.jpg' of line 2"),
    ],
)
def test_malformed_csv(tmp_path, text, message):
    (tmp_path / "train.csv").write_text(text)
    with pytest.raises(DataSourceError, match=rf"train.csv: {message}"):
        folder.open_split(tmp_path, "train")


def test_corrupt_image_raises_on_load(tmp_path):
    write_folder(tmp_path, TRAIN)
    (tmp_path / "imgs/a.jpg").write_bytes(b"not an image")
    src = folder.open_split(tmp_path, "train")
    with pytest.raises(BadImageError, match=r"imgs/a.jpg: corrupt or unreadable image"):
        src.records[0].load()


def test_empty_split(tmp_path):
    write_folder(tmp_path, "path,labels\n", TEST)
    with pytest.raises(DataSourceError, match="no records"):
        open_source("folder", tmp_path, "train")


def test_build_end_to_end_and_skip(tmp_path):
    from replication.data.build import build_shards
    from replication.data.shards import ShardSet

    write_folder(tmp_path / "raw", TRAIN, TEST)
    out = build_shards("folder", split="test", root=tmp_path / "raw", out=tmp_path / "t", size=16, progress=False)
    shards = ShardSet(out)
    assert shards.keys() == ["imgs/t1.jpg"] and shards.class_names == ["bird", "cat", "dog", "zebra"]
    np.testing.assert_array_equal(shards.labels(), np.array([[0, 0, 0, 1]], np.float32))
    assert shards[0].image.shape == (16, 16, 3)

    (tmp_path / "raw/imgs/c.jpg").unlink()  # missing image: skipped and counted
    out = build_shards("folder", split="train", root=tmp_path / "raw", out=tmp_path / "s", size=16,
                       on_bad_image="skip", progress=False)
    shards = ShardSet(out)
    assert shards.keys() == ["imgs/a.jpg", "imgs/b.png"]
    assert shards.manifest["extra"]["skipped_images"] == 1
