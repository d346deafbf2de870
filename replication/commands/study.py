"""``spl study run|render STUDY``: the gain of SPL and smooth labels against the labelled-set size (issue #13)."""
from __future__ import annotations

import time
from pathlib import Path

import click

from replication.commands.tables import parse_seed_sets
from replication.experiments.parallel import local_pool
from replication.experiments.steps import DEFAULT_THREADS
from replication.experiments.study import load_study, run_study
from replication.io_utils import atomic_write_text
from replication.report.study import conclusion, format_study_markdown, render_study, study_reproduction_report


@click.group(name="study")
def command() -> None:
    """Run or render a study: Δ mAP vs the baseline for several labelled-set sizes (tables/specs/study.yaml)."""


@command.command("run")
@click.argument("study", type=click.Path(path_type=Path))
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Root of the run directories (runs/<dataset>/<step>-<hash>/).")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Paired seeds per row (default: the study's `seeds`).")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Folder of the raw dataset (not needed for digits-mosaic).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run up to N independent steps at once, each in its own process (as `spl experiment run`).")
@click.option("--threads-per-step", "threads", type=click.IntRange(min=1), default=DEFAULT_THREADS,
              show_default=True, help="Torch CPU threads of every step (part of each step's hash).")
@click.option("--seed-start", type=click.IntRange(min=0), default=0, show_default=True,
              help="First seed of the replicates (e.g. 5 for a second, disjoint seed set; `spl study reproduce`).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def run_cmd(study: Path, runs: Path, seeds: int | None, data_root: Path | None, jobs: int, threads: int,
            seed_start: int, no_progress: bool) -> None:
    """Run every step of every size of STUDY not done yet; then `spl study render STUDY` writes the outputs."""
    t0 = time.perf_counter()
    loaded = load_study(study)
    with local_pool(jobs, threads) as pool:
        results = run_study(loaded, runs=runs, seeds=seeds, data_root=data_root, progress=not no_progress,
                            threads=threads, pool=pool, seed_start=seed_start)
    total = 0
    for n, result in results.items():
        ran = [r for r in result.records if r.status == "ran"]
        total += len(ran)
        for rec in ran:
            click.echo(f"N={n:<6d} ran {rec.step.describe():40s} {rec.seconds:8.1f} s", err=True)
    click.echo(f"{study}: {len(results)} sizes, {total} steps ran ({time.perf_counter() - t0:.1f} s)", err=True)


@command.command("render")
@click.argument("study", type=click.Path(path_type=Path))
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Root of the run directories.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("tables/out"), show_default=True,
              help="Where <name>.md, <name>.csv and <name>.png are written.")
@click.option("--no-plot", is_flag=True, help="Skip the figure.")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Seeds per size (default: the study's `seeds`; give what `run` was given).")
@click.option("--seed-start", type=click.IntRange(min=0), default=0, show_default=True,
              help="First seed of the set to render (e.g. 5 for the set `spl study run --seed-start 5` ran).")
def render_cmd(study: Path, runs: Path, out_dir: Path, no_plot: bool, seeds: int | None, seed_start: int) -> None:
    """Write STUDY's table, CSV and figure from the finished runs (one seed set: --seeds from --seed-start);
    print the table, then the conclusion."""
    result, written = render_study(load_study(study), runs, out_dir, plot=not no_plot, seeds=seeds,
                                   seed_start=seed_start)
    click.echo(format_study_markdown(result))
    for path in written.values():
        click.echo(f"wrote {path}", err=True)
    click.echo(conclusion(result))


@command.command("reproduce")
@click.argument("study", type=click.Path(path_type=Path))
@click.option("--seeds", type=click.IntRange(min=1), required=True, help="Seeds per set (e.g. 5).")
@click.option("--seed-sets", default="0,5", show_default=True, help="First seed of each set, comma-separated.")
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Root of the run directories holding every set (`spl study run --seed-start`).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("tables/out"), show_default=True,
              help="Where <name>_reproduce.md is written.")
def reproduce_cmd(study: Path, seeds: int, seed_sets: str, runs: Path, out_dir: Path) -> None:
    """Compare every verdict of STUDY (each size and row against the baseline) between seed sets run into one
    --runs; a verdict that flips is unstable."""
    loaded = load_study(study)
    text = study_reproduction_report(loaded, runs, seeds, parse_seed_sets(seed_sets))
    path = out_dir / f"{loaded.name}_reproduce.md"
    atomic_write_text(path, text)
    click.echo(text)
    click.echo(f"wrote {path}", err=True)
