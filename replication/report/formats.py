"""The table in three formats (Markdown, CSV, LaTeX), and the number and cell formats the study shares.

* Values are percentages with one decimal (:func:`num1`); the difference ``ours − paper`` is taken
  between the displayed numbers (:class:`~replication.report.table.Cell`).
* Δ mAP vs the baseline and its 95% CI have two decimals and a sign (:func:`num2`,
  :func:`delta_interval`); the verdict column reads better / worse / no detectable difference, n/a
  with one seed, "reference" for the baseline.
* ``<name>.md`` (:func:`format_markdown`): a title, the paragraph on the paper's claims
  (:func:`replication.report.statistics.verdict_paragraph`) and the controls' section, a legend and
  the table; the report page around it is :mod:`replication.report.page`.
* ``<name>.csv`` (:func:`format_csv`): wide, per metric ours, std, paper, diff; for mAP also the
  paired Δ, its CI, the paired seed count and the verdict; with control rows ``row`` and
  ``beyond_paper`` columns.
* ``<name>.tex`` (:func:`format_latex`): booktabs; per method a row for ours, the paper and Δ, plus
  two columns for Δ mAP vs the baseline and the verdict; control rows get a dagger and a caption
  sentence.

The study (:mod:`replication.report.study`) writes its table with the same :func:`num1`,
:func:`num2`, :func:`mean_std_text`, :func:`delta_interval`, :func:`md_row` and :func:`csv_text`.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from replication.report.statistics import NOT_AVAILABLE, PairedDiff, verdict_paragraph
from replication.report.table import DELTA_METRIC, REFERENCE, Table, TableRow
from replication.vocabulary import BASELINE, BEYOND_PAPER_MARK, TOP3_PREFIX, metric_label, parse_row_id

FORMATS = ("md", "csv", "tex")
DASH = "–"
TOP3_TEXT = {"pure": "the 3 highest scores of each image", "thresholded": "the 3 highest scores with score > 0.5"}


# ------------------------------------------------------------------------------------ numbers and cells


def num1(x: float | None, signed: bool = False, minus: str = "-") -> str:
    """One decimal (a metric in %): ``71.9``; signed ``+0.5``; zero as ``0.0`` / ``+0.0``; "" for None."""
    if x is None:
        return ""
    text = f"{x:+.1f}" if signed else f"{x:.1f}"
    if text in ("+0.0", "-0.0"):
        text = "0.0" if not signed else "+0.0"
    return text.replace("-", minus)


def num2(x: float | None, minus: str = "-") -> str:
    """Signed, two decimals (Δ and its CI): ``+1.23``, ``-0.40``; zero as ``+0.00``; "" for None."""
    if x is None:
        return ""
    text = f"{x:+.2f}"
    if text == "-0.00":
        text = "+0.00"
    return text.replace("-", minus)


def mean_std_text(mean: float, std: float | None) -> str:
    """``mean ± std`` with one decimal each (Markdown), or the mean alone without a std (one seed)."""
    return num1(mean) + (f" ± {std:.1f}" if std is not None else "")


def delta_interval(d: PairedDiff | None, minus: str = "-") -> str:
    """A paired Δ: ``+1.23 [+0.45, +2.01]``, ``+1.23 (1 seed)`` without an interval, or "" without a Δ."""
    if d is None:
        return ""
    if d.low is None or d.high is None:
        return f"{num2(d.mean, minus)} (1 seed)"
    return f"{num2(d.mean, minus)} [{num2(d.low, minus)}, {num2(d.high, minus)}]"


def md_row(cells: Iterable[str]) -> str:
    """One Markdown table line: ``| a | b | c |``."""
    return "| " + " | ".join(cells) + " |"


def csv_text(rows: Iterable[Sequence[object]]) -> str:
    """Rows as CSV text (``\\n`` line ends, the :mod:`csv` module's quoting)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def delta_text(r: TableRow, minus: str = "-") -> str:
    """The Δ mAP cell of a row: ``+1.23 [+0.45, +2.01]``, ``+1.23 (1 seed)`` or "" (no paired seed / baseline)."""
    return delta_interval(r.delta, minus)


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
        lines.append(CONTROL_NOTE_ITERATIONS if table.iteration_schedule else CONTROL_NOTE)
    if spec.generators:
        lines.append(REPLICATES_NOTE if spec.gan_options.per_replicate else SHARED_GAN_NOTE)
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
#: :data:`CONTROL_NOTE` of a spec trained with ``schedule: iterations`` (every row the same iteration budget).
CONTROL_NOTE_ITERATIONS = (
    f"{BEYOND_PAPER_MARK} Beyond the paper: control rows (issue #13) with no paper numbers. *block-shuffled real*: "
    f"real training canvases with their 4 × 4 blocks permuted, in place of a GAN's images; *2× iterations*: the "
    f"baseline trained for twice the iteration budget every row has (the plateau check: no detectable "
    f"difference if the budget is at the plateau); *λ*: the weight of the generated images in the loss (1 in the "
    f"paper's rows)."
)


#: The legend line on what a replicate is (issue #19): with ``gan.per_replicate`` the generator is inside it.
REPLICATES_NOTE = ("Replicates: seed i is the whole chain — GAN i, its samples, baseline i as their labeler, the label "
                   "files and every row's classifier i — so the intervals include the generator's variance.")
SHARED_GAN_NOTE = ("**Replicates share one GAN** (`gan.per_replicate: false`): its samples and label files are the "
                   "same for every seed, so the intervals cover the classifier's seeds only and **exclude the "
                   "generator's variance**; a verdict may change with the GAN's seed.")


def format_verdict(table: Table) -> str:
    """The plain-language paragraph on the paper's claims (Markdown), from the table's paired mAP results.

    With control rows it is followed by their section, one sentence per comparison
    (:func:`replication.report.statistics.control_paragraph`), and with ``real`` rows by the real
    ceiling's section (:func:`replication.report.statistics.ceiling_paragraph`).
    """
    if table.claim_group is None:
        return ""
    text = verdict_paragraph(table.claims, table.claim_group, DELTA_METRIC)
    for section in (table.controls, table.ceiling):
        if section:
            text = f"{text}\n{section}"
    return text


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
    out.append(md_row(["Method", "Seeds", *heads]))
    out.append("|---|---:|" + "".join(aligns))
    for r in table.rows:
        cells = []
        for c, cell in zip(spec.columns, r.cells, strict=True):
            ours = DASH if cell.ours is None else mean_std_text(cell.ours, cell.std)
            paper = DASH if cell.paper is None else num1(cell.paper)
            diff = DASH if cell.diff is None else num1(cell.diff, signed=True)
            cells.append(f"{ours} / {paper} / {diff}")
            if table.has_delta and c == DELTA_METRIC:
                cells += [delta_text(r) or DASH, verdict_text(r) or DASH]
        seeds = DASH if r.literature else str(r.seeds)
        out.append(md_row([r.shown_label, seeds, *cells]))
    return "\n".join(out) + "\n"


def format_csv(table: Table) -> str:
    """The table as wide CSV: ``method,generator,seeds`` then per metric ``<m>,<m>:std,<m>:paper,<m>:diff``.

    After the mAP group: ``mAP:delta,mAP:delta_low,mAP:delta_high`` (paired Δ vs the baseline and
    its 95% CI, two decimals), ``mAP:paired_seeds`` and ``mAP:verdict``. A table with control rows
    (issue #13) has two more columns after ``seeds``: ``row`` (the row id, e.g. ``spl/dcgan@0.3``;
    ``generator`` holds the image source ``dcgan``) and ``beyond_paper`` (``yes`` for a control row).
    """
    controls = table.has_controls
    header = ["method", "generator", "seeds"] + (["row", "beyond_paper"] if controls else [])
    for c in table.spec.columns:
        header += [c, f"{c}:std", f"{c}:paper", f"{c}:diff"]
        if table.has_delta and c == DELTA_METRIC:
            header += [f"{c}:delta", f"{c}:delta_low", f"{c}:delta_high", f"{c}:paired_seeds", f"{c}:verdict"]
    lines: list[list[str]] = [header]
    for r in table.rows:
        method, gen = (r.row, None) if r.literature else parse_row_id(r.row)[:2]
        line = [method, gen or "", "" if r.literature else str(r.seeds)]
        if controls:
            line += ["" if r.literature else r.row, "yes" if r.control else ""]
        for c, cell in zip(table.spec.columns, r.cells, strict=True):
            line += [num1(cell.ours), "" if cell.std is None else f"{cell.std:.1f}", num1(cell.paper),
                     num1(cell.diff, signed=True)]
            if table.has_delta and c == DELTA_METRIC:
                d = r.delta
                line += ["", "", "", ""] if d is None else [num2(d.mean), num2(d.low), num2(d.high), str(d.n)]
                line.append(verdict_text(r))
        lines.append(line)
    return csv_text(lines)


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
        f"{(' ' + _tex_control_note(table)) if table.has_controls else ''}}}",
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
                else num1(c.ours, minus="$-$") + (f"$\\pm${c.std:.1f}" if c.std is not None else "")
                for c in r.cells
            ]
            if extra:
                ours += [delta_text(r, minus="$-$") or "--", verdict_text(r) or "--"]
            lines.append(f"{label} & ours ({r.seeds}) & " + " & ".join(ours) + " \\\\")
            label = ""
        paper = ["--" if c.paper is None else num1(c.paper) for c in r.cells]
        lines.append(f"{label} & paper & " + " & ".join(paper + blank) + " \\\\")
        if not r.literature:
            diff = ["--" if c.diff is None else num1(c.diff, signed=True, minus="$-$") for c in r.cells]
            lines.append(" & $\\Delta$ & " + " & ".join(diff + blank) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table*}"]
    return "\n".join(lines) + "\n"


