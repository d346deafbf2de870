"""The study beyond the paper: the gain of SPL and smooth labels against the labelled-set size (issue #13).

A study spec (``tables/specs/study.yaml``) names a base table spec, the labelled-set sizes N and
the rows to compare against the baseline::

    name: study
    title: "..."
    base: demo.yaml                       # a table spec, relative to this file
    train_counts: [250, 500, 1000, 2000, 5000]
    rows: [spl/dcgan, smooth/dcgan]       # default: spl/<g> and smooth/<g> for every GAN g of the base rows
    seeds: 3                              # paired seeds per row (``--seeds`` overrides)

For each N the study derives one table spec from the base (:func:`derive_spec`): the same spec with
``dataset.train_count = N`` (always set, so N equal to the split's size is a subset of all its
records), the rows ``baseline`` plus the compared rows, and no gallery. Everything else, and hence
every step's key, is the base spec's: the GANs train on the N labelled images (as in the paper) and
each size is run by :func:`~replication.experiments.runner.run_experiment`, cached like every step,
so a base run at one of the sizes is reused and an interrupted study resumes.

Collecting (:func:`collect_study`) reads each derived spec's finished metrics with
:func:`~replication.tables.collect_results` (which keeps only results made with that spec's
fingerprint, so the sizes never mix) and computes, per N and compared row, the paired Δ mAP
(row − baseline, seed i with seed i) with its 95% t confidence interval and verdict by
:func:`~replication.statistics.paired_difference`, plus the baseline's mAP mean ± std per N.
:func:`write_study` writes ``<name>.md`` (conclusion, table, figure link), ``<name>.csv`` and
``<name>.png`` (Δ mAP against N, :func:`replication.plots.plot_study_gain`). The conclusion
(:func:`conclusion`) is one sentence generated from the verdicts.
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from replication import config as C
from replication.errors import ConfigError
from replication.experiments.runner import ExperimentResult, Plan, plan_experiment, run_experiment
from replication.experiments.spec import ExperimentSpec, load_spec
from replication.io_utils import atomic_write_text
from replication.statistics import BETTER, NOT_AVAILABLE, WORSE, PairedDiff, mean_std, paired_difference
from replication.tables import collect_results, metric_by_seed
from replication.vocabulary import BASELINE, GENERATORS, parse_row_id, row_label

KIND = "study spec"
#: The metric whose paired gain the study reports.
METRIC = "mAP"
#: The rules compared by default, for every GAN of the base spec's rows.
DEFAULT_RULES = ("spl", "smooth")
STUDY_KEYS = ("name", "title", "base", "train_counts", "rows", "seeds")


@dataclass(frozen=True)
class StudySpec:
    """A study: the base table spec, the labelled-set sizes, the rows compared with the baseline, the seeds."""

    name: str
    title: str
    base: ExperimentSpec
    train_counts: tuple[int, ...]
    rows: tuple[str, ...]
    seeds: int = 3
    path: Path = Path("<dict>")


# ---------------------------------------------------------------------------------------- loading


def _err(where: Path, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}")


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def default_rows(base: ExperimentSpec) -> tuple[str, ...]:
    """``spl/<g>`` and ``smooth/<g>`` for every GAN g used by the base spec's rows."""
    return tuple(f"{rule}/{g}" for g in base.generators for rule in DEFAULT_RULES)


