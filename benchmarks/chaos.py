"""Chaos run (issue #21): ``spl experiment run`` killed with SIGKILL at random instants, restarted each time,
then let finish; its metrics and rendered table must equal those of an uninterrupted run, byte for byte.

    python benchmarks/chaos.py SPEC --work DIR [--kills 20] [--seed 0] [--exec] [--seeds 1] [--jobs 1] [--set K=V ...]
                               [--reference RUNS] [--attempt-timeout S]

1. Reference: the spec runs uninterrupted into ``DIR/reference/runs`` (its wall time ``D`` is measured)
   and ``spl tables render`` writes its table. ``--reference RUNS`` takes an uninterrupted runs folder
   of the same spec and options made before (the test suite's) instead; ``D`` is then the sum of the
   wall times its steps recorded in ``done``.
2. Chaos: the spec runs into ``DIR/chaos-<round>/runs``; each attempt is killed with SIGKILL after a
   delay drawn (seeded) from U(0, w), restarted, and so on until ``--kills`` kills have landed; then
   it runs to the end. The window follows the work left: ``w = m·R/(kills left)``, ``R`` the wall time
   the reference's steps not done yet took there, so the kills spread over the whole chain and a round
   rarely finishes before its last kill. ``m`` starts at 1, doubles after three attempts that finished
   no new step (so a step longer than the window still gets done) and halves (down to 1) after one that
   did. A round that finishes before enough kills starts a fresh round. Each round's result is
   compared with the reference.
3. Compared: every ``metrics.json`` (the ``finished`` wall-clock stamp left out: the one field that
   differs by construction), the rendered ``<name>.csv`` and the ``<name>.md`` report page up to its
   "Time per step" section (wall times; everything above it: table, verdicts, GAN quality, images).

Attempts are forked by a ``multiprocessing`` fork server that imported the CLI once (cheap restarts;
each attempt is a separate process killed with a real SIGKILL); ``--exec`` starts a fresh ``spl``
process instead. The fork server is a fresh, single-threaded interpreter: forking from the caller
itself (the test suite's xdist worker, with its BLAS, OpenMP and execnet threads) once left a child
deadlocked on a lock another thread held at the fork. An attempt left to finish that runs longer than
``--attempt-timeout`` is killed and reported, so a hung attempt fails the run instead of hanging it.
Prints one line per kill and a summary: kills survived, steps interrupted (and so re-run), attempts.
Exit status 0 when every round matches the reference, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


#: The report page's last section, the wall time of each step: it differs between any two runs.
TIMES_HEADING = b"\n## Time per step"


def _run_cli(args: list[str], log: str) -> None:
    """An attempt's body in a forked process: ``spl ARGS`` with stdout and stderr to ``log``; never returns."""
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        from replication.cli import cli
        cli.main(args=args, prog_name="spl", standalone_mode=False)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # report anything, then leave
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


#: What the fork server imports once: the CLI and the modules its steps import lazily (scikit-learn for
#: digits-mosaic, the training loop, torch's optimizers' dynamo, matplotlib for the plots), so each attempt
#: spends its time in the steps, where the kills are aimed. None of them starts a thread at import.
PRELOAD = ["replication.cli", "replication.experiments.stepfns", "replication.training.loop",
           "replication.report.plots", "sklearn.datasets", "torch._dynamo"]