#: The caption sentence of a LaTeX table with control rows.
TEX_CONTROL_NOTE = (
    "Rows marked $^\\dagger$ go beyond the paper (controls, no paper numbers): block-shuffled real canvases in "
    "place of a GAN's images, an iteration-matched real-only baseline, and generated-image weights $\\lambda < 1$."
)
#: :data:`TEX_CONTROL_NOTE` of a spec trained with ``schedule: iterations``.
TEX_CONTROL_NOTE_ITERATIONS = (
    "Rows marked $^\\dagger$ go beyond the paper (controls, no paper numbers): block-shuffled real canvases in "
    "place of a GAN's images, the baseline trained for $2\\times$ the iterations (the plateau check), and "
    "generated-image weights $\\lambda < 1$."
)


def _tex_control_note(table: Table) -> str:
    return TEX_CONTROL_NOTE_ITERATIONS if table.iteration_schedule else TEX_CONTROL_NOTE


FORMATTERS = {"md": format_markdown, "csv": format_csv, "tex": format_latex}



__all__ = [
    "FORMATS", "DASH", "FORMATTERS", "CONTROL_NOTE", "CONTROL_NOTE_ITERATIONS", "REPLICATES_NOTE", "SHARED_GAN_NOTE",
    "TEX_CONTROL_NOTE", "TEX_CONTROL_NOTE_ITERATIONS",
    "num1", "num2", "mean_std_text", "delta_interval", "md_row", "csv_text", "delta_text", "verdict_text",
    "format_verdict", "format_markdown", "format_csv", "format_latex",
]
