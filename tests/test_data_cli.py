"""``spl data build|info|verify`` through click's runner."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from replication.cli import cli
from replication.data.build import build_shards, subset_indices
from replication.data.shards import ShardSet
from replication.errors import DataSourceError
from replication.experiments.runner import plan_experiment
from replication.experiments.spec import load_spec

SPECS = Path(__file__).resolve().parents[1] / "tables" / "specs"


def test_build_info_verify(tmp_path):
    runner = CliRunner()
    out = tmp_path / "train"
    r = runner.invoke(cli, ["data", "build", "digits-mosaic", "--split", "train", "--out", str(out), "--tiny"])
    assert r.exit_code == 0, r.output
    assert "records      240" in r.output and "labels/image" in r.output
    r = runner.invoke(cli, ["data", "info", str(out), "--json"])
    assert r.exit_code == 0 and '"records": 240' in r.output
    r = runner.invoke(cli, ["data", "verify", str(out)])
    assert r.exit_code == 0 and "OK" in r.output
    with h5py.File(out / "part-00000.h5", "r+") as f:
        f["labels"][0, 0] = 5.0
    r = runner.invoke(cli, ["data", "verify", str(out)])
    assert r.exit_code == 1 and "part-00000.h5" in r.output


def test_errors_are_one_line(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["data", "info", str(tmp_path / "missing")])
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines == [f"error: {tmp_path / 'missing'}: no such shard set folder"]
    (tmp_path / "raw").mkdir()
    r = runner.invoke(cli, ["data", "build", "coco2014", "--split", "train", "--root", str(tmp_path / "raw"),
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "instances_train2014.json" in r.output and "Traceback" not in r.output


# -- a limited labelled set: dataset.train_count / spl data build --count ---------------------------
def test_subset_indices_are_seeded_sorted_and_without_replacement():
    a = subset_indices(100, 30, seed=4)
    assert a == subset_indices(100, 30, seed=4) and a == sorted(set(a)) and len(a) == 30
    assert 0 <= a[0] and a[-1] < 100
    assert a != subset_indices(100, 30, seed=5)
    # independent reference: numpy's choice on the documented stream
    ref = np.random.default_rng([4, 0x5B5E7]).choice(100, size=30, replace=False)
    assert a == sorted(ref.tolist())
    for bad in (0, 101):
        with pytest.raises(DataSourceError, match="subset of"):
            subset_indices(100, bad, seed=0)


def test_count_builds_a_deterministic_subset_disjoint_from_the_test_pool(tiny_digits, tmp_path):
    full_train, test = ShardSet(tiny_digits[0]), ShardSet(tiny_digits[1])
    res = CliRunner().invoke(cli, ["data", "build", "digits-mosaic", "--split", "train", "--tiny", "--count", "50",
                                   "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    a = ShardSet(tmp_path / "a")
    b = ShardSet(build_shards("digits-mosaic", split="train", out=tmp_path / "b", tiny=True, count=50, progress=False))
    assert len(a) == 50 and a.keys() == b.keys() and np.array_equal(a.labels(), b.labels())
    full_keys = full_train.keys()
    picked = [full_keys.index(k) for k in a.keys()]
    assert picked == subset_indices(len(full_train), 50, seed=0)          # the documented subset, in source order
    for i, j in zip(range(len(a)), picked):
        assert np.array_equal(a[i].image, full_train[j].image) and np.array_equal(a[i].label, full_train[j].label)
    test_images = {test[i].image.tobytes() for i in range(len(test))}
    assert not any(a[i].image.tobytes() in test_images for i in range(len(a)))
    assert not set(a.keys()) & set(test.keys())
    c = ShardSet(build_shards("digits-mosaic", split="train", out=tmp_path / "c", tiny=True, count=50, seed=1,
                              progress=False))
    assert c.keys() != a.keys()


def test_spec_train_count_reaches_only_the_training_shards_and_keeps_old_fingerprints(tmp_path):
    base = load_spec(Path(__file__).parent / "fixtures" / "specs" / "demo-2026-11.yaml")
    limited = dataclasses.replace(base, dataset=dataclasses.replace(base.dataset, train_count=500))
    assert limited.fingerprint() != base.fingerprint()
    plan_base, plan_lim = plan_experiment(base, seeds=1), plan_experiment(limited, seeds=1)
    # (with train_count the plan also holds the whole training split, for the unlabeled pool of issue #19)
    shards = {split: plan_lim.named[f"shards/{split}"] for split in ("train", "test")}
    assert shards["train"].config["count"] == 500 and "count" not in shards["test"].config
    assert "count" not in plan_lim.named["shards/train-all"].config
    old = {s.config["split"]: s for s in plan_base.steps if s.kind == "shards"}
    assert "count" not in old["train"].config
    assert old["test"].key == shards["test"].key and old["train"].key != shards["train"].key
    assert plan_lim.named["shards/train-all"].key == old["train"].key  # the whole split: the earlier shards
