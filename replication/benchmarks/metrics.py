"""Metrics benchmark (``spl bench metrics``): the full SRN metric suite, vectorised vs a
straightforward Python reference.

Both run in the same process on the same random scores (default 40,504×80, MS-COCO val's size):
``replication.metrics.evaluate(..., top3="both")`` against :func:`reference_evaluate`, a literal
per-class transcription of SRN's MATLAB (``AP_VOC.m`` with its loops, ``precision_recall_f1.m``)
plus a per-image Top-3 loop. The two results must agree (max |difference| ≤ 1e-6 percentage
points) or the benchmark fails; speed is recorded, never asserted. Goal: under 1 s on one core.
The vectorised suite is timed ``repeats`` times without a warm-up call (the median absorbs the
first, slower call); the reference once.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from replication.benchmarks import harness
from replication.errors import ReplicationError
from replication.metrics import evaluate, sigmoid

_EPS = float(np.finfo(np.float64).eps)


def _reference_ap(probs: list[float], labels: list[float], *, wider: bool, interpolated: bool) -> float:
    """One class: MATLAB ``[~, si] = sort(out, 'descend')`` then AP_VOC / non-interpolated AP."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])  # Python's sort is stable
    tp = fp = 0
    recs, precs, at_positive = [], [], []
    npos = sum(1 for v in labels if v == 1)
    for i in order:
        if labels[i] == 1:
            tp += 1
        elif labels[i] == -1 or (labels[i] == 0 and not wider):
            fp += 1
        else:
            continue  # WIDER: unspecified items are dropped
        recs.append(tp / npos if npos else float("nan"))
        precs.append(tp / (tp + fp))
        at_positive.append(labels[i] == 1)
    if npos == 0:
        return float("nan")
    if not interpolated:
        return sum(p for p, a in zip(precs, at_positive) if a) / npos
    mrec = [0.0] + recs + [1.0]
    mpre = [0.0] + precs + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def _reference_prf(pred: list[list[bool]], truth: list[list[bool]], zero_division: str, f1_c: str) -> dict:
    """Counts with Python loops; SRN's eps arithmetic or 0/0 → 0."""
    n, c = len(truth), len(truth[0])

    def prf(tp: float, npred: float, ngt: float) -> tuple[float, float, float]:
        if zero_division == "srn":
            p = (tp + _EPS) / (npred + _EPS)
            r = (tp + _EPS) / (ngt + _EPS) + _EPS
            return p, r, 2 * p * r / (p + r)
        p = tp / npred if npred else 0.0
        r = tp / ngt if ngt else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    per_class = []
    for j in range(c):
        tp = sum(1 for i in range(n) if pred[i][j] and truth[i][j])
        per_class.append(prf(tp, sum(1 for i in range(n) if pred[i][j]), sum(1 for i in range(n) if truth[i][j])))
    tp_all = sum(1 for i in range(n) for j in range(c) if pred[i][j] and truth[i][j])
    npred_all = sum(1 for i in range(n) for j in range(c) if pred[i][j])
    ngt_all = sum(1 for i in range(n) for j in range(c) if truth[i][j])
    po, ro, fo = prf(tp_all, npred_all, ngt_all)
    pc = sum(p for p, _, _ in per_class) / c
    rc = sum(r for _, r, _ in per_class) / c
    fc = sum(f for _, _, f in per_class) / c if f1_c == "mean" else (2 * pc * rc / (pc + rc) if pc + rc else 0.0)
    return {"F1-C": 100 * fc, "P-C": 100 * pc, "R-C": 100 * rc, "F1-O": 100 * fo, "P-O": 100 * po, "R-O": 100 * ro}