def _fork_server() -> multiprocessing.context.BaseContext:
    """The ``forkserver`` context, its server preloading :data:`PRELOAD` (started on first use, one thread)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class _Attempt:
    """One started ``spl`` command line: forked by the fork server, or (``use_exec``) a fresh process."""

    def __init__(self, args: list[str], log: Path, use_exec: bool) -> None:
        if use_exec:
            with open(log, "wb") as f:
                self.proc = subprocess.Popen([sys.executable, "-m", "replication.cli", *args], stdout=f, stderr=f)
        else:
            self.proc = _fork_server().Process(target=_run_cli, args=(args, str(log)))
            self.proc.start()

    def wait(self, timeout: float | None) -> int | None:
        """Wait up to ``timeout`` s (None: forever); the exit status (−signal if killed), or None if still running."""
        if isinstance(self.proc, subprocess.Popen):
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        self.proc.join(timeout)
        return self.proc.exitcode

    def kill(self) -> None:
        """SIGKILL, and reap."""
        self.proc.kill()
        self.wait(None)


def _done_steps(runs: Path) -> set[str]:
    return {str(p.parent.relative_to(runs)) for p in runs.rglob("done") if (p.parent / "step.yaml").is_file()}


def _started_steps(runs: Path) -> set[str]:
    return {str(p.parent.relative_to(runs)) for p in runs.rglob("step.yaml")}


def _step_seconds(runs: Path) -> dict[str, float]:
    """The wall time (``seconds``) each finished step under ``runs`` recorded in its ``done``, by step folder."""
    out = {}
    for p in runs.rglob("done"):
        try:
            out[str(p.parent.relative_to(runs))] = float(json.loads(p.read_text(encoding="utf-8"))["seconds"])
        except (ValueError, KeyError, TypeError, OSError):
            out[str(p.parent.relative_to(runs))] = 0.0
    return out


def _results(runs: Path, table_dir: Path, name: str) -> dict[str, bytes]:
    """The compared bytes: metrics.json files without their ``finished`` stamp, and the rendered table."""
    out = {}
    for m in sorted(runs.rglob("metrics.json")):
        if m.parent.name.startswith("metrics-"):
            rec = json.loads(m.read_text(encoding="utf-8"))
            rec.pop("finished", None)
            out[str(m.relative_to(runs))] = json.dumps(rec, indent=2).encode()
    for ext in ("csv", "md"):
        f = table_dir / f"{name}.{ext}"
        if f.is_file():
            data = f.read_bytes()
            out[f"table.{ext}"] = data.split(TIMES_HEADING)[0] if ext == "md" else data
    return out


def _finish(attempt: _Attempt, timeout: float, log: Path) -> int:
    """Let ``attempt`` run to its end; killed and reported as hung (exit 1) after ``timeout`` s."""
    code = attempt.wait(timeout)
    if code is None:
        attempt.kill()
        raise SystemExit(f"chaos: an attempt ran longer than {timeout:.0f} s and was killed as hung; see {log}")
    return code


def _render(spec: Path, runs: Path, out: Path, sets: list[str], use_exec: bool, log: Path, timeout: float) -> None:
    args = ["tables", "render", str(spec), "--runs", str(runs), "--out", str(out), "--no-plot",
            *[a for s in sets for a in ("--set", s)]]
    code = _finish(_Attempt(args, log, use_exec), timeout, log)
    if code != 0:
        raise SystemExit(f"chaos: rendering {runs} failed (exit {code}); see {log}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", type=Path)
    ap.add_argument("--work", type=Path, required=True, help="Scratch folder (replaced).")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1, help="--seeds of spl experiment run.")
    ap.add_argument("--jobs", type=int, default=1, help="--jobs of spl experiment run (its workers die with it).")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--exec", dest="use_exec", action="store_true", help="A fresh spl process per attempt.")
    ap.add_argument("--reference", type=Path, default=None,
                    help="An uninterrupted runs folder of SPEC (same --seeds, --set): the reference, not run again.")
    ap.add_argument("--attempt-timeout", type=float, default=None,
                    help="Seconds an attempt left to finish may run before it counts as hung "
                         "(default: 10 × the reference's wall time, at least 120).")
    a = ap.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    name = __import__("yaml").safe_load(a.spec.read_text())["name"]
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    run_args = ["experiment", "run", str(a.spec), "--no-progress", "--seeds", str(a.seeds), "--jobs", str(a.jobs),
                *[x for s in a.sets for x in ("--set", s)]]

    ref = a.work / "reference"
    ref.mkdir()
    ref_runs = ref / "runs" if a.reference is None else a.reference
    if a.reference is None:
        t0 = time.monotonic()
        code = _Attempt([*run_args, "--runs", str(ref_runs)], ref / "run.log", a.use_exec).wait(None)
        wall = time.monotonic() - t0
        if code != 0:
            print(f"chaos: the uninterrupted run failed (exit {code}); see {ref / 'run.log'}")
            return 1
    seconds = _step_seconds(ref_runs)
    if a.reference is not None:
        wall = sum(seconds.values())
    timeout = a.attempt_timeout if a.attempt_timeout is not None else max(120.0, 10 * wall)
    _render(a.spec, ref_runs, ref / "table", a.sets, a.use_exec, ref / "render.log", timeout)
    expected = _results(ref_runs, ref / "table", name)
    print(f"reference: {len(_done_steps(ref_runs))} steps in {wall:.1f} s wall; "
          f"{sum(k.endswith('metrics.json') for k in expected)} metrics files")

    rng = random.Random(a.seed)
    kills = attempts = interrupted = 0
    rounds_ok = True
    rnd = 0
    mult = 1.0
    while kills < a.kills or rnd == 0:
        rnd += 1
        work = a.work / f"chaos-{rnd}"
        runs = work / "runs"
        work.mkdir()
        stalled, mult = 0, max(1.0, mult / 4)  # a fresh round: short kills again
        while True:
            attempts += 1
            before = _done_steps(runs) if runs.exists() else set()
            log = work / f"attempt-{attempts}.log"
            attempt = _Attempt([*run_args, "--runs", str(runs)], log, a.use_exec)
            if kills < a.kills:
                left = sum(t for k, t in seconds.items() if k not in before)  # the reference's time still to run
                delay = rng.uniform(0.0, mult * max(left, 0.05) / (a.kills - kills))
                code = attempt.wait(delay)
                if code is None:
                    attempt.kill()
                    kills += 1
                    done = _done_steps(runs) if runs.exists() else set()
                    cut = (_started_steps(runs) - done) if runs.exists() else set()
                    interrupted += len(cut)
                    stalled = 0 if done - before else stalled + 1
                    if stalled == 0:
                        mult = max(1.0, mult / 2)
                    elif stalled >= 3:
                        mult, stalled = mult * 2, 0
                    print(f"kill {kills:3d} at {delay:6.2f} s: {len(done)} steps done, "
                          f"interrupted {', '.join(sorted(c.split('/')[-1] for c in cut)) or '(between steps)'}")
                    continue
            else:
                code = _finish(attempt, timeout, log)
            if code != 0:
                print(f"chaos: attempt {attempts} exited {code}; see {log}")
                return 1
            break
        _render(a.spec, runs, work / "table", a.sets, a.use_exec, work / "render.log", timeout)
        got = _results(runs, work / "table", name)
        same = got == expected
        rounds_ok &= same
        if not same:
            diff = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
            print(f"round {rnd}: DIFFERS from the reference in {', '.join(diff)}")
        else:
            print(f"round {rnd}: finished; {len(got)} compared files byte-identical to the reference")
    print(f"chaos summary: {kills} kills survived, {interrupted} interrupted steps re-run, {attempts} attempts, "
          f"{rnd} round(s), results {'identical' if rounds_ok else 'DIFFERENT'}")
    return 0 if rounds_ok else 1


if __name__ == "__main__":
    sys.exit(main())
