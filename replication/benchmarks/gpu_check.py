"""The one-call GPU check (``spl bench gpu-check``, ``make gpu-check``): every GPU path, run once, in ≤ 8 minutes.

GPU time comes in minutes, so everything a CUDA machine should verify is one command. :data:`STAGES`
is the list, as data: each stage is one or more command lines (``spl …`` or ``python …``) with a time
budget. :func:`run_check` runs each stage as a subprocess in its own process group, so a crash or a
hang costs only that stage: at the end of its budget the whole group is killed and the stage is
recorded as ``timeout``. After each stage a collector reads its result file into key numbers, and
the goals (:data:`GOALS`) are computed from numbers measured in the same run.

Where results go (all under ``results_dir``, default ``benchmarks/results``, keyed by the device slug
of :func:`replication.benchmarks.harness.machine_info`, so a run never replaces another device's):

* ``gpu-check-<slug>.json``: the summary (stages: status, seconds, budget, key numbers, the tail of
  the output; goals; machine);
* ``gpu-check-<slug>/<stage>.json`` (the benchmarks' own result files), ``<stage>.log`` (full output),
  and ``demo-table/`` (the demo's table as rendered on that device).

Without CUDA, stages that need it are ``skipped`` with the reason, and stages with a CPU flavour
(``cpu_commands``: smaller, ``--quick``) run that instead. ``copy_to`` (the device machine's ``$OUT``)
also receives the summary and the stages' JSON files, in the same layout.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from replication.benchmarks import harness
from replication.errors import ConfigError

TOTAL_BUDGET_S = 480          # 8 minutes on an H200; the stages sum to 470, 10 s for this process
PER_TEST_TIMEOUT_S = 30       # pytest-timeout, per gpu-marked test
WORKERS = 16                  # DataLoader workers feeding R101 (the H200 machine has 16 cores)
R101_BATCH = 256
BULK_N = 4_000_000
KILL_GRACE_S = 5.0            # SIGTERM → SIGKILL of a stage's process group
TAIL_CHARS = 3000             # output kept in the summary per stage
MAX_COPIED_FILES = 8          # the device machine returns at most 8 files from $OUT
# The experiment runner's marker files (replication.experiments.steps.DONE / STEP_FILE; that layer is above
# this one, so the names are repeated here and checked by tests/test_gpu_check.py).
STEP_DONE, STEP_FILE = "done", "step.yaml"
NO_CUDA = "no CUDA device (torch.cuda.is_available() is False)"


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: command lines (argv templates) run in order within ``budget_s`` seconds.

    A template's first word ``spl`` or ``python`` becomes this interpreter (``python -m replication.cli``
    for ``spl``, so no installed entry point is needed); ``{out}`` is the run's folder
    ``gpu-check-<slug>/``, ``{scratch}`` a temporary folder removed at the end. ``cpu_commands`` run
    instead on a machine without CUDA; a ``needs_cuda`` stage without them is skipped there.
    """

    name: str
    what: str
    budget_s: float
    commands: tuple[tuple[str, ...], ...]
    needs_cuda: bool = False
    cpu_commands: tuple[tuple[str, ...], ...] | None = None


def _cmd(line: str) -> tuple[str, ...]:
    return tuple(shlex.split(line))


_KERNEL_SIZES = f"--rules spl,pseudo --step-n 24 --classes 80 --large-n '' --bulk-n {BULK_N} --min-time 0.1"
_TRAIN = f"spl bench train --device cuda --cases r101 --batches {R101_BATCH} --workers {WORKERS}"
_DEMO = "tables/specs/demo.yaml"

