"""Kernel benchmark (``spl bench kernels``): the fused kernels against torch eager and ``torch.compile``,
in the same run.

Produces long-format rows (one measured quantity per row, :data:`COLUMNS`), written per device into
the device-keyed JSON result file of :mod:`replication.benchmarks.harness`
(``kernels-<device-slug>-t<threads>.json``). A rewrite merges: a new row replaces an old one with
the same key (:data:`KEY`), other rows are kept, so partial runs (``--ops``, ``--providers``)
accumulate. An explicit ``.csv`` output path gets the same rows as long-format CSV. Speed is
measured here, never asserted in a test. The design and the numbers: docs/kernels.md.

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
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numba
import torch
from torch.profiler import ProfilerActivity, profile

from kernels.backends import BackendUnavailableError, last_backend
from kernels.ops.assign_labels import assign_labels
from kernels.ops.soft_cross_entropy import weighted_soft_cross_entropy
from kernels.reference.soft_cross_entropy import soft_cross_entropy_reference
from replication.benchmarks import harness
from replication.io_utils import atomic_write

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
OPS: tuple[str, ...] = ("assign_labels", "soft_cross_entropy")
RULES: tuple[str, ...] = ("spl", "pseudo", "random")
LOSS_MODES: tuple[str, ...] = ("sigmoid", "softmax")


@dataclasses.dataclass
class KernelsConfig:
    """What to measure. ``quick`` shrinks sizes and repetitions (a smoke run, not for decisions)."""

    devices: tuple[str, ...] = ("cpu",)
    quick: bool = False
    providers: tuple[str, ...] | None = None   # None: all providers of each device
    ops: tuple[str, ...] = OPS
    step_n: tuple[int, ...] = (24, 256)          # per training step (the paper's batch 24, and 256)
    loss_large_n: tuple[int, ...] = (4096,)      # larger loss batches: where the auto threshold lies
    classes: tuple[int, ...] = (14, 80, 81)      # WIDER, COCO, NUS-WIDE
    bulk_n: dict[str, int] = dataclasses.field(default_factory=lambda: {"cpu": 100_000, "cuda": 4_000_000})
    min_time_s: float = 0.3
    max_reps: int = 200
    warmup: int = 3
    seed: int = 0
    threads: int | None = None                   # set torch's and numba's thread counts (None: leave)
    rules: tuple[str, ...] = RULES               # assign_labels rules to time

    def __post_init__(self) -> None:
        if self.quick:
            self.step_n, self.classes, self.loss_large_n = (24,), (14, 81), ()
            self.bulk_n = {"cpu": 2_000, "cuda": 100_000}
            self.min_time_s, self.max_reps, self.warmup = 0.02, 5, 1


@dataclasses.dataclass
class Measurement:
    """Per-call samples (µs) of one provider on one case."""

    cpu_us: list[float]
    gpu_us: list[float] | None = None
    launches: int | None = None


def environment(device: str) -> dict[str, str]:
    """Row columns describing the machine and library versions (from :func:`harness.machine_info`)."""
    m = harness.machine_info(device)
    cupy = ""
    if device == "cuda":
        try:
            import cupy  # optional GPU dependency, absent on CPU machines
            cupy = cupy.__version__
        except Exception:  # missing or broken: recorded as such
            cupy = "missing"
    return {"device": device, "device_name": m["device_name"],
            "threads": f"torch={m['torch_threads']};numba={m['numba_threads']}", "torch": m["torch"],
            "numba": m["numba"], "cupy": cupy}


def time_kernel(fn: Callable[[], object], device: str, cfg: KernelsConfig,
                setup: Callable[[], object] | None = None) -> Measurement:
    """Run ``fn`` repeatedly (``setup`` untimed before each call); host µs and, on GPU, CUDA-event µs."""
    cuda = device == "cuda"
    t = harness.time_calls(fn, warmup=cfg.warmup, min_reps=3, max_reps=cfg.max_reps, min_time_s=cfg.min_time_s,
                           setup=setup, sync=None, cuda_events=cuda)
    gpu = [s * 1e6 for s in t.device_samples] if t.device_samples is not None else None
    return Measurement([s * 1e6 for s in t.samples], gpu)


def count_launches(fn: Callable[[], object]) -> int | None:
    """GPU activities (kernels, memsets, copies) issued by one call of ``fn`` (torch.profiler)."""
    try:
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


def _assign_cases(cfg: KernelsConfig, device: str) -> Iterable[tuple[str, int, int]]:
    for rule in cfg.rules:
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


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _jobs(cfg: KernelsConfig, device: str) -> list[tuple[str, str, int, int]]:
    jobs = []
    if "assign_labels" in cfg.ops:
        jobs += [("assign_labels", rule, n, c) for rule, n, c in _assign_cases(cfg, device)]
    if "soft_cross_entropy" in cfg.ops:
        jobs += [("soft_cross_entropy", mode, n, c) for mode in LOSS_MODES
                 for n in cfg.step_n + cfg.loss_large_n for c in cfg.classes]
    return jobs


def measure_rows(cfg: KernelsConfig, progress: Callable[[Iterable], Iterable] | None = None) -> list[dict]:
    """Measure every (op, case, provider, mode) of ``cfg``; returns long-format rows (see :data:`COLUMNS`)."""
    _set_threads(cfg.threads)
    rows: list[dict] = []
    stamp = harness.now()
    for device in cfg.devices:
        env = environment(device)
        providers = cfg.providers or (GPU_PROVIDERS if device == "cuda" else CPU_PROVIDERS)
        compiled: dict = {}
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        jobs = _jobs(cfg, device)
        for op, variant, n, c in (progress(jobs) if progress else jobs):
            tensors = _make_tensors(op, n, c, device, gen)
            base = dict(op=op, variant=variant, N=n, C=c, dtype="float32", timestamp=stamp, **env)
            if op == "assign_labels" and device == "cuda" and n == cfg.bulk_n[device]:
                rows += _copy_rows(tensors["x"], cfg, base)
            for provider in providers:
                rows += _measure_provider(op, variant, provider, tensors, device, cfg, compiled, base)
    return rows


def run_kernels(cfg: KernelsConfig, progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, dict]:
    """Measure (:func:`measure_rows`); one result record per device, keyed by device (``cpu``, ``cuda``)."""
    rows = measure_rows(cfg, progress)
    conditions = {"quick": cfg.quick, "providers": list(cfg.providers) if cfg.providers else "all",
                  "ops": list(cfg.ops), "min_time_s": cfg.min_time_s, "max_reps": cfg.max_reps, "warmup": cfg.warmup,
                  "seed": cfg.seed, "rules": list(cfg.rules)}
    return {d: harness.record("kernels", harness.machine_info(d), conditions, [r for r in rows if r["device"] == d])
            for d in cfg.devices}


def _make_tensors(op: str, n: int, c: int, device: str, gen: torch.Generator) -> dict:
    x = torch.randn(n, c, device=device, generator=gen) * 3.0
    if op == "assign_labels":
        return {"x": x}
    y = (torch.rand(n, c, device=device, generator=gen) < 0.1).float()
    w = torch.where(torch.arange(n, device=device) % 2 == 0, 1.0, 0.5)
    return {"x": x.requires_grad_(), "y": y, "w": w}


def _copy_rows(x: torch.Tensor, cfg: KernelsConfig, base: dict) -> list[dict]:
    """The device-to-device copy of the bulk input's bytes: the bandwidth ceiling."""
    dst = torch.empty_like(x)
    m = time_kernel(lambda: dst.copy_(x), "cuda", cfg)
    nbytes = 2 * x.numel() * x.element_size()
    gbps = [nbytes / (t * 1e3) for t in m.gpu_us]
    row = dict(base, backend="d2d-copy", resolved_backend="", mode="fwd", status="ok", reps=len(gbps))
    return [_row(row, "bandwidth", "GB/s", gbps)]


