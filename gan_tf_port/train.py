"""Training loop of both GANs with checkpoints, exact resume, sample grids and loss curves (SPEC §4, §11).

Epochs keep each repository's definition: DCGAN (carpedm20) runs ``N // batch`` iterations per
epoch (1 D + 2 G steps each); WGAN-GP (LynnHo v1) runs ``N // (batch · n_critic)`` iterations (5
critic steps + 1 G step each). Defaults: 25 and 50 epochs; the paper's "1,000 epochs" is a preset.

Files in ``out_dir`` (rank 0 writes): ``checkpoint.pt`` (atomic; every ``checkpoint_every``
iterations, on SIGINT/SIGTERM and at the end), ``samples/iter_NNNNNNN.png`` (fixed z: 64 in an 8×8
grid for DCGAN, 100 in 10×10 for WGAN-GP, as the repositories; every ``sample_every`` iterations)
and ``samples/final.png``, ``loss_curves.png`` and ``history.json`` (losses averaged over
``log_every`` iterations), ``train_config.json``.

Exact resume: the checkpoint holds both models and optimisers, the iteration, the data stream's
(epoch, position), the trainer's noise generator, the fixed z, the partial loss window, and the
global torch/numpy/python RNG states; all randomness of a run comes from seeded generators that the
checkpoint restores, so on CPU a resumed run is bit-identical to an uninterrupted one.

A non-finite loss stops training with :class:`NonFiniteLossError` before anything is saved, so the
last good checkpoint stays in place. SIGINT/SIGTERM finish the current iteration, save a checkpoint
and return with status ``"interrupted"`` (a second signal aborts at once).
"""
from __future__ import annotations

import logging
import random
import signal
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from gan_tf_port import ARCHS, build
from gan_tf_port import dist as gdist
from gan_tf_port.data import BatchStream
from gan_tf_port.grid import plot_losses, save_grid
from gan_tf_port.io import atomic_torch_save, atomic_write_json
from gan_tf_port.optim import make_adam
from gan_tf_port.sample import load_checkpoint
from gan_tf_port.steps import Noise, dcgan_iteration, wgan_gp_iteration

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
DEFAULT_EPOCHS = {"dcgan": 25, "wgan-gp": 50}
FIXED_SAMPLES = {"dcgan": 64, "wgan-gp": 100}
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
# Settings a resumed run must share with the checkpoint (epochs, cadences, device may change).
RESUME_KEYS = ("arch", "size", "width", "channels", "z_dim", "batch_size", "lr", "beta1", "beta2", "adam_eps",
               "adam", "g_steps", "n_critic", "gp_weight", "seed", "flip")

Callback = Callable[[int, dict], None]


class GanTrainError(RuntimeError):
    """Training could not go on (non-finite loss, unusable checkpoint, bad settings)."""