STAGES: tuple[Stage, ...] = (
    Stage("pytest-gpu", "the gpu-marked tests (CuPy, real Numba CUDA, AMP), a timeout per test", 70,
          (_cmd(f"python -m pytest -m gpu --timeout {PER_TEST_TIMEOUT_S} -q -p no:cacheprovider "
                "--junitxml {scratch}/pytest-gpu.xml"),)),
    Stage("kernels", f"fused vs torch eager vs torch.compile at 24×80; relabelling at {BULK_N:,}×80 vs D2D copy", 75,
          (_cmd(f"spl bench kernels --device cuda {_KERNEL_SIZES} --out {{out}}/kernels.json"),), needs_cuda=True),
    Stage("train", f"pre-act ResNet-101 224, bf16 AMP + channels_last, eager, b={R101_BATCH}; loader {WORKERS} workers",
          55, (_cmd(f"{_TRAIN} --modes cl+amp --out {{out}}/train.json"),), needs_cuda=True),
    Stage("train-compile", "the same step under torch.compile (compilation in the warm-up)", 100,
          (_cmd(f"{_TRAIN} --modes compile --out {{out}}/train-compile.json"),), needs_cuda=True),
    Stage("loader", f"the shard loader alone, {WORKERS} workers (CPU side of the R101 feed)", 15,
          (_cmd(f"spl bench loader --workers {WORKERS} --out {{out}}/loader.json"),),
          cpu_commands=(_cmd("spl bench loader --quick --workers 0,2 --out {out}/loader.json"),)),
    Stage("gan", "GAN training step at 32 and 64, eager vs torch.compile (12 s per row)", 70,
          (_cmd("spl bench gan --device cuda --sizes 32,64 --modes eager,compile --row-timeout 12 "
                "--out {out}/gan.json"),), needs_cuda=True),
    Stage("demo", "`make demo` on the GPU (fresh run directory), wall time per step", 85,
          (_cmd(f"spl experiment run {_DEMO} --runs {{scratch}}/runs --no-progress"),
           _cmd(f"spl tables render {_DEMO} --runs {{scratch}}/runs --out {{out}}/demo-table --no-plot")),
          needs_cuda=True),
)


# ----------------------------------------------------------------------------- planning


def select(stages: tuple[Stage, ...], names: tuple[str, ...] | None) -> tuple[Stage, ...]:
    """The stages named (in the list's order), or all; an unknown name is a :class:`ConfigError`."""
    if not names:
        return stages
    unknown = sorted(set(names) - {s.name for s in stages})
    if unknown:
        raise ConfigError(f"gpu-check: unknown stage(s) {unknown}; expected some of {[s.name for s in stages]}")
    return tuple(s for s in stages if s.name in names)


def argv(template: tuple[str, ...], out: Path, scratch: Path) -> list[str]:
    """A command template as an argv list (see :class:`Stage`)."""
    head = {"spl": [sys.executable, "-m", "replication.cli"], "python": [sys.executable]}.get(template[0])
    words = (head or [template[0]]) + [w.format(out=out, scratch=scratch) for w in template[1:]]
    return words


def plan(stages: tuple[Stage, ...], *, cuda: bool, budget_scale: float = 1.0,
         out: Path = Path("{out}"), scratch: Path = Path("{scratch}")) -> list[dict[str, Any]]:
    """What :func:`run_check` would do per stage: name, what, budget, action (run / run cpu flavour / skip)."""
    rows = []
    for s in stages:
        commands, action = s.commands, "run"
        if not cuda and s.cpu_commands is not None:
            commands, action = s.cpu_commands, "run (CPU flavour)"
        elif not cuda and s.needs_cuda:
            action = f"skip: {NO_CUDA}"
        rows.append({"name": s.name, "what": s.what, "budget_s": round(s.budget_s * budget_scale, 1),
                     "needs_cuda": s.needs_cuda, "action": action, "skip": action.startswith("skip"),
                     "argv": [argv(c, out, scratch) for c in commands],
                     "commands": [shlex.join(argv(c, out, scratch)) for c in commands]})
    return rows


def format_plan(rows: list[dict[str, Any]]) -> list[str]:
    """Printable lines of :func:`plan`: one block per stage, then the sum of budgets."""
    lines = []
    for r in rows:
        lines.append(f"{r['name']:<14} {r['budget_s']:6.0f} s  {r['action']}   ({r['what']})")
        lines += [f"{'':<16}$ {c}" for c in r["commands"]]
    lines.append(f"sum of budgets: {sum(r['budget_s'] for r in rows):.0f} s (limit {TOTAL_BUDGET_S} s)")
    return lines


# ----------------------------------------------------------------------------- running


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop a stage's process group (the stage and what it started: DataLoader and compile workers)."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE_S)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
    proc.wait()


