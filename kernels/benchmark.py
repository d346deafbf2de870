"""Microbenchmarks of the kernels against torch eager and ``torch.compile``, in the same run.

Writes long-format rows (one measured quantity per row) that :func:`write_csv` merges into
``benchmarks/results/kernels.csv`` (appending; a new row replaces an old one with the same key,
see :data:`KEY`). Speed is measured here, never asserted in a test.

Providers compared, per device:

* ``torch-eager`` — the reference written with torch ops: the pure rule of
  :mod:`kernels.reference.assign_labels` (no finiteness check, so it does strictly less work than
  the kernels) and the autograd loss :func:`soft_cross_entropy_reference`;
* ``torch-compile`` — ``torch.compile`` of exactly those functions (compile time excluded; a
  failure to compile is recorded in the row's ``status``, never skipped);
* ``torch`` (the public ops' reference backend: validation, the finiteness check, and the
  closed-form loss+gradient inside the autograd Function — what ``auto`` picks when it does not
  pick a kernel), ``numba`` (CPU), ``numba-cuda`` and ``cupy`` (GPU) — the public ops with that
  backend named;
* ``auto`` — the public ops with ``backend="auto"``; ``resolved_backend`` says what ran.

A provider that cannot run records ``status = "unavailable: <reason>"``; nothing falls back.
Metrics: ``cpu_wall`` (µs of host wall time per call: on a GPU the time to issue the call),
``gpu_time`` (µs per call by CUDA events), ``launches`` (GPU activities per call, by
``torch.profiler``), ``bandwidth`` (GB/s of bulk relabelling: bytes read + written per second;
the ``d2d-copy`` row measures ``Tensor.copy_`` of the same bytes as the ceiling).
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import torch

from kernels.backends import last_backend
from kernels.ops.assign_labels import assign_labels
from kernels.ops.soft_cross_entropy import weighted_soft_cross_entropy
from kernels.reference import assign_labels as ref_assign
from kernels.reference.soft_cross_entropy import soft_cross_entropy_reference

log = logging.getLogger(__name__)

COLUMNS: list[str] = [
    "op", "variant", "backend", "resolved_backend", "mode", "N", "C", "dtype", "metric", "unit",
    "p50", "p20", "p80", "reps", "status", "device", "device_name", "threads",
    "torch", "numba", "cupy", "timestamp",
]
# Rows with equal values in these columns are the same measurement: the newest one is kept.
KEY: tuple[str, ...] = ("op", "variant", "backend", "mode", "N", "C", "dtype", "metric",
                        "device", "device_name", "threads", "torch", "numba", "cupy")
CPU_PROVIDERS: tuple[str, ...] = ("torch-eager", "torch-compile", "torch", "numba", "auto")
GPU_PROVIDERS: tuple[str, ...] = ("torch-eager", "torch-compile", "torch", "cupy", "numba-cuda", "auto")
RULES: tuple[str, ...] = ("spl", "pseudo", "random")
LOSS_MODES: tuple[str, ...] = ("sigmoid", "softmax")


@dataclasses.dataclass
class BenchConfig:
    """What to measure. ``quick`` shrinks sizes and repetitions (a smoke run, not for decisions)."""

    devices: tuple[str, ...] = ("cpu",)
    quick: bool = False
    providers: tuple[str, ...] | None = None   # None: all providers of each device
    ops: tuple[str, ...] = ("assign_labels", "soft_cross_entropy")
    step_n: tuple[int, ...] = (24, 256)          # per training step (batch 24 as SPEC §7, and 256)
    loss_large_n: tuple[int, ...] = (4096,)      # larger loss batches: where the auto threshold lies
    classes: tuple[int, ...] = (14, 80, 81)      # WIDER, COCO, NUS-WIDE
    bulk_n: dict[str, int] = dataclasses.field(default_factory=lambda: {"cpu": 100_000, "cuda": 4_000_000})
    min_time_s: float = 0.3
    max_reps: int = 200
    warmup: int = 3
    seed: int = 0
    threads: int | None = None                   # set torch's and numba's thread counts (None: leave)

    def __post_init__(self) -> None:
        if self.quick:
            self.step_n, self.classes, self.loss_large_n = (24,), (14, 81), ()
            self.bulk_n = {"cpu": 2_000, "cuda": 100_000}
            self.min_time_s, self.max_reps, self.warmup = 0.02, 5, 1


@dataclasses.dataclass
class Measurement:
    """Per-call samples of one provider on one case."""

    cpu_us: list[float]
    gpu_us: list[float] | None = None
    launches: int | None = None


def environment(device: str) -> dict[str, str]:
    """Columns describing the machine and library versions."""
    def version(mod: str) -> str:
        try:
            return __import__(mod).__version__
        except Exception:
            return "missing"

    name = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    try:
        import numba

        nthreads = f"torch={torch.get_num_threads()};numba={numba.get_num_threads()}"
    except Exception:
        nthreads = f"torch={torch.get_num_threads()}"
    return {"device": device, "device_name": name, "threads": nthreads, "torch": torch.__version__,
            "numba": version("numba"), "cupy": version("cupy") if device == "cuda" else ""}


def _percentiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=10, method="inclusive")
    return statistics.median(xs), q[1], q[7]


def time_calls(fn: Callable[[], object], device: str, cfg: BenchConfig,
               setup: Callable[[], None] | None = None) -> Measurement:
    """Run ``fn`` repeatedly (``setup`` untimed before each call); host µs and, on GPU, event µs."""
    for _ in range(cfg.warmup):
        if setup:
            setup()
        fn()
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
    cpu, gpu = [], []
    start_all = time.perf_counter()
    while len(cpu) < cfg.max_reps and (len(cpu) < 3 or time.perf_counter() - start_all < cfg.min_time_s):
        if setup:
            setup()
        if cuda:
            torch.cuda.synchronize()
            ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ev0.record()
        t0 = time.perf_counter_ns()
        fn()
        t1 = time.perf_counter_ns()
        if cuda:
            ev1.record()
            torch.cuda.synchronize()
            gpu.append(ev0.elapsed_time(ev1) * 1000.0)
        cpu.append((t1 - t0) / 1000.0)
    return Measurement(cpu, gpu if cuda else None)


def count_launches(fn: Callable[[], object]) -> int | None:
    """GPU activities (kernels, memsets, copies) issued by one call of ``fn`` (torch.profiler)."""
    try:
        from torch.profiler import ProfilerActivity, profile

        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    except Exception as e:  # the profiler is optional: record that it failed
        log.warning("launch counting failed: %s", e)
        return None


# ----------------------------------------------------------------------------- cases


def _pure_rule(rule: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The reference rule as plain torch (what torch-eager runs and torch.compile compiles)."""
    def spl(x):
        return torch.softmax(torch.sigmoid(x), dim=1)

    def pseudo(x):
        idx = torch.sort(x, dim=1, descending=True, stable=True).indices[:, :3]
        return torch.zeros_like(x).scatter_(1, idx, 1.0)

    def random(x):
        return pseudo(torch.rand(x.shape, device=x.device))

    return {"spl": spl, "pseudo": pseudo, "random": random}[rule]


