"""``spl gan curve``: sample quality at each kept checkpoint of GAN runs (issue #12; docs/gan.md#quality-curves).

A GAN run trained with ``keep_every`` N (``spl gan train --keep-every N``) keeps
``checkpoints/iter-NNNNNNN.pt`` every N iterations and lists them with the cumulative training CPU
and wall seconds in ``checkpoints/index.json`` (:mod:`gan_tf_port.train`). For each kept checkpoint
this module measures the samples with :func:`replication.gan.quality_step.gan_quality` (cached: a
``quality-iter-NNNNNNN.json`` of the same request that is newer than the checkpoint and the
classifier's ``model.pt`` is read instead), writes ``curve.json`` in each run directory, and draws
FD, KID, precision and recall against iterations and against CPU seconds, all runs in one figure
(:func:`replication.report.plots.plot_quality_curves`).

Layer 6 (docs/architecture.md): it calls :mod:`replication.gan.quality_step` (layer 5), and a module may
not import another group of its own layer.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gan_tf_port.train import KEPT_DIR, KEPT_INDEX, read_kept_index
from replication.console.progress import progress_on
from replication.errors import ConfigError, ShardError
from replication.gan.quality_step import DEFAULT_N, gan_quality, quality_path
from replication.io_utils import atomic_write_json, check_output_path
from replication.training.checkpoint import MODEL

log = logging.getLogger(__name__)

CURVE = "curve.json"
FIGURE = "curve.png"
#: The measures of a curve row taken from ``quality-*.json`` (besides the generated label statistics).
MEASURES = ("fd", "kid", "kid_std", "precision", "recall")


def kept_checkpoints(run: str | Path) -> tuple[dict, list[dict]]:
    """The run's kept-checkpoint index and its entries (``iteration``, ``cpu_s``, ``wall_s``, ``path``).

    Raises :class:`ShardError` naming the index when it is unreadable, when it lists no checkpoint
    (the run was not trained with ``keep_every``) or when a listed file is missing.
    """
    run = Path(run)
    path = run / KEPT_DIR / KEPT_INDEX
    try:
        index = read_kept_index(run)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardError(f"{path}: unreadable ({e})") from None
    entries = sorted(index.get("kept") or [], key=lambda e: e["iteration"])
    if not entries:
        raise ShardError(f"{path}: no kept checkpoints; train {run} with --keep-every N (set keep_every=N)")
    out = []
    for e in entries:
        ckpt = run / KEPT_DIR / e["file"]
        if not ckpt.is_file():
            raise ShardError(f"{ckpt}: listed in {path} but missing")
        out.append({"iteration": int(e["iteration"]), "cpu_s": float(e["cpu_s"]), "wall_s": float(e["wall_s"]),
                    "path": ckpt})
    return index, out


def cached_quality(run: Path, ckpt: Path, classifier: Path, n: int, seed: int, batch: int) -> dict | None:
    """The ``quality-<stem>.json`` of this exact request when it is newer than its inputs, else None."""
    path = quality_path(run, ckpt)
    try:
        q = json.loads(path.read_text(encoding="utf-8"))
        stale = path.stat().st_mtime < max(os.stat(ckpt).st_mtime, os.stat(classifier / MODEL).st_mtime)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    same = (q.get("checkpoint") == str(ckpt.resolve()) and q.get("classifier") == str(classifier.resolve())
            and q.get("n_generated") == n and q.get("seed") == seed and q.get("batch") == batch)
    return q if same and not stale else None


def _row(entry: dict, q: dict) -> dict:
    return {"iteration": entry["iteration"], "cpu_s": entry["cpu_s"], "wall_s": entry["wall_s"],
            "checkpoint": entry["path"].name, **{k: q[k] for k in MEASURES},
            "labels": q["labels"]["generated"]}


def gan_curve(runs: Sequence[str | Path], classifier: str | Path, n: int = DEFAULT_N, *,
              out: str | Path | None = None, seed: int = 0, batch: int = 256, device: str | None = None,
              progress: bool = True) -> dict[Path, dict[str, Any]]:
    """Quality curves of the GAN ``runs`` in the features of the classifier run ``classifier``.

    For every kept checkpoint of every run: :func:`gan_quality` with ``n`` samples (or its cached
    ``quality-<stem>.json``). Writes ``curve.json`` in each run directory (one row per kept
    checkpoint: iteration, cpu_s, wall_s, fd, kid, kid_std, precision, recall, generated label
    statistics) and the figure ``out`` (default: ``curve.png`` in the first run directory).
    Returns ``{run: curve}``.
    """
    runs, classifier = [Path(r) for r in runs], Path(classifier)
    if not runs:
        raise ConfigError("gan curve: give at least one --run")
    if len({r.resolve() for r in runs}) != len(runs):
        raise ConfigError("gan curve: a run is given twice")
    fig = Path(out) if out is not None else runs[0] / FIGURE
    check_output_path(fig, *(("the GAN run directory", r) for r in runs), ("the classifier run", classifier),
                      may_lie_inside=True)
    plan = [(run, *kept_checkpoints(run)) for run in runs]  # every index is checked before any work
    bar = tqdm(total=sum(len(e) for _, _, e in plan), desc="gan curve", unit="ckpt", disable=not progress_on(progress))
    curves: dict[Path, dict[str, Any]] = {}
    try:
        for run, index, entries in plan:
            rows, arch = [], None
            for e in entries:
                bar.set_postfix_str(f"{run.name} iteration {e['iteration']}")
                q = cached_quality(run, e["path"], classifier, n, seed, batch)
                if q is None:
                    q = gan_quality(run, classifier, n=n, checkpoint=e["path"], seed=seed, batch=batch,
                                    device=device)
                arch = q["arch"]
                rows.append(_row(e, q))
                bar.update(1)
            if index.get("timed_from"):
                log.warning("%s: training time counted from iteration %d on only", run, index["timed_from"])
            curve = {"gan_run": str(run.resolve()), "arch": arch, "classifier": str(classifier.resolve()), "n": n,
                     "seed": seed, "batch": batch, "timed_from": int(index.get("timed_from", 0)),
                     "cpu_seconds": "process CPU time of training (all threads), summed across resumes",
                     "rows": rows}
            atomic_write_json(run / CURVE, curve)
            curves[run] = curve
            log.info("%s: %d checkpoints → %s", run, len(rows), run / CURVE)
    finally:
        bar.close()
    _plot(curves, fig)
    return curves


def _plot(curves: dict[Path, dict[str, Any]], fig: Path) -> Path:
    """All runs' curves in one figure (labels: architecture and run folder)."""
    from replication.report.plots import plot_quality_curves  # loads Matplotlib: only when a figure is drawn

    series = {f"{c['arch']} ({run.name})": {k: [r[k] for r in c["rows"]]
                                             for k in ("iteration", "cpu_s", "fd", "kid", "precision", "recall")}
              for run, c in curves.items()}
    n = next(iter(curves.values()))["n"]
    return plot_quality_curves(series, fig, title=f"GAN sample quality ({n} samples, classifier features)")


__all__ = ["CURVE", "FIGURE", "cached_quality", "gan_curve", "kept_checkpoints"]
