"""Fit diagnostics of finished classifier runs, for choosing a regime (docs/experiments.md, "Calibration log").

For each training run: the final test mAP, the change of test mAP between its last two epochs
(convergence), the final training loss (the epoch's running mean, with augmentation) and the test
loss — the same sigmoid cross-entropy, summed over the C classes and averaged over the images, as
the ``sigmoid_bce`` training loss with ``normalize: batch`` — computed from the run's final test
predictions (``preds.npz``). Over seeds: mean and sample std of mAP, and whether each of the
calibration criteria holds. Pure given the run folders; nothing is trained here.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from replication.errors import ConfigError
from replication.experiments.runner import plan_experiment
from replication.experiments.spec import ExperimentSpec
from replication.inference.predictions import read_preds


@dataclass(frozen=True)
class RunFit:
    """Diagnostics of one finished training run."""

    run: str
    final_map: float          # test mAP after the last epoch (percent)
    last_two_delta: float     # |mAP(last epoch) − mAP(the epoch before)| (percent points); NaN with one epoch
    train_loss: float         # mean training loss of the last epoch
    test_loss: float          # sigmoid cross-entropy of the final test predictions (sum over C, mean over N)
    epochs: int


@dataclass(frozen=True)
class Criteria:
    """Thresholds of the calibration criteria (the values written in docs/experiments.md)."""

    converged_delta: float = 0.5        # |Δ mAP| between the last two epochs below this
    headroom: tuple[float, float] = (75.0, 92.0)
    overfit_ratio: float = 0.5          # train loss ≤ ratio × test loss
    max_seed_std: float = 0.5


def sigmoid_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Σ_c [max(x,0) − x·y + log(1 + e^{−|x|})] averaged over images: Caffe's ``SigmoidCrossEntropyLoss``
    with batch normalisation, in float64 and without overflow."""
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    per = np.maximum(x, 0.0) - x * y + np.log1p(np.exp(-np.abs(x)))
    return float(per.sum(axis=1).mean())


def run_fit(run: str | Path) -> RunFit:
    """:class:`RunFit` of a finished run folder (``history.json`` with per-epoch test mAP, ``preds.npz``)."""
    run = Path(run)
    hist_path = run / "history.json"
    try:
        hist = json.loads(hist_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{hist_path}: unreadable training history ({type(e).__name__})") from None
    maps = [m for m in hist.get("test_mAP", []) if m is not None]
    if not maps or hist.get("test_mAP", [None])[-1] is None:
        raise ConfigError(f"{hist_path}: no test mAP after the last epoch (train with eval_every_epochs: 1)")
    preds = read_preds(run / "preds.npz")
    delta = abs(maps[-1] - maps[-2]) if len(maps) >= 2 else math.nan
    return RunFit(run=str(run), final_map=float(maps[-1]), last_two_delta=float(delta),
                  train_loss=float(hist["train_loss"][-1]),
                  test_loss=sigmoid_cross_entropy(preds["logits"], preds["labels"]), epochs=len(hist["epoch"]))


def summarize_fits(fits: list[RunFit], criteria: Criteria = Criteria()) -> dict:
    """Mean ± sample std of mAP over seeds and the four criteria (each a bool) for a list of runs."""
    if not fits:
        raise ValueError("no runs to summarize")
    maps = np.array([f.final_map for f in fits], dtype=np.float64)
    std = float(maps.std(ddof=1)) if len(maps) > 1 else math.nan
    mean = float(maps.mean())
    lo, hi = criteria.headroom
    checks = {
        "converged": all(f.last_two_delta < criteria.converged_delta for f in fits),
        "headroom": lo <= mean <= hi,
        "overfits": all(f.train_loss <= criteria.overfit_ratio * f.test_loss for f in fits),
        "seed_std": (not math.isnan(std)) and std <= criteria.max_seed_std,
    }
    return {"mAP_mean": mean, "mAP_std": std, "n_seeds": len(fits), "checks": checks, "all": all(checks.values()),
            "runs": [asdict(f) for f in fits], "criteria": asdict(criteria)}


def fit_experiment(spec: ExperimentSpec, runs: str | Path, *, seeds: int, only: tuple[str, ...] = (),
                   criteria: Criteria = Criteria(), seed_start: int = 0) -> dict:
    """``{row: summarize_fits(...)}`` over the finished trainings of every row of ``spec`` (or the rows in
    ``only``; seeds seed_start … seed_start+seeds−1); rows with an unfinished seed are reported as
    ``{"missing": [seed, ...]}``."""
    plan = plan_experiment(spec, seeds=seeds, only=only, seed_start=seed_start)
    out: dict[str, dict] = {}
    for row in only or spec.rows:
        steps = [plan.trains[(row, s)] for s in plan.replicates]
        missing = [s for s, st in zip(plan.replicates, steps, strict=True) if not st.is_done(Path(runs))]
        out[row] = ({"missing": missing} if missing else
                    summarize_fits([run_fit(st.path(Path(runs))) for st in steps], criteria))
    return out


__all__ = ["fit_experiment", "Criteria", "RunFit", "run_fit", "sigmoid_cross_entropy", "summarize_fits"]