def _assign_cases(cfg: BenchConfig, device: str) -> Iterable[tuple[str, int, int]]:
    for rule in RULES:
        for n in cfg.step_n:
            for c in cfg.classes:
                yield rule, n, c
        for c in cfg.classes:
            yield rule, cfg.bulk_n[device], c


def _provider_fn(op: str, provider: str, compiled: dict, variant: str, tensors: dict):
    """(fn, setup) running ``provider`` for one case; raises if it cannot run."""
    if op == "assign_labels":
        x = tensors["x"]
        if provider == "torch-eager":
            f = _pure_rule(variant)
            return (lambda: f(x)), None
        if provider == "torch-compile":
            key = ("assign", variant)
            if key not in compiled:
                compiled[key] = torch.compile(_pure_rule(variant))
            f = compiled[key]
            return (lambda: f(x)), None
        return (lambda: assign_labels(x, variant, backend=provider)), None
    x, y, w = tensors["x"], tensors["y"], tensors["w"]
    if provider in ("torch-eager", "torch-compile"):
        if provider == "torch-compile":
            key = ("loss", variant)
            if key not in compiled:
                compiled[key] = torch.compile(soft_cross_entropy_reference)
            f = compiled[key]
        else:
            f = soft_cross_entropy_reference
        return (lambda: f(x, y, w, mode=variant)), None
    return (lambda: weighted_soft_cross_entropy(x, y, w, mode=variant, backend=provider)), None


