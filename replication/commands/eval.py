"""``spl eval``: the paper's metric columns from a predictions ``.npz``, as a table, JSON and a plot.

The ``.npz`` holds ``logits`` (N×C float; or ``probs`` for probabilities) and ``labels`` (N×C, {0,1}
or WIDER's {−1,0,1}), optionally ``class_names`` (C strings). Example::

    spl eval --preds runs/coco/predict-ab12/preds.npz --convention srn --top3 both \\
        --json metrics.json --plot per_class_ap.png
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import click
import numpy as np

from replication.inference.predictions import load_predictions
from replication.io_utils import atomic_write_json
from replication.metrics import MetricInputError, MetricsResult, evaluate_full
from replication.vocabulary import BASE_METRICS, CONVENTIONS, TOP3_CHOICES


def _parse_overrides(items: tuple[str, ...]) -> dict[str, Any]:
    """``switch=value`` strings to keyword overrides (``threshold`` becomes a float)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MetricInputError(f"--set {item!r}: expected SWITCH=VALUE, e.g. ap=noninterpolated")
        if key == "threshold":
            try:
                out[key] = float(value)
            except ValueError:
                raise MetricInputError(f"--set {item!r}: threshold must be a number") from None
        else:
            out[key] = value
    return out


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def result_to_json(result: MetricsResult, *, preds: Path, n: int, class_names: list[str]) -> dict[str, Any]:
    """JSON-ready record: metrics (percent, unrounded), settings and per-class values (NaN → null)."""
    return {
        "preds": str(preds),
        "images": n,
        "classes": len(class_names),
        "convention": dataclasses.asdict(result.convention),
        "top3": result.top3,
        "wider": result.wider,
        "metrics": {k: _finite_or_none(v) for k, v in result.summary.items()},
        "per_class": {
            "class_names": class_names,
            **{k: [_finite_or_none(float(v)) for v in np.asarray(a, dtype=np.float64)]
               for k, a in result.per_class.items()},
        },
    }


def format_table(summary: dict[str, float]) -> str:
    """The paper's layout: one row for all predictions and one per Top-3 rule, values ×100 to one decimal."""
    columns = list(BASE_METRICS)
    rows: dict[str, dict[str, float]] = {}
    for key, value in summary.items():
        prefix, _, name = key.rpartition("/")
        rows.setdefault(prefix or "all", {})[name] = value
    width = max(len(r) for r in rows)
    lines = [" " * width + "".join(f"{c:>8}" for c in columns)]
    for row, values in rows.items():
        cells = "".join(f"{values[c]:8.1f}" if c in values else f"{'-':>8}" for c in columns)
        lines.append(f"{row:<{width}}{cells}")
    return "\n".join(lines)


@click.command(name="eval")
@click.option("--preds", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help=".npz with logits (or probs), labels and optionally class_names.")
@click.option("--convention", type=click.Choice(list(CONVENTIONS)), default="srn", show_default=True,
              help="Metric convention preset (see docs/metrics.md).")
@click.option("--top3", type=click.Choice(list(TOP3_CHOICES)), default="pure",
              show_default=True, help="Top-3 rule for the top3/… columns.")
@click.option("--set", "overrides", multiple=True, metavar="SWITCH=VALUE",
              help="Override one convention switch, e.g. --set ap=noninterpolated (repeatable).")
@click.option("--labels", "label_kind", type=click.Choice(["auto", "binary", "wider"]), default="auto",
              show_default=True, help="Label kind; auto = WIDER when any label is -1.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Write metrics JSON here.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a per-class AP bar chart here (.png/.pdf/.svg).")
def command(preds: Path, convention: str, top3: str, overrides: tuple[str, ...], label_kind: str,
            json_out: Path | None, plot_out: Path | None) -> None:
    """Compute mAP, F1/P/R (per class and overall) and Top-3 metrics from a predictions .npz."""
    loaded = load_predictions(preds)
    scores, labels, names, scores_are = loaded.scores, loaded.labels, loaded.class_names, loaded.scores_are
    wider = {"auto": "auto", "binary": False, "wider": True}[label_kind]
    try:
        result = evaluate_full(scores, labels, convention=convention, top3=top3, scores_are=scores_are,
                               wider=wider, class_names=names, **_parse_overrides(overrides))
    except MetricInputError as e:
        raise MetricInputError(f"{preds}: {e}") from None
    names = names or [str(i) for i in range(labels.shape[1])]
    click.echo(f"{preds}: {labels.shape[0]} images, {labels.shape[1]} classes, convention {convention}"
               f"{' (WIDER labels)' if result.wider else ''}, top-3 {result.top3}")
    click.echo(format_table(result.summary))
    if json_out is not None:
        atomic_write_json(json_out, result_to_json(result, preds=preds, n=labels.shape[0], class_names=names))
        click.echo(f"wrote {json_out}")
    if plot_out is not None:
        from replication.report.plots import plot_per_class_ap  # loads Matplotlib: only when --plot is given

        plot_per_class_ap(result.per_class["AP"], names, plot_out,
                          title=f"Per-class AP ({convention}), mAP {result.summary['mAP']:.1f}")
        click.echo(f"wrote {plot_out}")
