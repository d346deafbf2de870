"""GAN benchmark (``spl bench gan``): training-step throughput of both GANs, eager vs ``torch.compile``
(and CUDA graphs on GPU).

For each GAN at each size, one training iteration (:func:`gan_tf_port.steps.dcgan_iteration` /
:func:`~gan_tf_port.steps.wgan_gp_iteration`, TF Adam included) runs ``warmup`` times untimed (this
is where compilation happens; its time is recorded as ``warmup_s``) and ``iters`` times timed, on
synthetic real batches (:func:`replication.benchmarks.harness.time_calls`, device synchronised after
each iteration). Reported per row: iterations/s and real images/s (DCGAN reads one batch per
iteration, WGAN-GP five), per-iteration seconds (median, p20, p80), with eager in the same run as
the reference (``speedup_vs_eager``). Modes: ``eager``, ``compile`` (``torch.compile(dynamic=False)``
default mode of G and D; the gradient penalty's double backward stays eager; static shapes because
dynamic ones turn the SAME-padding arithmetic into huge symbolic expressions — measured: a 64×64
compile then ran > 5 min or failed) and on CUDA ``cudagraphs`` (``torch.compile(mode="reduce-overhead")``).
A mode that fails is recorded with its error, never skipped silently.

**Achieved vs GEMM** (the harness's, shared with ``spl bench train``). Each case's floating-point
operations per iteration are counted once (not estimated) by running one eager iteration under
``FlopCounterMode`` (:func:`~replication.benchmarks.harness.count_flops`; convolutions, their backward
passes and matmuls — element-wise work counts zero). Each row then reports ``gflop_per_iter``, the
achieved ``gflops`` (counted FLOPs over the median iteration time), ``gemm_gflops`` — an fp32
``n × n`` matmul (n = 2048) timed on the same device and threads in the same run, immediately before
and after the row (:func:`~replication.benchmarks.harness.gemm_gflops`, mean of the two medians, so a
load change on a shared machine hits both figures alike) — and ``gemm_ratio``
(:func:`~replication.benchmarks.harness.achieved_vs_gemm`). ``presets`` (e.g. ``embedded-dcgan``) take
arch, size, width and batch from the GAN presets instead of ``sizes`` × ``width`` × ``batch``; the
preset ``demo-torch-dcgan`` adds the peer PyTorch DCGAN (the demo's generator, eager only).
"""
from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

import gan_tf_port
from gan_tf_port.optim import make_adam
from gan_tf_port.steps import Noise, dcgan_iteration, wgan_gp_iteration
from replication.benchmarks import harness
from replication.benchmarks.harness import GEMM_N, achieved_vs_gemm, count_flops, gemm_gflops
from replication.errors import ConfigError
from replication.gan.config import load_gan_config
from replication.gan.torch_dcgan import SIZE as PEER_SIZE
from replication.gan.torch_dcgan import build_peer, peer_iteration
from replication.vocabulary import PEER_DCGAN

MODES = ("eager", "compile", "cudagraphs")
ARCHS = ("dcgan", "wgan-gp")