def _loss_directions(fwd: Callable[[], torch.Tensor], x: torch.Tensor):
    """(mode, fn, setup) for fwd, bwd (backward of a graph built untimed) and full."""
    holder: dict[str, torch.Tensor] = {}

    def build():
        x.grad = None
        holder["loss"] = fwd()

    def bwd():
        holder["loss"].backward()

    def full():
        x.grad = None
        fwd().backward()

    return [("fwd", fwd, None), ("bwd", bwd, build), ("full", full, None)]


def run_benchmark(cfg: BenchConfig, progress: Callable[[Iterable], Iterable] | None = None) -> list[dict]:
    """Measure every (op, case, provider, mode) of ``cfg``; returns CSV rows (see :data:`COLUMNS`)."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
        try:
            import numba

            numba.set_num_threads(min(cfg.threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:  # pragma: no cover - numba is a dependency
            pass
    rows: list[dict] = []
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for device in cfg.devices:
        env = environment(device)
        providers = cfg.providers or (GPU_PROVIDERS if device == "cuda" else CPU_PROVIDERS)
        compiled: dict = {}
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        jobs = []
        if "assign_labels" in cfg.ops:
            jobs += [("assign_labels", rule, n, c) for rule, n, c in _assign_cases(cfg, device)]
        if "soft_cross_entropy" in cfg.ops:
            jobs += [("soft_cross_entropy", mode, n, c) for mode in LOSS_MODES
                     for n in cfg.step_n + cfg.loss_large_n for c in cfg.classes]
        it = progress(jobs) if progress else jobs
        for op, variant, n, c in it:
            tensors = _make_tensors(op, n, c, device, gen)
            base = dict(op=op, variant=variant, N=n, C=c, dtype="float32", timestamp=stamp, **env)
            if op == "assign_labels" and device == "cuda" and n == cfg.bulk_n[device]:
                rows += _copy_rows(tensors["x"], cfg, base)
            for provider in providers:
                rows += _measure_provider(op, variant, provider, tensors, device, cfg, compiled, base)
    return rows


def _make_tensors(op: str, n: int, c: int, device: str, gen: torch.Generator) -> dict:
    x = torch.randn(n, c, device=device, generator=gen) * 3.0
    if op == "assign_labels":
        return {"x": x}
    y = (torch.rand(n, c, device=device, generator=gen) < 0.1).float()
    w = torch.where(torch.arange(n, device=device) % 2 == 0, 1.0, 0.5)
    return {"x": x.requires_grad_(), "y": y, "w": w}


def _copy_rows(x: torch.Tensor, cfg: BenchConfig, base: dict) -> list[dict]:
    """The device-to-device copy of the bulk input's bytes: the bandwidth ceiling."""
    dst = torch.empty_like(x)
    m = time_calls(lambda: dst.copy_(x), "cuda", cfg)
    nbytes = 2 * x.numel() * x.element_size()
    gbps = [nbytes / (t * 1e3) for t in m.gpu_us]
    row = dict(base, backend="d2d-copy", resolved_backend="", mode="fwd", status="ok", reps=len(gbps))
    return [_row(row, "bandwidth", "GB/s", gbps)]


def _row(base: dict, metric: str, unit: str, samples: list[float] | None) -> dict:
    row = dict(base, metric=metric, unit=unit)
    if samples:
        p50, p20, p80 = _percentiles(samples)
        row.update(p50=f"{p50:.3f}", p20=f"{p20:.3f}", p80=f"{p80:.3f}")
    else:
        row.update(p50="", p20="", p80="")
    return row


