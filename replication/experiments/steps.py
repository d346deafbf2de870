"""Cached steps: run directories named by a hash of their resolved config, a ``done`` marker last.

See docs/pipeline.md#dependency-rules.

A :class:`Step` is one unit of work (build shards, train a GAN, sample it, train a classifier,
score, label, evaluate, draw a gallery). Its run directory is
``<runs>/<group>/<kind>-<key>/`` where ``key`` is the first 12 hex digits of the SHA-256 of
``{kind, config, {input name: input key}}`` — the resolved config *and the keys of its inputs*,
so changing an upstream step changes every key below it and those steps run again in fresh
directories. Configs hold no absolute paths (inputs are referenced by key), so a runs folder can
be moved.

:func:`execute` runs steps in dependency order:

* a step whose ``done`` exists is skipped — unless one of its inputs ran during this
  invocation (its ``done`` had been deleted, say), in which case it runs again: deleting one
  step's ``done`` re-runs that step and everything that depends on it, nothing else;
* a step that starts writes ``step.yaml`` (kind, key, config, inputs) first, its outputs next and
  ``done`` (JSON: finish time, seconds, SHA-256 of its small files) last, so an interrupted step never
  looks finished, and a damaged record or small output (:func:`record_intact`) makes it run again; the
  next invocation passes ``resume=True`` to its function when the directory holds earlier
  outputs. Each step function decides what that means: an *unfinished* classifier or GAN training
  continues from its checkpoint; a finished one whose ``done`` was deleted, and every other step,
  starts over. A step re-run because an input ran is cleared first and starts over.

Threads (issue #20; docs/decisions.md, "Threads per step"): torch's CPU results depend on its
intra-op thread count, so a step may carry a fixed ``threads``. It is part of the step's key and
of ``step.yaml``, and the step runs with exactly that many torch threads, wherever it runs.
:func:`pin_threads` sets it on a planned graph (every kind but the torch-free ``shards`` and ``view``).

Concurrency: with a :class:`StepPool` (a process pool, :mod:`replication.experiments.parallel`;
a SLURM or local submitit executor, :mod:`replication.experiments.launch`) :func:`execute` submits
every step whose inputs are finished, as soon as they are, so independent steps run at the same
time — at most ``pool.capacity`` at once when the pool has one (a process pool: its worker count),
so a submitted step is a running step; the rules above are unchanged (a step whose input ran this
invocation is re-run; locks, the ``done`` marker last). The first failing step stops new
submissions; the running ones finish, so every finished step keeps its ``done`` and the same
command resumes. The failure is raised as one
:class:`StepFailedError` line naming the step, with its traceback in ``<run dir>/error.log``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import pickle
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import torch
import yaml
from tqdm.auto import tqdm

from replication.errors import ConfigError, ReplicationError
from replication.io_utils import atomic_write_json, atomic_write_text
from replication.locking import output_lock

log = logging.getLogger(__name__)
DONE = "done"
STEP_FILE = "step.yaml"
KEY_LEN = 12
ERROR_LOG = "error.log"
#: Torch threads per step unless the caller says otherwise (``spl experiment run --threads-per-step``).
DEFAULT_THREADS = 1
#: Kinds whose results do not depend on torch's thread count (decoding and resizing images; copying the
#: unlabeled view of a shard set, h5py and NumPy only): not pinned.
THREAD_FREE_KINDS = frozenset({"shards", "view"})

#: ``fn(out_dir, inputs, resume)``: ``inputs`` maps each input name to that step's run directory.
StepFn = Callable[[Path, Mapping[str, Path], bool], None]


def config_hash(payload: Any, n: int = KEY_LEN) -> str:
    """First ``n`` hex digits of the SHA-256 of ``payload`` as canonical JSON (sorted keys)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