class NonFiniteLossError(GanTrainError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class CheckpointError(GanTrainError):
    """A checkpoint exists but may not be used (no resume requested, or other settings)."""


@dataclass
class TrainConfig:
    """Settings of one GAN training run (defaults: the repositories' values at 64×64)."""

    arch: str = "dcgan"
    size: int = 64
    width: int = 64            # gf_dim = df_dim
    channels: int = 3
    z_dim: int = 100
    batch_size: int = 64       # per rank
    epochs: int | None = None  # None: 25 (DCGAN) / 50 (WGAN-GP)
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    adam_eps: float = 1e-8
    adam: str = "tf"           # "tf": TF1's Adam update; "torch": torch.optim.Adam
    g_steps: int = 2           # DCGAN G steps per iteration (same z)
    n_critic: int = 5          # WGAN-GP critic steps per G step
    gp_weight: float = 10.0
    seed: int = 0
    flip: bool = False         # random horizontal flip of real images (seeded)
    sample_every: int = 100    # iterations between fixed-z grids (0: only at the end)
    checkpoint_every: int = 500
    log_every: int = 10
    plot_on_checkpoint: bool = True  # redraw loss_curves.png at every checkpoint (always at the end)
    max_iters: int | None = None  # stop (with a checkpoint) once this many iterations are done
    device: str = "auto"
    compile: str = "none"      # torch.compile mode for the plain forwards, or "none"
    num_workers: int = 0
    progress: bool = True

    def validate(self) -> None:
        """Raise ValueError for settings no run can use."""
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; expected one of {ARCHS}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {self.compile!r}; expected one of {COMPILE_MODES}")
        for name in ("size", "width", "channels", "z_dim", "batch_size", "g_steps", "n_critic", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16 (four stride-2 layers), got {self.size}")
        if self.epochs is not None and self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")


@dataclass
class TrainResult:
    """Outcome of :func:`train`: status 'done', 'stopped' (max_iters) or 'interrupted' (signal)."""

    status: str
    iteration: int
    total_iters: int
    iters_per_epoch: int
    out_dir: Path
    checkpoint: Path
    last_logs: dict = field(default_factory=dict)
    generator: torch.nn.Module | None = None      # the trained modules (training mode)
    discriminator: torch.nn.Module | None = None


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", gdist.env_world()[2])
    return dev


def iters_per_epoch(arch: str, num_images: int, batch_size: int, n_critic: int = 5, world_size: int = 1) -> int:
    """Iterations in one epoch: ``N // B`` (DCGAN) or ``N // (B · n_critic)`` (WGAN-GP), B the global batch."""
    per = batch_size * world_size * (n_critic if arch == "wgan-gp" else 1)
    return num_images // per


class _SignalFlag:
    """SIGINT/SIGTERM → a flag checked between iterations (main thread only); a second signal aborts."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict = {}

    def __enter__(self) -> "_SignalFlag":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(f"second signal {signum}")
        self.received = signum
        log.warning("signal %d received: saving a checkpoint after this iteration", signum)

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def train(cfg: TrainConfig, images: torch.Tensor | Dataset, out_dir: str | Path, *, resume: bool = False,
          callbacks: Sequence[Callback] = (), transform: Callable[[torch.Tensor], torch.Tensor] | None = None
          ) -> TrainResult:
    """Train ``cfg.arch`` on ``images`` (N×C×H×W uint8 or [−1, 1] float, or a map-style dataset of such items).

    ``resume`` continues from ``out_dir/checkpoint.pt`` (an existing checkpoint without ``resume``
    raises :class:`CheckpointError`). ``callbacks`` are called as ``cb(iteration, logs)`` after every
    iteration (logs: detached loss tensors). ``transform`` maps each real batch in [−1, 1] (after the
    optional flip) before use. Returns a :class:`TrainResult`.
    """
    cfg.validate()
    out = Path(out_dir)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rank, world = gdist.init(device)
    main = rank == 0
    ckpt_path = out / CHECKPOINT

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    G, D = build(cfg.arch, size=cfg.size, width=cfg.width, channels=cfg.channels, z_dim=cfg.z_dim)
    G, D = G.to(device).train(), D.to(device).train()
    if world > 1:
        gdist.broadcast_module(G)
        gdist.broadcast_module(D)
    opt_kw = dict(kind=cfg.adam, lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.adam_eps)
    opt_g, opt_d = make_adam(G.parameters(), **opt_kw), make_adam(D.parameters(), **opt_kw)
    stream = BatchStream(images, cfg.batch_size, seed=cfg.seed, flip=cfg.flip, rank=rank, world_size=world,
                         num_workers=cfg.num_workers, device=device, transform=transform)
    noise = Noise(G, seed=(cfg.seed * 1_000_003 + 7919 * (rank + 1)) % 2**62, device=device)
    fixed_z = G.sample_z(FIXED_SAMPLES[cfg.arch], torch.Generator().manual_seed(cfg.seed))

    ipe = iters_per_epoch(cfg.arch, len(images), cfg.batch_size, cfg.n_critic, world)
    if ipe == 0:
        raise GanTrainError(f"{len(images)} images are fewer than one {cfg.arch} iteration needs "
                            f"({cfg.batch_size * world * (cfg.n_critic if cfg.arch == 'wgan-gp' else 1)})")
    epochs = DEFAULT_EPOCHS[cfg.arch] if cfg.epochs is None else cfg.epochs
    total = epochs * ipe
    stop = total if cfg.max_iters is None else min(total, cfg.max_iters)
    spec = {"arch": cfg.arch, "size": cfg.size, "width": cfg.width, "channels": cfg.channels, "z_dim": cfg.z_dim}
    history: dict[str, list[float]] = {"iteration": []}
    window: dict[str, torch.Tensor] = {}
    window_count = 0
    start = 0

    if ckpt_path.exists():
        if not resume:
            raise CheckpointError(f"{ckpt_path}: a checkpoint exists; resume it or use another output folder")
        try:
            ckpt = load_checkpoint(ckpt_path)
        except Exception as e:  # corrupt or truncated file
            raise CheckpointError(f"{ckpt_path}: unreadable checkpoint ({e})") from None
        saved = ckpt["config"]
        diff = [k for k in RESUME_KEYS if saved.get(k) != getattr(cfg, k)]
        if ckpt.get("num_images") != len(images):
            diff.append(f"num_images ({ckpt.get('num_images')} vs {len(images)})")
        if ckpt.get("world_size", 1) != world:
            diff.append(f"world_size ({ckpt.get('world_size', 1)} vs {world})")
        if diff:
            raise CheckpointError(f"{ckpt_path}: cannot resume with different settings: {', '.join(map(str, diff))}")
        G.load_state_dict(ckpt["G"])
        D.load_state_dict(ckpt["D"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        stream.load_state_dict(ckpt["stream"])
        noise.set_state(ckpt["noise"][rank])
        fixed_z = ckpt["fixed_z"]
        history = {k: list(v) for k, v in ckpt["history"].items()}
        window = {k: v.to(device) for k, v in ckpt["window"]["sums"].items()}
        window_count = int(ckpt["window"]["count"])
        _set_rng_state(ckpt["rng"], device)
        start = int(ckpt["iteration"])
        log.info("resumed %s from iteration %d of %d", ckpt_path, start, total)
    elif main:
        out.mkdir(parents=True, exist_ok=True)
    if main:
        atomic_write_json(out / "train_config.json", {**asdict(cfg), "num_images": len(images), "world_size": world,
                                                      "iters_per_epoch": ipe, "total_iters": total, "epochs_resolved": epochs})
    log.info("%s %dx%d width %d: %d images, %d iterations/epoch, %d epochs = %d iterations, device %s, world %d",
             cfg.arch, cfg.size, cfg.size, cfg.width, len(images), ipe, epochs, total, device, world)

    sync = gdist.grad_sync(world) if world > 1 else None
    g_fwd = d_fwd = None
    if cfg.compile != "none":
        # static shapes: the batch and image size never change within a run
        g_fwd = torch.compile(G, mode=cfg.compile, dynamic=False)
        d_fwd = torch.compile(D, mode=cfg.compile, dynamic=False)
    if cfg.arch == "dcgan":
        def step() -> dict:
            return dcgan_iteration(G, D, opt_g, opt_d, lambda: next(stream), noise, g_steps=cfg.g_steps,
                                   g_fwd=g_fwd, d_fwd=d_fwd, sync=sync)
    else:
        def step() -> dict:
            return wgan_gp_iteration(G, D, opt_g, opt_d, lambda: next(stream), noise, n_critic=cfg.n_critic,
                                     gp_weight=cfg.gp_weight, g_fwd=g_fwd, d_fwd=d_fwd, sync=sync)

    last_ckpt = start if ckpt_path.exists() else None
    last_logs: dict[str, float] = {}

    def check_window(it: int) -> None:
        if not window:
            return
        bad = not all(bool(torch.isfinite(v).all()) for v in window.values())
        if gdist.any_rank(bad, device):
            vals = ", ".join(f"{k}={v.item() / max(window_count, 1):.4g}" for k, v in window.items())
            kept = f"the last good checkpoint (iteration {last_ckpt}) is kept" if last_ckpt is not None else "no checkpoint was written"
            raise NonFiniteLossError(f"non-finite loss by iteration {it} ({vals}); training stopped, {kept}")

    def flush_window(it: int) -> None:
        nonlocal window, window_count, last_logs
        check_window(it)
        if window_count == 0:
            return
        last_logs = {k: float(v.item()) / window_count for k, v in window.items()}
        history["iteration"].append(it)
        for k, v in last_logs.items():
            history.setdefault(k, []).append(v)
        window, window_count = {}, 0
        bar.set_postfix({k: f"{v:.3f}" for k, v in last_logs.items() if k in ("d_loss", "g_loss", "wd", "gp")})

    def save_checkpoint(it: int) -> None:
        nonlocal last_ckpt
        check_window(it)
        noise_states = gdist.gather_objects(noise.state())
        if main:
            atomic_torch_save({
                "format": "gan_tf_port/1", "model": spec, "config": asdict(cfg), "num_images": len(images),
                "world_size": world, "iteration": it, "total_iters": total, "iters_per_epoch": ipe,
                "finished": it >= total, "G": G.state_dict(), "D": D.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "stream": stream.state_dict(),
                "noise": noise_states, "fixed_z": fixed_z, "rng": _rng_state(device), "history": history,
                "window": {"sums": {k: v.detach().cpu() for k, v in window.items()}, "count": window_count},
            }, ckpt_path)
            atomic_write_json(out / "history.json", history)
            if cfg.plot_on_checkpoint and len(history["iteration"]) > 1:
                plot_losses(history, out / "loss_curves.png", title=f"{cfg.arch} {cfg.size}x{cfg.size}")
        last_ckpt = it

    def save_samples(name: str) -> None:
        if not main:
            return
        G.eval()
        with torch.no_grad():
            imgs = G(fixed_z.to(device))
        G.train()
        save_grid(imgs, out / "samples" / name)

    status = "done"
    it = start
    bar = tqdm(total=total, initial=start, desc=cfg.arch, unit="it", disable=not (cfg.progress and main),
               dynamic_ncols=True)
    try:
        with _SignalFlag() as sig:
            while it < stop:
                logs = step()
                for k, v in logs.items():
                    window[k] = window[k] + v if k in window else v.clone()
                window_count += 1
                it += 1
                bar.update(1)
                for cb in callbacks:
                    cb(it, logs)
                if it % cfg.log_every == 0:
                    flush_window(it)
                if cfg.sample_every and it % cfg.sample_every == 0:
                    save_samples(f"iter_{it:07d}.png")
                interrupted = gdist.any_rank(sig.received is not None, device) if world > 1 else sig.received is not None
                if interrupted:
                    save_checkpoint(it)
                    status = "interrupted"
                    log.warning("interrupted at iteration %d; checkpoint saved to %s", it, ckpt_path)
                    break
                if cfg.checkpoint_every and it % cfg.checkpoint_every == 0 and it < stop:
                    save_checkpoint(it)
            if status == "done" and it >= total and window_count:
                flush_window(it)
    finally:
        bar.close()
    if status != "interrupted":
        if last_ckpt != it or not ckpt_path.exists():
            save_checkpoint(it)
        if it >= total:
            save_samples("final.png")
            if main and len(history["iteration"]) > 1:
                plot_losses(history, out / "loss_curves.png", title=f"{cfg.arch} {cfg.size}x{cfg.size}")
        else:
            status = "stopped"
    if not last_logs and window_count:
        last_logs = {k: float(v.item()) / window_count for k, v in window.items()}
    return TrainResult(status=status, iteration=it, total_iters=total, iters_per_epoch=ipe, out_dir=out,
                       checkpoint=ckpt_path, last_logs=last_logs, generator=G, discriminator=D)

