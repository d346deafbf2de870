"""Training loop of both GANs with checkpoints, exact resume, sample grids and loss curves (``docs/gan.md``).

Epochs keep each repository's definition: DCGAN (carpedm20) runs ``N // batch`` iterations per
epoch (1 D + 2 G steps each); WGAN-GP (LynnHo v1) runs ``N // (batch · n_critic)`` iterations (5
critic steps + 1 G step each). Defaults: 25 and 50 epochs; the paper's "1,000 epochs" is a preset.

Files in ``out_dir`` (rank 0 writes): ``checkpoint.pt`` (atomic; every ``checkpoint_every``
iterations, on SIGINT/SIGTERM and at the end), ``samples/iter_NNNNNNN.png`` (fixed z: 64 in an 8×8
grid for DCGAN, 100 in 10×10 for WGAN-GP, as the repositories; every ``sample_every`` iterations)
and ``samples/final.png``, ``loss_curves.png`` and ``history.json`` (losses averaged over
``log_every`` iterations), ``train_config.json``. With ``keep_every`` N > 0 also
``checkpoints/iter-NNNNNNN.pt`` every N iterations (kept, never overwritten by later ones; same
content as ``checkpoint.pt`` at that iteration) and ``checkpoints/index.json``: for each kept file its
iteration and the run's cumulative training CPU seconds (``time.process_time()``, all threads of the
rank-0 process) and wall seconds, summed across resumes (:func:`read_kept_index`).

Exact resume: the checkpoint holds both models and optimisers, the iteration, the data stream's
(epoch, position), the trainer's noise generator, the fixed z, the partial loss window, and the
global torch/numpy/python RNG states; all randomness of a run comes from seeded generators that the
checkpoint restores, so on CPU a resumed run is bit-identical to an uninterrupted one. The checkpoint
holds only tensors and plain containers (the NumPy and ``random`` states converted) and is read with
``torch.load(weights_only=True)``, so loading one never runs code from the file.

A non-finite loss stops training with :class:`NonFiniteLossError` before anything is saved, so the
last good checkpoint stays in place. SIGINT/SIGTERM finish the current iteration, save a checkpoint
and return with status ``"interrupted"`` (a second signal aborts at once).
"""
from __future__ import annotations

import json
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
from gan_tf_port.sample import UnsafeCheckpointError, load_checkpoint
from gan_tf_port.steps import Noise, dcgan_iteration, wgan_gp_iteration

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
KEPT_DIR = "checkpoints"        # kept checkpoints (``keep_every``) and their index
KEPT_INDEX = "index.json"
KEPT_FORMAT = "gan_tf_port/kept/1"
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
    keep_every: int = 0        # keep checkpoints/iter-NNNNNNN.pt every N iterations (0: off)
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
        if self.keep_every < 0:
            raise ValueError(f"keep_every must be >= 0, got {self.keep_every}")


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


def kept_name(iteration: int) -> str:
    """File name of the checkpoint kept at ``iteration``: ``iter-NNNNNNN.pt``."""
    return f"iter-{iteration:07d}.pt"


