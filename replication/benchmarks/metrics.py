"""``spl bench metrics``: the full SRN metric suite, vectorised vs a straightforward Python reference.

Both run in the same process on the same random scores (default 40,504×80, MS-COCO val's size):
``replication.metrics.evaluate(..., top3="both")`` against :func:`reference_evaluate`, a literal
per-class transcription of SRN's MATLAB (``AP_VOC.m`` with its loops, ``precision_recall_f1.m``)
plus a per-image Top-3 loop. The two results must agree (max |difference| ≤ 1e-6 percentage
points) or the benchmark fails; speed is recorded, never asserted. Goal: under 1 s on one core.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import numpy as np

from replication.errors import ReplicationError
from replication.io_utils import atomic_write_json
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


def run_metrics_benchmark(n: int = 40504, c: int = 80, seed: int = 0, repeats: int = 5) -> dict[str, Any]:
    """Time ``evaluate(top3="both")`` (median of ``repeats``) and the reference (once); check they agree."""
    logits, labels = random_problem(n, c, seed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fast = evaluate(logits, labels, top3="both")
        times.append(time.perf_counter() - start)
    probs = sigmoid(logits)
    start = time.perf_counter()
    ref = reference_evaluate(probs, labels)
    ref_time = time.perf_counter() - start
    diff = max(abs(fast[k] - ref[k]) for k in ref)
    if sorted(fast) != sorted(ref) or not diff <= 1e-6:
        raise ReplicationError(f"metrics benchmark: vectorised and reference results differ (max |Δ| = {diff})")
    median = statistics.median(times)
    return {
        "benchmark": "metrics",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "numpy": np.__version__},
        "conditions": {"images": n, "classes": c, "seed": seed, "repeats": repeats, "convention": "srn",
                       "top3": "both", "scores": "float32 logits, sigmoid in float32",
                       "labels_per_image": round(float(labels.sum(1).mean()), 3)},
        "results": [
            {"implementation": "vectorised", "median_s": round(median, 4), "min_s": round(min(times), 4),
             "times_s": [round(t, 4) for t in times]},
            {"implementation": "python-reference", "median_s": round(ref_time, 4), "min_s": round(ref_time, 4),
             "times_s": [round(ref_time, 4)]},
        ],
        "speedup": round(ref_time / median, 1),
        "goal_s": 1.0,
        "meets_goal": median < 1.0,
        "max_abs_diff_percent": diff,
        "metrics": fast,
    }


@click.command(name="metrics")
@click.option("--n", "n", type=int, default=40504, show_default=True, help="Images (rows).")
@click.option("--c", "c", type=int, default=80, show_default=True, help="Classes (columns).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True, help="Timed runs of the vectorised suite.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("benchmarks/results/metrics.json"), show_default=True)
@click.option("--quick", is_flag=True, help="500×20, one repeat (for tests).")
def command(n: int, c: int, seed: int, repeats: int, out: Path, quick: bool) -> None:
    """Full SRN metric suite (both Top-3 rules): vectorised vs Python reference, JSON result."""
    if quick:
        n, c, repeats = 500, 20, 1
    result = run_metrics_benchmark(n=n, c=c, seed=seed, repeats=repeats)
    atomic_write_json(out, result)
    for row in result["results"]:
        click.echo(f"{row['implementation']:>16}  {n}x{c}  median {row['median_s']:.4f} s")
    click.echo(f"speed-up {result['speedup']}x, max |diff| {result['max_abs_diff_percent']:.2e} pp; wrote {out}")
