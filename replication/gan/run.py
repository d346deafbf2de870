"""``spl gan train`` and ``spl gan sample``: run :mod:`gan_tf_port` on shard sets (the paper, Section 4.1).

Run directory (``--out``): ``config.yaml`` (the resolved config), ``source.json`` (the training
shard set's dataset name, class names, content hash and size), everything the trainer writes
(``checkpoint.pt``, ``samples/`` with ``samples/real.png``, ``loss_curves.png``, ``history.json``,
with ``keep_every`` also ``checkpoints/`` with the kept checkpoints and their ``index.json``),
and ``done`` written last. A request for an existing run directory must match its config except
the ``runtime``, ``resumable`` and ``location`` fields (:mod:`replication.gan.config`), and its
shard set's content hash.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from gan_tf_port.dist import env_world
from gan_tf_port.grid import save_grid
from gan_tf_port.sample import UnsafeCheckpointError, iter_samples, load_checkpoint, load_generator
from gan_tf_port.train import (
    CHECKPOINT,
    FIXED_SAMPLES,
    CheckpointError,
    GanTrainError,
    TrainConfig,
    resolve_device,
    train,
)
from replication import config as C
from replication.console.progress import bars_allowed, progress_on
from replication.data.shards import SOURCE_GENERATED, ShardSet, ShardWriter, is_shard_set, load_manifest
from replication.errors import ConfigError, ReplicationError, ShardError
from replication.gan.config import GanTrainConfig
from replication.gan.images import ShardGanImages, load_gan_images, minmax_stretch, save_real_grid
from replication.gan.torch_dcgan import SIZE as PEER_SIZE
from replication.gan.torch_dcgan import peer_generator_from_checkpoint, train_peer_run
from replication.io_utils import atomic_write_json, atomic_write_text, check_output_path
from replication.locking import output_lock
from replication.vocabulary import DIGIT_DATASETS, PEER_DCGAN

log = logging.getLogger(__name__)

PRELOAD_LIMIT_BYTES = 4 << 30
DONE = "done"
REAL_GRID = "real.png"  # samples/real.png: the training images the GAN imitates
#: Keys that may differ between a finished/partial run and a new request for the same run directory
#: (the shard set is compared by its content hash instead of its path).
_NOT_COMPARED = C.resumable_keys(GanTrainConfig) | C.marked_keys(GanTrainConfig, C.LOCATION)


class GanTrainingError(ReplicationError):
    """GAN training stopped (non-finite loss, interrupted, unusable checkpoint)."""


# ------------------------------------------------------------------------------------------ train
def _core(cfg_dict: Mapping[str, Any]) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in _NOT_COMPARED}


def _resolve(cfg: GanTrainConfig) -> tuple[dict, dict, ShardSet]:
    """The resolved config (``flip`` decided), the ``source.json`` record and the training shards."""
    if not cfg.data or not cfg.out:
        raise ConfigError("gan config: both 'data' (a shard set) and 'out' (a run directory) are required")
    data = Path(cfg.data)
    manifest = load_manifest(data)
    flip = cfg.flip if cfg.flip is not None else manifest.get("dataset") not in DIGIT_DATASETS
    resolved = {**asdict(cfg), "flip": flip}
    if not cfg.keep_every:  # off: config.yaml stays as it was before keep_every existed
        del resolved["keep_every"]
    shards = ShardSet(data)
    source = {"path": str(data.resolve()), "dataset": shards.dataset, "split": manifest.get("split"),
              "class_names": shards.class_names, "content_hash": shards.content_hash, "num_records": len(shards)}
    return resolved, source, shards


def _check_run_dir(out: Path, resolved: dict, source: dict, resume: bool) -> bool:
    """Whether ``out`` already holds this finished run; :class:`ConfigError` when it holds another one."""
    cfg_path = out / "config.yaml"
    if not cfg_path.exists():
        if (out / CHECKPOINT).exists() and not resume:
            raise GanTrainingError(f"{out}: holds a checkpoint but no config.yaml; use another --out")
        return False
    old = yaml.safe_load(cfg_path.read_text()) or {}
    old_source = json.loads((out / "source.json").read_text()) if (out / "source.json").exists() else {}
    same_data = old_source.get("content_hash") == source["content_hash"]
    if _core(old) != _core(resolved) or not same_data:
        changed = sorted(k for k in _core(resolved) if old.get(k) != resolved.get(k))
        if not same_data:
            changed.append("data (other shards)")
        raise ConfigError(f"{out}: the run directory holds a GAN run with other settings ({', '.join(changed)})")
    if (out / DONE).exists() and not resume:
        if old.get("epochs") != resolved["epochs"]:
            raise ConfigError(f"{out}: finished with epochs={old.get('epochs')}; pass --resume to continue it "
                              f"to epochs={resolved['epochs']}")
        return True
    return False


def _write_run_dir(out: Path, resolved: dict, source: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # source.json first: config.yaml marks the run directory as holding a run, so a failure (disk full, a kill)
    # between the two must leave no config.yaml without its source.json
    atomic_write_json(out / "source.json", source)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    if (out / DONE).exists():
        (out / DONE).unlink()


def _images(cfg: GanTrainConfig, n: int) -> torch.Tensor | Dataset:
    """The training images: preloaded when they fit in :data:`PRELOAD_LIMIT_BYTES` (or ``cfg.preload``)."""
    nbytes = n * 3 * cfg.size * cfg.size
    preload = cfg.preload if cfg.preload is not None else nbytes <= PRELOAD_LIMIT_BYTES
    if preload:
        return load_gan_images(cfg.data, cfg.size, cfg.resize, progress=cfg.progress)
    return ShardGanImages(cfg.data, cfg.size, cfg.resize)


def _port_config(cfg: GanTrainConfig, flip: bool) -> TrainConfig:
    """The :mod:`gan_tf_port` trainer's config of ``cfg``."""
    return TrainConfig(arch=cfg.arch, size=cfg.size, width=cfg.width, batch_size=cfg.batch, epochs=cfg.epochs,
                       adam=cfg.adam, seed=cfg.seed, flip=flip, sample_every=cfg.sample_every,
                       checkpoint_every=cfg.checkpoint_every_iters, log_every=cfg.log_every,
                       max_iters=cfg.max_iters, device=cfg.device, compile=cfg.compile,
                       num_workers=cfg.num_workers, progress=progress_on(cfg.progress), keep_every=cfg.keep_every or 0)


