"""The report page ``<name>.md`` (issue #13; docs/experiments.md#the-report-page), read top to bottom.

The verdict paragraph and the controls section, the table with its CIs
(:func:`replication.report.formats.format_markdown`), each GAN's sample quality (the spec's
``quality`` steps), its real-image grid beside its sample grid, the SPL-label galleries, the Δ mAP
figure, the λ figure and the time per step kind (from each step's ``done`` record). The
run-directory images are copied next to the page by :func:`replication.report.render.write_table`
and linked relatively, so the page renders on a code host. The run directories are located by
planning the spec (:func:`load_report`); nothing there is written.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from replication.errors import ConfigError
from replication.experiments.runner import plan_experiment
from replication.experiments.spec import ExperimentSpec
from replication.experiments.stepfns import GALLERY, QUALITY_FILE, REAL_GRID, SAMPLE_GRID
from replication.experiments.steps import DONE
from replication.report.formats import DASH, format_markdown, md_row
from replication.report.statistics import mean_std
from replication.report.table import DELTA_METRIC, Table
from replication.vocabulary import GEN_LABELS, SOURCE_LABELS

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

    ``quality``: generator → its quality step's ``quality.json`` (the first replicate's chain);
    ``quality_replicates``: generator → replicate seed → that chain's ``quality.json``; ``real_grids`` /
    ``sample_grids``: generator → the GAN's training-image grid / the grid of its first samples;
    ``galleries``: image source → the gallery PNG; ``times``: one :class:`StepTimes` per step kind, in
    plan order. Paths are in the run directories (copied next to the page by :func:`write_table`).
    """

    quality: dict[str, dict] = field(default_factory=dict)
    quality_replicates: dict[str, dict[int, dict]] = field(default_factory=dict)  # generator → chain → record
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