@dataclass(eq=False)
class Step:
    """One cached unit of work: ``kind``, hashed ``config``, upstream ``inputs`` and the function that runs it."""

    kind: str
    group: str
    config: dict
    fn: StepFn
    inputs: dict[str, Step] = field(default_factory=dict)
    label: str = ""
    #: torch intra-op threads the step runs with (hashed); None: whatever the process has (not hashed).
    threads: int | None = None

    @cached_property
    def key(self) -> str:
        """Hash of the kind, the resolved config, the keys of the inputs and (when fixed) the thread count."""
        payload = {"kind": self.kind, "config": self.config,
                   "inputs": {name: s.key for name, s in sorted(self.inputs.items())}}
        if self.threads is not None:
            payload["threads"] = self.threads
        return config_hash(payload)

    @property
    def name(self) -> str:
        """Directory name ``<kind>-<key>``."""
        return f"{self.kind}-{self.key}"

    def path(self, runs: Path) -> Path:
        """The run directory under ``runs``."""
        return Path(runs) / self.group / self.name

    def is_done(self, runs: Path) -> bool:
        """Whether the step finished: its ``done`` marker and ``step.yaml`` are intact (:func:`record_intact`)."""
        return record_intact(self.path(runs), self.key)

    def describe(self) -> str:
        """Human-readable label for logs and progress bars."""
        return self.label or self.kind


def toposort(steps: Iterable[Step]) -> list[Step]:
    """The given steps plus all their ancestors, each once, inputs before the steps that use them."""
    order: list[Step] = []
    seen: dict[str, Step] = {}

    def visit(s: Step, stack: tuple[str, ...]) -> None:
        if s.key in seen:
            return
        if s.key in stack:  # pragma: no cover - the planner never builds a cycle
            raise ConfigError(f"dependency cycle through step {s.describe()}")
        for dep in s.inputs.values():
            visit(dep, stack + (s.key,))
        seen[s.key] = s
        order.append(s)

    for s in steps:
        visit(s, ())
    return order


def pin_threads(steps: Iterable[Step], threads: int) -> None:
    """Fix ``threads`` on ``steps`` and all their ancestors (except :data:`THREAD_FREE_KINDS`); keys follow.

    Call it on a freshly planned graph: every key is recomputed, since an input's key is part of
    its dependents' keys.
    """
    if threads < 1:
        raise ConfigError(f"threads per step must be ≥ 1, got {threads}")
    seen: dict[int, Step] = {}
    todo = list(steps)
    while todo:
        s = todo.pop()
        if id(s) not in seen:
            seen[id(s)] = s
            todo.extend(s.inputs.values())
    for s in seen.values():
        if s.kind not in THREAD_FREE_KINDS:
            s.threads = threads
        s.__dict__.pop("key", None)  # the cached key, computed again from the pinned graph


@contextmanager
def step_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (unchanged when None), restored afterwards."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class StepRecord:
    """What :func:`execute` did with one step: ``"ran"`` or ``"skipped"``, and how long it took."""

    step: Step
    status: str
    seconds: float
    path: Path


#: Files up to this size in a run directory get their SHA-256 recorded in ``done`` and checked on read.
DIGEST_MAX_BYTES = 1 << 20


