"""The training config (a dataclass loaded from YAML), presets, ``key=value`` overrides and checks.

Layout (docs/classifier.md#recipe as defaults; ``replication/presets/*.yaml`` hold the named presets)::

    model: preact_resnet101          # registry name or timm/<name>
    pretrained: null                 # state dict in our layout (strict key check, new FC excluded),
                                     # a finished run's model.pt,
                                     # or timm:<name> / timm:FILE (docs/classifier.md#pretrained-weights)
    pretrained_head: auto            # | new: re-initialise the classifier even when its shape fits
    data:
      train: PATH                    # real training shards (required)
      test: PATH                     # test shards (required)
      generated: null                # generated shards (optional) ...
      label_file: null               # ... with their label file
      generated_weight: 1.0          # λ, the per-sample loss weight of generated images
      crop: 224, load_size: 256, flip: true, test_mode: resize, num_workers: 4
      input_norm: null               # caffe | imagenet | inception; null = the weights' (sidecar) or caffe
    loss: sigmoid_bce                # | softmax_ce           (paper §2.4, Eq. (3); docs/labeling.md#loss)
    normalize: batch                 # | elements
    wider_unspecified: negative      # | ignore
    epochs: 20, batch_size: 24, lr: 0.001, lr_fc_mult: 10, momentum: 0.9, weight_decay: 0.0001
    milestones: [12, 17], gamma: 0.1
    schedule: epochs                 # | iterations: `iterations` SGD steps, LR ×gamma at `iter_milestones`
    iterations: null, iter_milestones: []   # used by schedule: iterations only (see below)
    seed: 0, device: auto, amp: null (= on for CUDA), channels_last: null (= on for CUDA)
    checkpoint_every_iters: 0, max_iters: null, eval_every_epochs: 1, eval_batch_size: 256
    convention: srn, top3: both, log_every: 10, progress: true, num_threads: null (torch's default)
    kernel_backend: auto, compile: false, sync_bn: false
    freeze_bn: false                 # BatchNorm layers in eval mode while training (running stats kept)
    bn_generated: shared             # | real-stats | separate: BN statistics of generated images (issue #13, 3b)

Overrides are ``key=value`` strings with dotted keys for the ``data`` section
(``epochs=3``, ``data.train=/path``); values are parsed as YAML scalars/lists.
Unknown keys and bad values raise :class:`ConfigError` naming the file and the key
(:mod:`replication.config` does the reading, typing and overrides).

Fields marked ``runtime`` do not change the result (a ``--resume`` may change them, and the experiment
runner leaves them out of a run directory's hash); ``max_iters`` is ``resumable`` (a resume may
change it, but it is hashed); the data paths are ``location``s (not hashed, never changed on resume).

``data.input_norm`` (docs/decisions.md, "Pretrained weights") is the pixel normalisation of the
transforms; ``null`` means "what the pretrained weights expect" (the ``input_norm`` of a
``spl weights convert`` sidecar, timm's config for ``timm:`` weights), else ``caffe``. :func:`resolve_input_norm`
fills it in before a run starts, so ``config.yaml`` records the value used. An unset (``null``) value
is left out of :meth:`TrainConfig.to_dict`, so the run-directory hashes of configs that never set it
are those from before the key existed. The same holds for the keys of issue #13 at their defaults,
``pretrained_head: auto``, ``freeze_bn: false`` and ``bn_generated: shared`` (:data:`OMITTED_AT_DEFAULT`).

``pretrained_head`` (docs/classifier.md#pretrained-weights): ``auto`` loads the file's classifier
when its shape fits the model (a new C-way FC otherwise); ``new`` always leaves the classifier at its
fresh initialisation — for fine-tuning from a run of another task with the same C (the 10-way
single-digit pretraining of docs/decisions.md, "Pretraining on the embedded data"), whose head
is not the target's FC. ``freeze_bn`` puts every BatchNorm layer in eval mode during training: it
normalises with, and keeps, its running statistics; its affine parameters still train.

``schedule`` (docs/classifier.md#schedule; docs/decisions.md, "Equal-iteration schedule"): ``epochs`` runs
``epochs`` passes over the real + generated images with the LR milestones at epochs (the paper's tables);
``iterations`` runs exactly ``iterations`` SGD steps whatever the number of generated images (Caffe's
``max_iter``), with the LR multiplied by ``gamma`` after ``iter_milestones`` steps, and a fixed mix of real and
generated images in every batch (:func:`mix_counts`). ``epochs`` and ``milestones`` are not used by it; an
"epoch" there is only a block of ``⌊N/B⌋`` iterations for the records and the test evaluations
(:func:`iterations_per_epoch`), the same in every row of a table. ``schedule``, ``iterations`` and
``iter_milestones`` are left out of :meth:`TrainConfig.to_dict` at their defaults (:data:`OMITTED_AT_DEFAULT`),
so the hashes of epoch-schedule runs are those from before the keys existed.

``bn_generated`` (docs/classifier.md#batch-norm-and-generated-images): ``shared`` is plain BatchNorm (real and
generated images normalised together); ``real-stats`` takes every BatchNorm layer's batch and running
statistics from the real images of the batch only; ``separate`` gives generated images their own BatchNorm
copy. Both convert the model's layers (:mod:`replication.models.domain_bn`); evaluation uses the real
statistics. They cannot be combined with ``freeze_bn`` (eval-mode BN has no batch statistics to choose),
``sync_bn`` (SyncBatchNorm would replace the converted layers) or ``compile`` (the per-batch split of rows
is Python state that would recompile the graph).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from replication import config as C
from replication.errors import ConfigError
from replication.models.domain_bn import BN_GENERATED_MODES, SHARED
from replication.models.pretrained import expected_input_norm
from replication.vocabulary import CONVENTIONS, INPUT_NORMS, TOP3_CHOICES

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"

CHOICES: dict[str, tuple[str, ...]] = {
    "loss": ("sigmoid_bce", "softmax_ce"),
    "normalize": ("batch", "elements"),
    "wider_unspecified": ("negative", "ignore"),
    "data.test_mode": ("resize", "center-crop"),
    "convention": CONVENTIONS,
    "top3": TOP3_CHOICES,
    "kernel_backend": ("auto", "torch", "numba", "numba-cuda", "cupy"),
    "pretrained_head": ("auto", "new"),
    "bn_generated": BN_GENERATED_MODES,
    "schedule": ("epochs", "iterations"),
}

EPOCHS, ITERATIONS = "epochs", "iterations"   # the two values of ``schedule``

#: Top-level keys left out of :meth:`TrainConfig.to_dict` (and so of every hash) while at these values.
OMITTED_AT_DEFAULT: dict[str, Any] = {"pretrained_head": "auto", "freeze_bn": False, "bn_generated": SHARED,
                                      "schedule": EPOCHS, "iterations": None, "iter_milestones": []}

#: What an unset ``data.input_norm`` means without pretrained weights that say otherwise (SRN's Caffe).
DEFAULT_INPUT_NORM = "caffe"

_RUNTIME = {C.RUNTIME: True}
_LOCATION = {C.LOCATION: True}


@dataclass
class DataConfig:
    """Where the images come from and how they are transformed (docs/datasets.md)."""

    train: str | None = field(default=None, metadata=_LOCATION)
    test: str | None = field(default=None, metadata=_LOCATION)
    generated: str | None = field(default=None, metadata=_LOCATION)
    label_file: str | None = field(default=None, metadata=_LOCATION)
    generated_weight: float = 1.0
    crop: int = 224
    load_size: int = 256
    flip: bool = True
    test_mode: str = "resize"
    num_workers: int = field(default=4, metadata=_RUNTIME)
    input_norm: str | None = None


@dataclass
class TrainConfig:
    """Everything that defines a classifier training run (docs/labeling.md#loss, docs/classifier.md#recipe).

    See the module docstring.
    """

    model: str = "preact_resnet101"
    pretrained: str | None = None
    pretrained_head: str = "auto"
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
    schedule: str = EPOCHS
    iterations: int | None = None
    iter_milestones: list[int] = field(default_factory=list)
    seed: int = 0
    device: str = field(default="auto", metadata=_RUNTIME)
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    sync_bn: bool = False
    freeze_bn: bool = False
    bn_generated: str = SHARED
    checkpoint_every_iters: int = field(default=0, metadata=_RUNTIME)
    max_iters: int | None = field(default=None, metadata={C.RESUMABLE: True})
    eval_every_epochs: int = 1
    eval_batch_size: int = field(default=256, metadata=_RUNTIME)
    convention: str = "srn"
    top3: str = "both"
    log_every: int = field(default=10, metadata=_RUNTIME)
    progress: bool = field(default=True, metadata=_RUNTIME)
    num_threads: int | None = field(default=None, metadata=_RUNTIME)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (what ``config.yaml`` holds).

        An unset ``data.input_norm`` and the :data:`OMITTED_AT_DEFAULT` keys at their defaults are left
        out (see above).
        """
        d = asdict(self)
        if d["data"]["input_norm"] is None:
            del d["data"]["input_norm"]
        for key, default in OMITTED_AT_DEFAULT.items():
            if d[key] == default and type(d[key]) is type(default):
                del d[key]
        return d


def _flat(cfg: TrainConfig) -> dict[str, Any]:
    """``{dotted key: value}``: every top-level key (omitted defaults included), then the ``data.*`` keys."""
    d = {k: v for k, v in asdict(cfg).items() if k != "data"}
    d.update({f"data.{k}": v for k, v in asdict(cfg.data).items()})
    return d


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check choices and ranges; returns ``cfg`` or raises :class:`ConfigError` naming the key."""
    flat = _flat(cfg)
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"config key {key!r}: {flat[key]!r} is not one of {', '.join(allowed)}")
    positive = ["epochs", "batch_size", "eval_batch_size", "data.crop", "data.load_size", "eval_every_epochs",
                "log_every"]
    for key in positive:
        if flat[key] < 1 and not (key == "eval_every_epochs" and flat[key] == 0):
            raise ConfigError(f"config key {key!r}: must be >= 1, got {flat[key]}")
    for key in ("lr", "weight_decay", "momentum", "gamma", "lr_fc_mult", "data.generated_weight",
                "checkpoint_every_iters", "data.num_workers"):
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
    _validate_schedule(cfg)
    if cfg.data.input_norm is not None and cfg.data.input_norm not in INPUT_NORMS:
        raise ConfigError(f"config key 'data.input_norm': {cfg.data.input_norm!r} is not one of "
                          f"{', '.join(INPUT_NORMS)} or null (the pretrained weights' own)")
    if (cfg.data.generated is None) != (cfg.data.label_file is None):
        raise ConfigError("config keys 'data.generated' and 'data.label_file' must be given together")
    if cfg.bn_generated != SHARED:
        for key in ("freeze_bn", "sync_bn", "compile"):
            if getattr(cfg, key):
                raise ConfigError(f"config keys 'bn_generated' ({cfg.bn_generated}) and {key!r} cannot be combined "
                                  "(docs/classifier.md#batch-norm-and-generated-images)")
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise ConfigError(f"config key 'device': {cfg.device!r} is not auto, cpu, cuda or cuda:N")
    return cfg


def _validate_schedule(cfg: TrainConfig) -> None:
    """``iterations`` and ``iter_milestones`` belong to ``schedule: iterations`` (never silently ignored)."""
    if cfg.schedule == EPOCHS:
        if cfg.iterations is not None or cfg.iter_milestones:
            raise ConfigError("config keys 'iterations' and 'iter_milestones' need schedule: iterations "
                              f"(schedule is {cfg.schedule!r})")
        return
    if cfg.iterations is None or cfg.iterations < 1:
        raise ConfigError(f"config key 'iterations': schedule: iterations needs a number >= 1, got {cfg.iterations}")
    ms = list(cfg.iter_milestones)
    if sorted(ms) != ms or (ms and not 1 <= ms[0] <= ms[-1] < cfg.iterations):
        raise ConfigError(f"config key 'iter_milestones': must be increasing and in [1, {cfg.iterations - 1}], "
                          f"got {ms}")


def iterations_per_epoch(n_real: int, batch_size: int) -> int:
    """An "epoch" of the iteration schedule: ``max(1, ⌊N/B⌋)`` iterations, N the real images (records only).

    It depends on the real images alone, so every row of a table (whatever its generated images)
    records and evaluates at the same iterations.
    """
    return max(1, n_real // batch_size)


def mix_counts(n_real: int, n_generated: int, batch_size: int) -> tuple[int, int]:
    """(real, generated) images in every batch of the iteration schedule: N : M as closely as B allows.

    ``g = ⌊B·M/(N+M) + ½⌋`` generated and ``B − g`` real images, kept in [1, B − 1] when both kinds
    exist (a batch never drops a kind that the training set has); ``(B, 0)`` without generated images.
    """
    if n_real < 1 or n_generated < 0:
        raise ValueError(f"need at least one real image and M >= 0, got N={n_real}, M={n_generated}")
    if n_generated == 0:
        return batch_size, 0
    if batch_size < 2:
        raise ValueError(f"batch size {batch_size} cannot hold both real and generated images")
    g = int(batch_size * n_generated / (n_real + n_generated) + 0.5)
    g = min(max(g, 1), batch_size - 1)
    return batch_size - g, g


def scaled_iterations(cfg: TrainConfig, factor: int) -> TrainConfig:
    """``cfg`` (``schedule: iterations``) with ``factor``× the iterations and its milestones at the same fractions.

    The plateau check of docs/experiments.md (``baseline/iters``): the baseline trained for twice the budget.
    """
    if cfg.schedule != ITERATIONS or cfg.iterations is None:
        raise ConfigError(f"scaling the iteration budget needs schedule: iterations (schedule is {cfg.schedule!r})")
    return replace(cfg, iterations=cfg.iterations * factor, iter_milestones=[m * factor for m in cfg.iter_milestones])


def resolve_input_norm(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``data.input_norm`` filled in: as set, else the pretrained weights' (sidecar, timm), else caffe."""
    if cfg.data.input_norm is not None:
        return cfg
    norm = expected_input_norm(cfg.pretrained) or DEFAULT_INPUT_NORM
    return replace(cfg, data=replace(cfg.data, input_norm=norm))


def run_input_norm(cfg: TrainConfig) -> str:
    """The input normalisation of a finished run's config (``config.yaml`` from before the key: caffe)."""
    return cfg.data.input_norm or DEFAULT_INPUT_NORM


def config_from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a (possibly partial) nested mapping."""
    return validate(C.from_dict(TrainConfig, raw))


def list_presets() -> list[str]:
    """Names of the shipped presets (``replication/presets/*.yaml``)."""
    return C.list_presets(PRESET_DIR)


def load_train_config(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
    """Load a :class:`TrainConfig` from a preset name, a YAML path or a dict, then apply ``overrides``.

    Missing keys take the defaults of docs/classifier.md#recipe; unknown keys raise :class:`ConfigError`
    naming the file and the key.
    """
    return C.load(TrainConfig, source, overrides, presets=PRESET_DIR, check=validate)


def config_to_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML text (saved as ``config.yaml`` in the run directory)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def incompatible_changes(old: TrainConfig, new: TrainConfig) -> list[str]:
    """Dotted keys whose values differ between ``old`` and ``new`` and that a resume cannot change."""
    a, b = _flat(old), _flat(new)
    for d in (a, b):  # checkpoints from before data.input_norm existed used Caffe's normalisation
        d["data.input_norm"] = d["data.input_norm"] or DEFAULT_INPUT_NORM
    resumable = C.resumable_keys(TrainConfig)
    return [k for k in a if a[k] != b[k] and k not in resumable]
