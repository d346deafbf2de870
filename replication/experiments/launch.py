"""``spl experiment run --launcher slurm``: every step a job, through submitit (issue #20; README "On a cluster").

:func:`submitit_pool` is a :class:`~replication.experiments.steps.StepPool` whose ``submit`` turns a
step into a submitit job (SLURM, or submitit's local executor for ``submitit-local``) running
:func:`~replication.experiments.steps.run_pickled`, the same function a ``--jobs`` worker runs: the
same lock, run directory, ``done`` marker and fixed torch thread count. The ``spl`` process stays
the driver: :func:`~replication.experiments.steps.execute` submits a step as soon as its inputs
are finished (dependencies are kept by submitting in waves, not by SLURM's ``afterok``), and a
failed job stops new submissions while the submitted ones finish. Re-running the command resumes.

Resources come per step kind from a YAML file (``tables/launch/slurm.yaml``)::

    partition: null   account: null   setup: []      # sbatch --partition / --account, lines before each job
    default: {gpus: 0, cpus: 4, mem_gb: 16, timeout_min: 120}
    kinds: {train: {gpus: 1, cpus: 10, mem_gb: 64, timeout_min: 2880}, ...}

A kind's keys override ``default``; kinds are those of :data:`~replication.vocabulary.STEP_KINDS`.
A step that trains on several GPUs runs ``torchrun`` inside its job (README "Several GPUs").
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle

from replication import config as C
from replication.errors import ConfigError
from replication.experiments.steps import Step, run_pickled
from replication.vocabulary import LAUNCHERS, STEP_KINDS

#: The resources file used unless ``--launch-config`` names another (relative to the repository root).
DEFAULT_LAUNCH_CONFIG = Path("tables/launch/slurm.yaml")
#: Submitit's job folders (logs, pickled calls, results) under the runs folder.
SUBMITIT_FOLDER = ".submitit"
KIND = "launch config"


@dataclass
class Resources:
    """What one job asks for: GPUs and CPUs on one node, memory in GB, wall time in minutes."""

    gpus: int = 0
    cpus: int = 1
    mem_gb: float = 8.0
    timeout_min: int = 60


@dataclass
class LaunchConfig:
    """The resources file: cluster-wide settings and the :class:`Resources` of each step kind."""

    partition: str | None = None
    account: str | None = None
    setup: list[str] = field(default_factory=list)
    default: Resources = field(default_factory=Resources)
    kinds: dict[str, Resources] = field(default_factory=dict)

    def resources(self, kind: str) -> Resources:
        """The resources of a step of ``kind`` (``default`` when the file does not name it)."""
        return self.kinds.get(kind, self.default)


def _check(r: Resources, where: str) -> Resources:
    for name in ("gpus", "cpus", "mem_gb", "timeout_min"):
        low = 0 if name == "gpus" else 1
        if getattr(r, name) < low:
            raise ConfigError(f"{KIND} key '{where}.{name}': must be ≥ {low}, got {getattr(r, name)}")
    return r


def launch_config_from_dict(raw: Mapping[str, Any], *, partition: str | None = None) -> LaunchConfig:
    """Build a :class:`LaunchConfig` (one-line ConfigError naming the key); ``partition`` overrides the file's."""
    raw = dict(raw)
    kinds_raw = raw.pop("kinds", None) or {}
    default_raw = raw.pop("default", None) or {}
    if not isinstance(kinds_raw, Mapping):
        raise ConfigError(f"{KIND} section 'kinds': expected a mapping of step kinds, got {kinds_raw!r}")
    C.check_keys(kinds_raw, STEP_KINDS, kind=KIND, prefix="kinds.")
    top = C.from_dict(LaunchConfig, raw, kind=KIND)
    default = _check(C.from_dict(Resources, default_raw, kind=KIND, prefix="default.", ints_to_float=True), "default")
    base = dataclasses.asdict(default)
    kinds = {}
    for kind, over in kinds_raw.items():
        if not isinstance(over, Mapping):
            raise ConfigError(f"{KIND} section 'kinds.{kind}': expected a mapping, got {over!r}")
        C.check_keys(over, base, kind=KIND, prefix=f"kinds.{kind}.")
        kinds[kind] = _check(C.from_dict(Resources, {**base, **over}, kind=KIND, prefix=f"kinds.{kind}."),
                             f"kinds.{kind}")
    return dataclasses.replace(top, default=default, kinds=kinds,
                               partition=partition if partition is not None else top.partition)


