"""What a finished run leaves behind: predictions, metrics, history and plots (rank 0 only)."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from replication.data.shards import ShardSet
from replication.inference.predictions import write_preds
from replication.io_utils import atomic_write_json
from replication.metrics import evaluate_full

log = logging.getLogger(__name__)


def jsonable(obj: Any) -> Any:
    """Convert NumPy scalars/arrays and non-finite floats into JSON-safe values (NaN → null)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def evaluate_logits(logits: np.ndarray, test_set: ShardSet, convention: str, top3: str) -> tuple[dict, np.ndarray]:
    """(summary metrics of :func:`replication.metrics.evaluate`, per-class AP in percent) on the test set."""
    res = evaluate_full(
        logits, test_set.labels(), convention=convention, top3=top3, scores_are="logits",
        wider=test_set.label_kind == "wider", class_names=test_set.class_names,
    )
    return dict(res.summary), 100 * np.asarray(res.per_class["AP"], dtype=np.float64)


def write_outputs(out: Path, logits: np.ndarray, test_set: ShardSet, history: dict, curves: dict, *, convention: str,
                  top3: str, title: str) -> dict:
    """Write ``preds.npz``, ``metrics.json``, ``history.json``, ``curves.png``, ``per_class_ap.png``.

    Returns the metrics dict (the content of ``metrics.json``).
    """
    from replication.report.plots import plot_curves, plot_per_class_ap  # loads matplotlib: only when writing plots

    write_preds(out / "preds.npz", logits, test_set.labels(), test_set.keys(), test_set.class_names)
    metrics, ap = evaluate_logits(logits, test_set, convention, top3)
    metrics = jsonable(metrics)
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_json(out / "history.json", jsonable(history))
    plot_per_class_ap(ap, test_set.class_names, out / "per_class_ap.png", title=title)
    plot_curves(curves, out / "curves.png", title=title)
    log.info("test mAP %.2f (%d images) → %s", metrics.get("mAP", float("nan")), len(logits), out)
    return metrics
