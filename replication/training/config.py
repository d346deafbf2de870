"""The training config (a dataclass loaded from YAML), presets, ``key=value`` overrides and checks.

Layout (SPEC §7 recipe as defaults; ``replication/presets/*.yaml`` hold the named presets)::

    model: preact_resnet101          # registry name or timm/<name>
    pretrained: null                 # state dict in our layout (strict key check, new FC excluded)
    data:
      train: PATH                    # real training shards (required)
      test: PATH                     # test shards (required)
      generated: null                # generated shards (optional) ...
      label_file: null               # ... with their label file
      generated_weight: 1.0          # λ, the per-sample loss weight of generated images
      crop: 224, load_size: 256, flip: true, test_mode: resize, num_workers: 4
    loss: sigmoid_bce                # | softmax_ce           (SPEC §6)
    normalize: batch                 # | elements
    wider_unspecified: negative      # | ignore
    epochs: 20, batch_size: 24, lr: 0.001, lr_fc_mult: 10, momentum: 0.9, weight_decay: 0.0001
    milestones: [12, 17], gamma: 0.1
    seed: 0, device: auto, amp: null (= on for CUDA), channels_last: null (= on for CUDA)
    checkpoint_every_iters: 0, max_iters: null, eval_every_epochs: 1, eval_batch_size: 256
    convention: srn, top3: both, log_every: 10, progress: true, num_threads: null (torch's default)
    kernel_backend: auto, compile: false, sync_bn: false

Overrides are ``key=value`` strings with dotted keys for the ``data`` section
(``epochs=3``, ``data.train=/path``); values are parsed as YAML scalars/lists.
Unknown keys and bad values raise :class:`ConfigError` naming the key.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import yaml

from replication.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"

CHOICES: dict[str, tuple[str, ...]] = {
    "loss": ("sigmoid_bce", "softmax_ce"),
    "normalize": ("batch", "elements"),
    "wider_unspecified": ("negative", "ignore"),
    "data.test_mode": ("resize", "center-crop"),
    "convention": ("srn", "mlgcn", "asl"),
    "top3": ("pure", "thresholded", "both", "none"),
    "kernel_backend": ("auto", "torch", "numba", "numba-cuda", "cupy"),
}

#: Fields that may change between a run and its ``--resume`` (they do not alter the result).
RESUMABLE_CHANGES = frozenset(
    {"max_iters", "device", "checkpoint_every_iters", "eval_batch_size", "data.num_workers", "progress", "log_every",
     "num_threads"}
)


@dataclass
class DataConfig:
    """Where the images come from and how they are transformed (SPEC §3)."""

    train: str | None = None
    test: str | None = None
    generated: str | None = None
    label_file: str | None = None
    generated_weight: float = 1.0
    crop: int = 224
    load_size: int = 256
    flip: bool = True
    test_mode: str = "resize"
    num_workers: int = 4


@dataclass
class TrainConfig:
    """Everything that defines a classifier training run (SPEC §6–§7); see the module docstring."""

    model: str = "preact_resnet101"
    pretrained: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    loss: str = "sigmoid_bce"
    normalize: str = "batch"
    wider_unspecified: str = "negative"
    kernel_backend: str = "auto"
    epochs: int = 20
    batch_size: int = 24
    lr: float = 1e-3
    lr_fc_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [12, 17])
    gamma: float = 0.1
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    sync_bn: bool = False
    checkpoint_every_iters: int = 0
    max_iters: int | None = None
    eval_every_epochs: int = 1
    eval_batch_size: int = 256
    convention: str = "srn"
    top3: str = "both"
    log_every: int = 10
    progress: bool = True
    num_threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (what ``config.yaml`` holds)."""
        return asdict(self)


