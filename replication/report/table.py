"""The table model: our results per row and seed beside the paper's numbers, with paired Δ mAP (docs/experiments.md).

Our results are read from the files only: the ``metrics.json`` of each finished metrics step under
``<runs>/<dataset>/metrics-*/`` (a ``done`` marker beside it). A ``metrics.json`` counts for a spec
when it records the spec's ``table`` name and
:meth:`~replication.experiments.spec.ExperimentSpec.fingerprint`, so results made with an older
version of the spec are never shown. If two finished runs share a row and a seed (the same spec
made with edited presets), the one with the later ``finished`` time stamp wins. A ``metrics.json``
that no longer matches the SHA-256 its ``done`` recorded is refused with one line naming it (issue #21;
:func:`~replication.experiments.steps.recorded_digests_match`).

Every cell holds our value, the paper's value and the difference ``ours − paper``; ours is the
mean over seeds, with the sample standard deviation (ddof = 1) when there are N > 1 seeds. The
difference is taken between the *displayed* (one-decimal) numbers, so a reader can check it by eye.
Literature rows (DHC, WARP, CNN-RNN) come from the paper only.

When the spec has an ``mAP`` column and a baseline row, every other row also carries its paired
difference to the baseline, Δ mAP = row − baseline with seed i paired with seed i, its 95% t
confidence interval over the seeds and a verdict (:mod:`replication.report.statistics`,
docs/metrics.md#comparing-rows-over-seeds), and the table carries the paper's claims tested on our
mAP. Control rows (issue #13: ``<rule>/shuffled``, ``baseline/iters``, ``<rule>/<source>@λ``) go
beyond the paper: no paper numbers, the same paired Δ, and a controls paragraph.

Formatting is :mod:`replication.report.formats`; the report page :mod:`replication.report.page`;
writing :mod:`replication.report.render`.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from replication.errors import ConfigError
from replication.experiments.runner import generator_labels, train_schedule
from replication.experiments.spec import ExperimentSpec
from replication.experiments.steps import recorded_digests_match
from replication.report.paper_table import PaperTable, read_paper_table
from replication.report.statistics import (
    Claim,
    ClaimGroup,
    PairedDiff,
    ceiling_paragraph,
    control_paragraph,
    evaluate_claims,
    mean_std,
    paired_difference,
)
from replication.training.config import ITERATIONS
from replication.vocabulary import BASELINE, BEYOND_PAPER_MARK, parse_row_id, row_label

log = logging.getLogger(__name__)
#: The metric whose paired difference to the baseline, confidence interval and verdict the table shows.
DELTA_METRIC = "mAP"
#: The verdict cell of the baseline row (the reference of every Δ).
REFERENCE = "reference"


# ------------------------------------------------------------------------------------ our results


def collect_results(spec: ExperimentSpec, runs: str | Path,
                    seeds: Collection[int] | None = None) -> dict[str, dict[int, dict[str, float]]]:
    """Our metric values per row and seed, read from ``<runs>/<dataset>/metrics-*/metrics.json``.

    Only finished steps (``done`` present) whose ``metrics.json`` records this spec's name and
    fingerprint count; among duplicates of a (row, seed) the latest ``finished`` wins. ``seeds``: only
    these seeds (one seed set of a runs folder holding several, issue #19); None: every seed found.
    """
    root = Path(runs) / spec.dataset.source
    fingerprint = spec.fingerprint()
    found: dict[tuple[str, int], tuple[str, str, dict]] = {}
    for mfile in sorted(root.glob("metrics-*/metrics.json")):
        if not (mfile.parent / "done").exists():
            continue
        if not recorded_digests_match(mfile.parent):
            raise ConfigError(f"{mfile}: damaged (it or its step's done record fails the SHA-256 check); "
                              "`spl experiment run` makes it again")
        try:
            rec = json.loads(mfile.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{mfile}: malformed JSON ({getattr(e, 'msg', e)})") from None
        if rec.get("table") != spec.name or rec.get("fingerprint") != fingerprint:
            continue
        if rec.get("row") not in spec.rows or (seeds is not None and int(rec["seed"]) not in seeds):
            continue
        key = (rec["row"], int(rec["seed"]))
        stamp = (str(rec.get("finished", "")), mfile.parent.name)
        if key in found:
            log.warning("%s: several finished runs for row %s seed %d; using the latest", root, *key)
            if stamp <= found[key][:2]:
                continue
        found[key] = (*stamp, rec["metrics"])
    out: dict[str, dict[int, dict[str, float]]] = {}
    for (row, seed), (_, _, metrics) in sorted(found.items()):
        out.setdefault(row, {})[seed] = {k: float(v) for k, v in metrics.items()}
    return out


# ------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Cell:
    """One cell: our mean and std over ``n`` seeds (None when missing), the paper's value, the difference."""

    ours: float | None
    std: float | None
    paper: float | None

    @property
    def diff(self) -> float | None:
        """``round(ours, 1) − paper`` (the difference of the displayed numbers)."""
        if self.ours is None or self.paper is None:
            return None
        return round(round(self.ours, 1) - self.paper, 1)


@dataclass(frozen=True)
class TableRow:
    """One rendered row: its id, the paper's name for it, our seed count and a cell per column.

    ``delta`` is the paired Δ mAP of the row vs the baseline (None for the baseline itself, for
    literature rows, and when the row shares no seed with the baseline).
    """

    row: str
    label: str
    seeds: int
    literature: bool
    cells: tuple[Cell, ...]
    delta: PairedDiff | None = None
    control: bool = False  # a control row of issue #13: beyond the paper, no paper numbers

    @property
    def shown_label(self) -> str:
        """The label with :data:`~replication.vocabulary.BEYOND_PAPER_MARK` after a control row's name."""
        return f"{self.label} {BEYOND_PAPER_MARK}" if self.control else self.label


@dataclass(frozen=True)
class Table:
    """A table ready to format: spec, paper table, rows (literature first, as in the paper) and claims.

    ``claims`` and ``claim_group`` are the paper's claims tested on our mAP
    (:func:`replication.report.statistics.evaluate_claims`).
    """

    spec: ExperimentSpec
    paper: PaperTable
    rows: tuple[TableRow, ...]
    claims: tuple[Claim, ...] = ()
    claim_group: ClaimGroup | None = None
    controls: str = ""  # the controls' paragraph (:func:`replication.report.statistics.control_paragraph`); "" without
    ceiling: str = ""  # the real ceiling's section (:func:`replication.report.statistics.ceiling_paragraph`) or ""
    #: the spec trains with ``schedule: iterations``: ``baseline/iters`` is the plateau check (2× the budget)
    iteration_schedule: bool = False
    #: generator → the name of the GAN its preset trains (:func:`replication.experiments.runner.generator_labels`)
    gen_labels: Mapping[str, str] | None = None

    @property
    def has_controls(self) -> bool:
        """Whether the table has control rows (issue #13), marked as beyond the paper."""
        return any(r.control for r in self.rows)

    @property
    def has_delta(self) -> bool:
        """Whether the table shows the Δ mAP vs baseline and verdict columns (an mAP column and a baseline row)."""
        return DELTA_METRIC in self.spec.columns and BASELINE in self.spec.rows


def metric_by_seed(results: Mapping[str, Mapping[int, Mapping[str, float]]],
                   metric: str = DELTA_METRIC) -> dict[str, dict[int, float]]:
    """``row → seed → value`` of one metric, from ``row → seed → metrics`` (seeds without it left out)."""
    return {row: {seed: m[metric] for seed, m in seeds.items() if metric in m} for row, seeds in results.items()}


def build_table(spec: ExperimentSpec, results: Mapping[str, Mapping[int, Mapping[str, float]]],
                paper: PaperTable) -> Table:
    """Combine our results (row → seed → metric) with the paper's numbers into a :class:`Table`.

    Adds the paired Δ mAP of every row vs the baseline and the paper's claims tested on our mAP. The
    control rows are worded by the spec's schedule (:func:`~replication.experiments.runner.train_schedule`).
    """
    iters = train_schedule(spec) == ITERATIONS
    rows: list[TableRow] = []
    for lit in spec.paper.literature:
        cells = tuple(Cell(None, None, paper.get(lit, c)) for c in spec.columns)
        rows.append(TableRow(lit, lit, 0, True, cells))
    values = metric_by_seed(results)
    base = values.get(BASELINE, {})
    names = generator_labels(spec)  # the GAN each generator's preset trains (the peer is named as such)
    for row in spec.rows:
        seeds = results.get(row, {})
        control = parse_row_id(row).control
        cells = []
        for c in spec.columns:
            vals = [m[c] for m in seeds.values() if c in m]
            mean, std = mean_std(vals) if vals else (None, None)
            cells.append(Cell(mean, std, None if control else paper.get(row, c)))
        delta = None if row == BASELINE else paired_difference(values.get(row, {}), base)
        rows.append(TableRow(row, row_label(row, names, iteration_schedule=iters), len(seeds), False, tuple(cells),
                             delta, control))
    claims, group = evaluate_claims(values, spec.rows, gen_labels=names)
    has_map = DELTA_METRIC in spec.columns
    controls = control_paragraph(values, spec.rows, DELTA_METRIC, names, iteration_schedule=iters) if has_map else ""
    ceiling = ceiling_paragraph(values, spec.rows, DELTA_METRIC, names) if has_map else ""
    return Table(spec, paper, tuple(rows), claims, group, controls, ceiling, iters, names)



def load_table(spec: ExperimentSpec, runs: str | Path = "runs", seeds: Collection[int] | None = None) -> Table:
    """The :class:`Table` of ``spec``: the paper's numbers and our finished results under ``runs``.

    Missing rows show as "–" (with a warning), so a table can be looked at while runs are going.
    ``seeds``: only these seeds (:func:`collect_results`).
    """
    paper = read_paper_table(spec.paper.csv)
    results = collect_results(spec, runs, seeds)
    missing = [r for r in spec.rows if r not in results]
    if missing:
        log.warning("%s: no finished results under %s for rows %s", spec.path, runs, ", ".join(missing))
    return build_table(spec, results, paper)


def table_seeds(table: Table) -> int:
    """The most seeds any row of the table has (at least 1): how many seeds to plan for the report."""
    return max([r.seeds for r in table.rows if not r.literature] + [1])




__all__ = [
    "Cell", "TableRow", "Table", "collect_results", "metric_by_seed",
    "build_table", "load_table", "table_seeds", "DELTA_METRIC", "REFERENCE",
]