def load_launch_config(path: str | Path | None = None, *, partition: str | None = None) -> LaunchConfig:
    """Read the resources file (default :data:`DEFAULT_LAUNCH_CONFIG`); errors name the file."""
    path = Path(path) if path is not None else DEFAULT_LAUNCH_CONFIG
    with C.naming(path):
        return launch_config_from_dict(C.read_yaml(path, KIND), partition=partition)


def job_parameters(cfg: LaunchConfig, kind: str, cluster: str) -> dict[str, Any]:
    """submitit's ``update_parameters`` for a step of ``kind`` (``slurm_*`` keys only on SLURM)."""
    r = cfg.resources(kind)
    params: dict[str, Any] = {"name": f"spl-{kind}", "timeout_min": r.timeout_min, "cpus_per_task": r.cpus,
                              "gpus_per_node": r.gpus, "mem_gb": r.mem_gb, "tasks_per_node": 1, "nodes": 1}
    if cluster == "slurm":
        if cfg.partition:
            params["slurm_partition"] = cfg.partition
        if cfg.account:
            params["slurm_account"] = cfg.account
        if cfg.setup:
            params["slurm_setup"] = list(cfg.setup)
    return params


def _await(job: Any, fut: Future[bool]) -> None:
    try:
        fut.set_result(job.result())
    except BaseException as e:  # handed to the scheduler, which reports it
        fut.set_exception(e)


class SubmititStepPool:
    """Steps as submitit jobs; a daemon thread awaits each job's result, so ``submit`` returns a future
    (and an interrupted driver exits at once, leaving its submitted jobs to finish)."""

    def __init__(self, executor: Any, cfg: LaunchConfig, cluster: str) -> None:
        self.executor, self.cfg, self.cluster = executor, cfg, cluster
        self.jobs: list[Any] = []

    def submit(self, step: Step, runs: Path, force: bool) -> Future[bool]:
        """Submit ``step`` as one job with its kind's resources."""
        self.executor.update_parameters(**job_parameters(self.cfg, step.kind, self.cluster))
        job = self.executor.submit(run_pickled, cloudpickle.dumps(step), str(Path(runs).resolve()), force)
        self.jobs.append(job)
        fut: Future[bool] = Future()
        fut.set_running_or_notify_cancel()
        threading.Thread(target=_await, args=(job, fut), name=f"spl-job-{job.job_id}", daemon=True).start()
        return fut


@contextmanager
def submitit_pool(launcher: str, runs: Path, cfg: LaunchConfig) -> Iterator[SubmititStepPool]:
    """A :class:`SubmititStepPool` for ``launcher`` (``slurm`` or ``submitit-local``), job logs in
    ``<runs>/.submitit/<job id>/``."""
    import submitit  # optional dependency, only for these launchers (it checks for SLURM when imported)

    if launcher not in LAUNCHERS[1:]:
        raise ConfigError(f"--launcher {launcher!r} is not one of {', '.join(LAUNCHERS[1:])} for submitit")
    cluster = "slurm" if launcher == "slurm" else "local"
    folder = Path(runs).resolve() / SUBMITIT_FOLDER / "%j"
    yield SubmititStepPool(submitit.AutoExecutor(folder=folder, cluster=cluster), cfg, cluster)


__all__ = ["Resources", "LaunchConfig", "SubmititStepPool", "submitit_pool", "load_launch_config",
           "launch_config_from_dict", "job_parameters", "DEFAULT_LAUNCH_CONFIG"]
