"""Shard format: round trip, random access, atomicity, verification, label files, worker safety."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from replication.data.labelfile import read_label_file, write_label_file
from replication.data.shards import (
    MANIFEST,
    SOURCE_GENERATED,
    ShardSet,
    ShardWriter,
    decode_image,
    encode_image,
    is_shard_set,
    verify_shard_set,
)
from replication.errors import ShardError


def _images(n, h=20, w=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _write(path, n=25, per_shard=10, encoding="png", c=4, **kw):
    imgs = _images(n)
    labels = (np.random.default_rng(1).random((n, c)) > 0.5).astype(np.float32)
    with ShardWriter(path, dataset="toy", split="train", class_names=[f"c{i}" for i in range(c)],
                     encoding=encoding, records_per_shard=per_shard, **kw) as w:
        for i in range(n):
            w.add(imgs[i], label=labels[i], key=f"img{i}", source=i % 2)
    return imgs, labels


def test_round_trip_png_is_lossless_and_random_access(tmp_path):
    imgs, labels = _write(tmp_path / "s", n=25, per_shard=10)
    s = ShardSet(tmp_path / "s")
    assert len(s) == 25 and len(s.manifest["shards"]) == 3
    assert [sh["count"] for sh in s.manifest["shards"]] == [10, 10, 5]
    for i in (0, 9, 10, 19, 24, 13, -1):
        item = s[i]
        j = i % 25
        np.testing.assert_array_equal(item.image, imgs[j])
        np.testing.assert_array_equal(item.label, labels[j])
        assert item.key == f"img{j}" and item.source == j % 2
    np.testing.assert_array_equal(s.labels(), labels)
    assert s.keys() == [f"img{i}" for i in range(25)]
    with pytest.raises(IndexError):
        s[25]


def test_jpeg_round_trip_is_close(tmp_path):
    img = np.zeros((64, 64, 3), np.uint8)
    img[16:48, 16:48] = (200, 100, 50)
    out = decode_image(encode_image(img, "jpeg", 95))
    assert out.shape == img.shape
    assert np.abs(out.astype(int) - img).mean() < 3.0


def test_unlabelled_records_are_nan_and_generated_flag(tmp_path):
    with ShardWriter(tmp_path / "g", dataset="toy", split="generated", class_names=["a", "b"],
                     encoding="png", label_kind="none") as w:
        for img in _images(3, 8, 8):
            w.add(img, label=None, key="k", source=SOURCE_GENERATED)
    s = ShardSet(tmp_path / "g")
    assert np.isnan(s.labels()).all() and s[2].source == SOURCE_GENERATED


def test_wrong_label_width_is_refused_and_nothing_is_left(tmp_path):
    with pytest.raises(ShardError, match="length 3, expected 4"):
        with ShardWriter(tmp_path / "s", dataset="toy", split="train", class_names=list("abcd"), encoding="png") as w:
            w.add(_images(1)[0], label=[1, 0, 1], key="bad")
    assert not (tmp_path / "s").exists()


def test_empty_split_is_an_error(tmp_path):
    with pytest.raises(ShardError, match="no records"):
        with ShardWriter(tmp_path / "s", dataset="toy", split="train", class_names=["a"], encoding="png"):
            pass
    assert not is_shard_set(tmp_path / "s")


def test_existing_complete_set_is_refused_without_overwrite(tmp_path):
    _write(tmp_path / "s")
    with pytest.raises(ShardError, match="already exists"):
        _write(tmp_path / "s")
    _write(tmp_path / "s", overwrite=True)
    assert len(ShardSet(tmp_path / "s")) == 25


def test_interrupted_build_leaves_no_shard_set_and_next_build_starts_clean(tmp_path):
    out = tmp_path / "s"
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from replication.data.shards import ShardWriter
        w = ShardWriter({str(out)!r}, dataset="toy", split="train", class_names=["a", "b"],
                        encoding="png", records_per_shard=10)
        img = np.zeros((8, 8, 3), np.uint8)
        for i in range(35):
            w.add(img, label=[1, 0], key=str(i))
        os.kill(os.getpid(), signal.SIGKILL)   # killed before close(): no manifest
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode != 0
    # The set was written into a sibling build folder; --out itself was never created.
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".s.building-")]
    assert len(leftovers) == 1 and (leftovers[0] / "part-00000.h5").exists()
    assert not out.exists() and not is_shard_set(out)
    with pytest.raises(ShardError, match="no such shard set"):
        ShardSet(out)
    _write(out, n=5, per_shard=10)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "part-00000.h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # the dead writer's build folder is gone
    assert len(ShardSet(out)) == 5


def test_old_interrupted_build_in_out_is_replaced_but_user_files_are_not(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "part-00000.h5").write_bytes(b"partial")
    (out / "part-00001.h5.tmp").write_bytes(b"partial")
    with pytest.raises(ShardError, match="neither a manifest nor a build marker"):  # our names, but no proof
        _write(out, n=5, per_shard=10)
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.h5", "part-00001.h5.tmp"]
    (out / ".spl-building").write_text("pid 1\n")
    _write(out, n=5, per_shard=10)  # only our own files and our marker: replaced
    assert len(ShardSet(out)) == 5
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    with pytest.raises(ShardError, match="not part of a shard set.*thesis.tex"):
        _write(user)
    assert (user / "thesis.tex").read_text() == "precious"
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ShardError, match="notes.txt"):
        _write(out, overwrite=True)
    assert (out / "notes.txt").exists() and len(ShardSet(out)) == 5


def test_read_refuses_a_flipped_byte_and_wrong_counts(tmp_path):
    _write(tmp_path / "s")
    shard = tmp_path / "s" / "part-00001.h5"
    with h5py.File(shard, "r+") as f:
        f["labels"][0, 0] = 1 - f["labels"][0, 0]
    s = ShardSet(tmp_path / "s")
    assert s[0].key  # shard 0 is intact
    with pytest.raises(ShardError, match="part-00001.h5: SHA-256 does not match"):
        s.labels()
    _write(tmp_path / "t")
    manifest = json.loads((tmp_path / "t" / MANIFEST).read_text())
    manifest["shards"][0]["count"] += 3
    manifest["num_records"] += 3
    (tmp_path / "t" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="rows, the manifest says"):
        ShardSet(tmp_path / "t").labels()


def test_verify_reports_unexpected_part_files(tmp_path):
    _write(tmp_path / "s")
    shutil.copy(tmp_path / "s" / "part-00000.h5", tmp_path / "s" / "part-00099.h5")
    (tmp_path / "s" / "stray.txt").write_text("x")
    problems = verify_shard_set(tmp_path / "s")
    assert any("part-00099.h5: unexpected part file" in p for p in problems)
    assert any("stray.txt: unexpected file" in p for p in problems)


def test_verify_detects_edited_and_truncated_shards(tmp_path):
    _write(tmp_path / "s")
    assert verify_shard_set(tmp_path / "s") == []
    shard = tmp_path / "s" / "part-00001.h5"
    with h5py.File(shard, "r+") as f:
        f["labels"][0, 0] = 1 - f["labels"][0, 0]
    problems = verify_shard_set(tmp_path / "s")
    assert len(problems) == 1 and "part-00001.h5" in problems[0] and "SHA-256" in problems[0]
    data = (tmp_path / "s" / "part-00002.h5").read_bytes()
    (tmp_path / "s" / "part-00002.h5").write_bytes(data[: len(data) // 2])
    assert any("part-00002.h5" in p for p in verify_shard_set(tmp_path / "s"))


def test_malformed_manifest_is_a_clear_error(tmp_path):
    _write(tmp_path / "s")
    (tmp_path / "s" / MANIFEST).write_text("{not json")
    with pytest.raises(ShardError, match="malformed manifest"):
        ShardSet(tmp_path / "s")


def test_label_file_round_trip_and_hash_mismatch(tmp_path):
    _write(tmp_path / "a", n=6, per_shard=4)
    a = ShardSet(tmp_path / "a")
    soft = np.full((6, 4), 0.25, np.float32)
    write_label_file(tmp_path / "a.h5", soft, a, rule="smooth", params={"k": 3})
    labels, meta = read_label_file(tmp_path / "a.h5", a)
    np.testing.assert_array_equal(labels, soft)
    assert meta["rule"] == "smooth" and meta["params"] == {"k": 3}
    # Same size and classes, different pixels: a different hash, so the label file is refused.
    imgs = _images(6, seed=9)
    with ShardWriter(tmp_path / "b", dataset="toy", split="train", class_names=[f"c{i}" for i in range(4)],
                     encoding="png", records_per_shard=4) as w:
        for i in range(6):
            w.add(imgs[i], label=None, key=f"img{i}")
    with pytest.raises(ShardError, match="another shard set"):
        read_label_file(tmp_path / "a.h5", ShardSet(tmp_path / "b"))
    with pytest.raises(ShardError, match="do not fit"):
        write_label_file(tmp_path / "x.h5", soft[:5], a, rule="smooth")


class _Items(torch.utils.data.Dataset):
    def __init__(self, shards):
        self.shards = shards

    def __len__(self):
        return len(self.shards)

    def __getitem__(self, i):
        item = self.shards[i]
        return torch.from_numpy(item.image.copy()), torch.from_numpy(item.label), i


def test_safe_with_dataloader_workers_after_parent_read(tmp_path):
    imgs, labels = _write(tmp_path / "s", n=25, per_shard=7)
    s = ShardSet(tmp_path / "s")
    _ = s[3]  # open a handle in the parent before the workers fork
    loader = DataLoader(_Items(s), batch_size=4, num_workers=2, shuffle=False)
    seen = {}
    for x, y, idx in loader:
        for k in range(len(idx)):
            seen[int(idx[k])] = (x[k].numpy(), y[k].numpy())
    assert sorted(seen) == list(range(25))
    for i, (x, y) in seen.items():
        np.testing.assert_array_equal(x, imgs[i])
        np.testing.assert_array_equal(y, labels[i])


def test_manifest_records_sha256_per_shard(tmp_path):
    _write(tmp_path / "s")
    manifest = json.loads((tmp_path / "s" / MANIFEST).read_text())
    import hashlib
    for sh in manifest["shards"]:
        assert hashlib.sha256((tmp_path / "s" / sh["file"]).read_bytes()).hexdigest() == sh["sha256"]