def study_from_dict(raw: Any, where: str | Path = "<dict>") -> StudySpec:
    """Validate a parsed study YAML mapping (the base path is relative to ``where``); ConfigError naming it."""
    where = Path(where)
    if not isinstance(raw, dict):
        raise _err(where, "a study spec must be a YAML mapping")
    unknown = sorted(set(raw) - set(STUDY_KEYS))
    if unknown:
        raise _err(where, f"unknown key {unknown[0]!r} in the study spec (expected one of: {', '.join(STUDY_KEYS)})")
    for key in ("name", "base", "train_counts"):
        if key not in raw:
            raise _err(where, f"missing key {key!r}")
    if not isinstance(raw["base"], str) or not raw["base"]:
        raise _err(where, "base must be the path of a table spec")
    base_path = Path(raw["base"])
    if not base_path.is_absolute() and where.name != "<dict>":
        base_path = Path(os.path.normpath(where.parent / base_path))
    try:
        base = load_spec(base_path)
    except ConfigError as e:
        raise _err(where, f"base spec: {e}") from None
    if METRIC not in base.columns:
        raise _err(where, f"the base spec {base_path} has no {METRIC!r} column, which the study compares")

    counts = raw["train_counts"]
    if not isinstance(counts, list) or not counts or not all(_positive_int(n) for n in counts):
        raise _err(where, f"train_counts must be a non-empty list of positive integers, got {counts!r}")
    if len(set(counts)) != len(counts):
        raise _err(where, "train_counts lists a size twice")

    rows = raw.get("rows")
    if rows is None:
        rows = list(default_rows(base))
        if not rows:
            raise _err(where, f"the base spec {base_path} uses no GAN, so give the rows to compare")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, str) for r in rows):
        raise _err(where, "rows must be a non-empty list of row ids (e.g. spl/dcgan)")
    for r in rows:
        try:
            rid = parse_row_id(r)
        except ValueError as e:
            raise _err(where, str(e)) from None
        if r == BASELINE:
            raise _err(where, "rows are compared with the baseline; do not list 'baseline' itself")
        if rid.source in GENERATORS and rid.source not in base.gan:
            raise _err(where, f"row {r!r} needs a 'gan.{rid.source}' preset in the base spec {base_path}")
    if len(set(rows)) != len(rows):
        raise _err(where, "rows are listed twice")

    seeds = raw.get("seeds", 3)
    if not _positive_int(seeds):
        raise _err(where, f"seeds must be a positive integer, got {seeds!r}")
    name = raw["name"]
    if not isinstance(name, str) or not name or "/" in name:
        raise _err(where, f"name must be a file name, got {name!r}")
    return StudySpec(name=name, title=str(raw.get("title", name)), base=base,
                     train_counts=tuple(sorted(counts)), rows=tuple(rows), seeds=seeds, path=where)


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study spec YAML file; one-line :class:`ConfigError` naming the file on any problem."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: study spec file not found")
    return study_from_dict(C.read_yaml(p, kind=KIND), p)


# ---------------------------------------------------------------------------------------- running


def derive_spec(study: StudySpec, n: int) -> ExperimentSpec:
    """The table spec of size ``n``: the base with ``dataset.train_count = n``, rows baseline + the compared
    rows, no gallery; the name and everything that determines the numbers are the base's."""
    base = study.base
    return replace(base, dataset=replace(base.dataset, train_count=int(n)), rows=(BASELINE, *study.rows),
                   gallery=0)


def study_specs(study: StudySpec) -> dict[int, ExperimentSpec]:
    """``N → derived spec`` for every size of the study, in increasing N."""
    return {n: derive_spec(study, n) for n in study.train_counts}


def plan_study(study: StudySpec, *, seeds: int | None = None,
               data_root: str | Path | None = None) -> dict[int, Plan]:
    """``N → plan`` of every size (nothing runs; a bad preset or data root fails here, before any step)."""
    s = study.seeds if seeds is None else seeds
    return {n: plan_experiment(spec, data_root=data_root, seeds=s) for n, spec in study_specs(study).items()}


def run_study(study: StudySpec, *, runs: str | Path = "runs", seeds: int | None = None,
              data_root: str | Path | None = None, progress: bool = True) -> dict[int, ExperimentResult]:
    """Plan every size first, then run each size's steps not yet done under ``runs`` (smallest N first)."""
    plan_study(study, seeds=seeds, data_root=data_root)
    s = study.seeds if seeds is None else seeds
    return {n: run_experiment(spec, runs=runs, data_root=data_root, seeds=s, progress=progress)
            for n, spec in study_specs(study).items()}


# ---------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class StudyResult:
    """The numbers of a study: per N the baseline's mAP values by seed and, per row, its paired Δ vs the baseline.

    ``deltas[(n, row)]`` is None when the row or the baseline has no result at N or they share no seed.
    """

    study: StudySpec
    baseline: Mapping[int, Mapping[int, float]]          # N → seed → baseline mAP
    deltas: Mapping[tuple[int, str], PairedDiff | None]

    @property
    def counts(self) -> tuple[int, ...]:
        return self.study.train_counts

    @property
    def rows(self) -> tuple[str, ...]:
        return self.study.rows

    def baseline_stats(self, n: int) -> tuple[float | None, float | None, int]:
        """Mean, sample std (None with one seed) and seed count of the baseline's mAP at ``n``."""
        vals = [self.baseline[n][s] for s in sorted(self.baseline.get(n, {}))]
        if not vals:
            return None, None, 0
        mean, std = mean_std(vals)
        return mean, std, len(vals)

    def verdicts(self, row: str) -> dict[int, str]:
        """``N → verdict`` of ``row`` (n/a without a confidence interval or without results)."""
        return {n: NOT_AVAILABLE if self.deltas[(n, row)] is None else self.deltas[(n, row)].verdict
                for n in self.counts}


