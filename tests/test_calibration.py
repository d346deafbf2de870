"""Fit diagnostics for choosing a regime (replication/experiments/calibration.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from replication.errors import ConfigError
from replication.experiments.calibration import Criteria, RunFit, run_fit, sigmoid_cross_entropy, summarize_fits
from replication.inference.predictions import write_preds


def test_sigmoid_cross_entropy_matches_torch_summed_over_classes():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 30, size=(7, 5)).astype(np.float32)   # large values: no overflow allowed
    targets = rng.uniform(0, 1, size=(7, 5)).astype(np.float32)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(logits).double(), torch.from_numpy(targets).double(), reduction="sum") / 7
    assert sigmoid_cross_entropy(logits, targets) == pytest.approx(float(ref), rel=1e-12)
    # by hand: one image, logit 0 → log 2 per class
    assert sigmoid_cross_entropy(np.zeros((1, 3)), np.ones((1, 3))) == pytest.approx(3 * math.log(2))


def _fake_run(path, maps, train_losses, logits, labels):
    path.mkdir(parents=True)
    (path / "history.json").write_text(json.dumps({
        "epoch": list(range(1, len(maps) + 1)), "train_loss": train_losses, "test_mAP": maps}))
    write_preds(path / "preds.npz", logits, labels, [f"k{i}" for i in range(len(labels))], ["a", "b"])
    return path


def test_run_fit_reads_history_and_predictions(tmp_path):
    logits = np.array([[2.0, -1.0], [0.5, 0.0]], dtype=np.float32)
    labels = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    run = _fake_run(tmp_path / "r", [None, 80.0, 81.25], [3.0, 2.0, 0.4], logits, labels)
    fit = run_fit(run)
    by_hand = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))
               + (0.5 + math.log1p(math.exp(-0.5))) + math.log(2)) / 2
    assert fit.final_map == 81.25 and fit.last_two_delta == pytest.approx(1.25) and fit.epochs == 3
    assert fit.train_loss == 0.4 and fit.test_loss == pytest.approx(by_hand, rel=1e-6)
    no_eval = _fake_run(tmp_path / "n", [None, None], [1.0, 0.5], logits, labels)
    with pytest.raises(ConfigError, match="history.json: no test mAP"):
        run_fit(no_eval)


def _fit(m, delta=0.1, train=0.2, test=1.0):
    return RunFit(run="r", final_map=m, last_two_delta=delta, train_loss=train, test_loss=test, epochs=10)


def test_summarize_fits_applies_each_criterion():
    ok = summarize_fits([_fit(85.0), _fit(85.4), _fit(85.8)])
    assert ok["mAP_mean"] == pytest.approx(85.4) and ok["mAP_std"] == pytest.approx(0.4)
    assert ok["all"] and all(ok["checks"].values())
    assert not summarize_fits([_fit(85.0), _fit(86.0), _fit(87.0)])["checks"]["seed_std"]      # std 1.0
    assert not summarize_fits([_fit(95.0), _fit(95.1)])["checks"]["headroom"]
    assert not summarize_fits([_fit(85.0, delta=0.6), _fit(85.1)])["checks"]["converged"]
    under = summarize_fits([_fit(85.0, train=0.6, test=1.0), _fit(85.1)])
    assert not under["checks"]["overfits"] and not under["all"]
    one = summarize_fits([_fit(85.0)])
    assert math.isnan(one["mAP_std"]) and not one["checks"]["seed_std"]
    loose = summarize_fits([_fit(85.0), _fit(86.0)], Criteria(max_seed_std=1.0))
    assert loose["checks"]["seed_std"]