def _row(base: dict, metric: str, unit: str, samples: list[float] | None) -> dict:
    row = dict(base, metric=metric, unit=unit)
    if samples:
        row.update(p50=round(harness.percentile(samples, 50), 3), p20=round(harness.percentile(samples, 20), 3),
                   p80=round(harness.percentile(samples, 80), 3))
    else:
        row.update(p50=None, p20=None, p80=None)
    return row


def _gpu_rows(r: dict, op: str, f, s, m: Measurement, tensors: dict, cfg: KernelsConfig) -> list[dict]:
    """The GPU-only rows of one measured mode: event time, launches, and for bulk relabelling bandwidth."""
    out = [_row(r, "gpu_time", "us", m.gpu_us)]
    if s:
        s()
    out.append(dict(_row(r, "launches", "count", None), p50=count_launches(f)))
    if op == "assign_labels" and r["N"] == cfg.bulk_n["cuda"]:
        nbytes = 2 * tensors["x"].numel() * 4
        out.append(_row(r, "bandwidth", "GB/s", [nbytes / (t * 1e3) for t in m.gpu_us]))
    return out


def _measure_provider(op, variant, provider, tensors, device, cfg, compiled, base) -> list[dict]:
    """Rows for one provider on one case (all modes), or one status row when it cannot run."""
    row = dict(base, backend=provider, resolved_backend="")
    try:
        fn, setup = _provider_fn(op, provider, compiled, variant, tensors)
        directions = [("fwd", fn, setup)] if op == "assign_labels" else _loss_directions(fn, tensors["x"])
        out_rows = []
        for mode, f, s in directions:
            m = time_kernel(f, device, cfg, setup=s)
            resolved = last_backend() if provider not in ("torch-eager", "torch-compile") else provider
            r = dict(row, mode=mode, resolved_backend=resolved or "", status="ok", reps=len(m.cpu_us))
            out_rows.append(_row(r, "cpu_wall", "us", m.cpu_us))
            if device == "cuda":
                out_rows += _gpu_rows(r, op, f, s, m, tensors, cfg)
        return out_rows
    except Exception as e:  # record, never skip silently
        kind = "unavailable" if isinstance(e, BackendUnavailableError) else "failed"
        msg = " ".join(str(e).split())[:300]
        log.warning("%s %s %s N=%d C=%d: %s: %s", op, variant, provider, base["N"], base["C"], kind, msg)
        return [_row(dict(row, mode="", status=f"{kind}: {type(e).__name__}: {msg}", reps=0), "cpu_wall", "us", None)]


