"""``spl tables render SPEC``: regenerate a table (Markdown report page, CSV, LaTeX, figures) from the runs.

Prints the Markdown table, then, last, the verdict on the paper's claims (also at the top of the
written ``<name>.md``, the report page: docs/experiments.md#the-report-page). ``spl tables reproduce SPEC``
compares every verdict between seed sets run into one runs folder (issue #19).
"""
from __future__ import annotations

from pathlib import Path

import click

from replication.experiments.spec import load_spec, with_train_overrides
from replication.io_utils import atomic_write_text
from replication.report.formats import FORMATS, format_markdown, format_verdict
from replication.report.page import load_report
from replication.report.render import reproduction_report, write_table
from replication.report.table import load_table, table_seeds


@click.group(name="tables")
def command() -> None:
    """Render Tables 1–3 (and the demo table) beside the paper's numbers."""


@command.command("render")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice([*FORMATS, "all"]), default="all", show_default=True,
              help="Which file(s) to write; the Markdown table is always printed.")
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Root of the run directories (runs/<dataset>/<step>-<hash>/).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("tables/out"), show_default=True,
              help="Where <name>.md (the report page, its images in <name>_files/), .csv, .tex and the figures "
                   "are written.")
@click.option("--no-plot", is_flag=True, help="Skip the figures (mAP, Δ mAP, λ).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="The train-preset overrides given to `spl experiment run --set`; repeatable.")
@click.option("--seeds", type=int, default=None, help="Only the seed set --seed-start .. +N-1 (default: every seed).")
@click.option("--seed-start", type=int, default=0, show_default=True, help="First seed of the seed set.")
def render_cmd(spec: Path, fmt: str, runs: Path, out_dir: Path, no_plot: bool, sets: tuple[str, ...],
               seeds: int | None, seed_start: int) -> None:
    """Render the table of SPEC from the finished runs under --runs; print it as Markdown, then the verdict.

    The verdict paragraph says which of the paper's claims held on these runs (paired seeds, 95% CIs).
    <name>.md is the report page: verdict, table, GAN quality, sample grids, galleries, figures, time per step.
    """
    loaded = with_train_overrides(load_spec(spec), sets)
    table = load_table(loaded, runs, None if seeds is None else range(seed_start, seed_start + seeds))
    written = write_table(table, out_dir, FORMATS if fmt == "all" else (fmt,), plot=not no_plot,
                          report=load_report(loaded, runs, table_seeds(table) if seeds is None else seeds, seed_start))
    click.echo(format_markdown(table, verdict=False))
    click.echo(format_verdict(table))
    for path in written.values():
        click.echo(f"wrote {path}", err=True)


def parse_seed_sets(text: str) -> list[int]:
    """``--seed-sets``: the first seed of each set, comma-separated (``0,5``)."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of seeds like 0,5", param_hint="--seed-sets") from None


@command.command("reproduce")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--seeds", type=int, required=True, help="Seeds per set (e.g. 5).")
@click.option("--seed-sets", default="0,5", show_default=True, help="First seed of each set, comma-separated.")
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Root of the run directories holding every set (`spl experiment run --seed-start`).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("tables/out"), show_default=True,
              help="Where <name>_reproduce.md is written.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="The train-preset overrides given to `spl experiment run --set`; repeatable.")
def reproduce_cmd(spec: Path, seeds: int, seed_sets: str, runs: Path, out_dir: Path, sets: tuple[str, ...]) -> None:
    """Compare every verdict of SPEC between seed sets run into one --runs; a verdict that flips is unstable."""
    loaded = with_train_overrides(load_spec(spec), sets)
    text = reproduction_report(loaded, runs, seeds, parse_seed_sets(seed_sets))
    path = out_dir / f"{loaded.name}_reproduce.md"
    atomic_write_text(path, text)
    click.echo(text)
    click.echo(f"wrote {path}", err=True)