def run_commands(commands: list[list[str]], budget_s: float, log_path: Path, *, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> tuple[str, int | None, float]:
    """Run ``commands`` in order, output to ``log_path``, all within ``budget_s``.

    Returns ``(status, returncode, seconds)``: ``ok``; ``failed`` (the first non-zero exit stops the
    rest); ``timeout`` (the budget ran out: the running command's process group was killed).
    """
    start = time.monotonic()
    with open(log_path, "wb") as log:
        for cmd in commands:
            left = budget_s - (time.monotonic() - start)
            if left <= 0:
                return "timeout", None, time.monotonic() - start
            log.write(f"$ {shlex.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                    env=env, start_new_session=True)
            try:
                rc = proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                log.write(f"\n[gpu-check] budget of {budget_s:g} s exceeded: killed\n".encode())
                return "timeout", None, time.monotonic() - start
            if rc != 0:
                return "failed", rc, time.monotonic() - start
    return "ok", 0, time.monotonic() - start


def out_dir(results_dir: str | os.PathLike, machine: dict[str, Any]) -> Path:
    """The run's folder of stage files: ``<results_dir>/gpu-check-<device-slug>``."""
    return Path(results_dir) / f"gpu-check-{machine['device_slug']}"


def _tail(path: Path, chars: int = TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - chars))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _stage_env(root: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(root.resolve())] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def run_check(stages: tuple[Stage, ...] = STAGES, *, results_dir: str | os.PathLike = harness.RESULTS_DIR,
              cuda: bool | None = None, budget_scale: float = 1.0, copy_to: str | os.PathLike | None = None,
              root: str | os.PathLike = ".", on_event: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``stages`` (module docstring); writes and returns the summary record (its ``path`` included).

    ``cuda`` None: ask torch. ``on_event`` receives a line when a stage starts and ends.
    """
    say = on_event or (lambda _line: None)
    cuda = torch.cuda.is_available() if cuda is None else cuda
    machine = harness.machine_info("cuda" if cuda else "cpu")
    results_dir, root = Path(results_dir), Path(root)
    out = out_dir(results_dir, machine)
    out.mkdir(parents=True, exist_ok=True)
    env = _stage_env(root)
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        scratch = Path(tmp)
        for p in plan(stages, cuda=cuda, budget_scale=budget_scale, out=out, scratch=scratch):
            name = p["name"]
            row = {"stage": name, "what": p["what"], "budget_s": p["budget_s"], "action": p["action"]}
            if p["skip"]:
                row.update(status="skipped", seconds=0.0, reason=NO_CUDA, numbers={})
                say(f"[{name}] skipped: {NO_CUDA}")
                rows.append(row)
                continue
            say(f"[{name}] {p['action']}, budget {p['budget_s']:g} s: {p['commands'][0]}")
            log = out / f"{name}.log"
            status, rc, seconds = run_commands(p["argv"], p["budget_s"], log, cwd=root, env=env)
            row.update(status=status, returncode=rc, seconds=round(seconds, 1), commands=p["commands"],
                       log=str(log), numbers=collect(name, out, scratch))
            if status != "ok":
                row["output_tail"] = _tail(log)
            say(f"[{name}] {status} in {seconds:.1f} s  {row['numbers'].get('brief', '')}")
            rows.append(row)
    summary = harness.record("gpu-check", machine, {"cuda": cuda, "budget_scale": budget_scale,
                                                    "sum_of_budgets_s": round(sum(r["budget_s"] for r in rows), 1),
                                                    "per_test_timeout_s": PER_TEST_TIMEOUT_S},
                             rows, goals=goals(rows), total_s=round(time.monotonic() - t0, 1))
    path = out.with_name(out.name + ".json")
    harness.write_result(summary, out=path)
    summary["path"] = str(path)
    if copy_to:
        summary["copied"] = [str(p) for p in copy_results(path, out, Path(copy_to))]
    return summary


def copy_results(summary_path: Path, out: Path, dest: Path, limit: int = MAX_COPIED_FILES) -> list[Path]:
    """Copy the summary and the stages' JSON files into ``dest`` (same layout; at most ``limit`` files)."""
    files = [summary_path] + sorted(out.glob("*.json"))
    copied = []
    for f in files[:limit]:
        target = dest / f.relative_to(summary_path.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
        copied.append(target)
    return copied


# ----------------------------------------------------------------------------- key numbers


def _read(path: Path) -> list[dict]:
    return list((harness.read_result(path) or {}).get("results", []))


def _pytest(out: Path, scratch: Path) -> dict[str, Any]:
    path = scratch / "pytest-gpu.xml"  # not kept: pytest writes the hostname into it
    if not path.exists():
        return {}
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    n["passed"] = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    bad = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
           if c.find("failure") is not None or c.find("error") is not None]
    return {**n, "not_passed": bad[:20],
            "brief": f"{n['passed']} passed, {n['failures'] + n['errors']} failed, {n['skipped']} skipped"}


def _p50(rows: list[dict], **match: Any) -> dict[str, float]:
    """p50 per backend of the ok rows matching ``match``."""
    return {r["backend"]: float(r["p50"]) for r in rows if r.get("status") == "ok" and r.get("p50") is not None
            and all(str(r.get(k)) == str(v) for k, v in match.items())}


FUSED = ("cupy", "numba-cuda")


def _kernels(out: Path, scratch: Path) -> dict[str, Any]:
    rows = _read(out / "kernels.json")
    if not rows:
        return {}
    loss, fused_over_compile = {}, {}
    for mode in ("sigmoid", "softmax"):
        us = _p50(rows, op="soft_cross_entropy", variant=mode, N=24, C=80, mode="full", metric="gpu_time")
        loss[mode] = us
        fused = [us[b] for b in FUSED if b in us]
        if fused and us.get("torch-compile"):
            fused_over_compile[mode] = round(min(fused) / us["torch-compile"], 3)
    bulk, bulk_over_copy, copy = {}, {}, {}
    for rule in ("spl", "pseudo"):
        gbps = _p50(rows, op="assign_labels", variant=rule, N=BULK_N, C=80, metric="bandwidth")
        if not gbps:
            continue
        bulk[rule] = gbps
        copy[rule] = gbps.get("d2d-copy")
        kern = [gbps[b] for b in FUSED if b in gbps]
        if kern and gbps.get("d2d-copy"):
            bulk_over_copy[rule] = round(max(kern) / gbps["d2d-copy"], 3)
    brief = " ".join([f"fused/compile {m}={r}" for m, r in fused_over_compile.items()]
                     + [f"bulk/copy {k}={r}" for k, r in bulk_over_copy.items()])
    return {"loss_full_gpu_us_24x80": loss, "fused_over_compile": fused_over_compile, "bulk_gbps": bulk,
            "d2d_copy_gbps": copy, "bulk_over_copy": bulk_over_copy,
            "not_ok": sorted({f"{r['op']}/{r['variant']}/{r['backend']}: {r['status']}"[:200] for r in rows
                              if r.get("status") != "ok"}), "brief": brief}


def _train(name: str) -> Callable[[Path, Path], dict[str, Any]]:
    def collect_train(out: Path, scratch: Path) -> dict[str, Any]:
        rows = [r for r in _read(out / f"{name}.json") if r.get("case") == "r101"]
        if not rows:
            return {}
        keep = ("mode", "batch", "workers", "synthetic_images_per_s", "loader_images_per_s", "loader_fraction", "error")
        rows = [{k: r[k] for k in keep if k in r} for r in rows]
        brief = "; ".join(r.get("error") or f"{r['mode']} b={r['batch']}: {r['synthetic_images_per_s']:.0f} img/s, "
                          f"loader {r['loader_images_per_s']:.0f} ({100 * r['loader_fraction']:.0f}%)" for r in rows)
        return {"r101": rows, "brief": brief}
    return collect_train


def _loader(out: Path, scratch: Path) -> dict[str, Any]:
    rows = [r for r in _read(out / "loader.json") if r.get("storage") == "shards"]
    if not rows:
        return {}
    best = max(rows, key=lambda r: r["workers"])
    return {"shards_images_per_s": {str(r["workers"]): r["images_per_s"] for r in rows},
            "brief": f"shards {best['images_per_s']:.0f} img/s at {best['workers']} workers"}


def _gan(out: Path, scratch: Path) -> dict[str, Any]:
    rows = _read(out / "gan.json")
    if not rows:
        return {}
    cells = {f"{r['arch']}-{r['size']}-{r['mode']}": r.get("error") or r.get("real_images_per_s") for r in rows}
    ok = [r for r in rows if "error" not in r]
    return {"real_images_per_s": cells, "brief": f"{len(ok)}/{len(rows)} rows ok"}


def _demo(out: Path, scratch: Path) -> dict[str, Any]:
    runs = scratch / "runs"
    if not runs.is_dir():
        return {}
    steps, unfinished = [], []
    for step_file in sorted(runs.rglob(STEP_FILE)):
        label = (yaml.safe_load(step_file.read_text(encoding="utf-8")) or {}).get("label", step_file.parent.name)
        done = step_file.parent / STEP_DONE
        if done.is_file():
            info = json.loads(done.read_text(encoding="utf-8"))
            steps.append({"step": label, "seconds": info.get("seconds"), "finished": info.get("finished")})
        else:
            unfinished.append(label)
    steps.sort(key=lambda s: s.get("finished") or "")
    total = round(sum(s["seconds"] or 0 for s in steps), 1)
    slowest = max(steps, key=lambda s: s["seconds"] or 0) if steps else None
    brief = f"{len(steps)} steps done in {total} s" + (f", slowest {slowest['step']} {slowest['seconds']:.1f} s"
                                                       if slowest else "")
    if unfinished:
        brief += f", unfinished: {', '.join(unfinished)}"
    return {"steps": steps, "unfinished": unfinished, "step_seconds_total": total,
            "table": (out / "demo-table").is_dir(), "brief": brief}


COLLECTORS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "pytest-gpu": _pytest, "kernels": _kernels, "train": _train("train"), "train-compile": _train("train-compile"),
    "loader": _loader, "gan": _gan, "demo": _demo,
}


def collect(name: str, out: Path, scratch: Path) -> dict[str, Any]:
    """Key numbers of stage ``name`` from its files ({} when it has none or left none)."""
    fn = COLLECTORS.get(name)
    if fn is None:
        return {}
    try:
        return fn(out, scratch)
    except Exception as e:  # a broken result file must not lose the rest of the summary
        return {"collect_error": f"{type(e).__name__}: {e}"[:300], "brief": "(result unreadable)"}


# ----------------------------------------------------------------------------- goals and summary


R101_TARGET = 2000.0


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The four goals, each a ratio of numbers from this run (``met`` None where not measured)."""
    num = {r["stage"]: r.get("numbers") or {} for r in rows}
    foc = num.get("kernels", {}).get("fused_over_compile") or {}
    boc = num.get("kernels", {}).get("bulk_over_copy") or {}
    r101 = [r for st in ("train", "train-compile") for r in num.get(st, {}).get("r101", [])
            if "synthetic_images_per_s" in r]
    best = max(r101, key=lambda r: r["synthetic_images_per_s"]) if r101 else None
    out = [
        ("fused loss fwd+bwd time / torch.compile (24×80, worst mode)", "<=", 1.0,
         max(foc.values()) if foc else None),
        (f"bulk relabelling / D2D copy bandwidth ({BULK_N:,}×80, worst rule)", ">=", 0.8,
         min(boc.values()) if boc else None),
        (f"ResNet-101 bf16 img/s / {R101_TARGET:,.0f} (best mode)", ">=", 1.0,
         round(best["synthetic_images_per_s"] / R101_TARGET, 3) if best else None),
        (f"loader-fed / synthetic img/s ({WORKERS} workers, best mode)", ">=", 0.9,
         best.get("loader_fraction") if best else None),
    ]
    return [{"goal": g, "target": f"{op} {t:g}", "ratio": v,
             "met": None if v is None else (v <= t if op == "<=" else v >= t)} for g, op, t, v in out]


def format_summary(summary: dict[str, Any]) -> list[str]:
    """One summary block: per stage status, seconds, budget and key numbers; then the goals."""
    m, c = summary["machine"], summary["conditions"]
    lines = [f"gpu-check on {m['device_name']} ({m['device_slug']}), CUDA {'yes' if c['cuda'] else 'NO'}; "
             f"{summary['total_s']:.0f} s of {c['sum_of_budgets_s']:.0f} s budgeted",
             f"{'stage':<14} {'status':<8} {'seconds':>8} {'budget':>7}  key numbers / reason"]
    for r in summary["results"]:
        what = r.get("reason") or r["numbers"].get("brief") or ""
        if r["status"] in ("failed", "timeout") and r.get("returncode") is not None:
            what = f"exit {r['returncode']}; {what}"
        lines.append(f"{r['stage']:<14} {r['status']:<8} {r['seconds']:8.1f} {r['budget_s']:7.0f}  {what}")
    skipped = [r["stage"] for r in summary["results"] if r["status"] == "skipped"]
    if skipped:
        lines.append(f"CUDA stages skipped ({NO_CUDA}): {', '.join(skipped)}")
    lines.append("goals (ratios measured in this run):")
    for g in summary["goals"]:
        verdict = "not measured" if g["met"] is None else "met" if g["met"] else "NOT met"
        value = "-" if g["ratio"] is None else f"{g['ratio']:.3f}"
        lines.append(f"  {g['goal']:<66} {g['target']:>6}  {value:>7}  {verdict}")
    lines.append(f"summary: {summary.get('path', '')}")
    if summary.get("copied"):
        lines.append(f"copied: {', '.join(summary['copied'])}")
    return lines
