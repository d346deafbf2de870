"""The study beyond the paper, its spec and its runs: the gain of SPL and smooth labels against N (issue #13).

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
every step's key, is the base spec's. With ``gan.data: all`` the GANs train on the labelled images and
the unlabeled pool, i.e. the same images at every N; their view's key still names the labelled set, so
each N trains its own GANs (the same seeds, independent runs; docs/decisions.md, "The study's GANs").
With ``labelled``, the paper's setting, each N's GANs train on its N images. Each size is run by
:func:`~replication.experiments.runner.run_experiment` (with ``--jobs``, its independent steps at once), cached
like every step, so a base run at one of the sizes is reused and an interrupted study resumes.

Collecting and writing the results is :mod:`replication.report.study`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from replication import config as C
from replication.errors import ConfigError
from replication.experiments.runner import ExperimentResult, Plan, plan_experiment, run_experiment
from replication.experiments.spec import ExperimentSpec, load_spec
from replication.experiments.steps import DEFAULT_THREADS, StepPool
from replication.vocabulary import BASELINE, GENERATORS, parse_row_id

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


def plan_study(study: StudySpec, *, seeds: int | None = None, data_root: str | Path | None = None,
               seed_start: int = 0) -> dict[int, Plan]:
    """``N → plan`` of every size (nothing runs; a bad preset or data root fails here, before any step)."""
    s = study.seeds if seeds is None else seeds
    return {n: plan_experiment(spec, data_root=data_root, seeds=s, seed_start=seed_start)
            for n, spec in study_specs(study).items()}


def run_study(study: StudySpec, *, runs: str | Path = "runs", seeds: int | None = None,
              data_root: str | Path | None = None, progress: bool = True, threads: int = DEFAULT_THREADS,
              pool: StepPool | None = None, seed_start: int = 0) -> dict[int, ExperimentResult]:
    """Plan every size first, then run each size's steps not yet done under ``runs`` (smallest N first).

    ``threads``, ``pool`` and ``seed_start`` are :func:`~replication.experiments.runner.run_experiment`'s:
    the torch threads of every step (part of each step's key), where independent steps of one size run
    concurrently, and the first seed of the replicates (seeds ``seed_start`` … ``seed_start + seeds − 1``:
    a second, disjoint seed set for the reproduction check)."""
    plan_study(study, seeds=seeds, data_root=data_root, seed_start=seed_start)
    s = study.seeds if seeds is None else seeds
    return {n: run_experiment(spec, runs=runs, data_root=data_root, seeds=s, progress=progress, threads=threads,
                              pool=pool, seed_start=seed_start)
            for n, spec in study_specs(study).items()}


__all__ = [
    "StudySpec", "load_study", "study_from_dict", "default_rows", "derive_spec", "study_specs", "plan_study",
    "run_study", "METRIC",
]
