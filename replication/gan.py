"""Wiring between shard sets and :mod:`gan_tf_port`: ``spl gan train`` and ``spl gan sample`` (SPEC §4).

Preprocessing of real images for the GANs (decision, SPEC §4 — the paper used the images "without
any pre-processing" and "randomly flipped"):

* resize each stored image to the GAN size with antialiasing: ``cv2.INTER_AREA`` when shrinking
  (area averaging = antialiased; the 256×256 photo shards → 64×64), bilinear ``cv2.INTER_LINEAR``
  when enlarging, untouched when the size already matches (digits-mosaic 32×32 → 32×32);
  ``resize: bilinear`` forces plain bilinear. Aspect ratio is not kept (shards are square already);
* BGR (OpenCV) → RGB, the channel order both TF repositories read;
* scale to [−1, 1] as ``x / 127.5 − 1`` (inside the trainer);
* random horizontal flip, p = 0.5 per image per epoch, from the run's seed (``flip``; default on
  for photos, off for digits-mosaic because a mirrored digit is not a digit);
* carpedm20's per-image min–max stretch to [−1, 1] (``minmax_stretch``), off by default.

Run directory (``--out``): ``config.yaml`` (the resolved config), ``source.json`` (the training
shard set's dataset name, class names, content hash and size), everything the trainer writes
(``checkpoint.pt``, ``samples/``, ``loss_curves.png``, ``history.json``), and ``done`` written last.

Presets: ``paper-dcgan`` / ``paper-wgan-gp`` (64×64, width 64, batch 64, the paper's 1,000 epochs)
and ``embedded-dcgan`` / ``embedded-wgan-gp`` (32×32, width 32, batch 16, a few minutes each on 2 CPU
cores: docs/gan.md).
"""
from __future__ import annotations

import json
import logging
import types
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import torch
import yaml
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from replication.data.shards import SOURCE_GENERATED, ShardSet, ShardWriter, is_shard_set, load_manifest
from replication.errors import ConfigError, ReplicationError, ShardError
from replication.io_utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

DIGIT_DATASETS = ("digits-mosaic",)  # flip defaults to off for these
RESIZE_MODES = ("area", "bilinear")
PRELOAD_LIMIT_BYTES = 4 << 30
DONE = "done"
REAL_GRID = "real.png"  # samples/real.png: the training images the GAN imitates

GAN_PRESETS: dict[str, dict[str, Any]] = {
    "paper-dcgan": {"arch": "dcgan", "size": 64, "width": 64, "batch": 64, "epochs": 1000},
    "paper-wgan-gp": {"arch": "wgan-gp", "size": 64, "width": 64, "batch": 64, "epochs": 1000},
    # Embedded dataset (SPEC §2): 32×32, width 32, batch 16 (on a CPU a batch-16 step costs about a
    # third of a batch-64 one, so ≈ 3× the updates in the same time: docs/gan.md); epochs sized to a
    # few minutes per GAN on 2 CPU cores: DCGAN 3 × 312 = 936 iterations, WGAN-GP 6 × 62 = 372
    # iterations (5 critic steps each).
    "embedded-dcgan": {"arch": "dcgan", "size": 32, "width": 32, "batch": 16, "epochs": 3},
    "embedded-wgan-gp": {"arch": "wgan-gp", "size": 32, "width": 32, "batch": 16, "epochs": 6},
}


class GanTrainingError(ReplicationError):
    """GAN training stopped (non-finite loss, interrupted, unusable checkpoint)."""