# -- building from dicts --------------------------------------------------------------------------
def _check_value(key: str, value: Any, tp: Any) -> Any:
    """Coerce/validate ``value`` against the annotation ``tp``; ConfigError naming ``key`` otherwise."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(key, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key {key!r}: bad value {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        return [_check_value(key, v, item) for v in value]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # pragma: no cover - programming error


def _build(cls: type, raw: Mapping[str, Any], prefix: str = "") -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'!r}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in names]
    if unknown:
        raise ConfigError(f"unknown config key {prefix + str(unknown[0])!r} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for k, v in raw.items():
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            kwargs[k] = _build(tp, v or {}, prefix + k + ".")
        else:
            kwargs[k] = _check_value(prefix + k, v, tp)
    return cls(**kwargs)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check choices and ranges; returns ``cfg`` or raises :class:`ConfigError` naming the key."""
    flat = {**{k: v for k, v in asdict(cfg).items() if k != "data"}, **{f"data.{k}": v for k, v in asdict(cfg.data).items()}}
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"config key {key!r}: {flat[key]!r} is not one of {', '.join(allowed)}")
    positive = ["epochs", "batch_size", "eval_batch_size", "data.crop", "data.load_size", "eval_every_epochs", "log_every"]
    for key in positive:
        if flat[key] < 1 and not (key == "eval_every_epochs" and flat[key] == 0):
            raise ConfigError(f"config key {key!r}: must be >= 1, got {flat[key]}")
    for key in ("lr", "weight_decay", "momentum", "gamma", "lr_fc_mult", "data.generated_weight", "checkpoint_every_iters", "data.num_workers"):
        if flat[key] < 0:
            raise ConfigError(f"config key {key!r}: must be >= 0, got {flat[key]}")
    if cfg.num_threads is not None and cfg.num_threads < 1:
        raise ConfigError(f"config key 'num_threads': must be >= 1 or null, got {cfg.num_threads}")
    if cfg.max_iters is not None and cfg.max_iters < 1:
        raise ConfigError(f"config key 'max_iters': must be >= 1 or null, got {cfg.max_iters}")
    if cfg.data.crop > cfg.data.load_size:
        raise ConfigError(f"config key 'data.crop': {cfg.data.crop} is larger than data.load_size {cfg.data.load_size}")
    if sorted(cfg.milestones) != list(cfg.milestones):
        raise ConfigError(f"config key 'milestones': must be increasing, got {cfg.milestones}")
    if (cfg.data.generated is None) != (cfg.data.label_file is None):
        raise ConfigError("config keys 'data.generated' and 'data.label_file' must be given together")
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise ConfigError(f"config key 'device': {cfg.device!r} is not auto, cpu, cuda or cuda:N")
    return cfg


def config_from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a (possibly partial) nested mapping."""
    return validate(_build(TrainConfig, raw))


# -- sources and overrides ------------------------------------------------------------------------
def list_presets() -> list[str]:
    """Names of the shipped presets (``replication/presets/*.yaml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML ({str(e).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    return raw


def resolve_source(source: str | os.PathLike) -> Path:
    """Path of a preset name (``embedded``, ``paper-coco`` …) or of a YAML file."""
    s = os.fspath(source)
    preset = PRESET_DIR / f"{s}.yaml"
    if os.sep not in s and not s.endswith((".yaml", ".yml")) and preset.is_file():
        return preset
    p = Path(s)
    if not p.is_file():
        raise ConfigError(f"{s}: no such config file or preset (presets: {', '.join(list_presets())})")
    return p


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """Apply ``key=value`` overrides (dotted keys for sections, YAML-parsed values) to ``raw``."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        parts = key.split(".")
        node = raw
        for part in parts[:-1]:
            sub = node.get(part)
            if sub is None:
                sub = node[part] = {}
            elif not isinstance(sub, dict):
                raise ConfigError(f"unknown config key {key!r} ({part!r} is not a section)")
            node = sub
        node[parts[-1]] = value
    return raw


def load_train_config(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
    """Load a :class:`TrainConfig` from a preset name, a YAML path or a dict, then apply ``overrides``.

    Missing keys take the SPEC §7 defaults; unknown keys raise :class:`ConfigError` naming the key.
    """
    if isinstance(source, Mapping):
        raw = dict(source)
        origin = "<dict>"
    else:
        path = resolve_source(source)
        raw = _read_yaml(path)
        origin = str(path)
    raw = apply_overrides(raw, overrides)
    try:
        return config_from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{origin}: {e}") from None


def config_to_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML text (saved as ``config.yaml`` in the run directory)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def incompatible_changes(old: TrainConfig, new: TrainConfig) -> list[str]:
    """Dotted keys whose values differ between ``old`` and ``new`` and that a resume cannot change."""
    def flat(c: TrainConfig) -> dict:
        d = {k: v for k, v in c.to_dict().items() if k != "data"}
        d.update({f"data.{k}": v for k, v in asdict(c.data).items()})
        return d

    a, b = flat(old), flat(new)
    return [k for k in a if a[k] != b[k] and k not in RESUMABLE_CHANGES]