def _run_trainer(cfg: GanTrainConfig, flip: bool, images: torch.Tensor | Dataset, out: Path, resume: bool) -> None:
    """Call the trainer; its errors become :class:`GanTrainingError` / :class:`ConfigError`; ``done`` when finished."""
    try:
        result = train(_port_config(cfg, flip), images, out, resume=resume,
                       transform=minmax_stretch if cfg.minmax_stretch else None)
    except CheckpointError as e:
        raise GanTrainingError(f"{out}: {e} (pass --resume to continue it)") from None
    except GanTrainError as e:
        raise GanTrainingError(f"{out}: {e}") from None
    except ValueError as e:  # e.g. fewer images than one batch
        raise ConfigError(f"{Path(cfg.data)}: {e}") from None
    if result.status == "interrupted":
        raise GanTrainingError(f"{out}: interrupted at iteration {result.iteration}/{result.total_iters}; "
                               "checkpoint saved, continue with --resume")
    if result.status == "done":
        atomic_write_text(out / DONE, f"iteration {result.iteration}\n")


def train_gan(cfg: GanTrainConfig, *, resume: bool = False) -> Path:
    """Train ``cfg.arch`` on the shard set ``cfg.data`` into the run directory ``cfg.out``; returns it.

    A run whose ``done`` marker exists is not trained again (same settings) unless ``resume`` is set
    (which continues it, e.g. with more epochs). A partial run needs ``resume``. Raises
    :class:`GanTrainingError` on a non-finite loss or a signal (the checkpoint is kept).
    """
    cfg.validate()
    resolved, source, shards = _resolve(cfg)
    out = check_output_path(cfg.out, ("the training shard set", cfg.data))
    # one writer per run directory: rank 0 holds the lock (the other ranks of a torchrun job share it)
    with output_lock(out) if env_world()[0] == 0 else nullcontext():
        return _train_locked(cfg, resolved, source, shards, out, resume)


