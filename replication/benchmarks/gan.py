"""``spl bench gan``: training-step throughput of both GANs, eager vs ``torch.compile`` (and CUDA graphs on GPU).

For each GAN at each size, one training iteration (:func:`gan_tf_port.steps.dcgan_iteration` /
:func:`~gan_tf_port.steps.wgan_gp_iteration`, TF Adam included) runs ``--warmup`` times untimed (this
is where compilation happens; its time is recorded) and ``--iters`` times timed, on synthetic real
batches. Reported per row: iterations/s and real images/s (DCGAN reads one batch per iteration,
WGAN-GP five), with eager in the same run as the reference (``speedup_vs_eager``). Modes: ``eager``,
``compile`` (``torch.compile(dynamic=False)`` default mode of G and D; the gradient penalty's double
backward stays eager; static shapes because dynamic ones turn the SAME-padding arithmetic into huge
symbolic expressions — measured: a 64×64 compile then ran > 5 min or failed) and on CUDA ``cudagraphs`` (``torch.compile(mode="reduce-overhead")``). A mode that fails is
recorded with its error, never skipped silently. Results: ``benchmarks/results/gan.json``.
"""
from __future__ import annotations

import os
import platform
import signal
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import click
import torch

from replication.io_utils import atomic_write_json

MODES = ("eager", "compile", "cudagraphs")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RowTimeout(Exception):
    """A benchmark row ran longer than its time limit."""


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`RowTimeout` in the main thread after ``seconds`` (POSIX ``SIGALRM``; no-op otherwise)."""
    usable = seconds and hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _raise(signum, frame):
        raise RowTimeout(f"row exceeded {seconds:g} s")
    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def bench_one(arch: str, size: int, mode: str, *, width: int, batch: int, iters: int, warmup: int,
              device: torch.device, time_limit: float | None = None) -> dict[str, Any]:
    """Time one (arch, size, mode); returns a result row (with ``error`` instead of timings on failure).

    ``time_limit`` (seconds, warm-up included) turns a row that hangs — e.g. a pathological compile —
    into a recorded ``RowTimeout`` error.
    """
    if mode != "eager":
        torch._dynamo.reset()  # each row compiles from scratch (no shapes carried over from another size)
    row: dict[str, Any] = {"arch": arch, "size": size, "mode": mode, "width": width, "batch": batch,
                           "device": str(device), "iters": iters, "warmup": warmup}
    try:
        with _time_limit(time_limit):
            _run_row(row, arch, size, mode, width=width, batch=batch, iters=iters, warmup=warmup, device=device)
    except Exception as e:  # recorded, never skipped silently
        row["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:500]
    return row


def _run_row(row: dict, arch: str, size: int, mode: str, *, width: int, batch: int, iters: int, warmup: int,
             device: torch.device) -> None:
    """Build, warm up and time one row; fills ``row`` in place."""
    import gan_tf_port
    from gan_tf_port.optim import make_adam
    from gan_tf_port.steps import Noise, dcgan_iteration, wgan_gp_iteration

    torch.manual_seed(0)
    g, d = gan_tf_port.build(arch, size=size, width=width)
    g, d = g.to(device).train(), d.to(device).train()
    opt_g, opt_d = make_adam(g.parameters()), make_adam(d.parameters())
    gen = torch.Generator().manual_seed(1)
    pool = [(torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(device) for _ in range(5)]
    k = {"i": 0}

    def next_real() -> torch.Tensor:
        k["i"] += 1
        return pool[k["i"] % len(pool)]
    g_fwd = d_fwd = None
    if mode == "compile":
        g_fwd, d_fwd = torch.compile(g, dynamic=False), torch.compile(d, dynamic=False)
    elif mode == "cudagraphs":
        if device.type != "cuda":
            raise RuntimeError("cudagraphs needs a CUDA device")
        g_fwd = torch.compile(g, mode="reduce-overhead", dynamic=False)
        d_fwd = torch.compile(d, mode="reduce-overhead", dynamic=False)
    noise = Noise(g, 2, device)
    fn = dcgan_iteration if arch == "dcgan" else wgan_gp_iteration

    def step() -> None:
        fn(g, d, opt_g, opt_d, next_real, noise, g_fwd=g_fwd, d_fwd=d_fwd)
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    row["warmup_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    dt = time.perf_counter() - t0
    reads = 5 if arch == "wgan-gp" else 1
    row.update(seconds=round(dt, 4), iter_per_s=round(iters / dt, 3),
               real_images_per_s=round(iters * batch * reads / dt, 1))


def run_benchmark(*, sizes: list[int], modes: list[str], width: int, batch: int, iters: int, warmup: int,
                  device: str = "auto", time_limit: float | None = None,
                  on_row: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """All rows plus metadata (torch version, device, threads); eager rows are the reference."""
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    rows = []
    for a in ("dcgan", "wgan-gp"):
        for s in sizes:
            for m in modes:
                rows.append(bench_one(a, s, m, width=width, batch=batch, iters=iters, warmup=warmup, device=dev,
                                      time_limit=time_limit))
                if on_row is not None:
                    on_row(rows[-1])
    for r in rows:
        ref = next((e for e in rows if e["arch"] == r["arch"] and e["size"] == r["size"] and e["mode"] == "eager"), None)
        if ref and "iter_per_s" in ref and "iter_per_s" in r:
            r["speedup_vs_eager"] = round(r["iter_per_s"] / ref["iter_per_s"], 3)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    meta = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    return {"benchmark": "gan", "meta": meta, "results": rows}


@click.command(name="gan")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/gan.json"), show_default=True)
@click.option("--sizes", default="32,64", show_default=True, help="Comma-separated output sizes.")
@click.option("--modes", default=None, help="Comma-separated from eager,compile,cudagraphs "
              "(default: eager,compile plus cudagraphs on CUDA; --quick: eager).")
@click.option("--width", type=int, default=64, show_default=True)
@click.option("--batch", type=int, default=64, show_default=True)
@click.option("--iters", type=int, default=5, show_default=True, help="Timed iterations per row.")
@click.option("--warmup", type=int, default=2, show_default=True, help="Untimed iterations (compilation).")
@click.option("--device", default="auto", show_default=True)
@click.option("--row-timeout", type=float, default=900, show_default=True,
              help="Seconds per row (warm-up included) before it is recorded as a RowTimeout error.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--quick", is_flag=True, help="Tiny settings for tests: size 32, width 8, batch 8, 2+1 iterations.")
def command(out, sizes, modes, width, batch, iters, warmup, device, row_timeout, threads, quick) -> None:
    """Images/s of a GAN training step, eager vs torch.compile (and CUDA graphs on GPU)."""
    if threads is not None:
        torch.set_num_threads(threads)
    size_list = [int(s) for s in str(sizes).split(",") if s.strip()]
    if quick:
        size_list, width, batch, iters, warmup = [32], 8, 8, 2, 1
    if modes is None:
        mode_list = ["eager"] if quick else ["eager", "compile"] + (["cudagraphs"] if torch.cuda.is_available() else [])
    else:
        mode_list = [m.strip() for m in modes.split(",") if m.strip()]
        bad = [m for m in mode_list if m not in MODES]
        if bad:
            raise click.BadParameter(f"unknown mode {bad[0]!r}; expected one of {', '.join(MODES)}", param_hint="--modes")
    def show(r: dict) -> None:
        what = r.get("error") or (f"{r['iter_per_s']:.3f} it/s, {r['real_images_per_s']:.1f} real img/s "
                                  f"(warmup {r['warmup_s']:.1f} s)")
        click.echo(f"{r['arch']:8s} {r['size']:3d} {r['mode']:10s} {what}")

    result = run_benchmark(sizes=size_list, modes=mode_list, width=width, batch=batch, iters=iters, warmup=warmup,
                           device=device, time_limit=row_timeout, on_row=show)
    atomic_write_json(out, result)
    for r in result["results"]:
        if "speedup_vs_eager" in r and r["mode"] != "eager":
            click.echo(f"{r['arch']:8s} {r['size']:3d} {r['mode']:10s} ×{r['speedup_vs_eager']:.2f} vs eager")
    click.echo(f"wrote {out}")
