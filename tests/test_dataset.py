"""ShardDataset: real + generated images with a label file and per-sample weights."""
from __future__ import annotations

import numpy as np
import pytest

from replication.data.dataset import ShardDataset
from replication.data.labelfile import write_label_file
from replication.data.shards import SOURCE_GENERATED, ShardSet, ShardWriter
from replication.data.transforms import CaffeTestTransform
from replication.errors import ShardError


def _generated(path, n, class_names):
    rng = np.random.default_rng(0)
    with ShardWriter(path, dataset="digits-mosaic", split="generated", class_names=class_names,
                     encoding="png", label_kind="none") as w:
        for i in range(n):
            w.add(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), label=None, key=f"g{i}",
                  source=SOURCE_GENERATED)
    return path


def test_real_plus_generated_items(tiny_digits, tmp_path):
    train, _ = tiny_digits
    real = ShardSet(train)
    gen = ShardSet(_generated(tmp_path / "gen", 7, real.class_names))
    soft = np.random.default_rng(1).dirichlet(np.ones(10), size=7).astype(np.float32)
    write_label_file(tmp_path / "spl.h5", soft, gen, rule="spl")
    ds = ShardDataset(train, CaffeTestTransform(28, 32), generated=gen.path, label_file=tmp_path / "spl.h5",
                      generated_weight=0.5)
    assert len(ds) == len(real) + 7 and ds.num_real == len(real) and ds.num_classes == 10
    x, y, w = ds[3]
    assert x.shape == (3, 28, 28) and float(w) == 1.0
    np.testing.assert_array_equal(y.numpy(), real[3].label)
    x, y, w = ds[len(real) + 4]
    np.testing.assert_array_equal(y.numpy(), soft[4])
    assert float(w) == 0.5


def test_generated_without_label_file_or_mismatched_file(tiny_digits, tmp_path):
    train, _ = tiny_digits
    gen = _generated(tmp_path / "gen", 5, ShardSet(train).class_names)
    with pytest.raises(ShardError, match="need a label file"):
        ShardDataset(train, CaffeTestTransform(28, 32), generated=gen)
    other = ShardSet(_generated(tmp_path / "other", 6, ShardSet(train).class_names))
    write_label_file(tmp_path / "other.h5", np.zeros((6, 10), np.float32), other, rule="random")
    with pytest.raises(ShardError, match="another shard set"):
        ShardDataset(train, CaffeTestTransform(28, 32), generated=gen, label_file=tmp_path / "other.h5")
