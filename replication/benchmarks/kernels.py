"""``spl bench kernels``: time the fused kernels against torch eager and torch.compile.

Thin command over :mod:`kernels.benchmark`: parses options, runs the measurements, merges the rows
into the CSV (appending, de-duplicated) and prints one summary line per case.
"""
from __future__ import annotations

import logging
from pathlib import Path

import click
import torch
from tqdm import tqdm

from replication.errors import ConfigError

log = logging.getLogger(__name__)


def _split(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


@click.command(name="kernels")
@click.option("--quick", is_flag=True, help="Tiny sizes and few repetitions (smoke run; not for decisions).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("benchmarks/results/kernels.csv"), show_default=True,
              help="CSV the rows are merged into (same-key rows are replaced).")
@click.option("--device", type=click.Choice(["all", "cpu", "cuda"]), default="all", show_default=True,
              help="'all' = the CPU, plus the GPU when torch sees one.")
@click.option("--providers", default=None,
              help="Comma-separated subset of torch-eager,torch-compile,torch,numba,numba-cuda,cupy,auto.")
@click.option("--ops", default="assign_labels,soft_cross_entropy", show_default=True,
              help="Comma-separated ops to time.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch and numba (default: their own defaults).")
def command(quick: bool, out: Path, device: str, providers: str | None, ops: str, threads: int | None) -> None:
    """Time assign_labels and weighted_soft_cross_entropy per backend; write long-format CSV rows."""
    from kernels.benchmark import CPU_PROVIDERS, GPU_PROVIDERS, BenchConfig, run_benchmark, summarize, write_csv

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("spl bench kernels: --device cuda but torch sees no CUDA device")
    devices = ("cpu", "cuda") if device == "all" and torch.cuda.is_available() else \
        ("cpu",) if device == "all" else (device,)
    chosen = _split(providers)
    known = set(CPU_PROVIDERS) | set(GPU_PROVIDERS)
    if chosen and not set(chosen) <= known:
        raise ConfigError(f"spl bench kernels: unknown provider(s) {sorted(set(chosen) - known)}; "
                          f"expected some of {sorted(known)}")
    op_list = _split(ops) or ()
    bad_ops = set(op_list) - {"assign_labels", "soft_cross_entropy"}
    if bad_ops:
        raise ConfigError(f"spl bench kernels: unknown op(s) {sorted(bad_ops)}")
    cfg = BenchConfig(devices=devices, quick=quick, providers=chosen, ops=op_list, threads=threads)
    rows = run_benchmark(cfg, progress=lambda jobs: tqdm(jobs, desc="bench kernels", unit="case"))
    write_csv(out, rows)
    for line in summarize(rows):
        click.echo(line)
    failed = [r for r in rows if r["status"] != "ok"]
    click.echo(f"{len(rows)} rows ({len(failed)} not ok) merged into {out}")