# ----------------------------------------------------------------------------- result files


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of an existing result file ([] when it does not exist): JSON record, or CSV for ``.csv``."""
    path = Path(path)
    if not path.exists():
        return []
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    return list((harness.read_result(path) or {}).get("results", []))


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` then ``new``, where a new row replaces every old row with the same :data:`KEY`."""
    def key(r: dict) -> tuple:
        return tuple("" if r.get(k) is None else str(r.get(k)) for k in KEY)

    fresh = {key(r) for r in new}
    return [r for r in old if key(r) not in fresh] + list(new)


def _write_csv(path: Path, rows: list[dict]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    atomic_write(path, write)


def write_rows(path: str | os.PathLike, rows: list[dict], record: dict[str, Any] | None = None) -> list[dict]:
    """Merge ``rows`` into the file at ``path`` (atomic rewrite); returns all rows.

    ``.csv``: long-format CSV. Otherwise a JSON result record: ``record`` (machine, conditions) or,
    without one, the file's own header, with the merged rows as ``results``.
    """
    path = Path(path)
    merged = merge_rows(read_rows(path), rows)
    if path.suffix == ".csv":
        _write_csv(path, merged)
        return merged
    header = record or harness.read_result(path) or harness.record("kernels", harness.machine_info("cpu"), {}, [])
    harness.write_result(dict(header, results=merged), out=path)
    return merged


def save_kernels(records: dict[str, dict], results_dir: str | os.PathLike = harness.RESULTS_DIR,
                 out: str | os.PathLike | None = None) -> list[Path]:
    """Merge each device's rows into its device-keyed file (or all rows into ``out``); returns the paths."""
    if out is not None:
        rows = [r for rec in records.values() for r in rec["results"]]
        only = next(iter(records.values())) if len(records) == 1 else None
        write_rows(out, rows, only)
        return [Path(out)]
    paths = []
    for rec in records.values():
        path = harness.result_path("kernels", rec["machine"], results_dir)
        write_rows(path, rec["results"], rec)
        paths.append(path)
    return paths


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