def collect_study(study: StudySpec, runs: str | Path = "runs") -> StudyResult:
    """The :class:`StudyResult` of the finished runs under ``runs`` (missing sizes or rows stay empty / None)."""
    base: dict[int, dict[int, float]] = {}
    deltas: dict[tuple[int, str], PairedDiff | None] = {}
    for n, spec in study_specs(study).items():
        values = metric_by_seed(collect_results(spec, runs), METRIC)
        base[n] = dict(values.get(BASELINE, {}))
        for row in study.rows:
            mine = values.get(row, {})
            deltas[(n, row)] = paired_difference(mine, base[n]) if mine and base[n] else None
    return StudyResult(study, base, deltas)


# ---------------------------------------------------------------------------------------- the sentence


def _label(row: str) -> str:
    return row_label(row)


def _ns(ns: Sequence[int]) -> str:
    text = [f"{n:,}" for n in ns]
    return text[0] if len(text) == 1 else ", ".join(text[:-1]) + " and " + text[-1]


def conclusion(result: StudyResult) -> str:
    """One sentence, from the verdicts only: at which N each row's 95% CI of Δ mAP lies above (and below) zero.

    * no size with a confidence interval for any row: says no conclusion can be drawn;
    * no gain anywhere: "No N with a detectable gain: …", naming any detectable losses;
    * else per row the sizes where it gains (and where it loses), "at no N" for the others.
    """
    counts = result.counts
    span = f"N = {counts[0]:,}" if len(counts) == 1 else f"N = {counts[0]:,} to {counts[-1]:,}"
    tested = [(n, r) for n in counts for r in result.rows
              if result.deltas[(n, r)] is not None and result.deltas[(n, r)].verdict != NOT_AVAILABLE]
    if not tested:
        return (f"No conclusion yet: no labelled-set size from {span} has a 95% confidence interval for any row "
                f"(each needs the row and the baseline with at least 2 paired seeds).")
    gains = {r: [n for n, v in result.verdicts(r).items() if v == BETTER] for r in result.rows}
    losses = {r: [n for n, v in result.verdicts(r).items() if v == WORSE] for r in result.rows}
    untested = sorted({n for n in counts for r in result.rows if (n, r) not in tested})
    tail = f"; N = {_ns(untested)} not tested for every row (fewer than 2 paired seeds)" if untested else ""
    loss_text = "; ".join(f"{_label(r)} loses at N = {_ns(ns)}" for r, ns in losses.items() if ns)
    if not any(gains.values()):
        who = " or ".join(_label(r) for r in result.rows)
        text = (f"No N with a detectable gain: at no labelled-set size from {span} does {who} beat the baseline "
                f"with a 95% CI of Δ {METRIC} above zero")
        return text + (f"; {loss_text}" if loss_text else "") + tail + "."
    parts = []
    for r in result.rows:
        part = f"{_label(r)} at N = {_ns(gains[r])}" if gains[r] else f"{_label(r)} at no N"
        if losses[r]:
            part += f" (it loses at N = {_ns(losses[r])})"
        parts.append(part)
    return (f"Over {span} labelled images, the gain over the baseline is detectable (95% CI of Δ {METRIC} "
            f"above zero) for " + ", and for ".join(parts) + tail + ".")


# ---------------------------------------------------------------------------------------- writing


def _num2(x: float | None) -> str:
    if x is None:
        return ""
    text = f"{x:+.2f}"
    return "+0.00" if text == "-0.00" else text


def delta_cell(d: PairedDiff | None) -> str:
    """``+1.23 [+0.45, +2.01]``, ``+1.23 (1 seed)`` or ``–`` (no paired result)."""
    if d is None:
        return "–"
    if d.low is None or d.high is None:
        return f"{_num2(d.mean)} (1 seed)"
    return f"{_num2(d.mean)} [{_num2(d.low)}, {_num2(d.high)}]"


