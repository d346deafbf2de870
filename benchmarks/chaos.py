"""Chaos run (issue #21): ``spl experiment run`` killed with SIGKILL at random instants, restarted each time,
then let finish; its metrics and rendered table must equal those of an uninterrupted run, byte for byte.

    python benchmarks/chaos.py SPEC --work DIR [--kills 20] [--seed 0] [--exec] [--seeds 1] [--jobs 1] [--set K=V ...]
                               [--reference RUNS]

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

Attempts are forked from this process after it imported the CLI once (cheap restarts; each attempt is
a separate process killed with a real SIGKILL); ``--exec`` starts a fresh ``spl`` process instead. The
test suite calls :func:`main` in its own process, so the attempts also skip the lazy imports.
Prints one line per kill and a summary: kills survived, steps interrupted (and so re-run), attempts.
Exit status 0 when every round matches the reference, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


#: The report page's last section, the wall time of each step: it differs between any two runs.
TIMES_HEADING = b"\n## Time per step"


def _spawn(args: list[str], log: Path, use_exec: bool) -> int:
    """Start ``spl ARGS`` (stdout and stderr to ``log``); returns its pid."""
    if use_exec:
        with open(log, "wb") as f:
            return subprocess.Popen([sys.executable, "-m", "replication.cli", *args], stdout=f, stderr=f).pid
    pid = os.fork()
    if pid == 0:  # child: run the command line, never return into the parent's code
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            # the parent's sys.stdout may not write to fd 1 (pytest's capture): write to the log
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
    return pid


def _wait(pid: int, timeout: float | None) -> int | None:
    """Wait up to ``timeout`` s (None: forever) for ``pid``; its exit status, or None if still running."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


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


def _render(spec: Path, runs: Path, out: Path, sets: list[str], use_exec: bool, log: Path) -> None:
    args = ["tables", "render", str(spec), "--runs", str(runs), "--out", str(out), "--no-plot",
            *[a for s in sets for a in ("--set", s)]]
    code = _wait(_spawn(args, log, use_exec), None)
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
    a = ap.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    if not a.use_exec:
        import replication.cli  # noqa: F401 - imported once here; every forked attempt reuses it
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
        code = _wait(_spawn([*run_args, "--runs", str(ref_runs)], ref / "run.log", a.use_exec), None)
        wall = time.monotonic() - t0
        if code != 0:
            print(f"chaos: the uninterrupted run failed (exit {code}); see {ref / 'run.log'}")
            return 1
    seconds = _step_seconds(ref_runs)
    if a.reference is not None:
        wall = sum(seconds.values())
    _render(a.spec, ref_runs, ref / "table", a.sets, a.use_exec, ref / "render.log")
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
            pid = _spawn([*run_args, "--runs", str(runs)], work / f"attempt-{attempts}.log", a.use_exec)
            if kills < a.kills:
                left = sum(t for k, t in seconds.items() if k not in before)  # the reference's time still to run
                delay = rng.uniform(0.0, mult * max(left, 0.05) / (a.kills - kills))
                code = _wait(pid, delay)
                if code is None:
                    os.kill(pid, signal.SIGKILL)
                    _wait(pid, None)
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
                code = _wait(pid, None)
            if code != 0:
                print(f"chaos: attempt {attempts} exited {code}; see {work / f'attempt-{attempts}.log'}")
                return 1
            break
        _render(a.spec, runs, work / "table", a.sets, a.use_exec, work / "render.log")
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
