"""The harness shared by the five ``spl bench`` benchmarks: timing, machine info, result files.

* **Timing** (:func:`time_calls`): ``warmup`` untimed calls (their total is kept as ``warmup_s``:
  for ``torch.compile`` that is where compilation happens), then one sample per call, either a fixed
  number of calls or "at least ``min_reps`` calls and ``min_time_s`` seconds, at most ``max_reps``".
  ``sync`` (e.g. ``torch.cuda.synchronize``) runs after the warm-up and inside each timed call, so a
  sample is a finished call; with ``cuda_events`` a second series is timed on the GPU by CUDA events.
  :func:`summarize` reports median, p20, p80 (linear interpolation, as ``numpy.percentile``), min.
* **Machine** (:func:`machine_info`): device and its name (CPU model or GPU name), torch/numba thread
  counts, torch/numpy/numba versions, python. Hostnames are not recorded.
* **Result files**: one JSON per (benchmark, device, thread count),
  ``<results_dir>/<bench>-<device-slug>-t<threads>.json`` (:func:`result_path`), written atomically,
  so a run on a GPU never replaces the CPU numbers and vice versa.
* **Achieved vs GEMM** (:func:`count_flops`, :func:`gemm_gflops`, :func:`achieved_vs_gemm`): a step's
  floating-point operations counted by ``FlopCounterMode`` (convolutions, matmuls and their
  backward passes; element-wise work counts zero), its achieved GFLOP/s, and the ratio to an fp32
  ``n × n`` matmul timed on the same device and threads in the same run.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numba
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from replication.io_utils import atomic_write_text

RESULTS_DIR = Path("benchmarks/results")
#: Side of the fp32 reference matmul of the achieved-vs-GEMM figures (``spl bench gan``, ``spl bench train``).
GEMM_N = 2048


# ----------------------------------------------------------------------------- timing


@dataclasses.dataclass
class Timing:
    """Seconds per timed call (``samples``; ``device_samples`` by CUDA events) and the warm-up's total."""

    samples: list[float]
    warmup_s: float = 0.0
    device_samples: list[float] | None = None

    @property
    def total_s(self) -> float:
        return float(sum(self.samples))

    def rate(self, count: float) -> float:
        """``count`` items over the total timed seconds (e.g. images/s)."""
        return count / self.total_s