def read_kept_index(out_dir: str | Path) -> dict:
    """``out_dir/checkpoints/index.json``: ``{"format", "keep_every", "timed_from", "clock", "kept"}``.

    ``kept`` lists ``{"iteration", "file", "cpu_s", "wall_s"}`` in iteration order (``file`` relative
    to ``checkpoints/``); ``clock`` is the same record for the last ``checkpoint.pt`` (where a resume
    continues the sums); ``timed_from`` is the iteration where timing began (0 unless keeping was
    switched on by a resume). An empty index when the file does not exist.
    """
    path = Path(out_dir) / KEPT_DIR / KEPT_INDEX
    if not path.is_file():
        return {"format": KEPT_FORMAT, "keep_every": 0, "timed_from": 0, "clock": None, "kept": []}
    return json.loads(path.read_text(encoding="utf-8"))


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

    def __enter__(self) -> _SignalFlag:
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
    """The global RNG states as tensors and plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": {"version": version, "internal": list(internal), "gauss": gauss}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n, p = state["numpy"], state["python"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class GanTrainer:
    """One GAN training run in ``out_dir`` (see :func:`train`), shaped like the classifier's trainer.

    ``__init__`` seeds the global RNGs and builds everything a run needs (models, optimisers, data
    stream, noise, fixed z, schedule); :meth:`run` opens the output folder (resuming through
    :meth:`restore` when asked) and loops :meth:`one_iteration` until done, stopped or interrupted.
    :meth:`save` writes the checkpoint that :meth:`restore` reads; its content is :meth:`state`.
    """

    def __init__(self, cfg: TrainConfig, images: torch.Tensor | Dataset, out_dir: str | Path, *,
                 callbacks: Sequence[Callback] = (),
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        cfg.validate()
        self.cfg, self.images, self.callbacks = cfg, images, tuple(callbacks)
        self.out = Path(out_dir)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.rank, self.world, self.owns_group = gdist.init(self.device)
        self.main = self.rank == 0
        self.ckpt_path = self.out / CHECKPOINT
        self._build(transform)
        self._plan()
        self.history: dict[str, list[float]] = {"iteration": []}
        self.window: dict[str, torch.Tensor] = {}   # loss sums of the current log window
        self.window_count = 0
        self.iteration = 0                          # completed iterations
        self.last_ckpt: int | None = None           # iteration of the last checkpoint on disk
        self.last_logs: dict[str, float] = {}
        self.status = "done"
        self._bar: tqdm | None = None
        self.kept_index: dict = {}                  # checkpoints/index.json (keep_every > 0, rank 0)
        self._clock = (0.0, 0.0, 0.0, 0.0)          # cpu_s, wall_s so far; process_time, perf_counter then
        self.sync = gdist.grad_sync(self.world) if self.world > 1 else None
        self.g_fwd: Callable | None = None
        self.d_fwd: Callable | None = None
        if cfg.compile != "none":
            # static shapes: the batch and image size never change within a run
            self.g_fwd = torch.compile(self.G, mode=cfg.compile, dynamic=False)
            self.d_fwd = torch.compile(self.D, mode=cfg.compile, dynamic=False)

    # -- setup -------------------------------------------------------------------------------------
    def _build(self, transform: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """Seed the global RNGs, then build G, D, their optimisers, the data stream, noise and fixed z."""
        cfg, device = self.cfg, self.device
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        G, D = build(cfg.arch, size=cfg.size, width=cfg.width, channels=cfg.channels, z_dim=cfg.z_dim)
        self.G, self.D = G.to(device).train(), D.to(device).train()
        if self.world > 1:
            gdist.broadcast_module(self.G)
            gdist.broadcast_module(self.D)
        opt_kw = dict(kind=cfg.adam, lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.adam_eps)
        self.opt_g, self.opt_d = make_adam(self.G.parameters(), **opt_kw), make_adam(self.D.parameters(), **opt_kw)
        self.stream = BatchStream(self.images, cfg.batch_size, seed=cfg.seed, flip=cfg.flip, rank=self.rank,
                                  world_size=self.world, num_workers=cfg.num_workers, device=device,
                                  transform=transform)
        self.noise = Noise(self.G, seed=(cfg.seed * 1_000_003 + 7919 * (self.rank + 1)) % 2**62, device=device)
        self.fixed_z = self.G.sample_z(FIXED_SAMPLES[cfg.arch], torch.Generator().manual_seed(cfg.seed))

    def _plan(self) -> None:
        """Iterations per epoch, epochs, total iterations and where this run stops."""
        cfg, n = self.cfg, len(self.images)
        self.ipe = iters_per_epoch(cfg.arch, n, cfg.batch_size, cfg.n_critic, self.world)
        if self.ipe == 0:
            raise GanTrainError(f"{n} images are fewer than one {cfg.arch} iteration needs "
                                f"({cfg.batch_size * self.world * (cfg.n_critic if cfg.arch == 'wgan-gp' else 1)})")
        self.epochs = DEFAULT_EPOCHS[cfg.arch] if cfg.epochs is None else cfg.epochs
        self.total = self.epochs * self.ipe
        self.stop = self.total if cfg.max_iters is None else min(self.total, cfg.max_iters)
        self.spec = {"arch": cfg.arch, "size": cfg.size, "width": cfg.width, "channels": cfg.channels,
                     "z_dim": cfg.z_dim}

    def _open(self, resume: bool) -> None:
        """Resume from the checkpoint (only with ``resume``) or create the folder; write train_config.json."""
        cfg, n = self.cfg, len(self.images)
        if self.ckpt_path.exists():
            if not resume:
                raise CheckpointError(f"{self.ckpt_path}: a checkpoint exists; resume it or use another output folder")
            self.restore()
        elif self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        if self.main:
            atomic_write_json(self.out / "train_config.json", {
                **asdict(cfg), "num_images": n, "world_size": self.world, "iters_per_epoch": self.ipe,
                "total_iters": self.total, "epochs_resolved": self.epochs})
        log.info("%s %dx%d width %d: %d images, %d iterations/epoch, %d epochs = %d iterations, device %s, world %d",
                 cfg.arch, cfg.size, cfg.size, cfg.width, n, self.ipe, self.epochs, self.total, self.device,
                 self.world)
        self.last_ckpt = self.iteration if self.ckpt_path.exists() else None

    # -- checkpoints -------------------------------------------------------------------------------
    def state(self, noise_states: list | None = None) -> dict:
        """The checkpoint's content; ``noise_states``: every rank's noise state (default: this rank's only)."""
        cfg = self.cfg
        return {
            "format": "gan_tf_port/1", "model": self.spec, "config": asdict(cfg), "num_images": len(self.images),
            "world_size": self.world, "iteration": self.iteration, "total_iters": self.total,
            "iters_per_epoch": self.ipe, "finished": self.iteration >= self.total, "G": self.G.state_dict(),
            "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "stream": self.stream.state_dict(),
            "noise": [self.noise.state()] if noise_states is None else noise_states, "fixed_z": self.fixed_z,
            "rng": _rng_state(self.device), "history": self.history,
            "window": {"sums": {k: v.detach().cpu() for k, v in self.window.items()}, "count": self.window_count},
        }

    def save(self) -> None:
        """Write ``checkpoint.pt`` and ``history.json`` (rank 0; every rank must call), maybe redraw the curves.

        Raises :class:`NonFiniteLossError` instead when the current log window holds a non-finite loss.
        """
        self._check_window()
        noise_states = gdist.gather_objects(self.noise.state())
        if self.main:
            atomic_torch_save(self.state(noise_states), self.ckpt_path)
            atomic_write_json(self.out / "history.json", self.history)
            if self.cfg.keep_every:
                if not self.kept_index:
                    self._start_clock()
                self.kept_index["clock"] = self._clock_record()
                atomic_write_json(self.out / KEPT_DIR / KEPT_INDEX, self.kept_index)
            if self.cfg.plot_on_checkpoint and len(self.history["iteration"]) > 1:
                self._plot()
        self.last_ckpt = self.iteration

    def keep(self) -> None:
        """Write ``checkpoints/iter-NNNNNNN.pt`` (the checkpoint's content now) and add it to the index.

        Rank 0 writes; every rank must call. Raises :class:`NonFiniteLossError` as :meth:`save` does.
        """
        self._check_window()
        noise_states = gdist.gather_objects(self.noise.state())
        if not self.main:
            return
        if not self.kept_index:
            self._start_clock()
        name = kept_name(self.iteration)
        atomic_torch_save(self.state(noise_states), self.out / KEPT_DIR / name)
        kept = [e for e in self.kept_index["kept"] if e["iteration"] != self.iteration]
        self.kept_index["kept"] = [*kept, {**self._clock_record(), "file": name}]
        self.kept_index["keep_every"] = self.cfg.keep_every
        atomic_write_json(self.out / KEPT_DIR / KEPT_INDEX, self.kept_index)

    def _clock_record(self) -> dict:
        """``{"iteration", "cpu_s", "wall_s"}``: the training time of this run so far, across resumes."""
        cpu, wall, t_cpu, t_wall = self._clock
        return {"iteration": self.iteration, "cpu_s": round(cpu + time.process_time() - t_cpu, 4),
                "wall_s": round(wall + time.perf_counter() - t_wall, 4)}

    def _start_clock(self) -> None:
        """Rank 0: read the kept index and continue its time sums from the current iteration (:meth:`run`)."""
        if not self.main:
            return
        index = read_kept_index(self.out)
        index["kept"] = [e for e in index["kept"] if e["iteration"] <= self.iteration]  # a killed run's later ones
        marks = [e for e in [index.get("clock"), *index["kept"]] if e and e["iteration"] <= self.iteration]
        last = max(marks, key=lambda e: e["iteration"], default=None)
        if last is None or last["iteration"] < self.iteration:
            if self.iteration:
                log.warning("%s: no training time recorded for iterations %s..%d; kept checkpoints time the rest",
                            self.out / KEPT_DIR / KEPT_INDEX, last["iteration"] if last else 0, self.iteration)
            if last is None:
                index["timed_from"] = self.iteration
        cpu, wall = (last["cpu_s"], last["wall_s"]) if last else (0.0, 0.0)
        self.kept_index = {**index, "keep_every": self.cfg.keep_every}
        self._clock = (float(cpu), float(wall), time.process_time(), time.perf_counter())

    def restore(self) -> None:
        """Continue from ``out_dir/checkpoint.pt``; :class:`CheckpointError` if unreadable or of other settings."""
        try:
            ckpt = load_checkpoint(self.ckpt_path)
        except UnsafeCheckpointError as e:
            raise CheckpointError(str(e)) from None
        except Exception as e:  # corrupt or truncated file
            msg = " ".join(str(e).split())[:200]
            raise CheckpointError(f"{self.ckpt_path}: unreadable checkpoint ({type(e).__name__}: {msg})") from None
        self._check_compatible(ckpt)
        self.G.load_state_dict(ckpt["G"])
        self.D.load_state_dict(ckpt["D"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.stream.load_state_dict(ckpt["stream"])
        self.noise.set_state(ckpt["noise"][self.rank])
        self.fixed_z = ckpt["fixed_z"]
        self.history = {k: list(v) for k, v in ckpt["history"].items()}
        self.window = {k: v.to(self.device) for k, v in ckpt["window"]["sums"].items()}
        self.window_count = int(ckpt["window"]["count"])
        _set_rng_state(ckpt["rng"], self.device)
        self.iteration = int(ckpt["iteration"])
        log.info("resumed %s from iteration %d of %d", self.ckpt_path, self.iteration, self.total)

    def _check_compatible(self, ckpt: dict) -> None:
        saved, n = ckpt["config"], len(self.images)
        diff = [k for k in RESUME_KEYS if saved.get(k) != getattr(self.cfg, k)]
        if ckpt.get("num_images") != n:
            diff.append(f"num_images ({ckpt.get('num_images')} vs {n})")
        if ckpt.get("world_size", 1) != self.world:
            diff.append(f"world_size ({ckpt.get('world_size', 1)} vs {self.world})")
        if diff:
            raise CheckpointError(
                f"{self.ckpt_path}: cannot resume with different settings: {', '.join(map(str, diff))}")

    # -- training ----------------------------------------------------------------------------------
    def _next_real(self) -> torch.Tensor:
        return next(self.stream)

    def _step(self) -> dict[str, torch.Tensor]:
        """One iteration of the repository's schedule (no logging); returns detached losses."""
        cfg = self.cfg
        if cfg.arch == "dcgan":
            return dcgan_iteration(self.G, self.D, self.opt_g, self.opt_d, self._next_real, self.noise,
                                   g_steps=cfg.g_steps, g_fwd=self.g_fwd, d_fwd=self.d_fwd, sync=self.sync)
        return wgan_gp_iteration(self.G, self.D, self.opt_g, self.opt_d, self._next_real, self.noise,
                                 n_critic=cfg.n_critic, gp_weight=cfg.gp_weight, g_fwd=self.g_fwd, d_fwd=self.d_fwd,
                                 sync=self.sync)

    def one_iteration(self) -> dict[str, torch.Tensor]:
        """Train one iteration and add its losses to the log window; returns the detached losses."""
        logs = self._step()
        for k, v in logs.items():
            self.window[k] = self.window[k] + v if k in self.window else v.clone()
        self.window_count += 1
        self.iteration += 1
        return logs

    def _check_window(self) -> None:
        """Raise :class:`NonFiniteLossError` if any rank's log window holds a non-finite loss."""
        if not self.window:
            return
        bad = not all(bool(torch.isfinite(v).all()) for v in self.window.values())
        if gdist.any_rank(bad, self.device):
            vals = ", ".join(f"{k}={v.item() / max(self.window_count, 1):.4g}" for k, v in self.window.items())
            kept = (f"the last good checkpoint (iteration {self.last_ckpt}) is kept" if self.last_ckpt is not None
                    else "no checkpoint was written")
            raise NonFiniteLossError(
                f"non-finite loss by iteration {self.iteration} ({vals}); training stopped, {kept}")

    def _window_means(self) -> dict[str, float]:
        return {k: float(v.item()) / self.window_count for k, v in self.window.items()}

    def _flush_window(self) -> None:
        """Check the log window, append its means to the history and start a new window."""
        self._check_window()
        if self.window_count == 0:
            return
        self.last_logs = self._window_means()
        self.history["iteration"].append(self.iteration)
        for k, v in self.last_logs.items():
            self.history.setdefault(k, []).append(v)
        self.window, self.window_count = {}, 0
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.3f}" for k, v in self.last_logs.items()
                                   if k in ("d_loss", "g_loss", "wd", "gp")})

    def save_samples(self, name: str) -> None:
        """Rank 0: save G(fixed z) in eval mode as the grid ``samples/<name>``."""
        if not self.main:
            return
        self.G.eval()
        with torch.no_grad():
            imgs = self.G(self.fixed_z.to(self.device))
        self.G.train()
        save_grid(imgs, self.out / "samples" / name)

    def _plot(self) -> None:
        cfg = self.cfg
        plot_losses(self.history, self.out / "loss_curves.png", title=f"{cfg.arch} {cfg.size}x{cfg.size}")

    def _after_iteration(self, logs: dict[str, torch.Tensor], sig: _SignalFlag) -> bool:
        """Callbacks, log window, samples, signal and periodic checkpoint; True when interrupted by a signal."""
        cfg, it = self.cfg, self.iteration
        self._bar.update(1)
        for cb in self.callbacks:
            cb(it, logs)
        if it % cfg.log_every == 0:
            self._flush_window()
        if cfg.sample_every and it % cfg.sample_every == 0:
            self.save_samples(f"iter_{it:07d}.png")
        if cfg.keep_every and it % cfg.keep_every == 0:
            self.keep()
        received = sig.received is not None
        interrupted = gdist.any_rank(received, self.device) if self.world > 1 else received
        if interrupted:
            self.save()
            self.status = "interrupted"
            log.warning("interrupted at iteration %d; checkpoint saved to %s", it, self.ckpt_path)
            return True
        if cfg.checkpoint_every and it % cfg.checkpoint_every == 0 and it < self.stop:
            self.save()
        return False

    def _finish(self) -> None:
        """After the loop (not after a signal): final checkpoint, final grid and curves, or status 'stopped'."""
        if self.status == "interrupted":
            return
        if self.last_ckpt != self.iteration or not self.ckpt_path.exists():
            self.save()
        if self.iteration >= self.total:
            self.save_samples("final.png")
            if self.main and len(self.history["iteration"]) > 1:
                self._plot()
        else:
            self.status = "stopped"

    def run(self, resume: bool = False) -> TrainResult:
        """Train until ``total`` (or ``max_iters``) iterations or a signal; see :func:`train`."""
        self._open(resume)
        if self.cfg.keep_every:
            self._start_clock()
        self.status = "done"
        self._bar = tqdm(total=self.total, initial=self.iteration, desc=self.cfg.arch, unit="it",
                         disable=not (self.cfg.progress and self.main), dynamic_ncols=True)
        try:
            with _SignalFlag() as sig:
                while self.iteration < self.stop:
                    logs = self.one_iteration()
                    if self._after_iteration(logs, sig):
                        break
                if self.status == "done" and self.iteration >= self.total and self.window_count:
                    self._flush_window()
        finally:
            self._bar.close()
        self._finish()
        if self.owns_group:  # this trainer joined the group: it leaves it (a caller's group stays)
            gdist.leave()
        if not self.last_logs and self.window_count:
            self.last_logs = self._window_means()
        return TrainResult(status=self.status, iteration=self.iteration, total_iters=self.total,
                           iters_per_epoch=self.ipe, out_dir=self.out, checkpoint=self.ckpt_path,
                           last_logs=self.last_logs, generator=self.G, discriminator=self.D)


def train(cfg: TrainConfig, images: torch.Tensor | Dataset, out_dir: str | Path, *, resume: bool = False,
          callbacks: Sequence[Callback] = (), transform: Callable[[torch.Tensor], torch.Tensor] | None = None
          ) -> TrainResult:
    """Train ``cfg.arch`` on ``images`` (N×C×H×W uint8 or [−1, 1] float, or a map-style dataset of such items).

    ``resume`` continues from ``out_dir/checkpoint.pt`` (an existing checkpoint without ``resume``
    raises :class:`CheckpointError`). ``callbacks`` are called as ``cb(iteration, logs)`` after every
    iteration (logs: detached loss tensors). ``transform`` maps each real batch in [−1, 1] (after the
    optional flip) before use. Returns a :class:`TrainResult`. A thin wrapper of :class:`GanTrainer`.
    """
    return GanTrainer(cfg, images, out_dir, callbacks=callbacks, transform=transform).run(resume=resume)