def _train_locked(cfg: GanTrainConfig, resolved: dict, source: dict, shards: ShardSet, out: Path,
                  resume: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; give a run directory")
    if _check_run_dir(out, resolved, source, resume):
        log.info("%s: already done", out)
        return out
    if cfg.arch == PEER_DCGAN and resume and (out / DONE).exists():  # before anything is rewritten
        raise ConfigError(f"{out}: finished {PEER_DCGAN} runs cannot be continued with more epochs; "
                          "train again into an empty --out")
    _write_run_dir(out, resolved, source)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    images = _images(cfg, len(shards))
    if env_world()[0] == 0:
        save_real_grid(images, out / "samples" / REAL_GRID, FIXED_SAMPLES.get(cfg.arch, 64))
    if cfg.arch == PEER_DCGAN:
        _run_peer(cfg, resolved["flip"], images, out, resume)
    else:
        _run_trainer(cfg, resolved["flip"], images, out, resume)
    return out


def _run_peer(cfg: GanTrainConfig, flip: bool, images: torch.Tensor | Dataset, out: Path, resume: bool) -> None:
    """Train the peer PyTorch DCGAN, from its partial checkpoint with ``resume`` (a checkpoint every
    ``checkpoint_every_iters`` iterations); ``done`` when finished."""
    if cfg.size != PEER_SIZE:
        raise ConfigError(f"{PEER_DCGAN}: size must be {PEER_SIZE}, got {cfg.size}")
    if not isinstance(images, torch.Tensor):
        images = torch.stack([images[i] for i in range(len(images))])
    epochs = cfg.epochs if cfg.epochs is not None else 25
    if len(images) < cfg.batch:
        raise ConfigError(f"{Path(cfg.data)}: {len(images)} images, fewer than one batch of {cfg.batch}")
    try:
        iters = train_peer_run(images, out, width=cfg.width, batch=cfg.batch, epochs=epochs, seed=cfg.seed, flip=flip,
                               checkpoint_every=cfg.checkpoint_every_iters, resume=resume)
    except UnsafeCheckpointError as e:
        raise GanTrainingError(str(e)) from None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    atomic_write_text(out / DONE, f"iteration {iters}\n")


# ----------------------------------------------------------------------------------------- sample
def _write_samples(g: torch.nn.Module, arch: str, n: int, out: Path, source: dict, extra: dict, *, seed: int,
                   batch: int, device: torch.device) -> np.ndarray:
    """Write ``n`` samples of ``g`` into the shard set ``out``; returns the first ones for the grid."""
    grid_n = FIXED_SAMPLES.get(arch, 64)
    grid_parts: list[np.ndarray] = []
    with ShardWriter(out, dataset=source.get("dataset", ""), split=f"generated-{arch}",
                     class_names=source["class_names"], encoding="png", label_kind="none", extra=extra) as w:
        i = 0
        for imgs in tqdm(iter_samples(g, n, seed=seed, batch=batch, device=device), desc=f"sample {arch}",
                         unit="batch", total=-(-n // batch), disable=n <= batch or not bars_allowed()):
            if sum(len(p) for p in grid_parts) < grid_n:
                grid_parts.append(imgs[:grid_n])
            for img in imgs:
                w.add(np.ascontiguousarray(img[:, :, ::-1]), label=None, key=f"{arch}-s{seed}-{i:07d}",
                      source=SOURCE_GENERATED)
                i += 1
    return np.concatenate(grid_parts)[:grid_n]


def sample_gan(run: str | Path, n: int, out: str | Path, *, seed: int = 0, batch: int = 256,
               checkpoint: str | Path | None = None) -> Path:
    """Generate ``n`` images with the GAN of run directory ``run`` into a shard set at ``out``; returns ``out``.

    The shard set is PNG-encoded, unlabeled (``label_kind='none'``, NaN labels), every record has
    ``source = SOURCE_GENERATED`` and the class names of the GAN's training shards; a grid of the
    first 64 (DCGAN) / 100 (WGAN-GP) samples is written beside it as ``<out>-grid.png``. The same
    (run, checkpoint, n, seed, batch) gives identical shards; an existing identical set is returned as is.
    ``checkpoint`` picks another checkpoint file of the run (default: its latest ``checkpoint.pt``).
    """
    run = Path(run)
    out = check_output_path(out, ("the GAN run directory", run), may_lie_inside=True)
    if n < 1 or batch < 1:
        raise ConfigError(f"gan sample: need n >= 1 and batch >= 1, got n={n}, batch={batch}")
    with output_lock(out):
        return _sample_locked(run, n, out, seed=seed, batch=batch, checkpoint=checkpoint)


def _from_checkpoint(load: Callable[..., Any], ckpt_path: Path, **kw: Any) -> Any:
    """``load(ckpt_path, **kw)`` (tensors and plain values only); :class:`ShardError` naming the file."""
    try:
        return load(ckpt_path, **kw)
    except UnsafeCheckpointError as e:
        raise ShardError(str(e)) from None
    except Exception as e:  # truncated file, foreign weights
        msg = " ".join(str(e).split())[:200]
        raise ShardError(f"{ckpt_path}: unusable GAN checkpoint ({type(e).__name__}: {msg})") from None


def load_run_generator(ckpt_path: Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The generator saved in ``ckpt_path``, in eval mode on ``device``; :class:`ShardError` naming the file."""
    ckpt = _from_checkpoint(load_checkpoint, ckpt_path)  # CRC-checked, weights only
    if ckpt["model"].get("arch") == PEER_DCGAN:
        return _from_checkpoint(lambda p, **kw: peer_generator_from_checkpoint(ckpt, p, **kw), ckpt_path,
                                device=device)
    return _from_checkpoint(load_generator, ckpt_path, device=device)


def open_run_checkpoint(run: str | Path, checkpoint: str | Path | None = None) -> tuple[dict, Path, dict]:
    """The GAN run's ``source.json`` record, the checkpoint file to use and its contents.

    ``checkpoint`` defaults to the run's latest ``checkpoint.pt`` (a warning when training has not
    finished); another file must hold a generator of this run's architecture, size and width (its
    ``config.yaml``). Raises :class:`ShardError` / :class:`ConfigError` naming the file.
    """
    run = Path(run)
    ckpt_path = Path(checkpoint) if checkpoint is not None else run / CHECKPOINT
    if not (run / "source.json").is_file() or checkpoint is None and not ckpt_path.is_file():
        raise ShardError(f"{run}: not a GAN run directory (no {CHECKPOINT} or source.json)")
    if not ckpt_path.is_file():
        raise ShardError(f"{ckpt_path}: no such checkpoint file")
    if checkpoint is None and not (run / DONE).exists():
        log.warning("%s: training is not finished; sampling from its last checkpoint", run)
    try:
        source = json.loads((run / "source.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardError(f"{run / 'source.json'}: malformed ({e})") from None
    ckpt = _from_checkpoint(load_checkpoint, ckpt_path)
    cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else None
    if isinstance(cfg, dict):
        differ = [k for k in ("arch", "size", "width") if k in cfg and ckpt["model"].get(k) != cfg[k]]
        if differ:
            raise ConfigError(f"{ckpt_path}: not a checkpoint of the GAN run {run} ({', '.join(differ)} differ)")
    return source, ckpt_path, ckpt


def _sample_locked(run: Path, n: int, out: Path, *, seed: int, batch: int, checkpoint: str | Path | None) -> Path:
    source, ckpt_path, ckpt = open_run_checkpoint(run, checkpoint)
    arch, iteration = ckpt["model"]["arch"], int(ckpt["iteration"])
    extra = {"generator": arch, "gan_run": str(run.resolve()), "gan_iteration": iteration, "seed": seed,
             "batch": batch, "n": n}
    if checkpoint is not None:  # recorded only when asked for: default manifests stay as they were
        extra["checkpoint"] = str(ckpt_path.resolve())
    if is_shard_set(out):
        existing = load_manifest(out).get("extra", {})
        same_file = existing.get("checkpoint") == extra.get("checkpoint")
        if same_file and all(existing.get(k) == v for k, v in extra.items()):
            log.info("%s: identical samples already exist", out)
            return out
    device = resolve_device("auto")
    g = load_run_generator(ckpt_path, device)
    del ckpt
    grid = _write_samples(g, arch, n, out, source, extra, seed=seed, batch=batch, device=device)
    save_grid(grid, out.parent / f"{out.name}-grid.png")
    return out


__all__ = ["DONE", "GanTrainingError", "load_run_generator", "open_run_checkpoint", "sample_gan", "train_gan"]
