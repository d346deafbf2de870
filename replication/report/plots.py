"""Figures written as files: a per-class AP bar chart, loss / mAP curves, GAN quality curves, mAP vs λ and
the paired Δ mAP per row with its confidence interval.

Matplotlib's object API with the Agg canvas (no pyplot, no global state, no display needed). Files
are written atomically; the format follows the file suffix (``.png`` by default, ``.pdf``, ``.svg``).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from replication.errors import ReplicationError
from replication.io_utils import atomic_write

_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


class PlotInputError(ReplicationError, ValueError):
    """Data given to a plot function is empty or inconsistent (one-line message)."""


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise PlotInputError(f"{path}: unsupported figure format (use {', '.join(_FORMATS)})")
    FigureCanvasAgg(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight"))
    return path


def plot_per_class_ap(ap: Mapping[str, float] | Sequence[float] | np.ndarray,
                      class_names: Sequence[str] | None, path: str | os.PathLike,
                      title: str | None = None) -> Path:
    """Horizontal bar chart of per-class AP, one bar per class in class order, with the mean.

    Args:
        ap: per-class AP as a sequence (with ``class_names``) or a ``{class name: AP}`` mapping
            (``class_names`` may then be None). Values in percent, or fractions when every finite
            value is ≤ 1 (shown ×100). NaN (a class without positives) is drawn as "n/a" and left
            out of the mean line.
        class_names: one name per class, or None (mapping input, or "0", "1", … for a sequence).
        path: output file (``.png``, ``.pdf`` or ``.svg``), written atomically.
        title: figure title; defaults to "Per-class AP".

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if isinstance(ap, Mapping):
        names = list(ap.keys()) if class_names is None else list(class_names)
        if class_names is not None and set(names) != set(ap.keys()):
            raise PlotInputError("plot_per_class_ap: class_names differ from the keys of the AP mapping")
        values = np.array([ap[name] for name in names], dtype=np.float64)
    else:
        values = np.asarray(ap, dtype=np.float64).ravel()
        names = [str(i) for i in range(values.size)] if class_names is None else [str(n) for n in class_names]
    if values.size == 0:
        raise PlotInputError("plot_per_class_ap: no classes to plot")
    if len(names) != values.size:
        raise PlotInputError(f"plot_per_class_ap: {len(names)} class names for {values.size} AP values")
    finite = np.isfinite(values)
    if finite.any() and np.nanmax(np.abs(values[finite])) <= 1.0:
        values = values * 100
    c = values.size
    fig = Figure(figsize=(6.5, max(2.5, 0.6 + 0.22 * c)))
    ax = fig.add_subplot()
    y = np.arange(c)
    ax.barh(y, np.where(finite, values, 0.0), color="tab:blue", height=0.7)
    for i in np.flatnonzero(~finite):
        ax.text(1, i, "n/a (no positives)", va="center", fontsize=7, color="tab:red")
    if finite.any():
        mean = float(values[finite].mean())
        ax.axvline(mean, color="tab:orange", linestyle="--", linewidth=1, label=f"mean {mean:.1f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, names, fontsize=7 if c > 30 else 9)
    ax.invert_yaxis()  # first class at the top
    ax.set_xlim(0, 100)
    ax.set_xlabel("AP (%)")
    ax.set_title(title or "Per-class AP")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def _series(name: str, data) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(data, tuple) and len(data) == 2:
        x, y = (np.asarray(a, dtype=np.float64).ravel() for a in data)
    else:
        y = np.asarray(data, dtype=np.float64).ravel()
        x = np.arange(1, y.size + 1, dtype=np.float64)
    if y.size == 0:
        raise PlotInputError(f"plot_curves: series {name!r} is empty")
    if x.size != y.size:
        raise PlotInputError(f"plot_curves: series {name!r} has {x.size} x values and {y.size} y values")
    return x, y


def group_series(names: Sequence[str]) -> dict[str, list[str]]:
    """Panels of :func:`plot_curves`: series whose names end in the same word after the last "/"
    share one panel (``train/loss`` and ``val/loss`` → ``loss``; ``test/mAP`` → ``mAP``)."""
    panels: dict[str, list[str]] = {}
    for name in names:
        panels.setdefault(name.rsplit("/", 1)[-1], []).append(name)
    return panels


def plot_curves(history: Mapping[str, Sequence[float] | tuple[Sequence[float], Sequence[float]]],
                path: str | os.PathLike, title: str | None = None, xlabel: str = "epoch") -> Path:
    """Line plots of training curves (loss, mAP, …), one panel per quantity.

    Args:
        history: ``{name: values}`` where values is a list of y (plotted at x = 1, 2, …) or an
            ``(x, y)`` pair of equal-length sequences. Names ending in the same word after the last
            "/" share a panel (see :func:`group_series`); NaN values leave gaps.
        path: output file (``.png``, ``.pdf`` or ``.svg``), written atomically.
        title: figure title (optional).
        xlabel: x-axis label of every panel.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not history:
        raise PlotInputError("plot_curves: history is empty")
    series = {name: _series(name, data) for name, data in history.items()}
    panels = group_series(list(series))
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(5.0 * cols, 3.4 * rows))
    for k, (quantity, names) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        for name in names:
            x, y = series[name]
            ax.plot(x, y, marker="o" if x.size <= 30 else None, markersize=3, label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(quantity)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


#: Panels of :func:`plot_quality_curves` (key in each curve → axis label) and its two x axes.
QUALITY_PANELS = {"fd": "Fréchet distance", "kid": "KID", "precision": "precision", "recall": "recall"}
QUALITY_X = {"iteration": "iteration", "cpu_s": "training CPU seconds"}


def plot_quality_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | os.PathLike,
                        title: str | None = None) -> Path:
    """GAN sample quality against training progress: FD, KID, precision and recall (rows) against
    iterations and against training CPU seconds (columns), one line per run.

    Args:
        curves: ``{run label: {"iteration": [...], "cpu_s": [...], "fd": [...], "kid": [...],
            "precision": [...], "recall": [...]}}``, equal-length sequences per run (NaN leaves a gap).
        path: output file (``.png``, ``.pdf`` or ``.svg``), written atomically.
        title: figure title (optional).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not curves:
        raise PlotInputError("plot_quality_curves: no runs to plot")
    data: dict[str, dict[str, np.ndarray]] = {}
    for label, curve in curves.items():
        missing = [k for k in (*QUALITY_X, *QUALITY_PANELS) if k not in curve]
        if missing:
            raise PlotInputError(f"plot_quality_curves: run {label!r} lacks {', '.join(missing)}")
        data[label] = {k: np.asarray(curve[k], dtype=np.float64).ravel() for k in (*QUALITY_X, *QUALITY_PANELS)}
        sizes = {v.size for v in data[label].values()}
        if sizes == {0} or len(sizes) != 1:
            raise PlotInputError(f"plot_quality_curves: run {label!r} has empty or unequal series")
    fig = Figure(figsize=(10.0, 2.6 * len(QUALITY_PANELS)))
    for r, (key, ylabel) in enumerate(QUALITY_PANELS.items()):
        for c, (xkey, xlabel) in enumerate(QUALITY_X.items()):
            ax = fig.add_subplot(len(QUALITY_PANELS), len(QUALITY_X), r * len(QUALITY_X) + c + 1)
            for label, d in data.items():
                ax.plot(d[xkey], d[key], marker="o" if d[key].size <= 30 else None, markersize=3, label=label)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if key in ("precision", "recall"):
                ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            if r == 0 and c == 0:
                ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_lambda_sensitivity(series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
                            path: str | os.PathLike, *, baseline: tuple[float, float] | None = None,
                            title: str | None = None) -> Path:
    """mAP against the generated-image weight λ: one line with error bars per series, the baseline as a band.

    Args:
        series: ``{label: (λs, mAP means, errors)}`` (e.g. ``"Our SPL (DCGAN)"`` → λ 0.1, 0.3, 1),
            equal-length sequences, λ > 0; drawn on a logarithmic λ axis with a tick at every λ.
        path: output file (``.png``, ``.pdf`` or ``.svg``), written atomically.
        baseline: ``(mean, half-width)`` of the baseline's mAP: a horizontal line and a shaded band.
        title: figure title (optional).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not series:
        raise PlotInputError("plot_lambda_sensitivity: no series to plot")
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    ticks: set[float] = set()
    for label, (lams, means, errs) in series.items():
        x, y, e = (np.asarray(a, dtype=np.float64).ravel() for a in (lams, means, errs))
        if x.size == 0 or not x.size == y.size == e.size or (x <= 0).any():
            raise PlotInputError(f"plot_lambda_sensitivity: series {label!r} is empty, unequal or has λ ≤ 0")
        ax.errorbar(x, y, yerr=e, marker="o", markersize=4, capsize=3, label=label)
        ticks.update(float(v) for v in x)
    if baseline is not None:
        mean, half = baseline
        ax.axhspan(mean - half, mean + half, color="tab:gray", alpha=0.2, linewidth=0)
        ax.axhline(mean, color="tab:gray", linestyle="--", linewidth=1, label="baseline (real images only)")
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])
    ax.minorticks_off()
    ax.set_xlabel("λ, the loss weight of generated images")
    ax.set_ylabel("mAP (%), mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def study_gain_figure(series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]]],
                      *, ylabel: str = "Δ mAP vs baseline (points)", title: str | None = None) -> Figure:
    """The figure of :func:`plot_study_gain` (not saved): one errorbar line per series, a zero line, log N axis.

    Each line keeps x = N exactly; lines are nudged apart by a few points on the canvas only. A point
    with NaN bounds (one seed: no interval) is drawn without a bar.
    """
    from matplotlib.transforms import ScaledTranslation  # Matplotlib (heavy): imported where the nudge is drawn

    if not series:
        raise PlotInputError("plot_study_gain: no series to plot")
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    ticks: set[float] = set()
    ys: list[float] = [0.0]
    k = len(series)
    for i, (label, (ns, means, lows, highs)) in enumerate(series.items()):
        x, y, lo, hi = (np.asarray(a, dtype=np.float64).ravel() for a in (ns, means, lows, highs))
        if x.size == 0 or not x.size == y.size == lo.size == hi.size or (x <= 0).any():
            raise PlotInputError(f"plot_study_gain: series {label!r} is empty, unequal or has N ≤ 0")
        bars = np.vstack([np.nan_to_num(y - lo, nan=0.0), np.nan_to_num(hi - y, nan=0.0)])
        if (bars < 0).any():
            raise PlotInputError(f"plot_study_gain: series {label!r} has a mean outside its interval")
        shift = ScaledTranslation((i - (k - 1) / 2) * 4 / 72, 0, fig.dpi_scale_trans)
        ax.errorbar(x, y, yerr=bars, marker="o", markersize=4, capsize=3, label=label, transform=ax.transData + shift)
        ticks.update(float(v) for v in x)
        ys += [float(v) for v in np.concatenate([y, y - bars[0], y + bars[1]])]
    ax.axhline(0.0, color="tab:gray", linestyle="--", linewidth=1, label="no gain (Δ = 0)")
    ax.set_xscale("log")
    # limits by hand: the nudged lines are not counted by Matplotlib's autoscaling
    ax.set_xlim(min(ticks) / 1.4, max(ticks) * 1.4)
    lo, hi = min(ys), max(ys)
    pad = 0.08 * (hi - lo) if hi > lo else 1.0
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(sorted(ticks), [f"{t:,.0f}" for t in sorted(ticks)])
    ax.minorticks_off()
    ax.set_xlabel("N, labelled training images (log scale)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_study_gain(series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]]],
                    path: str | os.PathLike, *, ylabel: str = "Δ mAP vs baseline (points)",
                    title: str | None = None) -> Path:
    """Gain against the labelled-set size N: Δ mAP vs N on a log axis, one line per row with CI bars, a zero line.

    Args:
        series: ``{label: (Ns, Δ means, CI lows, CI highs)}``, equal-length sequences, N > 0; NaN bounds
            draw the point without a bar.
        path: output file (``.png``, ``.pdf`` or ``.svg``), written atomically.
        ylabel, title: axis label and figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return _save(study_gain_figure(series, ylabel=ylabel, title=title), path)


#: Bar colours of :func:`plot_delta_map` by where the confidence interval lies (no interval: one seed).
DELTA_COLORS = {"above": "tab:green", "below": "tab:red", "contains": "tab:gray", "none": "lightgray"}


def delta_map_figure(labels: Sequence[str], means: Sequence[float], lows: Sequence[float | None],
                     highs: Sequence[float | None], *, title: str | None = None,
                     xlabel: str = "Δ mAP vs baseline (points)") -> Figure:
    """The figure of :func:`plot_delta_map`, not saved (its axes hold the data: one bar per row, then the
    error bars of the rows that have an interval)."""
    n = len(labels)
    if n == 0:
        raise PlotInputError("plot_delta_map: no rows to plot")
    if not n == len(means) == len(lows) == len(highs):
        raise PlotInputError(f"plot_delta_map: {n} labels for {len(means)} means, {len(lows)} lows, {len(highs)} highs")
    m = np.asarray(means, dtype=np.float64)
    has = np.array([lo is not None and hi is not None for lo, hi in zip(lows, highs, strict=True)])
    lo = np.array([np.nan if v is None else v for v in lows], dtype=np.float64)
    hi = np.array([np.nan if v is None else v for v in highs], dtype=np.float64)
    if not np.isfinite(m).all() or (has & ~((lo <= m) & (m <= hi))).any():
        raise PlotInputError("plot_delta_map: every mean must be finite and inside its interval [low, high]")
    where = np.where(~has, "none", np.where(lo > 0, "above", np.where(hi < 0, "below", "contains")))
    fig = Figure(figsize=(6.5, 0.45 * n + 1.4))
    ax = fig.add_subplot()
    y = np.arange(n)
    ax.barh(y, m, 0.6, color=[DELTA_COLORS[w] for w in where])
    if has.any():
        ax.errorbar(m[has], y[has], xerr=np.vstack([m[has] - lo[has], hi[has] - m[has]]), fmt="none",
                    ecolor="black", elinewidth=1.2, capsize=4, label="95% CI (paired t over seeds)")
        ax.legend(fontsize=7, loc="best")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y, list(labels), fontsize=8)
    ax.invert_yaxis()  # first row at the top
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_delta_map(labels: Sequence[str], means: Sequence[float], lows: Sequence[float | None],
                   highs: Sequence[float | None], path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Paired Δ mAP of each row vs the baseline: one horizontal bar per row, with its 95% CI as an error bar.

    Args:
        labels: one name per row, drawn top to bottom.
        means: the mean paired difference of each row (points).
        lows, highs: its confidence interval; None for a row without one (a single paired seed:
            a bar, no error bar). Bars are green when the interval lies above 0, red below, gray
            when it contains 0, light gray without an interval.
        path: output file (``.png``, ``.pdf`` or ``.svg``), written atomically.
        title: figure title (optional).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return _save(delta_map_figure(labels, means, lows, highs, title=title), path)
