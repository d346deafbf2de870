"""Render Tables 1–3 (and the demo table) from run directories, beside the paper's numbers (docs/experiments.md).

Rendering is a pure function of the files: the spec, the paper's CSV and the ``metrics.json`` of
each finished metrics step under ``<runs>/<dataset>/metrics-*/`` (a ``done`` marker beside it).
A ``metrics.json`` counts for a spec when it records the spec's ``table`` name and
:meth:`~replication.experiments.spec.ExperimentSpec.fingerprint`, so results made with an older
version of the spec are never shown. If two finished runs share a row and a seed (the same spec
made with edited presets), the one with the later ``finished`` time stamp wins.

Every cell shows our value, the paper's value and the difference ``ours − paper``; ours is the
mean over seeds, with the sample standard deviation (ddof = 1) when there are N > 1 seeds.
Values are percentages with one decimal; the difference is taken between the *displayed*
(rounded) numbers, so a reader can check it by eye. Literature rows (DHC, WARP, CNN-RNN) come
from the paper only.

When the spec has an ``mAP`` column and a baseline row, every other row also shows its paired
difference to the baseline, Δ mAP = row − baseline with seed i paired with seed i, its 95% t
confidence interval over the seeds and a verdict (better / worse / no detectable difference; n/a
with one seed): :mod:`replication.statistics`, docs/metrics.md#comparing-rows-over-seeds. Δ and its
interval have two decimals. The Markdown starts with a paragraph that says which of the paper's
claims held (:func:`replication.statistics.verdict_paragraph`).

Outputs: ``<out>/<name>.md``, ``.csv`` (wide: per metric ours, std, paper, diff; for mAP also the
paired Δ, its CI, the paired seed count and the verdict), ``.tex`` (booktabs; per method a row for
ours, the paper and Δ, plus two columns for Δ mAP vs the baseline and the verdict) and
``<name>_map.png`` (mAP per row, ours vs paper).

The Markdown file is the **report page** (issue #13; docs/experiments.md#the-report-page), read top to
bottom: the verdict paragraph and the controls section, the table with its CIs, each GAN's sample
quality (the spec's ``quality`` steps), its real-image grid beside its sample grid, the SPL-label
galleries, the Δ mAP figure (``<name>_delta.png``, :func:`plot_delta`), the λ figure and the time per
step kind (from each step's ``done`` record). The run-directory images are copied into
``<out>/<name>_files/`` and linked relatively, so the page renders on a code host. The run
directories are located by planning the spec (:func:`load_report`); nothing there is written.

Control rows (issue #13: ``<rule>/shuffled``, ``baseline/iters``, ``<rule>/<source>@λ``) go beyond
the paper: they have no paper numbers, are marked † (Markdown, and a dagger with a caption
sentence in LaTeX; a ``beyond_paper`` column in the CSV), get the same paired Δ, CI and verdict,
and add a "Controls" section after the claims paragraph. With ``@λ`` rows the renderer also draws
``<name>_lambda.png`` (mAP vs λ, :func:`plot_lambda`).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from replication.errors import ConfigError
from replication.experiments.runner import plan_experiment
from replication.experiments.spec import ExperimentSpec
from replication.experiments.stepfns import GALLERY, QUALITY_FILE, REAL_GRID, SAMPLE_GRID
from replication.experiments.steps import DONE, record_intact
from replication.io_utils import atomic_write, atomic_write_text
from replication.paper_table import PaperTable, read_paper_table
from replication.statistics import (
    NOT_AVAILABLE,
    Claim,
    ClaimGroup,
    PairedDiff,
    control_paragraph,
    evaluate_claims,
    mean_std,
    paired_difference,
    verdict_paragraph,
)
from replication.vocabulary import (
    BASELINE,
    BEYOND_PAPER_MARK,
    GEN_LABELS,
    SOURCE_LABELS,
    TOP3_PREFIX,
    metric_label,
    parse_row_id,
    row_label,
)

log = logging.getLogger(__name__)
FORMATS = ("md", "csv", "tex")
DASH = "–"
TOP3_TEXT = {"pure": "the 3 highest scores of each image", "thresholded": "the 3 highest scores with score > 0.5"}
#: The metric whose paired difference to the baseline, confidence interval and verdict the table shows.
DELTA_METRIC = "mAP"
#: The verdict cell of the baseline row (the reference of every Δ).
REFERENCE = "reference"


# ------------------------------------------------------------------------------------ our results


def collect_results(spec: ExperimentSpec, runs: str | Path) -> dict[str, dict[int, dict[str, float]]]:
    """Our metric values per row and seed, read from ``<runs>/<dataset>/metrics-*/metrics.json``.

    Only finished steps (``done`` present) whose ``metrics.json`` records this spec's name and
    fingerprint count; among duplicates of a (row, seed) the latest ``finished`` wins.
    """
    root = Path(runs) / spec.dataset.source
    fingerprint = spec.fingerprint()
    found: dict[tuple[str, int], tuple[str, str, dict]] = {}
    for mfile in sorted(root.glob("metrics-*/metrics.json")):
        if not (mfile.parent / "done").exists():
            continue
        if not record_intact(mfile.parent):
            raise ConfigError(f"{mfile}: damaged (it or its step record fails the checksum in done); "
                              "`spl experiment run` makes it again")
        try:
            rec = json.loads(mfile.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{mfile}: malformed JSON ({getattr(e, 'msg', e)})") from None
        if rec.get("table") != spec.name or rec.get("fingerprint") != fingerprint:
            continue
        if rec.get("row") not in spec.rows:
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
    (:func:`replication.statistics.evaluate_claims`).
    """

    spec: ExperimentSpec
    paper: PaperTable
    rows: tuple[TableRow, ...]
    claims: tuple[Claim, ...] = ()
    claim_group: ClaimGroup | None = None
    controls: str = ""  # the controls' paragraph (:func:`replication.statistics.control_paragraph`); "" without

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

    Adds the paired Δ mAP of every row vs the baseline and the paper's claims tested on our mAP.
    """
    rows: list[TableRow] = []
    for lit in spec.paper.literature:
        cells = tuple(Cell(None, None, paper.get(lit, c)) for c in spec.columns)
        rows.append(TableRow(lit, lit, 0, True, cells))
    values = metric_by_seed(results)
    base = values.get(BASELINE, {})
    for row in spec.rows:
        seeds = results.get(row, {})
        control = parse_row_id(row).control
        cells = []
        for c in spec.columns:
            vals = [m[c] for m in seeds.values() if c in m]
            mean, std = mean_std(vals) if vals else (None, None)
            cells.append(Cell(mean, std, None if control else paper.get(row, c)))
        delta = None if row == BASELINE else paired_difference(values.get(row, {}), base)
        rows.append(TableRow(row, row_label(row), len(seeds), False, tuple(cells), delta, control))
    claims, group = evaluate_claims(values, spec.rows)
    controls = control_paragraph(values, spec.rows, DELTA_METRIC) if DELTA_METRIC in spec.columns else ""
    return Table(spec, paper, tuple(rows), claims, group, controls)


# ------------------------------------------------------------------------------------ formatting


def _num(x: float | None, signed: bool = False, minus: str = "-") -> str:
    if x is None:
        return ""
    text = f"{x:+.1f}" if signed else f"{x:.1f}"
    if text in ("+0.0", "-0.0"):
        text = "0.0" if not signed else "+0.0"
    return text.replace("-", minus)


def _num2(x: float, minus: str = "-") -> str:
    """Signed, two decimals (Δ and its CI): ``+1.23``, ``-0.40``; zero as ``+0.00``."""
    text = f"{x:+.2f}"
    if text == "-0.00":
        text = "+0.00"
    return text.replace("-", minus)


def delta_text(r: TableRow, minus: str = "-") -> str:
    """The Δ mAP cell of a row: ``+1.23 [+0.45, +2.01]``, ``+1.23 (1 seed)`` or "" (no paired seed / baseline)."""
    d = r.delta
    if d is None:
        return ""
    if d.low is None or d.high is None:
        return f"{_num2(d.mean, minus)} (1 seed)"
    return f"{_num2(d.mean, minus)} [{_num2(d.low, minus)}, {_num2(d.high, minus)}]"


def verdict_text(r: TableRow) -> str:
    """The verdict cell: the verdict of the row's Δ, "reference" for the baseline, "" without a Δ."""
    if r.literature:
        return ""
    if r.row == BASELINE:
        return REFERENCE
    return "" if r.delta is None else r.delta.verdict


