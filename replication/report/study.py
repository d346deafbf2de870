"""The study's results and outputs: Δ mAP against the labelled-set size N (issue #13; the spec and the runs:
:mod:`replication.experiments.study`).

Collecting (:func:`collect_study`) reads each derived spec's finished metrics with
:func:`~replication.report.table.collect_results` (which keeps only results made with that spec's
fingerprint, so the sizes never mix) and computes, per N and compared row, the paired Δ mAP
(row − baseline, seed i with seed i) with its 95% t confidence interval and verdict by
:func:`~replication.report.statistics.paired_difference`, plus the baseline's mAP mean ± std per N.
:func:`write_study` writes ``<name>.md`` (conclusion, table, figure link), ``<name>.csv`` and
``<name>.png`` (Δ mAP against N, :func:`replication.report.plots.plot_study_gain`), with the
table's number and cell formats (:mod:`replication.report.formats`). The conclusion
(:func:`conclusion`) is one sentence generated from the verdicts.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from replication.experiments.runner import resolved_train
from replication.experiments.study import METRIC, StudySpec, study_specs
from replication.io_utils import atomic_write_text
from replication.report.formats import DASH, csv_text, delta_interval, md_row, mean_std_text, num2
from replication.report.statistics import (
    BETTER,
    NOT_AVAILABLE,
    WORSE,
    PairedDiff,
    check_seed_sets,
    mean_std,
    paired_difference,
    reproduction_markdown,
    seed_set_text,
)
from replication.report.table import collect_results, metric_by_seed
from replication.vocabulary import BASELINE, row_label

# ---------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class StudyResult:
    """The numbers of a study: per N the baseline's mAP values by seed and, per row, its paired Δ vs the baseline.

    ``deltas[(n, row)]`` is None when the row or the baseline has no result at N or they share no seed.
    """

    study: StudySpec
    baseline: Mapping[int, Mapping[int, float]]          # N → seed → baseline mAP
    deltas: Mapping[tuple[int, str], PairedDiff | None]
    seeds: range                                          # the seed set that counted

    @property
    def seed_text(self) -> str:
        """The seed set that counted: ``seeds 0–4``."""
        return seed_set_text(self.seeds.start, len(self.seeds))

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


def collect_study(study: StudySpec, runs: str | Path = "runs", seeds: int | None = None,
                  seed_start: int = 0) -> StudyResult:
    """The :class:`StudyResult` of the finished runs under ``runs`` (missing sizes or rows stay empty / None).

    Only seeds ``seed_start`` … ``seed_start + seeds`` − 1 count (``seeds`` defaults to the study's), so every
    N has the same replicates even where the runs folder holds more (e.g. the demo's second seed set at
    N = 250)."""
    chosen = range(seed_start, seed_start + (study.seeds if seeds is None else seeds))
    base: dict[int, dict[int, float]] = {}
    deltas: dict[tuple[int, str], PairedDiff | None] = {}
    for n, spec in study_specs(study).items():
        values = metric_by_seed(collect_results(spec, runs, chosen), METRIC)
        base[n] = dict(values.get(BASELINE, {}))
        for row in study.rows:
            mine = values.get(row, {})
            deltas[(n, row)] = paired_difference(mine, base[n]) if mine and base[n] else None
    return StudyResult(study, base, deltas, chosen)


# ---------------------------------------------------------------------------------------- the sentence


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
    loss_text = "; ".join(f"{row_label(r)} loses at N = {_ns(ns)}" for r, ns in losses.items() if ns)
    if not any(gains.values()):
        who = " or ".join(row_label(r) for r in result.rows)
        text = (f"No N with a detectable gain: at no labelled-set size from {span} does {who} beat the baseline "
                f"with a 95% CI of Δ {METRIC} above zero")
        return text + (f"; {loss_text}" if loss_text else "") + tail + "."
    parts = []
    for r in result.rows:
        part = f"{row_label(r)} at N = {_ns(gains[r])}" if gains[r] else f"{row_label(r)} at no N"
        if losses[r]:
            part += f" (it loses at N = {_ns(losses[r])})"
        parts.append(part)
    return (f"Over {span} labelled images, the gain over the baseline is detectable (95% CI of Δ {METRIC} "
            f"above zero) for " + ", and for ".join(parts) + tail + ".")


# ---------------------------------------------------------------------------------------- writing


def _gan_data_text(study: StudySpec) -> str:
    """What the GANs train on at each N (``gan.data`` of the base spec)."""
    if study.base.gan_data == "all":
        return ("the GANs train on the labelled images and the unlabeled pool, i.e. the whole training split, "
                "each N with its own GAN runs")
    return "the GANs train on the same N labelled images, as in the paper"


def _conditions_text(study: StudySpec) -> str:
    """The conditions every Δ holds under: what a replicate redraws and the iteration schedule."""
    base = study.base
    replicate = ("replicate i redraws the GAN, its samples, the labelling baseline and every row's classifier"
                 if base.gan_options.per_replicate else
                 "one GAN shared by every replicate (the intervals leave out its variance)")
    train = resolved_train(base)
    schedule = (f"every row and every N trains the same {train.iterations} SGD iterations"
                if train.schedule == "iterations" else
                "every row trains for the same epochs, so rows with generated images train more iterations")
    return f"Conditions: {replicate}; {schedule}."


def delta_cell(d: PairedDiff | None) -> str:
    """``+1.23 [+0.45, +2.01]``, ``+1.23 (1 seed)`` or ``–`` (no paired result)."""
    return delta_interval(d) or DASH


def format_study_markdown(result: StudyResult, figure: str | None = None) -> str:
    """The study as Markdown: title, conclusion, legend, the N × row table, and the figure (relative link)."""
    study = result.study
    lines = [f"# {study.title}", "", "## Conclusion", "", conclusion(result), "",
             "## Table", "",
             f"- Base spec: `{study.base.path}` with `dataset.train_count = N` (a seeded subset of the training "
             f"split; {_gan_data_text(study)}), rows baseline + {', '.join(study.rows)}. "
             f"Beyond the paper (issue #13).",
             f"- {_conditions_text(study)}",
             f"- Replicates: {result.seed_text} (each seed a replicate at every N; `spl study render --seed-start`).",
             f"- Baseline: its {METRIC} in %, mean ± sample std over its seeds (count in brackets).",
             f"- Δ {METRIC}: the mean paired difference row − baseline (seed i with seed i), in points, with its 95% "
             f"t confidence interval over the paired seeds; verdict *better* if the interval lies above 0, *worse* "
             f"if below, *no detectable difference* if it contains 0, *n/a* with one seed; – without results.",
             ""]
    head = ["N", f"Baseline {METRIC}"]
    for r in result.rows:
        head += [f"{row_label(r)}: Δ {METRIC} [95% CI]", "verdict"]
    lines.append(md_row(head))
    lines.append("|---:|---:|" + "---:|---|" * len(result.rows))
    for n in result.counts:
        mean, std, k = result.baseline_stats(n)
        cells = [f"{n:,}", DASH if mean is None else f"{mean_std_text(mean, std)} ({k})"]
        for r in result.rows:
            d = result.deltas[(n, r)]
            cells += [delta_cell(d), DASH if d is None else d.verdict]
        lines.append(md_row(cells))
    if figure:
        lines += ["", f"![Δ {METRIC} against the labelled-set size N]({figure})"]
    return "\n".join(lines) + "\n"


CSV_HEADER = ("N", "row", "label", "delta", "delta_low", "delta_high", "paired_seeds", "verdict",
              "baseline_mean", "baseline_std", "baseline_seeds")


def format_study_csv(result: StudyResult) -> str:
    """One line per N × row: the paired Δ mAP, its 95% CI, paired seeds and verdict; the baseline's mean, std, seeds."""
    lines: list[Sequence[object]] = [CSV_HEADER]
    for n in result.counts:
        mean, std, k = result.baseline_stats(n)
        base = ["" if mean is None else f"{mean:.2f}", "" if std is None else f"{std:.2f}", k]
        for r in result.rows:
            d = result.deltas[(n, r)]
            paired = ["", "", "", 0, ""] if d is None else [num2(d.mean), num2(d.low), num2(d.high), d.n, d.verdict]
            lines.append([n, r, row_label(r), *paired, *base])
    return csv_text(lines)


def figure_series(result: StudyResult) -> dict[str, tuple[list[int], list[float], list[float], list[float]]]:
    """``{row label: (Ns, Δ means, CI lows, CI highs)}`` over the sizes with a Δ (NaN bounds without a CI)."""
    nan = float("nan")
    out = {}
    for r in result.rows:
        pts = [(n, result.deltas[(n, r)]) for n in result.counts if result.deltas[(n, r)] is not None]
        out[row_label(r)] = ([n for n, _ in pts], [d.mean for _, d in pts],
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
        from replication.report.plots import plot_study_gain  # loads Matplotlib: only when the figure is drawn

        written["png"] = plot_study_gain(
            series, out_dir / f"{name}.png", ylabel=f"Δ {METRIC} vs baseline (points), 95% CI",
            title=f"{result.study.title} (beyond the paper)")
        figure = written["png"].name
    written["md"] = out_dir / f"{name}.md"
    atomic_write_text(written["md"], format_study_markdown(result, figure))
    written["csv"] = out_dir / f"{name}.csv"
    atomic_write_text(written["csv"], format_study_csv(result))
    return written


def render_study(study: StudySpec, runs: str | Path = "runs", out_dir: str | Path = "tables/out", *,
                 plot: bool = True, seeds: int | None = None,
                 seed_start: int = 0) -> tuple[StudyResult, dict[str, Path]]:
    """Collect the study's finished runs (seeds ``seed_start`` … ``seed_start + seeds`` − 1, ``seeds`` default
    the study's) and write its outputs (:func:`write_study`)."""
    result = collect_study(study, runs, seeds, seed_start=seed_start)
    return result, write_study(result, out_dir, plot=plot)


def study_verdicts(result: StudyResult) -> dict[str, str]:
    """Every verdict of the study by name, ``"N = <n>: <row> − baseline"`` → better / worse / no difference /
    n/a, sizes in increasing N and rows in the study's order."""
    return {f"N = {n}: {row} − baseline": result.verdicts(row)[n] for n in result.counts for row in result.rows}


def study_reproduction_report(study: StudySpec, runs: str | Path, seeds: int, seed_sets: Sequence[int]) -> str:
    """The reproduction check of the study (Markdown): each size's and row's verdict on every seed set
    (``seeds`` seeds from each start in ``seed_sets``, all under one ``runs``), compared with the first set's
    (:func:`~replication.report.statistics.compare_verdicts`). A verdict that differs between sets is unstable."""
    sets = check_seed_sets(study.path, list(seed_sets), seeds)
    verdicts = {s: study_verdicts(collect_study(study, runs, seeds, seed_start=s)) for s in sets}
    return reproduction_markdown(study.title, verdicts, seeds)


__all__ = [
    "StudyResult", "collect_study", "conclusion", "delta_cell", "format_study_markdown", "format_study_csv",
    "CSV_HEADER", "figure_series", "write_study", "render_study", "study_verdicts", "study_reproduction_report",
]
