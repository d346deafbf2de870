"""Writing a table's outputs: ``<out>/<name>.md`` (the report page), ``.csv``, ``.tex`` and the figures.

:func:`render_spec` is ``spl tables render`` without the printing: load the table
(:func:`replication.report.table.load_table`) and the report (:func:`replication.report.page.load_report`)
from the run directories (one seed set of them with ``seeds``), then :func:`write_table`. Outputs:
``<name>.md``, ``.csv``, ``.tex`` (:mod:`replication.report.formats`), ``<name>_map.png``,
``<name>_delta.png`` and, with λ rows, ``<name>_lambda.png`` (:mod:`replication.report.figures`), and
the run-directory images copied into ``<name>_files/``. :func:`reproduction_report` is ``spl tables
reproduce`` without the writing: every verdict compared between seed sets (issue #19).
"""
from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from replication.errors import ConfigError
from replication.experiments.runner import train_schedule
from replication.experiments.spec import ExperimentSpec
from replication.io_utils import atomic_write, atomic_write_text
from replication.report.figures import plot_delta, plot_lambda, plot_map
from replication.report.formats import FORMATS, FORMATTERS
from replication.report.page import Report, format_report, load_report
from replication.report.statistics import all_verdicts, check_seed_sets, reproduction_markdown
from replication.report.table import Table, collect_results, load_table, metric_by_seed, table_seeds
from replication.training.config import ITERATIONS


def _copy(src: Path, dst: Path) -> Path:
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))
    return dst



def write_table(table: Table, out_dir: str | Path = "tables/out", formats: Iterable[str] = FORMATS, *,
                plot: bool = True, report: Report | None = None) -> dict[str, Path]:
    """Write ``out_dir/<name>.<fmt>`` for each format and the figures; returns the paths by kind.

    Figures (with ``plot``): ``<name>_map.png``, ``<name>_delta.png`` (:func:`plot_delta`) and, with λ
    rows, ``<name>_lambda.png``. The Markdown file is the report page (:func:`format_report`); with a
    ``report`` its images are copied into ``<name>_files/`` (keys ``real/<g>``, ``samples/<g>``,
    ``gallery/<source>`` in the result).
    """
    formats = tuple(formats)
    for f in formats:
        if f not in FORMATTERS:
            raise ConfigError(f"unknown table format {f!r}; expected one of {FORMATS}")
    out_dir = Path(out_dir)
    name = table.spec.name
    written: dict[str, Path] = {}
    if plot and "mAP" in table.spec.columns:
        written["png"] = plot_map(table, out_dir / f"{name}_map.png")
        delta = plot_delta(table, out_dir / f"{name}_delta.png")
        if delta is not None:
            written["delta"] = delta
        lam = plot_lambda(table, out_dir / f"{name}_lambda.png")
        if lam is not None:
            written["lambda"] = lam
    images: dict[tuple[str, str], str] = {}
    if report is not None and "md" in formats:
        files = out_dir / f"{name}_files"
        for what, found in (("real", report.real_grids), ("samples", report.sample_grids),
                            ("gallery", report.galleries)):
            for src, path in found.items():
                dst = _copy(path, files / f"{src}-{what}.png")
                written[f"{what}/{src}"] = dst
                images[(what, src)] = f"{files.name}/{dst.name}"
    for f in formats:
        path = out_dir / f"{name}.{f}"
        if f == "md":
            links = {k: p.name for k, p in written.items() if "/" not in k}
            links.update({k: f"{name}.{k}" for k in ("csv", "tex") if k in formats})
            text = format_report(table, report, links, images)
        else:
            text = FORMATTERS[f](table)
        atomic_write_text(path, text)
        written[f] = path
    return written


def render_spec(spec: ExperimentSpec, runs: str | Path = "runs", out_dir: str | Path = "tables/out",
                formats: Iterable[str] = FORMATS, *, plot: bool = True, seeds: int | None = None,
                seed_start: int = 0) -> dict[str, Path]:
    """Render ``spec`` from the run directories under ``runs`` into ``out_dir``: the table and its report page
    (:func:`load_table`, :func:`load_report`, :func:`write_table`). ``seeds``: only the seed set
    ``seed_start`` … ``seed_start + seeds − 1`` (None: every seed found, planned from ``seed_start``)."""
    chosen = None if seeds is None else range(seed_start, seed_start + seeds)
    table = load_table(spec, runs, chosen)
    n = table_seeds(table) if seeds is None else seeds
    return write_table(table, out_dir, formats, plot=plot, report=load_report(spec, runs, n, seed_start))


def reproduction_report(spec: ExperimentSpec, runs: str | Path, seeds: int, seed_sets: Iterable[int]) -> str:
    """The reproduction check of issue #19 (Markdown): every verdict of the report on each seed set (``seeds``
    seeds from each start in ``seed_sets``, all under one ``runs``), compared with the first set's
    (:func:`replication.report.statistics.all_verdicts`, :func:`~replication.report.statistics.compare_verdicts`).
    A verdict that differs between two sets is unstable."""
    sets = check_seed_sets(spec.path, list(seed_sets), seeds)
    iters = train_schedule(spec) == ITERATIONS  # the controls worded as the report words them
    verdicts = {s: all_verdicts(metric_by_seed(collect_results(spec, runs, r)), spec.rows, iteration_schedule=iters)
                for s, r in sets.items()}
    return reproduction_markdown(spec.title, verdicts, seeds)



__all__ = ["write_table", "render_spec", "reproduction_report"]
