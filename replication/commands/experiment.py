"""``spl experiment run|status SPEC``: run a table's cached dependency chain, or show what is done."""
from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from pathlib import Path

import click

from replication.errors import ConfigError
from replication.experiments.calibration import fit_experiment
from replication.experiments.launch import DEFAULT_LAUNCH_CONFIG, load_launch_config, submitit_pool
from replication.experiments.parallel import local_pool
from replication.experiments.runner import plan_experiment, run_experiment
from replication.experiments.spec import ExperimentSpec, load_spec, with_train_overrides
from replication.experiments.stepfns import GALLERY, QUALITY_FILE
from replication.experiments.steps import DEFAULT_THREADS, StepPool
from replication.vocabulary import LAUNCHERS


@click.group(name="experiment")
def command() -> None:
    """Run the steps behind a table (tables/specs/*.yaml), skipping those already done."""


def spec_with_sets(spec: Path, sets: tuple[str, ...]) -> ExperimentSpec:
    """Load SPEC with ``--set`` overrides added to its train preset (shared by ``spl tables render``)."""
    return with_train_overrides(load_spec(spec), sets)


def _common(f):
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override a key of the train preset (e.g. pretrained=weights/x.pt); repeatable. "
                          "Give the same to `spl tables render`.")(f)
    f = click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
                     help="Root of the run directories (runs/<dataset>/<step>-<hash>/).")(f)
    f = click.option("--only", multiple=True, metavar="ROW",
                     help="Only this row (e.g. spl/dcgan) and its dependencies; repeatable.")(f)
    f = click.option("--seeds", type=int, default=1, show_default=True,
                     help="Train every row with seeds S..S+N-1 (S: --seed-start); tables show mean ± std.")(f)
    f = click.option("--seed-start", type=int, default=0, show_default=True,
                     help="First seed of the replicates (a second seed set, e.g. 5 with --seeds 5, shares --runs).")(f)
    f = click.option("--data-root", type=click.Path(path_type=Path), default=None,
                     help="Folder of the raw dataset (not needed for digits-mosaic).")(f)
    return click.argument("spec", type=click.Path(path_type=Path))(f)


_threads_option = click.option(
    "--threads-per-step", "threads", type=click.IntRange(min=1), default=DEFAULT_THREADS, show_default=True,
    help="Torch CPU threads of every step; results depend on it, so it is part of each step's hash "
         "(a different count runs the steps again in new directories). Give the same to `status`.")


def _pool(launcher: str, jobs: int, threads: int, runs: Path, launch_config: Path,
          partition: str | None) -> AbstractContextManager[StepPool | None]:
    """Where the steps run: this process (jobs 1), a process pool, or submitit jobs."""
    if launcher == "local":
        return local_pool(jobs, threads)
    if jobs != 1:
        raise ConfigError(f"--jobs is for --launcher local; with --launcher {launcher} every ready step is a job")
    return submitit_pool(launcher, runs, load_launch_config(launch_config, partition=partition))


@command.command("run")
@_common
@_threads_option
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run up to N independent steps at once, each in its own process (--launcher local).")
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="local", show_default=True,
              help="local: this machine (+ --jobs); slurm: every step a SLURM job (submitit); submitit-local: "
                   "every step a submitit job on this machine.")
@click.option("--launch-config", type=click.Path(path_type=Path), default=DEFAULT_LAUNCH_CONFIG, show_default=True,
              help="Resources per step kind for slurm / submitit-local (README \"On a cluster\").")
@click.option("--partition", default=None, help="SLURM partition (overrides the launch config's).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def run_cmd(spec: Path, data_root: Path | None, seeds: int, only: tuple[str, ...], runs: Path,
            no_progress: bool, sets: tuple[str, ...], seed_start: int, threads: int, jobs: int, launcher: str,
            launch_config: Path, partition: str | None) -> None:
    """Run every step of SPEC that is not done yet; then `spl tables render SPEC` shows the table."""
    t0 = time.perf_counter()
    if any(s.split("=", 1)[0].strip() == "num_threads" for s in sets):
        raise ConfigError(f"{spec}: --set num_threads is not hashed; use --threads-per-step (part of each step's key)")
    loaded = spec_with_sets(spec, sets)
    with _pool(launcher, jobs, threads, runs, launch_config, partition) as pool:
        result = run_experiment(loaded, runs=runs, data_root=data_root, seeds=seeds, only=only,
                                progress=not no_progress, seed_start=seed_start, threads=threads, pool=pool)
    for rec in result.records:
        if rec.status == "ran":
            click.echo(f"ran      {rec.step.describe():40s} {rec.seconds:8.1f} s  {rec.path}", err=True)
    for step in result.plan.steps:
        if step.kind == "gallery":
            click.echo(f"gallery: {step.path(runs) / GALLERY}", err=True)
        elif step.kind == "quality":
            click.echo(f"quality: {step.path(runs) / QUALITY_FILE}", err=True)
    click.echo("per-row plots: curves.png and per_class_ap.png in each train-* directory listed by "
               f"`spl experiment status {spec}`", err=True)
    n_ran = len(result.ran)
    click.echo(f"{spec}: {n_ran} steps ran, {len(result.records) - n_ran} already done "
               f"({time.perf_counter() - t0:.1f} s)", err=True)


@command.command("status")
@_common
@_threads_option
def status_cmd(spec: Path, data_root: Path | None, seeds: int, only: tuple[str, ...], runs: Path,
               sets: tuple[str, ...], seed_start: int, threads: int) -> None:
    """List the steps of SPEC with their run directories and whether each is done."""
    plan = plan_experiment(spec_with_sets(spec, sets), data_root=data_root, seeds=seeds, only=only,
                           seed_start=seed_start, threads=threads)
    for step in plan.steps:
        state = "done" if step.is_done(runs) else "todo"
        click.echo(f"{state}  {step.describe():40s} {step.path(runs)}")


@command.command("fit")
@_common
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def fit_cmd(spec: Path, data_root: Path | None, seeds: int, only: tuple[str, ...], runs: Path,
            sets: tuple[str, ...], as_json: bool, seed_start: int) -> None:
    """Fit diagnostics of SPEC's finished trainings: mAP mean ± std over seeds, convergence, overfitting
    (train vs test loss) and the calibration criteria of docs/experiments.md ("Calibration log")."""
    report = fit_experiment(spec_with_sets(spec, sets), runs, seeds=seeds, only=only, seed_start=seed_start)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for row, r in report.items():
        if "missing" in r:
            click.echo(f"{row:16s} unfinished seeds {r['missing']}")
            continue
        runs_ = r["runs"]
        checks = " ".join(f"{k}={'yes' if v else 'NO'}" for k, v in r["checks"].items())
        click.echo(f"{row:16s} mAP {r['mAP_mean']:.2f} ± {r['mAP_std']:.2f} (n={r['n_seeds']})  "
                   f"max |Δ last 2 epochs| {max(x['last_two_delta'] for x in runs_):.2f}  "
                   f"train/test loss {max(x['train_loss'] / x['test_loss'] for x in runs_):.2f}  {checks}")