def _legend(table: Table) -> list[str]:
    spec = table.spec
    seeds = sorted({r.seeds for r in table.rows if not r.literature})
    lines = [
        f"Each cell: ours / paper / difference (ours − paper), in %. Ours: {spec.dataset.source}, "
        f"mean ± sample std over the seeds when there are several (seeds per row: "
        f"{', '.join(map(str, seeds)) or '0'}).",
    ]
    if table.has_delta:
        lines.append(
            f"Δ {DELTA_METRIC} vs baseline: the mean paired difference row − baseline (seed i with seed i), in "
            f"points, with its 95% confidence interval [low, high] from the t distribution with n − 1 degrees of "
            f"freedom over the n paired seeds. Verdict: *better* if the interval lies entirely above 0, "
            f"*worse* if entirely below, *no detectable difference* if it contains 0; *{NOT_AVAILABLE}* with a "
            f"single seed (one difference gives no estimate of its spread)."
        )
    lines += [
        f"Paper: {spec.paper.caption}.",
        f"Metric convention `{spec.metrics.convention}`; Top-3 columns count as positive "
        f"{TOP3_TEXT[spec.metrics.top3]} (`{spec.metrics.top3}`).",
    ]
    if table.has_controls:
        lines.append(CONTROL_NOTE)
    if spec.paper.note:
        lines.append(f"**Note:** {spec.paper.note}")
    return lines


