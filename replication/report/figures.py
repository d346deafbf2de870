"""The table's figures: mAP per row beside the paper's, Δ mAP per row with its CI, and mAP against λ.

* ``<name>_map.png`` (:func:`plot_map`): mAP per row, ours (with std error bars) next to the paper's;
* ``<name>_delta.png`` (:func:`plot_delta`): the paired Δ mAP vs the baseline of each row with its
  95% CI (:func:`replication.report.plots.plot_delta_map`);
* ``<name>_lambda.png`` (:func:`plot_lambda`), with ``@λ`` control rows only: mAP against the
  generated-image weight λ per rule × source, the baseline as a band.

The series (:func:`delta_series`, :func:`lambda_series`) are pure functions of the
:class:`~replication.report.table.Table`; Matplotlib is loaded only when a figure is drawn.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from replication.errors import ConfigError
from replication.io_utils import atomic_write
from replication.report.table import DELTA_METRIC, Cell, Table
from replication.vocabulary import BASELINE, parse_row_id, row_label


def plot_map(table: Table, path: str | Path) -> Path:
    """Bar chart of mAP per row, ours (with std error bars) next to the paper's, saved as PNG."""
    import matplotlib  # heavy: Matplotlib is loaded only when the figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in table.rows if not r.literature]
    if "mAP" not in table.spec.columns:
        raise ConfigError(f"{table.spec.path}: the mAP figure needs an 'mAP' column")
    j = table.spec.columns.index("mAP")
    ours = np.array([np.nan if r.cells[j].ours is None else r.cells[j].ours for r in rows])
    err = np.array([0.0 if r.cells[j].std is None else r.cells[j].std for r in rows])
    paper = np.array([np.nan if r.cells[j].paper is None else r.cells[j].paper for r in rows])
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    ax.barh(y - 0.2, ours, 0.4, xerr=err, label=f"ours ({table.spec.dataset.source})", color="tab:blue")
    ax.barh(y + 0.2, paper, 0.4, label=f"paper ({table.spec.paper.caption})", color="tab:gray")
    ax.set_yticks(y, [r.label for r in rows])
    ax.invert_yaxis()
    finite = np.concatenate([ours[np.isfinite(ours)], paper[np.isfinite(paper)]])
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        ax.set_xlim(max(0.0, lo - 5), min(100.0, hi + 3))
    ax.set_xlabel("mAP (%)")
    ax.set_title(table.spec.title, fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 1.0 / (len(rows) + 3)))
    out = Path(path)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return out


def lambda_series(table: Table) -> tuple[dict[str, tuple[list[float], list[float], list[float]]],
                                          tuple[float, float] | None]:
    """The λ-sensitivity data of a table: ``{rule × source label: (λs, mAP means, mAP stds)}`` and the baseline.

    One series per rule × image source that has at least one ``@λ`` row; its plain row (if it has
    results) is the point λ = 1. Errors are the sample std over seeds (0 with one seed). The
    baseline is ``(mean, std)`` of its mAP, or None. Empty without ``@λ`` rows or an mAP column.
    """
    if DELTA_METRIC not in table.spec.columns:
        return {}, None
    j = table.spec.columns.index(DELTA_METRIC)
    points: dict[tuple[str, str], dict[float, Cell]] = {}
    weighted: set[tuple[str, str]] = set()
    baseline = None
    for r in table.rows:
        if r.literature:
            continue
        rid = parse_row_id(r.row)
        cell = r.cells[j]
        if r.row == BASELINE and cell.ours is not None:
            baseline = (cell.ours, cell.std or 0.0)
        if rid.source is None or cell.ours is None:
            continue
        if rid.weight is not None:
            weighted.add((rid.method, rid.source))
        points.setdefault((rid.method, rid.source), {})[1.0 if rid.weight is None else rid.weight] = cell
    series = {}
    for key in sorted(weighted, key=lambda k: (k[1], k[0])):
        lams = sorted(points[key])
        series[row_label(f"{key[0]}/{key[1]}", table.gen_labels)] = (
            lams, [points[key][x].ours for x in lams], [points[key][x].std or 0.0 for x in lams])
    return series, baseline


def plot_lambda(table: Table, path: str | Path) -> Path | None:
    """``<name>_lambda.png``: mAP vs λ per rule × source with the baseline as a band; None without ``@λ`` rows."""
    series, baseline = lambda_series(table)
    if not series:
        return None
    from replication.report.plots import plot_lambda_sensitivity  # loads Matplotlib: only when the figure is drawn

    return plot_lambda_sensitivity(series, path, baseline=baseline,
                                   title=f"{table.spec.title}: generated-image weight λ (beyond the paper)")


def delta_series(table: Table) -> tuple[list[str], list[float], list[float | None], list[float | None]]:
    """The data of the Δ figure: labels, mean paired Δ mAP and its 95% CI of every row that has a Δ, in table order."""
    rows = [r for r in table.rows if not r.literature and r.delta is not None]
    return ([r.shown_label for r in rows], [r.delta.mean for r in rows], [r.delta.low for r in rows],
            [r.delta.high for r in rows])


def plot_delta(table: Table, path: str | Path) -> Path | None:
    """``<name>_delta.png``: Δ mAP vs the baseline per row with its 95% CI; None when no row has a Δ."""
    labels, means, lows, highs = delta_series(table)
    if not table.has_delta or not labels:
        return None
    from replication.report.plots import plot_delta_map  # loads Matplotlib: only when the figure is drawn

    return plot_delta_map(labels, means, lows, highs, path,
                          title=f"{table.spec.title}: paired Δ {DELTA_METRIC} vs the baseline, 95% CI")



__all__ = ["plot_map", "lambda_series", "plot_lambda", "delta_series", "plot_delta"]