@dataclass
class GanTrainConfig:
    """One GAN training run over a shard set (defaults: the repositories' 64×64 settings)."""

    arch: str = "dcgan"
    data: str = ""                 # training shard set
    out: str = ""                  # run directory
    size: int = 64
    width: int = 64                # gf_dim = df_dim
    batch: int = 64
    epochs: int | None = None      # None: the repository's default (DCGAN 25, WGAN-GP 50)
    seed: int = 0
    flip: bool | None = None       # None: on for photos, off for digits-mosaic
    minmax_stretch: bool = False   # carpedm20's per-image min–max stretch
    resize: str = "area"           # area (INTER_AREA when shrinking) | bilinear
    adam: str = "tf"               # tf (TF1 Adam update) | torch
    sample_every: int = 100        # iterations between fixed-z grids
    checkpoint_every_iters: int = 500
    log_every: int = 10
    max_iters: int | None = None   # stop early (checkpoint kept, no done marker)
    device: str = "auto"
    compile: str = "none"          # none | default | reduce-overhead | max-autotune
    num_workers: int = 0           # DataLoader workers when images are not preloaded
    preload: bool | None = None    # None: preload when the resized uint8 images fit in 4 GiB
    threads: int | None = None     # torch CPU threads (None: torch's default)
    progress: bool = True

    def validate(self) -> "GanTrainConfig":
        """Check choices and ranges; :class:`ConfigError` naming the key otherwise."""
        from gan_tf_port import ARCHS
        from gan_tf_port.train import COMPILE_MODES

        for key, allowed in (("arch", ARCHS), ("resize", RESIZE_MODES), ("adam", ("tf", "torch")),
                             ("compile", COMPILE_MODES)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"gan config key {key!r}: {getattr(self, key)!r} is not one of {', '.join(allowed)}")
        for key in ("width", "batch", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"gan config key {key!r}: must be >= 1, got {getattr(self, key)}")
        if self.size < 16:
            raise ConfigError(f"gan config key 'size': must be >= 16, got {self.size}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"gan config key 'threads': must be >= 1 or null, got {self.threads}")
        for key in ("sample_every", "checkpoint_every_iters", "num_workers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"gan config key {key!r}: must be >= 0, got {getattr(self, key)}")
        if self.epochs is not None and self.epochs < 0:
            raise ConfigError(f"gan config key 'epochs': must be >= 0, got {self.epochs}")
        if self.max_iters is not None and self.max_iters < 1:
            raise ConfigError(f"gan config key 'max_iters': must be >= 1 or null, got {self.max_iters}")
        return self


# Keys that may differ between a finished/partial run and a new request for the same run dir.
RUNTIME_KEYS = frozenset({"out", "epochs", "max_iters", "sample_every", "checkpoint_every_iters", "log_every",
                          "device", "compile", "num_workers", "preload", "threads", "progress"})


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the dataclass annotation ``tp`` (bool/int/float/str, optionally None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"gan config key {key!r}: bad value {value!r} (expected {getattr(tp, '__name__', tp)})")


def gan_config_from_dict(raw: Mapping[str, Any]) -> GanTrainConfig:
    """Build a validated :class:`GanTrainConfig`; unknown keys raise :class:`ConfigError` naming the key."""
    hints = typing.get_type_hints(GanTrainConfig)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ConfigError(f"unknown gan config key {unknown[0]!r} (known: {', '.join(sorted(hints))})")
    return GanTrainConfig(**{k: _coerce(k, v, hints[k]) for k, v in raw.items()}).validate()


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["epochs=3", "flip=true"]`` → ``{"epochs": 3, "flip": True}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def load_gan_config(source: str | Path, overrides: Sequence[str] = ()) -> GanTrainConfig:
    """A preset name (:data:`GAN_PRESETS`) or a YAML file, then ``key=value`` overrides, validated."""
    s = str(source)
    if s in GAN_PRESETS:
        raw = dict(GAN_PRESETS[s])
    else:
        path = Path(s)
        if not path.is_file():
            raise ConfigError(f"{s}: no such GAN config file or preset (presets: {', '.join(GAN_PRESETS)})")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: malformed YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a GAN config must be a YAML mapping")
    raw.update(parse_overrides(overrides))
    return gan_config_from_dict(raw)


# ------------------------------------------------------------------------------------------ images
def preprocess_gan_image(image_bgr: np.ndarray, size: int, resize: str = "area") -> np.ndarray:
    """BGR uint8 H×W×3 → RGB uint8 3×size×size (antialiased resize, see the module docstring)."""
    h, w = image_bgr.shape[:2]
    if (h, w) != (size, size):
        shrink = h > size or w > size
        interp = cv2.INTER_AREA if (resize == "area" and shrink) else cv2.INTER_LINEAR
        image_bgr = cv2.resize(image_bgr, (size, size), interpolation=interp)
    return np.ascontiguousarray(image_bgr[:, :, ::-1].transpose(2, 0, 1))


def minmax_stretch(x: torch.Tensor) -> torch.Tensor:
    """carpedm20's per-image min–max stretch: each image's values mapped linearly onto [−1, 1]."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    return (x - lo) / (hi - lo).clamp_min(1e-8) * 2.0 - 1.0


class ShardGanImages(Dataset):
    """Map-style dataset over a shard set: item i = preprocessed RGB uint8 tensor 3×size×size."""

    def __init__(self, path: str | Path, size: int, resize: str = "area") -> None:
        self.shards = ShardSet(path)
        self.size, self.resize = size, resize

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(preprocess_gan_image(self.shards[i].image, self.size, self.resize))


def load_gan_images(path: str | Path, size: int, resize: str = "area", progress: bool = False) -> torch.Tensor:
    """All images of a shard set, preprocessed, as one uint8 tensor N×3×size×size (RGB)."""
    ds = ShardGanImages(path, size, resize)
    out = torch.empty((len(ds), 3, size, size), dtype=torch.uint8)
    for i in tqdm(range(len(ds)), desc="load GAN images", unit="img", disable=not progress):
        out[i] = ds[i]
    return out


def save_real_grid(images: torch.Tensor | Dataset, path: Path, n: int) -> Path:
    """Save the first ``n`` training images, resized as the GAN sees them (no flip, no min–max stretch), as a grid PNG.

    Written once per run as ``samples/real.png`` beside the fixed-z grids, so generated and real
    images can be compared at the same size and layout.
    """
    from gan_tf_port.grid import save_grid

    if not path.exists():
        first = [images[i] for i in range(min(n, len(images)))]
        save_grid(torch.stack(first).permute(0, 2, 3, 1).numpy(), path)
    return path


# ------------------------------------------------------------------------------------------ train
def _core(cfg_dict: Mapping[str, Any]) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in RUNTIME_KEYS}


def train_gan(cfg: GanTrainConfig, *, resume: bool = False) -> Path:
    """Train ``cfg.arch`` on the shard set ``cfg.data`` into the run directory ``cfg.out``; returns it.

    A run whose ``done`` marker exists is not trained again (same settings) unless ``resume`` is set
    (which continues it, e.g. with more epochs). A partial run needs ``resume``. Raises
    :class:`GanTrainingError` on a non-finite loss or a signal (the checkpoint is kept).
    """
    from gan_tf_port.dist import env_world
    from gan_tf_port.train import FIXED_SAMPLES, CheckpointError, GanTrainError, TrainConfig, train

    cfg.validate()
    if not cfg.data or not cfg.out:
        raise ConfigError("gan config: both 'data' (a shard set) and 'out' (a run directory) are required")
    out = Path(cfg.out)
    data = Path(cfg.data)
    manifest = load_manifest(data)
    flip = cfg.flip if cfg.flip is not None else manifest.get("dataset") not in DIGIT_DATASETS
    resolved = {**asdict(cfg), "flip": flip}
    shards = ShardSet(data)
    source = {"path": str(data.resolve()), "dataset": shards.dataset, "split": manifest.get("split"),
              "class_names": shards.class_names, "content_hash": shards.content_hash, "num_records": len(shards)}
    cfg_path = out / "config.yaml"
    if cfg_path.exists():
        old = yaml.safe_load(cfg_path.read_text()) or {}
        old_source = json.loads((out / "source.json").read_text()) if (out / "source.json").exists() else {}
        if _core({**old, "data": None}) != _core({**resolved, "data": None}) or \
                old_source.get("content_hash") != source["content_hash"]:
            changed = sorted(k for k in _core(resolved) if k != "data" and old.get(k) != resolved.get(k))
            if old_source.get("content_hash") != source["content_hash"]:
                changed.append("data (other shards)")
            raise ConfigError(f"{out}: the run directory holds a GAN run with other settings ({', '.join(changed)})")
        if (out / DONE).exists() and not resume:
            if old.get("epochs") != resolved["epochs"]:
                raise ConfigError(f"{out}: finished with epochs={old.get('epochs')}; pass --resume to continue it "
                                  f"to epochs={resolved['epochs']}")
            log.info("%s: already done", out)
            return out
    elif (out / "checkpoint.pt").exists() and not resume:
        raise GanTrainingError(f"{out}: holds a checkpoint but no config.yaml; use another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg_path, yaml.safe_dump(resolved, sort_keys=False))
    atomic_write_json(out / "source.json", source)
    if (out / DONE).exists():
        (out / DONE).unlink()

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    nbytes = len(shards) * 3 * cfg.size * cfg.size
    preload = cfg.preload if cfg.preload is not None else nbytes <= PRELOAD_LIMIT_BYTES
    images: torch.Tensor | Dataset = (load_gan_images(data, cfg.size, cfg.resize, progress=cfg.progress)
                                      if preload else ShardGanImages(data, cfg.size, cfg.resize))
    if env_world()[0] == 0:
        save_real_grid(images, out / "samples" / REAL_GRID, FIXED_SAMPLES[cfg.arch])
    tcfg = TrainConfig(arch=cfg.arch, size=cfg.size, width=cfg.width, batch_size=cfg.batch, epochs=cfg.epochs,
                       adam=cfg.adam, seed=cfg.seed, flip=flip, sample_every=cfg.sample_every,
                       checkpoint_every=cfg.checkpoint_every_iters, log_every=cfg.log_every,
                       max_iters=cfg.max_iters, device=cfg.device, compile=cfg.compile,
                       num_workers=cfg.num_workers, progress=cfg.progress)
    try:
        result = train(tcfg, images, out, resume=resume, transform=minmax_stretch if cfg.minmax_stretch else None)
    except CheckpointError as e:
        raise GanTrainingError(f"{out}: {e} (pass --resume to continue it)") from None
    except GanTrainError as e:
        raise GanTrainingError(f"{out}: {e}") from None
    except ValueError as e:  # e.g. fewer images than one batch
        raise ConfigError(f"{data}: {e}") from None
    if result.status == "interrupted":
        raise GanTrainingError(f"{out}: interrupted at iteration {result.iteration}/{result.total_iters}; "
                               "checkpoint saved, continue with --resume")
    if result.status == "done":
        atomic_write_text(out / DONE, f"iteration {result.iteration}\n")
    return out


# ----------------------------------------------------------------------------------------- sample
def sample_gan(run: str | Path, n: int, out: str | Path, *, seed: int = 0, batch: int = 256) -> Path:
    """Generate ``n`` images with the GAN of run directory ``run`` into a shard set at ``out``; returns ``out``.

    The shard set is PNG-encoded, unlabeled (``label_kind='none'``, NaN labels), every record has
    ``source = SOURCE_GENERATED`` and the class names of the GAN's training shards; a grid of the
    first 64 (DCGAN) / 100 (WGAN-GP) samples is written beside it as ``<out>-grid.png``. The same
    (run, n, seed, batch) gives identical shards; an existing identical set is returned as is.
    """
    from gan_tf_port.grid import save_grid
    from gan_tf_port.sample import iter_samples, load_checkpoint, load_generator
    from gan_tf_port.train import CHECKPOINT, FIXED_SAMPLES, resolve_device

    run, out = Path(run), Path(out)
    if n < 1 or batch < 1:
        raise ConfigError(f"gan sample: need n >= 1 and batch >= 1, got n={n}, batch={batch}")
    ckpt_path = run / CHECKPOINT
    if not ckpt_path.is_file() or not (run / "source.json").is_file():
        raise ShardError(f"{run}: not a GAN run directory (no {CHECKPOINT} or source.json)")
    if not (run / DONE).exists():
        log.warning("%s: training is not finished; sampling from its last checkpoint", run)
    source = json.loads((run / "source.json").read_text())
    ckpt = load_checkpoint(ckpt_path)
    arch, iteration = ckpt["model"]["arch"], int(ckpt["iteration"])
    extra = {"generator": arch, "gan_run": str(run.resolve()), "gan_iteration": iteration, "seed": seed,
             "batch": batch, "n": n}
    if is_shard_set(out):
        existing = load_manifest(out).get("extra", {})
        if all(existing.get(k) == v for k, v in extra.items()):
            log.info("%s: identical samples already exist", out)
            return out
    device = resolve_device("auto")
    g = load_generator(ckpt_path, device=device)
    del ckpt
    grid_n = FIXED_SAMPLES[arch]
    grid_parts: list[np.ndarray] = []
    with ShardWriter(out, dataset=source.get("dataset", ""), split=f"generated-{arch}",
                     class_names=source["class_names"], encoding="png", label_kind="none", extra=extra) as w:
        i = 0
        for imgs in tqdm(iter_samples(g, n, seed=seed, batch=batch, device=device), desc=f"sample {arch}",
                         unit="batch", total=-(-n // batch), disable=n <= batch):
            if sum(len(p) for p in grid_parts) < grid_n:
                grid_parts.append(imgs[:grid_n])
            for img in imgs:
                w.add(np.ascontiguousarray(img[:, :, ::-1]), label=None, key=f"{arch}-s{seed}-{i:07d}",
                      source=SOURCE_GENERATED)
                i += 1
    grid = np.concatenate(grid_parts)[:grid_n]
    save_grid(grid, out.parent / f"{out.name}-grid.png")
    return out


__all__ = ["GAN_PRESETS", "GanTrainConfig", "GanTrainingError", "gan_config_from_dict", "load_gan_config",
           "load_gan_images", "minmax_stretch", "parse_overrides", "preprocess_gan_image", "sample_gan",
           "train_gan", "ShardGanImages"]
