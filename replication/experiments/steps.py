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
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from replication.errors import ConfigError
from replication.io_utils import atomic_write_json, atomic_write_text
from replication.locking import output_lock

log = logging.getLogger(__name__)
DONE = "done"
STEP_FILE = "step.yaml"
KEY_LEN = 12

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

    @cached_property
    def key(self) -> str:
        """Hash of the kind, the resolved config and the keys of the inputs."""
        return config_hash({"kind": self.kind, "config": self.config,
                            "inputs": {name: s.key for name, s in sorted(self.inputs.items())}})

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
    step.fn(out, {n: s.path(runs) for n, s in step.inputs.items()}, resume)
    seconds = time.perf_counter() - t0
    atomic_write_json(done, {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             "seconds": round(seconds, 3), "sha256": file_digests(out)})
    log.info("done %s (%.1f s) → %s", step.describe(), seconds, out)
    return True


def execute(steps: Sequence[Step], runs: str | Path, *, progress: bool = True) -> list[StepRecord]:
    """Run ``steps`` (and their ancestors) in dependency order, skipping finished ones (module docstring)."""
    runs = Path(runs)
    order = toposort(steps)
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


__all__ = ["Step", "StepRecord", "StepFn", "execute", "run_step", "toposort", "config_hash", "clear_partial", "DONE"]