def reference_evaluate(probs: np.ndarray, labels: np.ndarray, *, wider: bool = False, ap: str = "voc",
                       threshold: float = 0.5, threshold_op: str = ">", zero_division: str = "srn",
                       f1_c: str = "mean") -> dict[str, float]:
    """Straightforward reference for ``evaluate(probs, labels, scores_are="probs", top3="both")``.

    Per class and per image with Python loops (no vectorisation), written from SRN's MATLAB; no
    handling of no-positive classes beyond MATLAB's (NaN AP, excluded from the mean here).
    """
    p = probs.tolist()
    y = labels.tolist()
    n, c = len(p), len(p[0])
    aps = [_reference_ap([p[i][j] for i in range(n)], [y[i][j] for i in range(n)], wider=wider,
                         interpolated=ap == "voc") for j in range(c)]
    valid = [a for a in aps if a == a]
    out = {"mAP": 100 * sum(valid) / len(valid) if valid else float("nan")}
    truth = [[v == 1 for v in row] for row in y]
    pred = [[(v > threshold) if threshold_op == ">" else (v >= threshold) for v in row] for row in p]
    out.update(_reference_prf(pred, truth, zero_division, f1_c))
    top = []
    for row in p:
        best = set(sorted(range(c), key=lambda j: -row[j])[:3])  # stable: lower index wins ties
        top.append([j in best for j in range(c)])
    for prefix, mask in (("top3-pure/", top),
                         ("top3-thr/", [[t and q for t, q in zip(tr, pr)] for tr, pr in zip(top, pred)])):
        out.update({prefix + k: v for k, v in _reference_prf(mask, truth, zero_division, f1_c).items()})
    return out


def random_problem(n: int, c: int, seed: int = 0, labels_per_image: float = 2.9) -> tuple[np.ndarray, np.ndarray]:
    """Random float32 logits and {0,1} labels, positives scoring higher on average (COCO-like density)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < labels_per_image / c).astype(np.float32)
    logits = (rng.standard_normal((n, c)) * 1.5 + np.where(labels == 1, 1.0, -3.0)).astype(np.float32)
    return logits, labels


@dataclasses.dataclass
class MetricsConfig:
    """Problem size and repetitions; ``quick()`` gives the tiny settings the tests use."""

    n: int = 40504
    c: int = 80
    seed: int = 0
    repeats: int = 5

    @classmethod
    def quick(cls, seed: int = 0) -> MetricsConfig:
        return cls(n=500, c=20, seed=seed, repeats=1)


def _timing_row(implementation: str, samples: list[float]) -> dict[str, Any]:
    s = harness.summarize(samples)
    return {"implementation": implementation, "median_s": s["median"], "p20_s": s["p20"], "p80_s": s["p80"],
            "min_s": s["min"], "times_s": [round(t, 4) for t in samples]}


def run_metrics(cfg: MetricsConfig) -> dict[str, Any]:
    """Time ``evaluate(top3="both")`` (``repeats`` runs) and the reference (once); check they agree."""
    logits, labels = random_problem(cfg.n, cfg.c, cfg.seed)
    box: dict[str, Any] = {}
    timing = harness.time_calls(lambda: box.update(fast=evaluate(logits, labels, top3="both")),
                                warmup=0, reps=cfg.repeats)
    fast = box["fast"]
    probs = sigmoid(logits, "float64")   # the srn convention's sigmoid (replication.metrics)
    start = time.perf_counter()
    ref = reference_evaluate(probs, labels)
    ref_time = time.perf_counter() - start
    diff = max(abs(fast[k] - ref[k]) for k in ref)
    if sorted(fast) != sorted(ref) or not diff <= 1e-6:
        raise ReplicationError(f"metrics benchmark: vectorised and reference results differ (max |Δ| = {diff})")
    median = harness.percentile(timing.samples, 50)
    conditions = {"images": cfg.n, "classes": cfg.c, "seed": cfg.seed, "repeats": cfg.repeats, "convention": "srn",
                  "top3": "both", "scores": "float32 logits, sigmoid in float64",
                  "labels_per_image": round(float(labels.sum(1).mean()), 3)}
    rows = [_timing_row("vectorised", timing.samples), _timing_row("python-reference", [ref_time])]
    return harness.record("metrics", harness.machine_info("cpu"), conditions, rows,
                          speedup=round(ref_time / median, 1), goal_s=1.0, meets_goal=median < 1.0,
                          max_abs_diff_percent=diff, metrics=fast)