def load_report(spec: ExperimentSpec, runs: str | Path = "runs", seeds: int = 1, seed_start: int = 0) -> Report:
    """The :class:`Report` of ``spec`` under ``runs``: the spec is planned (``seeds`` seeds from ``seed_start``,
    no data-root check) to locate its step directories; only finished steps (``done`` present) are read."""
    runs = Path(runs)
    plan = plan_experiment(spec, seeds=max(1, seeds), check_data=False, seed_start=seed_start)
    named = plan.named

    def finished(key: str, rel: str) -> Path | None:
        step = named.get(key)
        if step is None or not step.is_done(runs):
            return None
        f = step.path(runs) / rel
        return f if f.is_file() else None

    quality: dict[str, dict] = {}
    replicates: dict[str, dict[int, dict]] = {}
    real_grids: dict[str, Path] = {}
    sample_grids: dict[str, Path] = {}
    galleries: dict[str, Path] = {}
    for g in spec.generators:
        for seed in plan.replicates:  # the chain of each replicate (one shared chain without gan.per_replicate)
            q = finished(f"quality/{g}/{seed}", QUALITY_FILE)
            if q is not None:
                try:
                    replicates.setdefault(g, {})[seed] = json.loads(q.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise ConfigError(f"{q}: malformed JSON ({getattr(e, 'msg', e)})") from None
        if plan.seed_start in replicates.get(g, {}):
            quality[g] = replicates[g][plan.seed_start]
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
    return Report(quality, replicates, real_grids, sample_grids, galleries, tuple(times))


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
    std = _get(record, ("kid_std",)) if path == ("kid",) else None
    if std is not None:
        # subsets as large as the sets are all the whole set: their std is rounding noise (1e-17), shown as 0
        text += f" ± {fmt.format(0.0 if abs(std) <= 1e-9 * abs(v) else std)}"
    return text


def format_quality(spec: ExperimentSpec, quality: Mapping[str, Mapping],
                   replicates: Mapping[str, Mapping[int, Mapping]] | None = None,
                   gen_labels: Mapping[str, str] | None = None) -> str:
    """The Markdown table of the GANs' sample quality (one row per generator with a finished quality step).

    With ``replicates`` (generator → chain → record) holding several chains of a generator: one row per
    replicate's GAN and a row with the mean ± std over them (:func:`quality_summary`). ``gen_labels``
    (generator → name) overrides the paper's GAN names (the peer PyTorch DCGAN is named as such).
    """
    if not quality:
        return ""
    replicates = replicates or {}
    names = {**GEN_LABELS, **(gen_labels or {})}
    heads = ["Generator", "GAN iterations", "Samples / real"] + [h for h, _, _ in QUALITY_COLUMNS]
    out = [md_row(heads), "|---|" + "---:|" * (len(heads) - 1)]
    for g in spec.generators:
        rec = quality.get(g)
        if rec is None:
            continue
        reps = replicates.get(g, {})
        if len(reps) < 2:
            out.append(md_row(_quality_cells(names.get(g, g), rec)))
            continue
        for seed, r in sorted(reps.items()):
            out.append(md_row(_quality_cells(f"{names.get(g, g)}, replicate {seed}", r)))
        out.append(md_row([f"**{names.get(g, g)}, mean ± std ({len(reps)} GANs)**", DASH, DASH]
                          + quality_summary(list(reps.values()))))
    return "\n".join(out) + "\n"


def _quality_cells(label: str, rec: Mapping) -> list[str]:
    """One row of the quality table: the label, the GAN's iterations, the sample counts and the measures."""
    cells = [label, str(rec.get("iteration", DASH)), f"{rec.get('n_generated', DASH)} / {rec.get('n_real', DASH)}"]
    return cells + [quality_cell(rec, path, fmt) for _, path, fmt in QUALITY_COLUMNS]


def quality_summary(records: list[Mapping]) -> list[str]:
    """One cell per :data:`QUALITY_COLUMNS`: mean ± sample std of the value over the replicates' GANs."""
    cells = []
    for _, path, fmt in QUALITY_COLUMNS:
        vals = [v for v in (_get(r, path) for r in records) if v is not None]
        if not vals:
            cells.append(DASH)
            continue
        mean, std = mean_std(vals)
        cells.append(fmt.format(mean) + (f" ± {fmt.format(std)}" if std is not None else ""))
    return cells


QUALITY_LEGEND = (
    "Each GAN's samples against its real training images, both passed through the baseline's classifier of "
    "the same replicate (the model that labels the samples; features: the input of its final linear layer): "
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
        out += ["", "## GAN sample quality", "", QUALITY_LEGEND, "",
                format_quality(spec, report.quality, report.quality_replicates, table.gen_labels).rstrip("\n")]
    grids = [g for g in spec.generators if ("real", g) in images or ("samples", g) in images]
    if grids:
        out += ["", "## Generated images beside real ones", "",
                "Left: real training images (what the GAN imitates); right: the GAN's first samples from the "
                "set the rows train on.", "", "| Generator | Real training images | Samples |", "|---|---|---|"]
        for g in grids:
            name = {**GEN_LABELS, **(table.gen_labels or {})}.get(g, g)
            real = _image(f"real training images ({name})", images[("real", g)]) if ("real", g) in images else DASH
            fake = _image(f"{name} samples", images[("samples", g)]) if ("samples", g) in images else DASH
            out.append(f"| {name} | {real} | {fake} |")
    galleries = [src for src in spec.sources if ("gallery", src) in images]
    if galleries:
        out += ["", "## SPL-label galleries", "",
                "Generated images with the soft labels the rows train on (the SPL label from the baseline's "
                "confidences, and the uniform smooth label)."]
        sources = {**SOURCE_LABELS, **(table.gen_labels or {})}
        for src in galleries:
            out += ["", f"### {sources.get(src, src)}", "",
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



__all__ = [
    "StepTimes", "Report", "load_report", "QUALITY_COLUMNS", "QUALITY_LEGEND", "quality_cell", "format_quality",
    "quality_summary", "format_times", "format_report",
]