#: The legend line of a table with control rows (Markdown; the CSV has a ``beyond_paper`` column, the LaTeX a footnote).
CONTROL_NOTE = (
    f"{BEYOND_PAPER_MARK} Beyond the paper: control rows (issue #13) with no paper numbers. *block-shuffled real*: "
    f"real training canvases with their 4 × 4 blocks permuted, in place of a GAN's images; *iteration-matched*: "
    f"real images only, trained for as many iterations as a row with generated images; *λ*: the weight of the "
    f"generated images in the loss (1 in the paper's rows)."
)


def format_verdict(table: Table) -> str:
    """The plain-language paragraph on the paper's claims (Markdown), from the table's paired mAP results.

    With control rows it is followed by their section, one sentence per comparison
    (:func:`replication.statistics.control_paragraph`).
    """
    if table.claim_group is None:
        return ""
    text = verdict_paragraph(table.claims, table.claim_group, DELTA_METRIC)
    return f"{text}\n{table.controls}" if table.controls else text


def format_markdown(table: Table, *, verdict: bool = True) -> str:
    """The table as GitHub Markdown: a title, the verdict on the paper's claims, a legend and the table.

    One ``ours / paper / Δ`` cell per metric, and after the mAP column the paired Δ mAP vs the
    baseline with its 95% CI and the verdict. ``verdict=False`` leaves the claims paragraph out.
    """
    spec = table.spec
    out = [f"# {spec.title}", ""]
    if verdict and table.claim_group is not None:
        out += [format_verdict(table), "## Table", ""]
    out += [f"- {line}" for line in _legend(table)]
    out.append("")
    heads, aligns = [], []
    for c in spec.columns:
        heads.append(metric_label(c))
        aligns.append("---:|")
        if table.has_delta and c == DELTA_METRIC:
            heads += [f"Δ {DELTA_METRIC} vs baseline [95% CI]", "Verdict"]
            aligns += ["---:|", "---|"]
    out.append("| Method | Seeds | " + " | ".join(heads) + " |")
    out.append("|---|---:|" + "".join(aligns))
    for r in table.rows:
        cells = []
        for c, cell in zip(spec.columns, r.cells, strict=True):
            ours = (
                DASH if cell.ours is None else _num(cell.ours) + (f" ± {cell.std:.1f}" if cell.std is not None else "")
            )
            paper = DASH if cell.paper is None else _num(cell.paper)
            diff = DASH if cell.diff is None else _num(cell.diff, signed=True)
            cells.append(f"{ours} / {paper} / {diff}")
            if table.has_delta and c == DELTA_METRIC:
                cells += [delta_text(r) or DASH, verdict_text(r) or DASH]
        seeds = DASH if r.literature else str(r.seeds)
        out.append(f"| {r.shown_label} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def format_csv(table: Table) -> str:
    """The table as wide CSV: ``method,generator,seeds`` then per metric ``<m>,<m>:std,<m>:paper,<m>:diff``.

    After the mAP group: ``mAP:delta,mAP:delta_low,mAP:delta_high`` (paired Δ vs the baseline and
    its 95% CI, two decimals), ``mAP:paired_seeds`` and ``mAP:verdict``. A table with control rows
    (issue #13) has two more columns after ``seeds``: ``row`` (the row id, e.g. ``spl/dcgan@0.3``;
    ``generator`` holds the image source ``dcgan``) and ``beyond_paper`` (``yes`` for a control row).
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    controls = table.has_controls
    header = ["method", "generator", "seeds"] + (["row", "beyond_paper"] if controls else [])
    for c in table.spec.columns:
        header += [c, f"{c}:std", f"{c}:paper", f"{c}:diff"]
        if table.has_delta and c == DELTA_METRIC:
            header += [f"{c}:delta", f"{c}:delta_low", f"{c}:delta_high", f"{c}:paired_seeds", f"{c}:verdict"]
    w.writerow(header)
    for r in table.rows:
        method, gen = (r.row, None) if r.literature else parse_row_id(r.row)[:2]
        line = [method, gen or "", "" if r.literature else str(r.seeds)]
        if controls:
            line += ["" if r.literature else r.row, "yes" if r.control else ""]
        for c, cell in zip(table.spec.columns, r.cells, strict=True):
            line += [_num(cell.ours), "" if cell.std is None else f"{cell.std:.1f}", _num(cell.paper),
                     _num(cell.diff, signed=True)]
            if table.has_delta and c == DELTA_METRIC:
                d = r.delta
                line += ["" if d is None else _num2(d.mean),
                         "" if d is None or d.low is None else _num2(d.low),
                         "" if d is None or d.high is None else _num2(d.high),
                         "" if d is None else str(d.n), verdict_text(r)]
        w.writerow(line)
    return buf.getvalue()


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("−", "$-$"), ("∩", r"$\cap$"), ("×", r"$\times$"), ("—", "---"), ("–", "--"),
                 ("λ", r"$\lambda$")):
        text = text.replace(a, b)
    return text


def format_latex(table: Table) -> str:
    """The table as a LaTeX ``table`` (needs ``booktabs``): per method a row for ours, the paper and Δ.

    With a baseline row and an mAP column, two last columns give, on each method's "ours" row, the
    paired Δ mAP vs the baseline with its 95% CI and the verdict.
    """
    spec = table.spec
    cols = spec.columns
    n_all = sum(1 for c in cols if not c.startswith(TOP3_PREFIX))
    n_top = len(cols) - n_all
    extra = 2 if table.has_delta else 0
    delta_caption = (
        f" Last two columns: the paired difference $\\Delta${DELTA_METRIC} = row $-$ baseline (seed $i$ with seed "
        f"$i$) with its 95\\% $t$ confidence interval over the seeds, and the verdict (better / worse if the "
        f"interval lies above / below 0, no detectable difference if it contains 0, n/a with one seed)."
        if extra else ""
    )
    lines = [
        "% Generated by `spl tables render`; needs \\usepackage{booktabs}.",
        "\\begin{table*}[t]",
        "\\centering",
        "\\small",
        f"\\caption{{{_tex_escape(spec.title)}. Ours ({_tex_escape(spec.dataset.source)}, mean"
        f"$\\pm$std over seeds) vs.\\ the paper ({_tex_escape(spec.paper.caption)}); "
        f"$\\Delta$ = ours $-$ paper, in \\%.{delta_caption}"
        f"{(' ' + _tex_escape(spec.paper.note)) if spec.paper.note else ''}"
        f"{(' ' + TEX_CONTROL_NOTE) if table.has_controls else ''}}}",
        f"\\label{{tab:{spec.name}}}",
        "\\begin{tabular}{ll" + "r" * len(cols) + "rl" * (extra // 2) + "}",
        "\\toprule",
    ]
    groups, rules = [], []
    if n_all:
        groups.append(f"\\multicolumn{{{n_all}}}{{c}}{{All}}")
        rules.append(f"\\cmidrule(lr){{3-{2 + n_all}}}")
    if n_top:
        groups.append(f"\\multicolumn{{{n_top}}}{{c}}{{Top-3}}")
        rules.append(f"\\cmidrule(lr){{{3 + n_all}-{2 + len(cols)}}}")
    if extra:
        groups.append(f"\\multicolumn{{2}}{{c}}{{{DELTA_METRIC} vs.\\ baseline}}")
        rules.append(f"\\cmidrule(lr){{{3 + len(cols)}-{4 + len(cols)}}}")
    lines.append("Method & & " + " & ".join(groups) + " \\\\")
    lines.append("".join(rules))
    names = [c[len(TOP3_PREFIX):] if c.startswith(TOP3_PREFIX) else c for c in cols]
    if extra:
        names += ["$\\Delta$ [95\\% CI]", "verdict"]
    lines.append(" & & " + " & ".join(names) + " \\\\")
    lines.append("\\midrule")
    blank = [""] * extra
    for i, r in enumerate(table.rows):
        if i:
            lines.append("\\addlinespace")
        label = _tex_escape(r.label) + ("$^\\dagger$" if r.control else "")
        if not r.literature:
            ours = [
                "--" if c.ours is None
                else _num(c.ours, minus="$-$") + (f"$\\pm${c.std:.1f}" if c.std is not None else "")
                for c in r.cells
            ]
            if extra:
                ours += [delta_text(r, minus="$-$") or "--", verdict_text(r) or "--"]
            lines.append(f"{label} & ours ({r.seeds}) & " + " & ".join(ours) + " \\\\")
            label = ""
        paper = ["--" if c.paper is None else _num(c.paper) for c in r.cells]
        lines.append(f"{label} & paper & " + " & ".join(paper + blank) + " \\\\")
        if not r.literature:
            diff = ["--" if c.diff is None else _num(c.diff, signed=True, minus="$-$") for c in r.cells]
            lines.append(" & $\\Delta$ & " + " & ".join(diff + blank) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table*}"]
    return "\n".join(lines) + "\n"


#: The caption sentence of a LaTeX table with control rows.
TEX_CONTROL_NOTE = (
    "Rows marked $^\\dagger$ go beyond the paper (controls, no paper numbers): block-shuffled real canvases in "
    "place of a GAN's images, an iteration-matched real-only baseline, and generated-image weights $\\lambda < 1$."
)

FORMATTERS = {"md": format_markdown, "csv": format_csv, "tex": format_latex}


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
        series[row_label(f"{key[0]}/{key[1]}")] = (
            lams, [points[key][x].ours for x in lams], [points[key][x].std or 0.0 for x in lams])
    return series, baseline


def plot_lambda(table: Table, path: str | Path) -> Path | None:
    """``<name>_lambda.png``: mAP vs λ per rule × source with the baseline as a band; None without ``@λ`` rows."""
    series, baseline = lambda_series(table)
    if not series:
        return None
    from replication.plots import plot_lambda_sensitivity  # loads Matplotlib: only when the figure is drawn

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
    from replication.plots import plot_delta_map  # loads Matplotlib: only when the figure is drawn

    return plot_delta_map(labels, means, lows, highs, path,
                          title=f"{table.spec.title}: paired Δ {DELTA_METRIC} vs the baseline, 95% CI")


# ------------------------------------------------------------------------------------ the report page


@dataclass(frozen=True)
class StepTimes:
    """The wall time of one step kind: how many of its planned steps are done and their recorded seconds."""

    kind: str
    planned: int
    done: int
    seconds: float
    longest: float
    longest_label: str


@dataclass(frozen=True)
class Report:
    """What the report page shows beside the table, read from the spec's finished run directories.

    ``quality``: generator → its quality step's ``quality.json``; ``real_grids`` / ``sample_grids``:
    generator → the GAN's training-image grid / the grid of its first samples; ``galleries``: image
    source → the gallery PNG; ``times``: one :class:`StepTimes` per step kind, in plan order. Paths
    are in the run directories (copied next to the page by :func:`write_table`).
    """

    quality: dict[str, dict] = field(default_factory=dict)
    real_grids: dict[str, Path] = field(default_factory=dict)
    sample_grids: dict[str, Path] = field(default_factory=dict)
    galleries: dict[str, Path] = field(default_factory=dict)
    times: tuple[StepTimes, ...] = ()


def _done_seconds(path: Path) -> float | None:
    """The ``seconds`` of a step's ``done`` record; None when not done (0 for a marker without a record)."""
    done = path / DONE
    if not done.is_file():
        return None
    try:
        return float(json.loads(done.read_text(encoding="utf-8") or "{}").get("seconds", 0.0))
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
        return 0.0


def load_report(spec: ExperimentSpec, runs: str | Path = "runs", seeds: int = 1) -> Report:
    """The :class:`Report` of ``spec`` under ``runs``: the spec is planned (``seeds`` seeds, no data-root
    check) to locate its step directories; only finished steps (``done`` present) are read."""
    runs = Path(runs)
    plan = plan_experiment(spec, seeds=max(1, seeds), check_data=False)
    named = plan.named

    def finished(key: str, rel: str) -> Path | None:
        step = named.get(key)
        if step is None or not step.is_done(runs):
            return None
        f = step.path(runs) / rel
        return f if f.is_file() else None

    quality: dict[str, dict] = {}
    real_grids: dict[str, Path] = {}
    sample_grids: dict[str, Path] = {}
    galleries: dict[str, Path] = {}
    for g in spec.generators:
        q = finished(f"quality/{g}", QUALITY_FILE)
        if q is not None:
            try:
                quality[g] = json.loads(q.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ConfigError(f"{q}: malformed JSON ({e.msg})") from None
        for target, key, rel in ((real_grids, f"gan/{g}", REAL_GRID), (sample_grids, f"samples/{g}", SAMPLE_GRID)):
            f = finished(key, rel)
            if f is not None:
                target[g] = f
    for src in spec.sources:
        f = finished(f"gallery/{src}", GALLERY)
        if f is not None:
            galleries[src] = f
    by_kind: dict[str, list[tuple[float | None, str]]] = {}
    for step in plan.steps:
        by_kind.setdefault(step.kind, []).append((_done_seconds(step.path(runs)), step.describe()))
    times = []
    for kind, entries in by_kind.items():
        done = [(sec, label) for sec, label in entries if sec is not None]
        longest = max(done, default=(0.0, ""))
        times.append(StepTimes(kind, len(entries), len(done), sum(sec for sec, _ in done), *longest))
    return Report(quality, real_grids, sample_grids, galleries, tuple(times))


#: The columns of the GAN quality table: (header, quality.json path, format).
QUALITY_COLUMNS = (
    ("FD ↓", ("fd",), "{:.4g}"),
    ("KID ↓", ("kid",), "{:.4g}"),
    ("Precision ↑", ("precision",), "{:.3f}"),
    ("Recall ↑", ("recall",), "{:.3f}"),
    ("Mean max confidence", ("labels", "generated", "mean_max_confidence"), "{:.3f}"),
    ("SPL-label entropy (nats)", ("labels", "generated", "spl_entropy_mean"), "{:.3f}"),
)


def _get(record: Mapping, path: tuple[str, ...]) -> float | None:
    value: object = record
    for k in path:
        if not isinstance(value, Mapping) or k not in value:
            return None
        value = value[k]
    return None if value is None else float(value)  # type: ignore[arg-type]


def quality_cell(record: Mapping, path: tuple[str, ...], fmt: str) -> str:
    """One cell of the quality table: the value, and for the label statistics the real images' value too."""
    v = _get(record, path)
    if v is None:
        return DASH
    text = fmt.format(v)
    if path[0] == "labels":
        real = _get(record, ("labels", "real", *path[2:]))
        if real is not None:
            text += f" (real {fmt.format(real)})"
    if path == ("kid",) and _get(record, ("kid_std",)) is not None:
        text += f" ± {fmt.format(_get(record, ('kid_std',)))}"
    return text


def format_quality(spec: ExperimentSpec, quality: Mapping[str, Mapping]) -> str:
    """The Markdown table of the GANs' sample quality (one row per generator with a finished quality step)."""
    if not quality:
        return ""
    heads = ["Generator", "GAN iterations", "Samples / real"] + [h for h, _, _ in QUALITY_COLUMNS]
    out = ["| " + " | ".join(heads) + " |", "|---|" + "---:|" * (len(heads) - 1)]
    for g in spec.generators:
        rec = quality.get(g)
        if rec is None:
            continue
        cells = [GEN_LABELS.get(g, g), str(rec.get("iteration", DASH)),
                 f"{rec.get('n_generated', DASH)} / {rec.get('n_real', DASH)}"]
        cells += [quality_cell(rec, path, fmt) for _, path, fmt in QUALITY_COLUMNS]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


QUALITY_LEGEND = (
    "Each GAN's samples against its real training images, both passed through the baseline's seed-0 "
    "classifier (the model that labels the samples; features: the input of its final linear layer): "
    "Fréchet distance and kernel inception distance (± std over subsets; lower is closer), k-NN precision "
    "(samples inside the real images' manifold) and recall (real images covered by the samples' manifold; "
    "k = 3), and the classifier's label statistics on the samples with the real images' value in "
    "parentheses: the mean highest sigmoid confidence and the mean entropy of the SPL label (log C for a "
    "uniform label). docs/gan.md#sample-quality."
)


def _seconds(x: float) -> str:
    return f"{x:.1f} s" if x < 120 else f"{x / 60:.1f} min"


def format_times(times: Iterable[StepTimes]) -> str:
    """The Markdown table of the time per step kind, with the total."""
    times = list(times)
    if not times:
        return ""
    out = ["| Step | Done / planned | Total | Longest |", "|---|---:|---:|---|"]
    for t in times:
        longest = f"{_seconds(t.longest)} ({t.longest_label})" if t.done else DASH
        out.append(f"| {t.kind} | {t.done} / {t.planned} | {_seconds(t.seconds)} | {longest} |")
    total = sum(t.seconds for t in times)
    out.append(f"| **all** | {sum(t.done for t in times)} / {sum(t.planned for t in times)} | "
               f"**{_seconds(total)}** | |")
    return "\n".join(out) + "\n"


def _image(alt: str, rel: str) -> str:
    return f"![{alt}]({rel})"


def format_report(table: Table, report: Report | None = None, figures: Mapping[str, str] | None = None,
                  images: Mapping[tuple[str, str], str] | None = None) -> str:
    """The report page (Markdown): :func:`format_markdown` followed by the sections of the module docstring.

    ``figures``: figure kind (``delta``, ``lambda``, ``png``, ``csv``, ``tex``) → link relative to the page;
    ``images``: ``(what, source)`` with what in ``real``, ``samples``, ``gallery`` → relative link of its copy.
    Sections without data are left out.
    """
    spec = table.spec
    figures, images = dict(figures or {}), dict(images or {})
    out = [format_markdown(table).rstrip("\n")]
    if report is not None and report.quality:
        out += ["", "## GAN sample quality", "", QUALITY_LEGEND, "", format_quality(spec, report.quality).rstrip("\n")]
    grids = [g for g in spec.generators if ("real", g) in images or ("samples", g) in images]
    if grids:
        out += ["", "## Generated images beside real ones", "",
                "Left: real training images (what the GAN imitates); right: the GAN's first samples from the "
                "set the rows train on.", "", "| Generator | Real training images | Samples |", "|---|---|---|"]
        for g in grids:
            name = GEN_LABELS.get(g, g)
            real = _image(f"real training images ({name})", images[("real", g)]) if ("real", g) in images else DASH
            fake = _image(f"{name} samples", images[("samples", g)]) if ("samples", g) in images else DASH
            out.append(f"| {name} | {real} | {fake} |")
    galleries = [src for src in spec.sources if ("gallery", src) in images]
    if galleries:
        out += ["", "## SPL-label galleries", "",
                "Generated images with the soft labels the rows train on (the SPL label from the baseline's "
                "confidences, and the uniform smooth label)."]
        for src in galleries:
            out += ["", f"### {SOURCE_LABELS.get(src, src)}", "",
                    _image(f"{src} gallery", images[("gallery", src)])]
    if "delta" in figures:
        out += ["", f"## Δ {DELTA_METRIC} per row", "",
                "The paired difference to the baseline of each row with its 95% confidence interval (bars: green "
                "when the interval lies above 0, red below, gray when it contains 0, light gray with one seed).",
                "", _image(f"Δ {DELTA_METRIC} per row", figures["delta"])]
    if "lambda" in figures:
        out += ["", "## Generated-image weight λ (beyond the paper)", "",
                _image("mAP against λ", figures["lambda"])]
    if report is not None and any(t.done for t in report.times):
        out += ["", "## Time per step", "",
                "Wall time recorded by each finished step when it ran (cached steps keep the time of their run), "
                "summed per step kind.", "", format_times(report.times).rstrip("\n")]
    files = [f"[{k.upper() if k != 'png' else 'mAP figure'}]({figures[k]})" for k in ("csv", "tex", "png")
             if k in figures]
    if files:
        out += ["", "Also: " + ", ".join(files) + "."]
    return "\n".join(out) + "\n"


def _copy(src: Path, dst: Path) -> Path:
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))
    return dst