def file_digests(out: Path) -> dict[str, str]:
    """SHA-256 of each small regular file (``step.yaml``, ``metrics.json``, ``quality.json``...) directly in
    ``out``, ``done`` and temporary files excepted. Big outputs carry their own checks (shard manifests)."""
    digests = {}
    for p in sorted(out.iterdir()):
        if p.name == DONE or p.name.endswith(".tmp") or p.is_symlink() or not p.is_file():
            continue
        if p.stat().st_size <= DIGEST_MAX_BYTES:
            digests[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return digests


def record_intact(out: Path, key: str | None = None) -> bool:
    """Whether run directory ``out`` holds an intact step record: a ``done`` JSON object with ``finished``,
    a ``step.yaml`` recording step ``key`` (default: the ``<kind>-<key>`` directory name's key), and the
    small files whose SHA-256 ``done`` lists still matching it. A damaged one (truncated, zero length,
    flipped bits, unreadable) counts as not done, so the step runs again instead of the runner failing,
    and a reader never takes a damaged ``metrics.json`` for a finished result."""
    key = out.name.rsplit("-", 1)[-1] if key is None else key
    try:
        done = json.loads((out / DONE).read_text(encoding="utf-8"))
        record = yaml.safe_load((out / STEP_FILE).read_text(encoding="utf-8"))
        intact = (isinstance(done, dict) and "finished" in done and isinstance(record, dict)
                  and record.get("key") == key)
        digests = done.get("sha256", {}) if intact else {}
        for name, digest in digests.items():
            if hashlib.sha256((out / name).read_bytes()).hexdigest() != digest:
                intact = False
    except FileNotFoundError:
        if (out / DONE).is_file():
            log.warning("%s: a file of the finished step is missing; the step runs again", out)
        return False
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        intact = False
    if not intact:
        log.warning("%s: damaged step record or output; the step runs again", out)
    return intact


def recorded_digests_match(out: Path) -> bool:
    """Whether the small files of run directory ``out`` whose SHA-256 its ``done`` records still match them
    (the readers' check: :func:`replication.report.table.collect_results`). A ``done`` that records none
    (an empty marker, one written before issue #21, a hand-made fixture) has nothing to check: True; an
    unreadable ``done``, a listed file missing or differing: False."""
    try:
        done = json.loads((out / DONE).read_text(encoding="utf-8") or "{}")
        digests = done.get("sha256", {}) if isinstance(done, dict) else {}
        return all(hashlib.sha256((out / name).read_bytes()).hexdigest() == digest for name, digest in digests.items())
    except (OSError, ValueError, AttributeError):
        return False


def _write_step_file(step: Step, out: Path, runs: Path) -> None:
    record = {
        "kind": step.kind,
        "key": step.key,
        "label": step.describe(),
        "config": step.config,
        "threads": step.threads,
        "inputs": {n: {"key": s.key, "path": str(s.path(runs))} for n, s in sorted(step.inputs.items())},
    }
    atomic_write_text(out / STEP_FILE, yaml.safe_dump(record, sort_keys=False))


def run_step(step: Step, runs: Path, *, force: bool = False) -> bool:
    """Run one step unless it is done (or ``force``); returns whether it ran. ``done`` is written last.

    The step's run directory is locked (:mod:`replication.locking`) while it is checked and run, so
    two ``spl experiment run`` sharing a runs folder never write one step at the same time.
    """
    out = step.path(runs)
    with output_lock(out):
        return _run_step_locked(step, runs, out, force)


def _run_step_locked(step: Step, runs: Path, out: Path, force: bool) -> bool:
    done = out / DONE
    intact = record_intact(out, step.key)
    if intact and not force:
        return False
    damaged = done.is_file() and not intact  # finished once, but its record is damaged: start over
    if done.is_file():
        done.unlink()
    if force or damaged:  # an input was re-made, or the record is damaged: nothing in here can be trusted
        clear_partial(out)
    resume = out.is_dir() and any(out.iterdir())
    out.mkdir(parents=True, exist_ok=True)
    _write_step_file(step, out, runs)
    t0 = time.perf_counter()
    with step_threads(step.threads):
        step.fn(out, {n: s.path(runs) for n, s in step.inputs.items()}, resume)
    (out / ERROR_LOG).unlink(missing_ok=True)  # the traceback of an earlier failed try
    seconds = time.perf_counter() - t0
    atomic_write_json(done, {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             "seconds": round(seconds, 3), "sha256": file_digests(out)})
    log.info("done %s (%.1f s) → %s", step.describe(), seconds, out)
    return True


def run_pickled(blob: bytes, runs: str, force: bool) -> bool:
    """:func:`run_step` of a pickled step (cloudpickle: step functions are closures); for worker processes."""
    return run_step(pickle.loads(blob), Path(runs), force=force)


class StepPool(Protocol):
    """Somewhere to run steps concurrently: ``submit`` returns a future of :func:`run_step`'s result.

    A pool may have a ``capacity`` attribute (an int): :func:`execute` then keeps at most that many
    steps submitted at once (without one, every ready step is submitted: a cluster queues them).
    """

    def submit(self, step: Step, runs: Path, force: bool) -> Future[bool]:
        """Start ``run_step(step, runs, force=force)``."""
        ...


class StepFailedError(ReplicationError):
    """A step failed under :func:`execute` with a pool; its traceback is in the step's ``error.log``."""


def execute(steps: Sequence[Step], runs: str | Path, *, pool: StepPool | None = None,
            progress: bool = True) -> list[StepRecord]:
    """Run ``steps`` (and their ancestors) in dependency order, skipping finished ones (module docstring).

    Without ``pool`` the steps run one after another in this process, and an error propagates as
    is. With one, every step whose inputs are finished is submitted at once, up to the pool's
    ``capacity`` (module docstring).
    """
    runs = Path(runs)
    order = toposort(steps)
    if pool is None:
        return _execute_serial(order, runs, progress)
    return _execute_pool(order, runs, pool, progress)


def _execute_serial(order: list[Step], runs: Path, progress: bool) -> list[StepRecord]:
    ran: set[str] = set()
    records: list[StepRecord] = []
    bar = tqdm(order, desc="experiment", unit="step", disable=not progress)
    for step in bar:
        bar.set_postfix_str(step.describe())
        stale = any(dep.key in ran for dep in step.inputs.values())
        t0 = time.perf_counter()
        if run_step(step, runs, force=stale):
            ran.add(step.key)
            records.append(StepRecord(step, "ran", time.perf_counter() - t0, step.path(runs)))
        else:
            records.append(StepRecord(step, "skipped", 0.0, step.path(runs)))
    bar.close()
    return records


def _execute_pool(order: list[Step], runs: Path, pool: StepPool, progress: bool) -> list[StepRecord]:
    """The scheduler: submit ready steps (at most ``pool.capacity`` at a time), collect finished ones; the
    first failure stops submissions."""
    capacity: int | None = getattr(pool, "capacity", None)
    status: dict[str, StepRecord] = {}
    must_run: set[str] = set()  # ready steps found not done, waiting for a free slot (checked once)
    pending = list(order)
    running: dict[Future[bool], tuple[Step, float]] = {}
    failures: list[tuple[Step, BaseException]] = []
    bar = tqdm(total=len(order), desc="experiment", unit="step", disable=not progress)

    def show() -> None:
        names = [s.describe() for s, _ in running.values()]
        bar.set_postfix_str(f"{len(names)} running: {', '.join(names)}" if names else "")

    while pending or running:
        if not failures:
            waiting = []
            for step in pending:  # in dependency order, so a step skipped here frees its dependents below
                if not all(d.key in status for d in step.inputs.values()):
                    waiting.append(step)
                    continue
                stale = any(status[d.key].status == "ran" for d in step.inputs.values())
                if step.key not in must_run:
                    if not stale and step.is_done(runs):
                        status[step.key] = StepRecord(step, "skipped", 0.0, step.path(runs))
                        bar.update()
                        continue
                    must_run.add(step.key)
                if capacity is not None and len(running) >= capacity:  # no free slot: it stays ready
                    waiting.append(step)
                    continue
                log.info("start %s", step.describe())
                running[pool.submit(step, runs, stale)] = (step, time.perf_counter())
            pending = waiting
            show()
        if not running:
            break
        finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for fut in finished:
            step, t0 = running.pop(fut)
            try:
                ran = fut.result()
            except BaseException as e:  # recorded; reported once the running steps finish
                failures.append((step, e))
                log.error("failed %s: %s", step.describe(), e)
                continue
            seconds = time.perf_counter() - t0
            status[step.key] = StepRecord(step, "ran" if ran else "skipped", seconds if ran else 0.0,
                                          step.path(runs))
            bar.update()
        show()
    bar.close()
    if failures:
        raise _failure(failures, runs, n_not_started=len(pending))
    return [status[s.key] for s in order]


def _failure(failures: list[tuple[Step, BaseException]], runs: Path, n_not_started: int) -> StepFailedError:
    """One line for the first failure; every failure's traceback goes to its step's ``error.log``."""
    for step, e in failures:
        out = step.path(runs)
        if out.is_dir():
            text = "".join(traceback.format_exception(e))
            atomic_write_text(out / ERROR_LOG, text)
    step, e = failures[0]
    where = step.path(runs) / ERROR_LOG if step.path(runs).is_dir() else step.path(runs)
    what = " ".join(str(e).split()) or type(e).__name__
    if not isinstance(e, ReplicationError):
        what = f"{type(e).__name__}: {what}"
    more = f"; {len(failures) - 1} more failed" if len(failures) > 1 else ""
    return StepFailedError(f"step '{step.describe()}' failed: {what} (traceback: {where}){more}; {n_not_started} "
                           "steps not started, the finished ones kept: run the same command again to resume")


def clear_partial(path: Path) -> None:
    """Remove a step's partial outputs (keep nothing): used by steps that cannot resume."""
    if path.is_dir():
        for child in path.iterdir():
            if child.name == STEP_FILE:
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()


__all__ = ["Step", "StepRecord", "StepFn", "StepPool", "StepFailedError", "execute", "run_step", "run_pickled",
           "pin_threads", "step_threads", "toposort", "config_hash", "clear_partial", "DONE", "DEFAULT_THREADS"]
