"""Tests for replication.labeling and ``spl label assign`` (paper §2.3, Eqs. (1)–(2); docs/labeling.md#label-rules)."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from replication.cli import cli
from replication.data.labelfile import read_label_file
from replication.data.shards import SOURCE_GENERATED, ShardSet, ShardWriter
from replication.errors import ConfigError, ShardError
from replication.inference.predictions import write_preds
from replication.labeling import assign_label_file

M, C = 30, 10
CLASSES = [str(d) for d in range(C)]


def _generated(path, n=M, seed=0):
    rng = np.random.default_rng(seed)
    with ShardWriter(path, dataset="digits-mosaic", split="generated", class_names=CLASSES, encoding="png",
                     label_kind="none") as w:
        for i in range(n):
            w.add(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), label=None, key=f"gen-{i:04d}",
                  source=SOURCE_GENERATED)
    return ShardSet(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    gen = _generated(root / "gen")
    logits = np.random.default_rng(1).normal(0, 3, (M, C)).astype(np.float32)
    write_preds(root / "scores.npz", logits, np.full((M, C), np.nan, np.float32), gen.keys(), CLASSES)
    return root, gen, logits


def test_pseudo_marks_the_top_k_confidences(setup, tmp_path):
    root, gen, logits = setup
    labels, meta = read_label_file(
        assign_label_file("pseudo", root / "scores.npz", gen.path, tmp_path / "p.h5", k=3), gen
    )
    expected = np.zeros((M, C), np.float32)
    np.put_along_axis(expected, np.argsort(-logits, axis=1)[:, :3], 1.0, axis=1)
    np.testing.assert_array_equal(labels, expected)
    assert meta["rule"] == "pseudo" and meta["params"]["k"] == 3 and meta["shard_hash"] == gen.content_hash


def test_spl_is_softmax_of_sigmoid_probabilities_or_of_logits(setup, tmp_path):
    root, gen, logits = setup
    x = logits.astype(np.float64)

    def softmax(v):
        e = np.exp(v - v.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    labels, _ = read_label_file(assign_label_file("spl", root / "scores.npz", gen.path, tmp_path / "s.h5"), gen)
    np.testing.assert_allclose(labels, softmax(1 / (1 + np.exp(-x))), rtol=1e-5, atol=1e-7)
    # Over probabilities in [0, 1] the ratio of any two entries is at most e (paper §2.3, Eqs. (1)–(2);
    # docs/labeling.md#label-rules).
    assert (labels.max(1) / labels.min(1) <= np.e + 1e-5).all()
    labels, meta = read_label_file(assign_label_file("spl", root / "scores.npz", gen.path, tmp_path / "l.h5",
                                                     spl_input="logits", temperature=2.0), gen)
    np.testing.assert_allclose(labels, softmax(x / 2.0), rtol=1e-5, atol=1e-7)
    assert meta["params"]["spl_input"] == "logits" and meta["params"]["temperature"] == 2.0


def test_smooth_and_random_need_no_scores(setup, tmp_path):
    _, gen, _ = setup
    labels, _ = read_label_file(assign_label_file("smooth", None, gen.path, tmp_path / "sm.h5"), gen)
    np.testing.assert_allclose(labels, np.full((M, C), 1 / C), rtol=1e-6)
    a, _ = read_label_file(assign_label_file("random", None, gen.path, tmp_path / "r0.h5", seed=0), gen)
    b, _ = read_label_file(assign_label_file("random", None, gen.path, tmp_path / "r0b.h5", seed=0), gen)
    c, _ = read_label_file(assign_label_file("random", None, gen.path, tmp_path / "r1.h5", seed=1), gen)
    assert set(np.unique(a)) == {0.0, 1.0} and (a.sum(1) == 3).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_scores_must_belong_to_the_generated_set(setup, tmp_path):
    root, gen, logits = setup
    with pytest.raises(ConfigError, match="needs --scores"):
        assign_label_file("spl", None, gen.path, tmp_path / "x.h5")
    keys = gen.keys()
    write_preds(tmp_path / "swapped.npz", logits, np.full((M, C), np.nan, np.float32), keys[1:2] + keys[:1] + keys[2:],
                CLASSES)
    with pytest.raises(ShardError, match="first difference at row 0"):
        assign_label_file("pseudo", tmp_path / "swapped.npz", gen.path, tmp_path / "x.h5")
    write_preds(tmp_path / "short.npz", logits[:5], np.zeros((5, C), np.float32), keys[:5], CLASSES)
    with pytest.raises(ShardError, match="scores 5 images"):
        assign_label_file("pseudo", tmp_path / "short.npz", gen.path, tmp_path / "x.h5")
    bad = logits.copy()
    bad[3, 2] = np.nan
    write_preds(tmp_path / "nan.npz", bad, np.zeros((M, C), np.float32), keys, CLASSES)
    with pytest.raises(ShardError, match="1 score rows are not finite"):
        assign_label_file("spl", tmp_path / "nan.npz", gen.path, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_label_file_is_tied_to_the_generated_set(setup, tmp_path):
    root, gen, _ = setup
    out = assign_label_file("pseudo", root / "scores.npz", gen.path, tmp_path / "p.h5")
    other = _generated(tmp_path / "other", seed=5)  # same keys and classes, other pixels
    with pytest.raises(ShardError, match="another shard set"):
        read_label_file(out, other)
    # the scores of the first set are refused for the other set only if keys differ; here they match,
    # so the label file it writes is tied to the *other* set's hash
    out2 = assign_label_file("pseudo", root / "scores.npz", other.path, tmp_path / "p2.h5")
    assert read_label_file(out2, other)[1]["shard_hash"] == other.content_hash != gen.content_hash


def test_cli_label_assign(setup, tmp_path):
    root, gen, _ = setup
    runner = CliRunner()
    res = runner.invoke(cli, ["label", "assign", "--rule", "spl", "--scores", str(root / "scores.npz"), "--generated",
                              str(gen.path), "--out", str(tmp_path / "spl.h5"), "--temperature", "0.5"])
    assert res.exit_code == 0, res.output
    labels, meta = read_label_file(tmp_path / "spl.h5", gen)
    assert meta["params"]["temperature"] == 0.5 and np.allclose(labels.sum(1), 1, atol=1e-5)
    res = runner.invoke(cli, ["label", "assign", "--rule", "pseudo", "--generated", str(gen.path), "--out",
                              str(tmp_path / "p.h5")])
    assert res.exit_code == 1 and "needs --scores" in res.output