def format_markdown(result: StudyResult, figure: str | None = None) -> str:
    """The study as Markdown: title, conclusion, legend, the N × row table, and the figure (relative link)."""
    study = result.study
    lines = [f"# {study.title}", "", "## Conclusion", "", conclusion(result), "",
             "## Table", "",
             f"- Base spec: `{study.base.path}` with `dataset.train_count = N` (a seeded subset of the training "
             f"split; the GANs train on the same N labelled images), rows baseline + {', '.join(study.rows)}. "
             f"Beyond the paper (issue #13).",
             f"- Baseline: its {METRIC} in %, mean ± sample std over its seeds (count in brackets).",
             f"- Δ {METRIC}: the mean paired difference row − baseline (seed i with seed i), in points, with its 95% "
             f"t confidence interval over the paired seeds; verdict *better* if the interval lies above 0, *worse* "
             f"if below, *no detectable difference* if it contains 0, *n/a* with one seed; – without results.",
             ""]
    head = ["N", f"Baseline {METRIC}"]
    for r in result.rows:
        head += [f"{_label(r)}: Δ {METRIC} [95% CI]", "verdict"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|---:|---:|" + "---:|---|" * len(result.rows))
    for n in result.counts:
        mean, std, k = result.baseline_stats(n)
        base = "–" if mean is None else f"{mean:.1f}" + (f" ± {std:.1f}" if std is not None else "") + f" ({k})"
        cells = [f"{n:,}", base]
        for r in result.rows:
            d = result.deltas[(n, r)]
            cells += [delta_cell(d), "–" if d is None else d.verdict]
        lines.append("| " + " | ".join(cells) + " |")
    if figure:
        lines += ["", f"![Δ {METRIC} against the labelled-set size N]({figure})"]
    return "\n".join(lines) + "\n"


CSV_HEADER = ("N", "row", "label", "delta", "delta_low", "delta_high", "paired_seeds", "verdict",
              "baseline_mean", "baseline_std", "baseline_seeds")


def format_csv(result: StudyResult) -> str:
    """One line per N × row: the paired Δ mAP, its 95% CI, paired seeds and verdict; the baseline's mean, std, seeds."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for n in result.counts:
        mean, std, k = result.baseline_stats(n)
        for r in result.rows:
            d = result.deltas[(n, r)]
            w.writerow([n, r, _label(r), "" if d is None else _num2(d.mean),
                        "" if d is None else _num2(d.low), "" if d is None else _num2(d.high),
                        0 if d is None else d.n, "" if d is None else d.verdict,
                        "" if mean is None else f"{mean:.2f}", "" if std is None else f"{std:.2f}", k])
    return buf.getvalue()


def figure_series(result: StudyResult) -> dict[str, tuple[list[int], list[float], list[float], list[float]]]:
    """``{row label: (Ns, Δ means, CI lows, CI highs)}`` over the sizes with a Δ (NaN bounds without a CI)."""
    nan = float("nan")
    out = {}
    for r in result.rows:
        pts = [(n, result.deltas[(n, r)]) for n in result.counts if result.deltas[(n, r)] is not None]
        out[_label(r)] = ([n for n, _ in pts], [d.mean for _, d in pts],
                          [nan if d.low is None else d.low for _, d in pts],
                          [nan if d.high is None else d.high for _, d in pts])
    return {k: v for k, v in out.items() if v[0]}


def write_study(result: StudyResult, out_dir: str | Path = "tables/out", *, plot: bool = True) -> dict[str, Path]:
    """Write ``<name>.md``, ``<name>.csv`` and (with any result) ``<name>.png`` into ``out_dir``; the paths by kind."""
    out_dir = Path(out_dir)
    name = result.study.name
    written: dict[str, Path] = {}
    series = figure_series(result)
    figure = None
    if plot and series:
        from replication.plots import plot_study_gain  # loads Matplotlib: only when the figure is drawn

        written["png"] = plot_study_gain(
            series, out_dir / f"{name}.png", ylabel=f"Δ {METRIC} vs baseline (points), 95% CI",
            title=f"{result.study.title} (beyond the paper)")
        figure = written["png"].name
    written["md"] = out_dir / f"{name}.md"
    atomic_write_text(written["md"], format_markdown(result, figure))
    written["csv"] = out_dir / f"{name}.csv"
    atomic_write_text(written["csv"], format_csv(result))
    return written


def render_study(study: StudySpec, runs: str | Path = "runs", out_dir: str | Path = "tables/out", *,
                 plot: bool = True) -> tuple[StudyResult, dict[str, Path]]:
    """Collect the study's finished runs and write its outputs (:func:`write_study`)."""
    result = collect_study(study, runs)
    return result, write_study(result, out_dir, plot=plot)


__all__ = [
    "StudySpec", "StudyResult", "load_study", "study_from_dict", "default_rows", "derive_spec", "study_specs",
    "plan_study", "run_study", "collect_study", "conclusion", "format_markdown", "format_csv", "figure_series",
    "write_study", "render_study", "delta_cell", "METRIC",
]