def _measure_provider(op, variant, provider, tensors, device, cfg, compiled, base) -> list[dict]:
    """Rows for one provider on one case (all modes), or one status row when it cannot run."""
    row = dict(base, backend=provider, resolved_backend="")
    try:
        fn, setup = _provider_fn(op, provider, compiled, variant, tensors)
        directions = [("fwd", fn, setup)] if op == "assign_labels" else _loss_directions(fn, tensors["x"])
        out_rows = []
        for mode, f, s in directions:
            m = time_calls(f, device, cfg, setup=s)
            resolved = last_backend() if provider not in ("torch-eager", "torch-compile") else provider
            r = dict(row, mode=mode, resolved_backend=resolved or "", status="ok", reps=len(m.cpu_us))
            out_rows.append(_row(r, "cpu_wall", "us", m.cpu_us))
            if device == "cuda":
                out_rows.append(_row(r, "gpu_time", "us", m.gpu_us))
                if s:
                    s()
                launches = count_launches(f)
                out_rows.append(dict(_row(r, "launches", "count", None),
                                     p50="" if launches is None else str(launches)))
                if op == "assign_labels" and base["N"] == cfg.bulk_n[device]:
                    nbytes = 2 * tensors["x"].numel() * 4
                    out_rows.append(_row(r, "bandwidth", "GB/s", [nbytes / (t * 1e3) for t in m.gpu_us]))
        return out_rows
    except Exception as e:  # record, never skip silently
        from kernels.backends import BackendUnavailableError

        kind = "unavailable" if isinstance(e, BackendUnavailableError) else "failed"
        msg = " ".join(str(e).split())[:300]
        log.warning("%s %s %s N=%d C=%d: %s: %s", op, variant, provider, base["N"], base["C"], kind, msg)
        return [_row(dict(row, mode="", status=f"{kind}: {type(e).__name__}: {msg}", reps=0), "cpu_wall", "us", None)]


# ----------------------------------------------------------------------------- CSV


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of an existing results CSV ([] when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` then ``new``, where a new row replaces every old row with the same :data:`KEY`."""
    def key(r: dict) -> tuple:
        return tuple(str(r.get(k, "")) for k in KEY)

    fresh = {key(r) for r in new}
    return [r for r in old if key(r) not in fresh] + list(new)


def write_csv(path: str | os.PathLike, rows: list[dict]) -> list[dict]:
    """Merge ``rows`` into the CSV at ``path`` (atomic rewrite: temp file + rename); returns all rows."""
    path = Path(path)
    merged = merge_rows(read_csv(path), rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(merged)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return merged


def summarize(rows: list[dict]) -> list[str]:
    """One line per (device, op, variant, N, C, mode): median µs of each provider and the ratio
    torch-eager / best kernel backend (> 1 means the kernel is faster)."""
    groups: dict[tuple, dict[str, float]] = {}
    for r in rows:
        if r.get("status") != "ok" or r.get("metric") not in ("cpu_wall", "gpu_time") or not r.get("p50"):
            continue
        if r["device"] == "cuda" and r["metric"] == "cpu_wall":
            continue  # on GPU compare device time
        k = (r["device"], r["op"], r["variant"], int(r["N"]), int(r["C"]), r["mode"])
        groups.setdefault(k, {})[r["backend"]] = float(r["p50"])
    lines = []
    for k in sorted(groups):
        g = groups[k]
        kern = {b: v for b, v in g.items() if b in ("numba", "numba-cuda", "cupy")}
        cells = " ".join(f"{b}={v:.1f}" for b, v in sorted(g.items()))
        ratio = ""
        if kern and "torch-eager" in g:
            best = min(kern, key=kern.get)
            ratio = f"  eager/{best}={g['torch-eager'] / kern[best]:.2f}x"
        lines.append(f"{k[0]} {k[1]}/{k[2]} N={k[3]} C={k[4]} {k[5]}: {cells} (us){ratio}")
    return lines