@dataclasses.dataclass
class GanConfig:
    """What to measure. ``modes=None``: eager and compile, plus cudagraphs on CUDA (``quick``: eager)."""

    sizes: tuple[int, ...] = (32, 64)
    modes: tuple[str, ...] | None = None
    width: int = 64
    batch: int = 64
    iters: int = 5
    warmup: int = 2
    device: str = "auto"
    row_timeout: float | None = 900.0
    quick: bool = False
    presets: tuple[str, ...] = ()   # GAN presets whose arch/size/width/batch make the cases (instead of sizes)
    gemm_n: int = GEMM_N
    profile: int = 0                # iterations profiled op by op after each eager row (0: none)

    def __post_init__(self) -> None:
        if self.quick:
            self.sizes, self.width, self.batch, self.iters, self.warmup = (32,), 8, 8, 2, 1
            self.gemm_n = min(self.gemm_n, 256)
        if self.modes is None:
            cuda = torch.cuda.is_available()
            self.modes = ("eager",) if self.quick else ("eager", "compile") + (("cudagraphs",) if cuda else ())
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise ConfigError(f"unknown mode {bad[0]!r}; expected one of {', '.join(MODES)}")

    def cases(self) -> list[tuple[str, int, int, int]]:
        """(arch, size, width, batch) of every case: one per preset, else each GAN at each size."""
        if self.presets:
            out = []
            for name in self.presets:
                p = load_gan_config(name)
                out.append((p.arch, p.size, p.width, p.batch))
            return out
        return [(a, s, self.width, self.batch) for a in ARCHS for s in self.sizes]

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


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
              device: torch.device, time_limit: float | None = None, flops: int | None = None,
              gemm_n: int | None = None, profile: int = 0) -> dict[str, Any]:
    """Time one (arch, size, mode); returns a result row (with ``error`` instead of timings on failure).

    ``time_limit`` (seconds, warm-up included) turns a row that hangs — e.g. a pathological compile —
    into a recorded ``RowTimeout`` error. ``flops`` (per iteration; counted here when None) and
    ``gemm_n`` (None: no GEMM reference) add the achieved-vs-GEMM fields. ``profile`` > 0 adds, to an
    eager row, the op-by-op profile of that many more iterations (:func:`~harness.profile_ops`).
    """
    if mode != "eager":
        torch._dynamo.reset()  # each row compiles from scratch (no shapes carried over from another size)
    row: dict[str, Any] = {"arch": arch, "size": size, "mode": mode, "width": width, "batch": batch,
                           "device": str(device), "iters": iters, "warmup": warmup}
    try:
        with _time_limit(time_limit):
            _run_row(row, arch, size, mode, width=width, batch=batch, iters=iters, warmup=warmup, device=device,
                     flops=flops, gemm_n=gemm_n, profile=profile if mode == "eager" else 0)
    except Exception as e:  # recorded, never skipped silently
        row["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:500]
    return row


def _build_step(arch: str, size: int, mode: str, *, width: int, batch: int,
                device: torch.device) -> Callable[[], None]:
    """A fresh G, D and TF Adam pair and one training iteration of ``arch`` on synthetic real batches
    (the peer ``torch-dcgan``: its own build, ``torch.optim.Adam`` and :func:`peer_iteration`, eager only)."""
    if arch == PEER_DCGAN:
        return _build_peer_step(size, mode, width=width, batch=batch, device=device)
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
    return step


def _build_peer_step(size: int, mode: str, *, width: int, batch: int, device: torch.device) -> Callable[[], None]:
    """One iteration of the peer PyTorch DCGAN (the demo's generator) on a fixed synthetic real batch."""
    if mode != "eager":
        raise RuntimeError(f"{PEER_DCGAN} is benchmarked eager only")
    if size != PEER_SIZE:
        raise RuntimeError(f"{PEER_DCGAN} is {PEER_SIZE}×{PEER_SIZE} only, not {size}")
    gan = build_peer(width, seed=0)
    gan.G.to(device).train()
    gan.D.to(device).train()
    gen = torch.Generator().manual_seed(1)
    real = (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(device)
    noise = torch.Generator().manual_seed(2)

    def step() -> None:
        peer_iteration(gan, real, gan.G.sample_z(batch, noise).to(device))
    return step


def case_flops(arch: str, size: int, *, width: int, batch: int, device: torch.device) -> int:
    """FLOPs of one eager training iteration of the case (counted after one untimed iteration)."""
    step = _build_step(arch, size, "eager", width=width, batch=batch, device=device)
    step()
    return count_flops(step)


def _run_row(row: dict, arch: str, size: int, mode: str, *, width: int, batch: int, iters: int, warmup: int,
             device: torch.device, flops: int | None = None, gemm_n: int | None = None, profile: int = 0) -> None:
    """Build, warm up and time one row (then profile it, ``profile`` > 0); fills ``row`` in place."""
    step = _build_step(arch, size, mode, width=width, batch=batch, device=device)
    gemm_before = gemm_gflops(device, gemm_n) if gemm_n else None
    timing = harness.time_calls(step, warmup=warmup, reps=iters, sync=harness.device_sync(device))
    dt = timing.total_s
    reads = 5 if arch == "wgan-gp" else 1
    row.update(warmup_s=round(timing.warmup_s, 3), seconds=round(dt, 4), iter_per_s=round(iters / dt, 3),
               real_images_per_s=round(iters * batch * reads / dt, 1), iter_s=harness.summarize(timing.samples))
    if gemm_n:
        if flops is None:
            flops = case_flops(arch, size, width=width, batch=batch, device=device)
        gemm = (gemm_before + gemm_gflops(device, gemm_n)) / 2
        row.update(gflop_per_iter=round(flops / 1e9, 4),
                   **achieved_vs_gemm(flops, harness.percentile(timing.samples, 50), gemm))
    if profile:
        row["profile"] = harness.profile_ops(step, iters=profile)


def run_gan(cfg: GanConfig, on_row: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """All rows (``on_row`` is called after each) plus machine and conditions; eager rows are the reference."""
    dev = cfg.torch_device()
    rows = []
    for a, s, w, b in cfg.cases():
        flops = None
        if cfg.gemm_n:
            try:  # once per case; a failure here is recorded by each row, which counts again
                flops = case_flops(a, s, width=w, batch=b, device=dev)
            except Exception:
                flops = None
        for m in cfg.modes:
            rows.append(bench_one(a, s, m, width=w, batch=b, iters=cfg.iters, warmup=cfg.warmup, device=dev,
                                  time_limit=cfg.row_timeout, flops=flops, gemm_n=cfg.gemm_n, profile=cfg.profile))
            if on_row is not None:
                on_row(rows[-1])
    for r in rows:
        ref = next((e for e in rows if all(e[k] == r[k] for k in ("arch", "size", "width", "batch"))
                    and e["mode"] == "eager"), None)
        if ref and "iter_per_s" in ref and "iter_per_s" in r:
            r["speedup_vs_eager"] = round(r["iter_per_s"] / ref["iter_per_s"], 3)
    conditions = {"sizes": list(cfg.sizes), "modes": list(cfg.modes), "width": cfg.width, "batch": cfg.batch,
                  "iters": cfg.iters, "warmup": cfg.warmup, "row_timeout_s": cfg.row_timeout, "quick": cfg.quick,
                  "presets": list(cfg.presets), "gemm_n": cfg.gemm_n, "profile_iters": cfg.profile}
    return harness.record("gan", harness.machine_info(dev), conditions, rows)
