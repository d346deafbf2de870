"""``spl bench …``: the five benchmarks' command line (the measuring code is in ``replication/benchmarks/``),
and ``spl bench gpu-check``, which runs the GPU stages of them in one call (:mod:`replication.benchmarks.gpu_check`).

Each result goes to ``<results-dir>/<bench>-<device-slug>-t<threads>.json`` (default results dir
``benchmarks/results``; :mod:`replication.benchmarks.harness`), so a run on one device or thread
count never replaces another's; ``--out FILE`` writes to exactly that file instead.
"""
from __future__ import annotations

from pathlib import Path

import click
import torch
from tqdm import tqdm

from replication.benchmarks import gan as gan_bench
from replication.benchmarks import gpu_check, harness
from replication.benchmarks import kernels as kernels_bench
from replication.benchmarks import loader as loader_bench
from replication.benchmarks import metrics as metrics_bench
from replication.benchmarks import train as train_bench
from replication.errors import ConfigError


@click.group(name="bench")
def command() -> None:
    """Benchmarks (speed is measured, never asserted): results go to benchmarks/results/."""


def _split(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def _out_options(bench: str, path_type: click.Path):
    """``--out`` (exact file) and ``--results-dir`` (device-keyed file name), shared by all five commands."""
    def decorate(f):
        f = click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
                         default=harness.RESULTS_DIR, show_default=True,
                         help=f"Folder of the result file {bench}-<device>-t<threads>.json.")(f)
        return click.option("--out", type=path_type, default=None,
                            help="Exact result file to write (default: the device-keyed file in "
                                 "--results-dir).")(f)
    return decorate


@command.command(name="loader")
@click.option("--n", "n", type=int, default=512, show_default=True, help="Images in the synthetic set.")
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--crop", type=int, default=224, show_default=True)
@click.option("--workers", default="0,1,2", show_default=True, help="Comma-separated DataLoader worker counts.")
@_out_options("loader", click.Path(path_type=Path))
@click.option("--quick", is_flag=True, help="A few images, one pass (for tests).")
def loader_command(n, size, crop, workers, out, results_dir, quick) -> None:
    """Images/s for shards vs loose JPEG files at 0, 1, 2 DataLoader workers (JSON)."""
    worker_counts = tuple(int(w) for w in workers.split(","))
    cfg = loader_bench.LoaderConfig.quick(worker_counts) if quick else \
        loader_bench.LoaderConfig(n=n, size=size, crop=crop, workers=worker_counts)
    result = loader_bench.run_loader(cfg)
    path = harness.write_result(result, results_dir, out)
    for row in result["results"]:
        click.echo(f"{row['storage']:>10}  workers={row['workers']}  {row['images_per_s']:8.1f} img/s")
    click.echo(f"wrote {path}")