def load_table(spec: ExperimentSpec, runs: str | Path = "runs") -> Table:
    """The :class:`Table` of ``spec``: the paper's numbers and our finished results under ``runs``.

    Missing rows show as "–" (with a warning), so a table can be looked at while runs are going.
    """
    paper = read_paper_table(spec.paper.csv)
    results = collect_results(spec, runs)
    missing = [r for r in spec.rows if r not in results]
    if missing:
        log.warning("%s: no finished results under %s for rows %s", spec.path, runs, ", ".join(missing))
    return build_table(spec, results, paper)


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
                formats: Iterable[str] = FORMATS, *, plot: bool = True) -> dict[str, Path]:
    """Render ``spec`` from the run directories under ``runs`` into ``out_dir``: the table and its report page
    (:func:`load_table`, :func:`load_report`, :func:`write_table`)."""
    table = load_table(spec, runs)
    return write_table(table, out_dir, formats, plot=plot, report=load_report(spec, runs, table_seeds(table)))


def table_seeds(table: Table) -> int:
    """The most seeds any row of the table has (at least 1): how many seeds to plan for the report."""
    return max([r.seeds for r in table.rows if not r.literature] + [1])


__all__ = [
    "PaperTable", "Cell", "TableRow", "Table", "read_paper_table", "collect_results", "metric_by_seed",
    "build_table", "delta_text", "verdict_text", "format_verdict", "format_markdown", "format_csv", "format_latex",
    "plot_map", "lambda_series", "plot_lambda", "CONTROL_NOTE", "load_table", "write_table", "render_spec",
    "FORMATS", "DELTA_METRIC", "REFERENCE", "delta_series", "plot_delta", "StepTimes", "Report", "load_report",
    "format_quality", "format_times", "format_report", "table_seeds",
]