def percentile(xs: list[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation between order statistics
    (numpy's default method, and ``statistics.quantiles(method="inclusive")``)."""
    if not xs:
        raise ValueError("percentile of no samples")
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(xs: list[float], digits: int = 4) -> dict[str, float | int]:
    """``median``, ``p20``, ``p80``, ``min`` (rounded to ``digits``) and ``reps`` of samples ``xs``."""
    return {"median": round(percentile(xs, 50), digits), "p20": round(percentile(xs, 20), digits),
            "p80": round(percentile(xs, 80), digits), "min": round(min(xs), digits), "reps": len(xs)}


def device_sync(device: torch.device | str) -> Callable[[], None] | None:
    """A function that waits for ``device``'s queued work (None on the CPU, where calls are synchronous)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    return lambda: torch.cuda.synchronize(dev)


def time_calls(fn: Callable[[], object], *, warmup: int = 1, reps: int | None = None, min_reps: int = 3,
               max_reps: int = 1000, min_time_s: float = 0.0, setup: Callable[[], object] | None = None,
               sync: Callable[[], None] | None = None, cuda_events: bool = False) -> Timing:
    """Time ``fn()`` after ``warmup`` untimed calls; ``setup()`` runs untimed before every call.

    With ``reps`` exactly that many calls are timed; otherwise calls are timed until there are
    ``min_reps`` of them and ``min_time_s`` has passed, or ``max_reps`` are reached.
    """
    t0 = time.perf_counter()
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    if sync is not None:
        sync()
    warmup_s = time.perf_counter() - t0
    samples: list[float] = []
    device_samples: list[float] = []
    start = time.perf_counter()

    def more() -> bool:
        if reps is not None:
            return len(samples) < reps
        return len(samples) < max_reps and (len(samples) < min_reps or time.perf_counter() - start < min_time_s)

    while more():
        if setup is not None:
            setup()
        if cuda_events:
            torch.cuda.synchronize()
            ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ev0.record()
        t1 = time.perf_counter_ns()
        fn()
        if sync is not None:
            sync()
        t2 = time.perf_counter_ns()
        if cuda_events:
            ev1.record()
            torch.cuda.synchronize()
            device_samples.append(ev0.elapsed_time(ev1) / 1000.0)
        samples.append((t2 - t1) / 1e9)
    return Timing(samples, warmup_s, device_samples if cuda_events else None)


# ----------------------------------------------------------------------------- achieved vs GEMM


class _NoModuleTracker:
    """Stands in for ``FlopCounterMode``'s per-module tracker, which only attributes FLOPs to modules: its
    backward hooks break ``torch.autograd.grad`` on a leaf (the gradient penalty's x̂) with "A leaf node was
    passed to _will_engine_execute_node". All FLOPs go to "Global"; the total is the same."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _NoModuleTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call of ``fn``, counted by ``FlopCounterMode`` (a multiply-add is 2)."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracker()
    with counter:
        fn()
    return int(counter.get_total_flops())


def profile_ops(fn: Callable[[], object], iters: int = 5, top: int = 10) -> list[dict[str, Any]]:
    """Where the time of ``fn`` goes, op by op: ``torch.profiler`` (CPU activity) over ``iters`` calls.

    Returns the ``top`` operators by self CPU time, largest first, then one ``"(other)"`` row with the
    rest; each row is ``{op, calls_per_iter, ms_per_iter, share}`` where ``share`` is the op's part of
    the summed self CPU time (the rows' shares add up to 1). Self time is the time inside an op less
    its child ops, so no time is counted twice.
    """
    from torch.profiler import ProfilerActivity, profile

    # Kineto logs "gpuGetDeviceCount failed" as an ERROR on a machine without a GPU; a CPU profile needs none
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0

    def row(op: str, calls: float, self_us: float) -> dict[str, Any]:
        return {"op": op, "calls_per_iter": round(calls / iters, 2), "ms_per_iter": round(self_us / iters / 1e3, 3),
                "share": round(self_us / total, 4)}
    rows = [row(e.key, e.count, e.self_cpu_time_total) for e in events[:top]]
    rest = events[top:]
    if rest:
        rows.append(row("(other)", sum(e.count for e in rest), sum(e.self_cpu_time_total for e in rest)))
    return rows


def gemm_gflops(device: torch.device | str = "cpu", n: int = GEMM_N, reps: int = 5, warmup: int = 1) -> float:
    """fp32 GFLOP/s of an ``n × n`` by ``n × n`` matmul (``2n³`` FLOPs) on ``device`` with torch's current
    threads: the median of ``reps`` timed calls."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dev)
    b = torch.randn(n, n, generator=gen).to(dev)
    timing = time_calls(lambda: torch.mm(a, b), warmup=warmup, reps=reps, sync=device_sync(dev))
    return 2.0 * n ** 3 / percentile(timing.samples, 50) / 1e9


def achieved_vs_gemm(flops: float, seconds: float, gemm: float) -> dict[str, float]:
    """``gflops`` = ``flops`` / ``seconds`` / 1e9 and ``gemm_ratio`` = that over ``gemm`` (GFLOP/s)."""
    achieved = flops / seconds / 1e9
    return {"gflops": round(achieved, 2), "gemm_gflops": round(gemm, 2), "gemm_ratio": round(achieved / gemm, 4)}


# ----------------------------------------------------------------------------- machine


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` "model name"), else ``platform.processor()`` or the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numba_threads() -> int:
    """Numba's thread count (the kernels' CPU backend)."""
    return int(numba.get_num_threads())


def slug(text: str) -> str:
    """Lower-case, ASCII letters and digits, runs of anything else as one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Where a benchmark ran: device, device name and slug, thread counts, library versions, python."""
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    name = torch.cuda.get_device_name(dev) if cuda else cpu_name()
    return {"device": str(dev), "device_name": name, "device_slug": slug(f"{dev.type}-{name}"),
            "torch_threads": torch.get_num_threads(), "numba_threads": numba_threads(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
            "numba": numba.__version__, "cuda": torch.version.cuda if cuda else None,
            "python": platform.python_version(), "platform": platform.platform()}


def now() -> str:
    """UTC time stamp, seconds resolution."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- result files


def result_name(bench: str, machine: dict[str, Any]) -> str:
    """``<bench>-<device-slug>-t<torch threads>.json``."""
    return f"{bench}-{machine['device_slug']}-t{machine['torch_threads']}.json"


def result_path(bench: str, machine: dict[str, Any], results_dir: str | os.PathLike = RESULTS_DIR,
                out: str | os.PathLike | None = None) -> Path:
    """``out`` when given, else ``results_dir / result_name(bench, machine)``."""
    return Path(out) if out is not None else Path(results_dir) / result_name(bench, machine)


def record(bench: str, machine: dict[str, Any], conditions: dict[str, Any], results: list[dict],
           **extra: Any) -> dict[str, Any]:
    """The common layout of a result file: benchmark, timestamp, machine, conditions, results, extras."""
    return {"benchmark": bench, "timestamp": now(), "machine": machine, "conditions": conditions,
            "results": results, **extra}


def dumps_result(result: dict[str, Any]) -> str:
    """JSON text of a record: indented, except that each result row stays on one line (``results`` last)."""
    head = json.dumps({k: v for k, v in result.items() if k != "results"}, indent=2)
    rows = ",\n".join("    " + json.dumps(r) for r in result.get("results", []))
    results = f'"results": [\n{rows}\n  ]' if rows else '"results": []'
    if head == "{}":
        return "{\n  " + results + "\n}\n"
    return head[:-2] + ",\n  " + results + "\n}\n"


def write_result(result: dict[str, Any], results_dir: str | os.PathLike = RESULTS_DIR,
                 out: str | os.PathLike | None = None) -> Path:
    """Atomically write ``result`` (from :func:`record`) to its device-keyed path; returns the path."""
    path = result_path(result["benchmark"], result["machine"], results_dir, out)
    atomic_write_text(path, dumps_result(result))
    return path


def read_result(path: str | os.PathLike) -> dict[str, Any] | None:
    """A result file's content, or None when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
