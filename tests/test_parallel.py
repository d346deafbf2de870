"""Concurrent steps (issue #20): the process-pool scheduler, fixed threads per step, failures, the
byte-identity of ``--jobs 2`` with ``--jobs 1`` and submitit's local executor against the in-process runner.

The scheduler tests use small steps that write files (a worker process cannot append to a list of
the test), so "what ran, with how many threads, at the same time as what" is read from the run
directories. Two steps prove they ran concurrently by each waiting for the other's marker file.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from replication.console.progress import bars_allowed
from replication.errors import ConfigError
from replication.experiments.launch import job_parameters, launch_config_from_dict, load_launch_config
from replication.experiments.parallel import process_pool
from replication.experiments.steps import DONE, ERROR_LOG, Step, StepFailedError, execute, pin_threads, step_threads

REPO = Path(__file__).resolve().parent.parent


def _writer(name: str, *, fail_if: Path | None = None, wait_for: Path | None = None, mark: Path | None = None):
    """A step function: writes ``out.txt`` = name(inputs…), ``threads.txt`` = torch's thread count and
    ``bars.txt`` = whether progress bars are allowed where it ran.

    ``fail_if``: raise while that file exists; ``mark``/``wait_for``: write ``mark``, then wait (≤ 60 s)
    for ``wait_for`` — only possible when the other step runs at the same time.
    """

    def run(out, inputs, resume):
        if fail_if is not None and fail_if.exists():
            raise ValueError(f"{name} was told to fail")
        if mark is not None:
            mark.write_text(name)
        if wait_for is not None:
            deadline = time.monotonic() + 60
            while not wait_for.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: {wait_for} never appeared: the steps did not run concurrently")
                time.sleep(0.05)
        text = name + "(" + ",".join((inputs[k] / "out.txt").read_text() for k in sorted(inputs)) + ")"
        (out / "out.txt").write_text(text)
        (out / "threads.txt").write_text(str(torch.get_num_threads()))
        (out / "bars.txt").write_text(str(bars_allowed()))

    return run


def _chain(tmp_path: Path, **kw):
    """a → b → d, c → d; ``kw`` maps a step name to :func:`_writer` options."""
    a = Step("a", "g", {"p": 1}, _writer("a", **kw.get("a", {})), label="a")
    b = Step("b", "g", {}, _writer("b", **kw.get("b", {})), {"x": a}, label="b")
    c = Step("c", "g", {"q": 2}, _writer("c", **kw.get("c", {})), label="c")
    d = Step("d", "g", {}, _writer("d", **kw.get("d", {})), {"b": b, "c": c}, label="d")
    return a, b, c, d


# ------------------------------------------------------------------------------- threads in the key


def test_pin_threads_enters_keys_and_records(tmp_path):
    a, b, c, d = _chain(tmp_path)
    shards = Step("shards", "g", {}, _writer("s"), label="s")
    e = Step("e", "g", {}, _writer("e"), {"s": shards}, label="e")
    unpinned = {s.kind: s.key for s in (a, b, c, d, shards, e)}
    pin_threads([d, e], 3)
    assert all(s.threads == 3 for s in (a, b, c, d, e)) and shards.threads is None  # shards: no torch
    assert shards.key == unpinned["shards"]
    assert all(s.key != unpinned[s.kind] for s in (a, b, c, d, e))  # every torch step's key changed
    keys3 = {s.kind: s.key for s in (a, b, c, d)}
    pin_threads([d], 1)
    assert all(s.key != keys3[s.kind] for s in (a, b, c, d))  # another count, other run directories
    with pytest.raises(ConfigError, match="threads per step must be ≥ 1"):
        pin_threads([d], 0)


def test_serial_steps_run_with_their_threads_and_restore(tmp_path):
    a, b, c, d = _chain(tmp_path)
    pin_threads([d], 2)
    before = torch.get_num_threads()
    execute([d], tmp_path, progress=False)
    assert torch.get_num_threads() == before == 1  # conftest's one thread, restored after each step
    for s in (a, b, c, d):
        assert (s.path(tmp_path) / "threads.txt").read_text() == "2"
        assert (s.path(tmp_path) / "bars.txt").read_text() == "True"  # in process: the steps' bars are drawn
        assert yaml.safe_load((s.path(tmp_path) / "step.yaml").read_text())["threads"] == 2
    with step_threads(None):
        assert torch.get_num_threads() == 1


# ------------------------------------------------------------------------------- process pool


@pytest.fixture(scope="module")
def pool2():
    """One pool of 2 one-thread workers for the scheduler tests (its workers start once: each imports torch)."""
    with process_pool(2, 1) as pool:
        yield pool


@pytest.mark.slow
def test_pool_runs_independent_steps_concurrently_in_dependency_order(pool2, tmp_path):
    runs, sync = tmp_path / "runs", tmp_path / "sync"
    sync.mkdir()
    # b (after a) and c wait for each other: they only finish if they run at the same time
    a, b, c, d = _chain(tmp_path, b={"mark": sync / "b", "wait_for": sync / "c"},
                        c={"mark": sync / "c", "wait_for": sync / "b"})
    pin_threads([d], 1)
    records = execute([d], runs, pool=pool2, progress=False)
    assert [r.step.kind for r in records] == ["a", "b", "c", "d"] and all(r.status == "ran" for r in records)
    assert (d.path(runs) / "out.txt").read_text() == "d(b(a()),c())"
    assert all((s.path(runs) / "threads.txt").read_text() == "1" for s in (a, b, c, d))
    assert all((s.path(runs) / "bars.txt").read_text() == "False" for s in (a, b, c, d))  # workers draw no bars
    assert all((s.path(runs) / DONE).is_file() for s in (a, b, c, d))
    # finished steps are skipped by the parent, without a worker
    again = execute([d], runs, pool=pool2, progress=False)
    assert all(r.status == "skipped" for r in again)
    # deleting b's done re-runs b and its dependent d, nothing else (the serial runner's rule)
    before = {s.kind: (s.path(runs) / DONE).stat().st_mtime_ns for s in (a, c)}
    (b.path(runs) / DONE).unlink()
    (sync / "c").unlink()
    b.fn = _writer("b")  # c is not running this time: b must not wait for it
    third = execute([d], runs, pool=pool2, progress=False)
    assert {r.step.kind: r.status for r in third} == {"a": "skipped", "b": "ran", "c": "skipped", "d": "ran"}
    assert before == {s.kind: (s.path(runs) / DONE).stat().st_mtime_ns for s in (a, c)}


@pytest.mark.slow
def test_pool_failure_stops_submissions_lets_running_finish_and_resumes(pool2, tmp_path):
    runs, sync, flag = tmp_path / "runs", tmp_path / "sync", tmp_path / "fail-b"
    sync.mkdir()
    flag.write_text("x")
    # a and c start together; b (after a) fails while c runs: c waits until b has failed, then finishes
    a, b, c, d = _chain(tmp_path, b={"fail_if": flag},
                        c={"mark": sync / "c", "wait_for": sync / "b-failed"})

    class Watch:
        """Pool wrapper: tells c that b failed (a file), so c is still running when b's error arrives."""

        def __init__(self, pool):
            self.pool = pool

        def submit(self, step, runs_, force):
            fut = self.pool.submit(step, runs_, force)
            if step.kind == "b":
                fut.add_done_callback(lambda f: (sync / "b-failed").write_text("x"))
            return fut

    with pytest.raises(StepFailedError) as err:
        execute([d], runs, pool=Watch(pool2), progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "step 'b' failed: ValueError: b was told to fail" in msg
    assert f"traceback: {b.path(runs) / ERROR_LOG}" in msg and "1 steps not started" in msg
    assert "ValueError: b was told to fail" in (b.path(runs) / ERROR_LOG).read_text()
    assert (a.path(runs) / DONE).is_file() and (c.path(runs) / DONE).is_file()  # c ran to its end
    assert not (b.path(runs) / DONE).exists() and not d.path(runs).exists()  # d never submitted
    # fixed: the same call resumes, running only b and d; b's error.log is gone
    flag.unlink()
    records = execute([d], runs, pool=pool2, progress=False)
    assert {r.step.kind: r.status for r in records} == {"a": "skipped", "b": "ran", "c": "skipped", "d": "ran"}
    assert not (b.path(runs) / ERROR_LOG).exists()
    assert (d.path(runs) / "out.txt").read_text() == "d(b(a()),c())"


@pytest.mark.slow
def test_pool_submits_no_more_steps_than_its_workers(pool2, tmp_path):
    """Four independent steps on 2 workers: at most 2 are submitted at a time (a submitted step is a running
    one, so the bar's "running" is true), and after a failure the ready steps not yet submitted never start
    (a process pool would otherwise run its queued steps after the failure)."""
    runs, sync, flag = tmp_path / "runs", tmp_path / "sync", tmp_path / "fail-a"
    sync.mkdir()
    flag.write_text("x")
    a = Step("a", "g", {}, _writer("a", fail_if=flag), label="a")
    b = Step("b", "g", {}, _writer("b", mark=sync / "b", wait_for=sync / "a-failed"), label="b")
    c = Step("c", "g", {}, _writer("c"), label="c")
    e = Step("e", "g", {}, _writer("e"), label="e")

    class Count:
        """Pool wrapper: the most steps submitted and not yet finished; tells b when a has failed."""

        def __init__(self, pool):
            self.pool, self.capacity, self.futures, self.most = pool, pool.capacity, [], 0

        def submit(self, step, runs_, force):
            self.most = max(self.most, 1 + sum(not f.done() for f in self.futures))
            fut = self.pool.submit(step, runs_, force)
            self.futures.append(fut)
            if step.kind == "a":
                fut.add_done_callback(lambda f: (sync / "a-failed").write_text("x"))
            return fut

    counted = Count(pool2)
    with pytest.raises(StepFailedError, match="step 'a' failed: ValueError: a was told to fail.*; 2 steps not started"):
        execute([a, b, c, e], runs, pool=counted, progress=False)
    assert (b.path(runs) / DONE).is_file()  # b was running: it finished
    assert not c.path(runs).exists() and not e.path(runs).exists()  # ready, never submitted
    assert counted.most == 2
    flag.unlink()
    (sync / "a-failed").write_text("x")
    again = Count(pool2)
    records = execute([a, b, c, e], runs, pool=again, progress=False)
    assert {r.step.kind: r.status for r in records} == {"a": "ran", "b": "skipped", "c": "ran", "e": "ran"}
    assert again.most == 2


# ------------------------------------------------------------------------------- the CLI, end to end


def _tiny_spec(tmp_path: Path) -> Path:
    raw = yaml.safe_load((REPO / "tests" / "fixtures" / "experiment_tiny.yaml").read_text())
    raw["paper"]["csv"] = str(REPO / "tables/paper/table3_ms_coco.csv")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(args: list[str]) -> None:
    from replication.cli import cli

    res = CliRunner().invoke(cli, ["experiment", "run", *args, "--no-progress"])
    assert res.exit_code == 0, res.output


def _results(runs: Path) -> dict[str, bytes]:
    """Every metrics.json and preds.npz under ``runs`` by relative path: the files' bytes; for the
    metrics step's metrics.json, the bytes less its ``finished`` clock line; for preds.npz, also
    each member's bytes (the arrays) so a difference names the array."""
    out: dict[str, bytes] = {}
    for p in sorted([*runs.rglob("metrics.json"), *runs.rglob("preds.npz")]):
        rel = str(p.relative_to(runs))
        data = p.read_bytes()
        if p.parent.name.startswith("metrics-"):
            data = b"\n".join(line for line in data.split(b"\n") if not line.strip().startswith(b'"finished"'))
        out[rel] = data
        if p.suffix == ".npz":
            with zipfile.ZipFile(p) as z:
                out.update({f"{rel}:{n}": z.read(n) for n in z.namelist()})
    return out


#: The rows of the end-to-end runs: a GAN, its samples, baseline scores, SPL and smooth labels, three trainings.
TINY_ROWS = ["--only", "baseline", "--only", "smooth/dcgan", "--only", "spl/dcgan"]


@pytest.fixture(scope="module")
def tiny_serial(tmp_path_factory):
    """The small spec's three rows run in process with --jobs 1: the reference of both end-to-end tests."""
    tmp = tmp_path_factory.mktemp("serial")
    spec = _tiny_spec(tmp)
    _run([str(spec), "--runs", str(tmp / "runs"), "--jobs", "1", *TINY_ROWS])
    return spec, tmp / "runs"


@pytest.mark.slow
def test_jobs_2_gives_the_bytes_of_jobs_1(tiny_serial, tmp_path):
    """The same small spec (a GAN, its samples, baseline scores, SPL and smooth labels, three trainings,
    metrics) run with --jobs 1 and --jobs 2 into two runs folders: identical results, byte for byte."""
    spec, serial_runs = tiny_serial
    _run([str(spec), "--runs", str(tmp_path / "parallel"), "--jobs", "2", *TINY_ROWS])
    serial, parallel = _results(serial_runs), _results(tmp_path / "parallel")
    assert sum(k.endswith("metrics.json") for k in serial) == 6 and sum(k.endswith("preds.npz") for k in serial) == 4
    assert serial.keys() == parallel.keys()
    assert [k for k in serial if serial[k] != parallel[k]] == []
    rec = yaml.safe_load(next((tmp_path / "parallel").rglob("train-*/step.yaml")).read_text())
    assert rec["threads"] == 1


@pytest.mark.slow
def test_submitit_local_executor_gives_the_in_process_results(tiny_serial, tmp_path):
    """--launcher submitit-local (each step a submitit job on this machine: the SLURM code path without
    SLURM) against the in-process runner on the baseline row: same run directories, same bytes. The two
    shard steps are copied from the in-process run (done), so the jobs are the training (a ``train`` kind,
    GPU resources on SLURM) and, after it, its metrics (a CPU kind)."""
    spec, serial_runs = tiny_serial
    jobs_runs = tmp_path / "jobs"
    for shards in serial_runs.glob("*/shards-*"):
        shutil.copytree(shards, jobs_runs / shards.relative_to(serial_runs))
    _run([str(spec), "--runs", str(jobs_runs), "--only", "baseline", "--launcher", "submitit-local"])
    inproc, jobs = _results(serial_runs), _results(jobs_runs)
    assert sum(k.endswith("metrics.json") for k in jobs) == 2 and jobs.keys() <= inproc.keys()
    assert [k for k in jobs if inproc[k] != jobs[k]] == []
    results = sorted((jobs_runs / ".submitit").glob("*/*_result.pkl"))
    assert len(results) == 2  # train, then metrics


def test_cli_run_rejects_unhashed_threads_and_jobs_with_slurm(tmp_path):
    from replication.cli import cli

    spec = _tiny_spec(tmp_path)
    runs = tmp_path / "runs"
    res = CliRunner().invoke(cli, ["experiment", "run", str(spec), "--runs", str(runs), "--set", "num_threads=2"])
    assert res.exit_code == 1 and "use --threads-per-step" in res.output and str(spec) in res.output
    res = CliRunner().invoke(cli, ["experiment", "run", str(spec), "--runs", str(runs), "--launcher", "slurm",
                                   "--jobs", "2"])
    assert res.exit_code == 1 and "--jobs is for --launcher local" in res.output
    assert not runs.exists()


# ------------------------------------------------------------------------------- launch config


def test_launch_config_resources_per_kind(tmp_path):
    cfg = load_launch_config(REPO / "tables" / "launch" / "slurm.yaml", partition="gpu")
    train = job_parameters(cfg, "train", "slurm")
    assert train["gpus_per_node"] == 1 and train["slurm_partition"] == "gpu" and train["name"] == "spl-train"
    assert job_parameters(cfg, "metrics", "slurm")["gpus_per_node"] == 0
    assert "slurm_partition" not in job_parameters(cfg, "train", "local")  # local jobs get no sbatch keys
    small = launch_config_from_dict({"default": {"cpus": 2}, "kinds": {"gan": {"gpus": 1}}})
    assert small.resources("gan").cpus == 2 and small.resources("gan").gpus == 1  # default, then the kind's keys
    assert small.resources("labels") == small.default
    with pytest.raises(ConfigError, match="unknown launch config key 'kinds.trian'"):
        launch_config_from_dict({"kinds": {"trian": {"gpus": 1}}})
    with pytest.raises(ConfigError, match="'kinds.gan.gpus': must be ≥ 0"):
        launch_config_from_dict({"kinds": {"gan": {"gpus": -1}}})
    bad = tmp_path / "l.yaml"
    bad.write_text("default: {cpus: many}\n")
    with pytest.raises(ConfigError, match=f"{bad}: launch config key 'default.cpus': expected an integer"):
        load_launch_config(bad)


def test_results_helper_sees_a_changed_array(tmp_path):
    """The comparison helper is not blind: one changed logit shows up under its array's name."""
    import numpy as np

    for name, v in (("x", 0.0), ("y", 1.0)):
        d = tmp_path / name / "train-1"
        d.mkdir(parents=True)
        np.savez(d / "preds.npz", logits=np.array([0.0, v]), labels=np.zeros(2))
        (d / "metrics.json").write_text(json.dumps({"mAP": 1.0}))
    x, y = _results(tmp_path / "x"), _results(tmp_path / "y")
    assert [k for k in x if x[k] != y[k]] == ["train-1/preds.npz", "train-1/preds.npz:logits.npy"]


WORKER_SCRIPT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from replication.experiments.parallel import _init_worker

if __name__ == "__main__":
    ex = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                             initargs=(1, os.getpid()))
    print(ex.submit(os.getpid).result(), flush=True)
    ex.submit(time.sleep, 120)  # a long step, running when the runner is killed
    time.sleep(1)
    os.kill(os.getpid(), 9)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_workers_die_with_a_killed_runner(tmp_path):
    """A SIGKILLed runner must not leave a worker running a step (and holding its lock) for the next attempt:
    without ``die_with_parent`` the worker below sleeps on for two minutes."""
    script = tmp_path / "runner.py"
    script.write_text(WORKER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=env)
    assert proc.returncode == -9, proc.stderr
    worker = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _alive(worker):
        time.sleep(0.1)
    assert not _alive(worker)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, reaped by init later, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
