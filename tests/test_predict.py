"""Tests for replication.inference.predict, replication.inference.predictions and ``spl predict``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from replication.cli import cli
from replication.data.shards import SOURCE_GENERATED, ShardSet, ShardWriter
from replication.data.transforms import CaffeTestTransform
from replication.errors import ConfigError, ShardError
from replication.inference.predict import predict
from replication.inference.predictions import read_preds, write_preds
from replication.models import build_model
from replication.train import load_train_config, train


@pytest.fixture(scope="module")
def run_dir(tiny_digits, tmp_path_factory):
    """A tiny trained run (3 iterations) whose model.pt the tests score with."""
    out = tmp_path_factory.mktemp("run")
    cfg = load_train_config("embedded", [f"data.train={tiny_digits[0]}", f"data.test={tiny_digits[1]}", "batch_size=32",
                                         "max_iters=3", "eval_every_epochs=0", "data.num_workers=0", "progress=false",
                                         "kernel_backend=torch", "device=cpu"])
    train(cfg, out)
    return out


def _restore(tmp_path, src: ShardSet, n: int, *, class_names=None, generated=False):
    with ShardWriter(tmp_path, dataset="digits-mosaic", split="x", class_names=class_names or src.class_names,
                     encoding="png", label_kind="none" if generated else "binary") as w:
        for i in range(n):
            item = src[i]
            w.add(item.image, label=None if generated else item.label, key=f"g{i}" if generated else item.key,
                  source=SOURCE_GENERATED if generated else 0)
    return ShardSet(tmp_path)


def test_predict_matches_the_runs_test_predictions_and_a_manual_forward(run_dir, tiny_digits, tmp_path):
    out = predict(run_dir, tiny_digits[1], tmp_path / "p.npz", batch_size=50, device="cpu")
    preds, ref = read_preds(out), read_preds(run_dir / "preds.npz")
    assert preds["keys"] == ref["keys"] and preds["class_names"] == ref["class_names"]
    np.testing.assert_allclose(preds["logits"], ref["logits"], rtol=0, atol=1e-5)  # other batch size
    np.testing.assert_array_equal(preds["labels"], ShardSet(tiny_digits[1]).labels())
    # Independent forward: the saved weights, the run's test transform, eval mode, one image at a time.
    bundle = torch.load(run_dir / "model.pt", weights_only=False)
    model = build_model(bundle["model"], bundle["num_classes"])
    model.load_state_dict(bundle["state_dict"])
    model.eval()
    test = ShardSet(tiny_digits[1])
    tf = CaffeTestTransform(28, 32, mode="resize")
    with torch.no_grad():
        for i in (0, 7, len(test) - 1):
            logit = model(tf(test[i].image)[None])[0].numpy()
            np.testing.assert_allclose(preds["logits"][i], logit, rtol=0, atol=1e-4)


def test_predict_on_generated_images_gives_nan_labels(run_dir, tiny_digits, tmp_path):
    gen = _restore(tmp_path / "gen", ShardSet(tiny_digits[1]), 20, generated=True)
    preds = read_preds(predict(run_dir, gen.path, tmp_path / "g.npz"))
    assert preds["logits"].shape == (20, 10) and np.isfinite(preds["logits"]).all()
    assert np.isnan(preds["labels"]).all()
    assert preds["keys"] == [f"g{i}" for i in range(20)]


def test_predict_refuses_other_classes_and_unfinished_runs(run_dir, tiny_digits, tmp_path):
    other = _restore(tmp_path / "other", ShardSet(tiny_digits[1]), 5, class_names=list("abcdefghij"))
    with pytest.raises(ShardError, match="class names"):
        predict(run_dir, other.path, tmp_path / "x.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no trained model here"):
        predict(tmp_path / "empty", tiny_digits[1], tmp_path / "x.npz")


def test_write_and_read_preds_roundtrip(tmp_path):
    logits = np.arange(6, dtype=np.float32).reshape(2, 3)
    labels = np.array([[1, 0, np.nan], [0, 1, 1]], dtype=np.float32)
    write_preds(tmp_path / "p.npz", logits, labels, ["a", "b"], ["x", "y", "z"])
    p = read_preds(tmp_path / "p.npz")
    np.testing.assert_array_equal(p["logits"], logits)
    np.testing.assert_array_equal(p["labels"], labels)
    assert p["keys"] == ["a", "b"] and p["class_names"] == ["x", "y", "z"]
    with pytest.raises(ValueError):
        write_preds(tmp_path / "bad.npz", logits, labels, ["a"], ["x", "y", "z"])
    with pytest.raises(ShardError, match="not found"):
        read_preds(tmp_path / "none.npz")


def test_cli_predict(run_dir, tiny_digits, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["predict", "--run", str(run_dir), "--data", str(tiny_digits[1]),
                              "--out", str(tmp_path / "c.npz"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert read_preds(tmp_path / "c.npz")["logits"].shape == (len(ShardSet(tiny_digits[1])), 10)
    res = runner.invoke(cli, ["predict", "--run", str(tmp_path), "--data", str(tiny_digits[1]),
                              "--out", str(tmp_path / "d.npz")])
    assert res.exit_code == 1 and "error:" in res.output and "no trained model here" in res.output
