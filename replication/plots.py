"""Figures written as files: a per-class AP bar chart, loss / mAP curves, GAN quality curves and mAP vs λ.

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
