"""The GAN training config (:class:`GanTrainConfig`) and its presets (``replication/presets/gan/*.yaml``).

Presets: ``paper-dcgan`` / ``paper-wgan-gp`` (64×64, width 64, batch 64, the paper's 1,000 epochs)
and ``embedded-dcgan`` / ``embedded-wgan-gp`` (32×32, width 32, batch 16, a few minutes each on 2 CPU
cores: docs/gan.md). A config is a preset name or a YAML file, then ``key=value`` overrides
(:mod:`replication.config`); errors name the file and the key.

Field markers (:mod:`replication.config`): ``runtime`` fields (cadences, device, loader, kept
checkpoints) do not change the result; ``epochs`` and ``max_iters`` are ``resumable`` (a run may be
continued with more); ``data`` and ``out`` are ``location``s (the run directory compares the shard
set by its content hash).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gan_tf_port.train import COMPILE_MODES
from replication import config as C
from replication.errors import ConfigError
from replication.vocabulary import GAN_ARCHS

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets" / "gan"
KIND = "GAN config"
RESIZE_MODES = ("area", "bilinear")
ADAM_MODES = ("tf", "torch")
#: Strings of a GAN config also accept numbers (``out=2024`` is the folder ``"2024"``).
COERCION = {"numbers_to_str": True}

_RUNTIME = {C.RUNTIME: True}
_RESUMABLE = {C.RESUMABLE: True}
_LOCATION = {C.LOCATION: True}


@dataclass
class GanTrainConfig:
    """One GAN training run over a shard set (defaults: the repositories' 64×64 settings)."""

    arch: str = "dcgan"
    data: str = field(default="", metadata=_LOCATION)  # training shard set
    out: str = field(default="", metadata=_LOCATION)   # run directory
    size: int = 64
    width: int = 64                # gf_dim = df_dim
    batch: int = 64
    epochs: int | None = field(default=None, metadata=_RESUMABLE)  # None: DCGAN 25, WGAN-GP 50
    seed: int = 0
    flip: bool | None = None       # None: on for photos, off for digits-mosaic
    minmax_stretch: bool = False   # carpedm20's per-image min–max stretch
    resize: str = "area"           # area (INTER_AREA when shrinking) | bilinear
    adam: str = "tf"               # tf (TF1 Adam update) | torch
    sample_every: int = field(default=100, metadata=_RUNTIME)  # iterations between fixed-z grids
    checkpoint_every_iters: int = field(default=500, metadata=_RUNTIME)
    log_every: int = field(default=10, metadata=_RUNTIME)
    max_iters: int | None = field(default=None, metadata=_RESUMABLE)  # stop early (no done marker)
    # keep checkpoints/iter-NNNNNNN.pt every N iterations (None/0: off; `spl gan curve`); left out of
    # config.yaml when off, so runs without it keep their files
    keep_every: int | None = field(default=None, metadata=_RUNTIME)
    device: str = field(default="auto", metadata=_RUNTIME)
    compile: str = field(default="none", metadata=_RUNTIME)  # none | default | reduce-overhead | max-autotune
    num_workers: int = field(default=0, metadata=_RUNTIME)   # DataLoader workers when not preloaded
    preload: bool | None = field(default=None, metadata=_RUNTIME)  # None: when the images fit in 4 GiB
    threads: int | None = field(default=None, metadata=_RUNTIME)   # torch CPU threads (None: torch's)
    progress: bool = field(default=True, metadata=_RUNTIME)

    def validate(self) -> GanTrainConfig:
        """Check choices and ranges; :class:`ConfigError` naming the key otherwise."""
        for key, allowed in (("arch", GAN_ARCHS), ("resize", RESIZE_MODES), ("adam", ADAM_MODES),
                             ("compile", COMPILE_MODES)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{KIND} key {key!r}: {getattr(self, key)!r} is not one of {', '.join(allowed)}")
        for key in ("width", "batch", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{KIND} key {key!r}: must be >= 1, got {getattr(self, key)}")
        if self.size < 16:
            raise ConfigError(f"{KIND} key 'size': must be >= 16, got {self.size}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"{KIND} key 'threads': must be >= 1 or null, got {self.threads}")
        for key in ("sample_every", "checkpoint_every_iters", "num_workers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{KIND} key {key!r}: must be >= 0, got {getattr(self, key)}")
        if self.epochs is not None and self.epochs < 0:
            raise ConfigError(f"{KIND} key 'epochs': must be >= 0, got {self.epochs}")
        if self.keep_every is not None and self.keep_every < 0:
            raise ConfigError(f"{KIND} key 'keep_every': must be >= 0 or null, got {self.keep_every}")
        if self.max_iters is not None and self.max_iters < 1:
            raise ConfigError(f"{KIND} key 'max_iters': must be >= 1 or null, got {self.max_iters}")
        return self


def list_gan_presets() -> list[str]:
    """Names of the shipped GAN presets (``replication/presets/gan/*.yaml``)."""
    return C.list_presets(PRESET_DIR)


def gan_config_from_dict(raw: Mapping[str, Any]) -> GanTrainConfig:
    """Build a validated :class:`GanTrainConfig`; unknown keys raise :class:`ConfigError` naming the key."""
    return C.from_dict(GanTrainConfig, raw, kind=KIND, **COERCION).validate()


def load_gan_config(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> GanTrainConfig:
    """A preset name, a YAML file or a mapping (``{}``: the defaults), then ``key=value`` overrides, validated."""
    return C.load(GanTrainConfig, source, overrides, presets=PRESET_DIR, kind=KIND, check=GanTrainConfig.validate,
                  **COERCION)


__all__ = ["GanTrainConfig", "PRESET_DIR", "gan_config_from_dict", "list_gan_presets", "load_gan_config"]