@command.command(name="metrics")
@click.option("--n", "n", type=int, default=40504, show_default=True, help="Images (rows).")
@click.option("--c", "c", type=int, default=80, show_default=True, help="Classes (columns).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True, help="Timed runs of the vectorised suite.")
@_out_options("metrics", click.Path(dir_okay=False, path_type=Path))
@click.option("--quick", is_flag=True, help="500×20, one repeat (for tests).")
def metrics_command(n: int, c: int, seed: int, repeats: int, out: Path | None, results_dir: Path,
                    quick: bool) -> None:
    """Full SRN metric suite (both Top-3 rules): vectorised vs Python reference, JSON result."""
    cfg = metrics_bench.MetricsConfig.quick(seed) if quick else \
        metrics_bench.MetricsConfig(n=n, c=c, seed=seed, repeats=repeats)
    result = metrics_bench.run_metrics(cfg)
    path = harness.write_result(result, results_dir, out)
    for row in result["results"]:
        click.echo(f"{row['implementation']:>16}  {cfg.n}x{cfg.c}  median {row['median_s']:.4f} s")
    click.echo(f"speed-up {result['speedup']}x, max |diff| {result['max_abs_diff_percent']:.2e} pp; wrote {path}")


@command.command(name="kernels")
@click.option("--quick", is_flag=True, help="Tiny sizes and few repetitions (smoke run; not for decisions).")
@_out_options("kernels", click.Path(dir_okay=False, path_type=Path))
@click.option("--device", type=click.Choice(["all", "cpu", "cuda"]), default="all", show_default=True,
              help="'all' = the CPU, plus the GPU when torch sees one.")
@click.option("--providers", default=None,
              help="Comma-separated subset of torch-eager,torch-compile,torch,numba,numba-cuda,cupy,auto.")
@click.option("--ops", default="assign_labels,soft_cross_entropy", show_default=True,
              help="Comma-separated ops to time.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch and numba (default: their own defaults).")
@click.option("--rules", default=None, help="Comma-separated assign_labels rules (default: spl,pseudo,random).")
@click.option("--step-n", default=None, help="Comma-separated per-step batch sizes N (default 24,256).")
@click.option("--classes", default=None, help="Comma-separated class counts C (default 14,80,81).")
@click.option("--large-n", default=None, help="Comma-separated larger loss batches (default 4096; '' for none).")
@click.option("--bulk-n", type=click.IntRange(min=1), default=None,
              help="N of the bulk relabelling case on every device (default: 100,000 CPU, 4,000,000 CUDA).")
@click.option("--min-time", type=float, default=None, help="Seconds of timed calls per case (default 0.3).")
def kernels_command(quick: bool, out: Path | None, results_dir: Path, device: str, providers: str | None, ops: str,
                    threads: int | None, rules: str | None, step_n: str | None, classes: str | None,
                    large_n: str | None, bulk_n: int | None, min_time: float | None) -> None:
    """Time assign_labels and weighted_soft_cross_entropy per backend; merge long-format rows (same-key rows
    are replaced; a .csv --out gets CSV)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("spl bench kernels: --device cuda but torch sees no CUDA device")
    devices = ("cpu", "cuda") if device == "all" and torch.cuda.is_available() else \
        ("cpu",) if device == "all" else (device,)
    chosen = _split(providers)
    known = set(kernels_bench.CPU_PROVIDERS) | set(kernels_bench.GPU_PROVIDERS)
    if chosen and not set(chosen) <= known:
        raise ConfigError(f"spl bench kernels: unknown provider(s) {sorted(set(chosen) - known)}; "
                          f"expected some of {sorted(known)}")
    op_list = _split(ops) or ()
    bad_ops = set(op_list) - set(kernels_bench.OPS)
    if bad_ops:
        raise ConfigError(f"spl bench kernels: unknown op(s) {sorted(bad_ops)}")
    cfg = kernels_bench.KernelsConfig(devices=devices, quick=quick, providers=chosen, ops=op_list, threads=threads)
    _size_overrides(cfg, rules, step_n, classes, large_n, bulk_n, min_time)
    records = kernels_bench.run_kernels(cfg, progress=lambda jobs: tqdm(jobs, desc="bench kernels", unit="case"))
    paths = kernels_bench.save_kernels(records, results_dir, out)
    rows = [r for rec in records.values() for r in rec["results"]]
    for line in kernels_bench.summarize(rows):
        click.echo(line)
    failed = [r for r in rows if r["status"] != "ok"]
    click.echo(f"{len(rows)} rows ({len(failed)} not ok) merged into {', '.join(map(str, paths))}")


def _ints(value: str) -> tuple[int, ...]:
    return tuple(int(v) for v in _split(value) or ())


def _size_overrides(cfg, rules, step_n, classes, large_n, bulk_n, min_time) -> None:
    """Apply the explicit size options of ``spl bench kernels`` over the (possibly --quick) defaults."""
    if rules is not None:
        cfg.rules = _split(rules) or ()
        if not set(cfg.rules) <= set(kernels_bench.RULES):
            raise ConfigError(f"spl bench kernels: unknown rule(s) {sorted(set(cfg.rules) - set(kernels_bench.RULES))}")
    if step_n is not None:
        cfg.step_n = _ints(step_n)
    if classes is not None:
        cfg.classes = _ints(classes)
    if large_n is not None:
        cfg.loss_large_n = _ints(large_n)
    if bulk_n is not None:
        cfg.bulk_n = {"cpu": bulk_n, "cuda": bulk_n}
    if min_time is not None:
        cfg.min_time_s = min_time


def _show_gan_row(r: dict) -> None:
    what = r.get("error") or (f"{r['iter_per_s']:.3f} it/s, {r['real_images_per_s']:.1f} real img/s "
                              f"(warmup {r['warmup_s']:.1f} s)")
    if "gemm_ratio" in r:
        what += (f"; {1e3 * r['iter_s']['median']:.1f} ms/it, {r['gflop_per_iter']:.3f} GFLOP/it, "
                 f"{r['gflops']:.1f} GFLOP/s = {100 * r['gemm_ratio']:.0f}% of fp32 GEMM {r['gemm_gflops']:.1f}")
    click.echo(f"{r['arch']:8s} {r['size']:3d} w{r['width']} b{r['batch']} {r['mode']:10s} {what}")
    for op in r.get("profile", ()):
        click.echo(f"    {100 * op['share']:5.1f}%  {op['ms_per_iter']:8.2f} ms/it  "
                   f"{op['calls_per_iter']:7.1f} calls/it  {op['op']}")


@command.command(name="gan")
@_out_options("gan", click.Path(path_type=Path))
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
@click.option("--presets", default=None, help="Comma-separated GAN presets (e.g. embedded-dcgan,embedded-wgan-gp) "
              "whose arch, size, width and batch make the cases, instead of --sizes/--width/--batch.")
@click.option("--gemm-n", type=click.IntRange(min=0), default=harness.GEMM_N, show_default=True,
              help="Side of the fp32 reference matmul timed beside each row (0: no GEMM reference).")
@click.option("--profile", type=click.IntRange(min=0), default=0, show_default=True,
              help="Profile this many more iterations of each eager row op by op (torch.profiler; 0: no profile).")
@click.option("--quick", is_flag=True, help="Tiny settings for tests: size 32, width 8, batch 8, 2+1 iterations.")
def gan_command(out, results_dir, sizes, modes, width, batch, iters, warmup, device, row_timeout, threads,
                presets, gemm_n, profile, quick) -> None:
    """Images/s of a GAN training step, eager vs torch.compile (and CUDA graphs on GPU), and its counted
    GFLOP/s against an fp32 GEMM on the same threads."""
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        cfg = gan_bench.GanConfig(sizes=tuple(int(s) for s in str(sizes).split(",") if s.strip()),
                                  modes=_split(modes), width=width, batch=batch, iters=iters, warmup=warmup,
                                  device=device, row_timeout=row_timeout, quick=quick,
                                  presets=_split(presets) or (), gemm_n=gemm_n, profile=profile)
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--modes") from e
    result = gan_bench.run_gan(cfg, on_row=_show_gan_row)
    path = harness.write_result(result, results_dir, out)
    for r in result["results"]:
        if "speedup_vs_eager" in r and r["mode"] != "eager":
            click.echo(f"{r['arch']:8s} {r['size']:3d} {r['mode']:10s} ×{r['speedup_vs_eager']:.2f} vs eager")
    click.echo(f"wrote {path}")


@command.command(name="train")
@click.option("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available).")
@click.option("--workers", type=int, default=None,
              help="DataLoader workers for the loader-fed runs (default min(8, CPUs)).")
@click.option("--max-batch", type=int, default=768, show_default=True,
              help="Upper bound of the largest-batch search (CUDA).")
@click.option("--cpu-r101-size", type=int, default=112, show_default=True,
              help="Input side of the reduced CPU R101 case.")
@click.option("--cpu-amp", is_flag=True, help="Also time channels_last + bf16 autocast on CPU.")
@click.option("--cpu-compile", is_flag=True, help="Also time torch.compile on CPU (slow to compile).")
@click.option("--steps", type=int, default=None, help="Timed steps per configuration.")
@click.option("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice).")
@click.option("--cases", default=None, help="Comma-separated subset of embedded,r101 (default: both).")
@click.option("--modes", default=None, help="Comma-separated subset of eager,cl,cl+amp,compile "
              "(default: all on CUDA, eager on CPU unless --cpu-amp/--cpu-compile).")
@click.option("--batches", default=None, help="Comma-separated CUDA R101 batches, integers or 'max' (default 24,max).")
@click.option("--embedded-batches", default=None, help="Comma-separated batches of the embedded model (default 64).")
@click.option("--gemm-n", type=click.IntRange(min=0), default=harness.GEMM_N, show_default=True,
              help="Side of the fp32 reference matmul timed beside each row (0: no GEMM reference).")
@_out_options("train", click.Path(path_type=Path))
@click.option("--quick", is_flag=True, help="Tiny sizes, eager only, no workers (for tests).")
def train_command(device, workers, max_batch, cpu_r101_size, cpu_amp, cpu_compile, steps, threads, cases, modes,
                  batches, embedded_batches, gemm_n, out, results_dir, quick) -> None:
    """Images/s of one training step (embedded model, R101): eager vs channels_last+AMP vs compile,
    synthetic tensors vs the shard loader, and the counted GFLOP/s against an fp32 GEMM (JSON)."""
    if threads:
        torch.set_num_threads(threads)
    cfg = train_bench.TrainBenchConfig(device=device, quick=quick, workers=workers, max_batch=max_batch,
                                       cpu_r101_size=cpu_r101_size, cpu_amp=cpu_amp, cpu_compile=cpu_compile,
                                       steps=steps, cases=_split(cases), modes=_split(modes), gemm_n=gemm_n,
                                       r101_batches=tuple(b if b == "max" else int(b) for b in _split(batches) or ())
                                       or None,
                                       embedded_batches=tuple(int(b) for b in _split(embedded_batches) or ()) or None)
    for name, given, known in (("case", cfg.cases, train_bench.CASES), ("mode", cfg.modes, train_bench.MODES)):
        if given and not set(given) <= set(known):
            raise ConfigError(f"spl bench train: unknown {name}(s) {sorted(set(given) - set(known))}; "
                              f"expected some of {', '.join(known)}")
    result = train_bench.run_train(cfg)
    path = harness.write_result(result, results_dir, out)
    for r in result["results"]:
        head = f"{r['case']:>14} b={r['batch']:<4} {r['mode']:>8}"
        if "error" in r:
            click.echo(f"{head}  {r['error']}")
        else:
            flops = (f"  {r['gflops']:.1f} GFLOP/s = {100 * r['gemm_ratio']:.0f}% of fp32 GEMM "
                     f"{r['gemm_gflops']:.1f}" if "gemm_ratio" in r else "")
            click.echo(f"{head}  synthetic {r['synthetic_images_per_s']:9.1f} img/s"
                       f"  loader {r['loader_images_per_s']:9.1f} img/s  ({100 * r['loader_fraction']:.0f}%){flops}")
    click.echo(f"wrote {path}")


@command.command(name="gpu-check")
@click.option("--dry-run", is_flag=True, help="List the stages (commands, budgets, what runs here) and stop.")
@click.option("--stages", default=None, help="Comma-separated subset of the stages (default: all).")
@click.option("--budget-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Multiply every stage's time budget (e.g. 2 on a slower GPU).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=harness.RESULTS_DIR,
              show_default=True, help="Folder of gpu-check-<device>.json and gpu-check-<device>/.")
@click.option("--copy-to", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="SPL_GPU_CHECK_COPY_TO", show_envvar=True,
              help="Also copy the summary and the stages' JSON files here (e.g. a device machine's $OUT).")
def gpu_check_command(dry_run: bool, stages: str | None, budget_scale: float, results_dir: Path,
                      copy_to: Path | None) -> None:
    """Every GPU path in one call (≤ 8 min on an H200): gpu tests, kernels, R101 and GAN benchmarks, the demo;
    each stage a subprocess with its own time budget. Without CUDA the CUDA stages are skipped."""
    chosen = gpu_check.select(gpu_check.STAGES, _split(stages))
    cuda = torch.cuda.is_available()
    if dry_run:
        out = gpu_check.out_dir(results_dir, harness.machine_info("cuda" if cuda else "cpu"))
        for line in gpu_check.format_plan(gpu_check.plan(chosen, cuda=cuda, budget_scale=budget_scale, out=out)):
            click.echo(line)
        return
    if not cuda:
        click.echo(f"gpu-check: {gpu_check.NO_CUDA}: the CUDA stages are skipped, the others run their CPU flavour")
    summary = gpu_check.run_check(chosen, results_dir=results_dir, cuda=cuda, budget_scale=budget_scale,
                                  copy_to=copy_to, on_event=click.echo)
    click.echo("")
    for line in gpu_check.format_summary(summary):
        click.echo(line)
