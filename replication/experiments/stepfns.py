"""The functions behind each experiment step, and the resolved configs that name their run directories.

Every step function has the signature ``fn(out, inputs, resume)`` of
:data:`replication.experiments.steps.StepFn`; ``inputs`` maps input names to the upstream run
directories. Outputs inside a run directory:

* ``shards-*/data/`` and ``samples-*/data/`` — shard sets (a subfolder, since a shard writer
  owns its folder); a ``samples`` step of the non-GAN source ``shuffled`` writes block-shuffled
  real canvases (:func:`shuffled_fn`) instead of a GAN's samples, one of the source ``real`` M
  canvases drawn from the unlabeled pool (:func:`real_fn`);
* ``view-*/data/`` — an unlabeled view of the training split (:func:`view_fn`): the pool outside the
  labelled N, or the labelled images and the pool together (what the GANs train on with ``gan.data: all``);
* ``gan-*/run/`` — what :func:`replication.gan.run.train_gan` writes (config, checkpoint, sample grids);
* ``predict-*/preds.npz``, ``labels-*/labels.h5``;
* ``train-*/`` and ``pretrain-*/`` — :func:`replication.train.train`'s outputs (``model.pt``,
  ``preds.npz`` on the test set, ``metrics.json`` with the preset's convention, curves);
* ``metrics-*/metrics.json`` — the table's metrics (percent) with the spec's name, fingerprint,
  row and seed, read by :mod:`replication.report.table`;
* ``quality-*/quality.json`` — :func:`replication.gan.quality_step.gan_quality` of a GAN run measured with
  the baseline of the same replicate (FD, KID, precision, recall, label statistics); the GAN run itself
  is left untouched;
* ``gallery-*/gallery.png``.

Only this module calls the other parts' libraries (data, GAN, classifier, labeling, metrics), so
an API change there is absorbed here.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from replication import config as C
from replication.data.build import build_shards
from replication.data.outliers import block_shuffle, source_order
from replication.data.pool import write_image_view, write_real_draw
from replication.data.shards import SOURCE_GENERATED, ShardSet, ShardWriter
from replication.errors import ConfigError, ShardError
from replication.experiments.steps import StepFn, clear_partial
from replication.gan.config import GanTrainConfig, load_gan_config
from replication.gan.quality_step import QUALITY, gan_quality
from replication.gan.run import DONE as GAN_DONE
from replication.gan.run import REAL_GRID as GAN_REAL_GRID
from replication.gan.run import sample_gan, train_gan
from replication.inference.predict import predict
from replication.inference.predictions import read_preds
from replication.io_utils import atomic_write_json
from replication.labeling import assign_label_file
from replication.metrics import evaluate
from replication.report.gallery import draw_gallery
from replication.training.checkpoint import MODEL
from replication.training.config import DEFAULT_INPUT_NORM, TrainConfig, load_train_config
from replication.training.loop import train
from replication.vocabulary import ARCH_LABELS, PEER_OF, TOP3_PREFIX

log = logging.getLogger(__name__)
DATA = "data"


# ------------------------------------------------------------------------------------------- shards


def shards_fn(cfg: Mapping[str, Any], root: Path | None) -> StepFn:
    """Build one split's shard set into ``out/data`` (``replication.data.build.build_shards``)."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        build_shards(cfg["source"], split=cfg["split"], out=out / DATA, root=root, size=cfg["size"], seed=cfg["seed"],
                     tiny=cfg["tiny"], on_bad_image=cfg["on_bad_image"], count=cfg.get("count"), overwrite=True,
                     source_options=cfg.get("source_options"))

    return fn


# -------------------------------------------------------------------------------------- classifier


def resolve_train(source: str, overrides: Sequence[str], where: Path) -> TrainConfig:
    """The :class:`~replication.train.TrainConfig` of a preset + overrides (ConfigError naming the spec)."""
    try:
        return load_train_config(source, list(overrides))
    except ConfigError as e:
        raise ConfigError(f"{where}: train preset: {e}") from None


def train_hash_config(cfg: TrainConfig, seed: int) -> dict:
    """The part of a TrainConfig that determines the result: no data paths, no runtime-only keys."""
    return C.without_keys(dataclasses.replace(cfg, seed=seed).to_dict(), C.unhashed_keys(TrainConfig))


#: What a fine-tuning's hashed config says for ``pretrained``: the weights come from its ``pretrain``
#: input, whose key is part of the step's key (no path in the hash, so a runs folder can move).
PRETRAINED_FROM_STEP = "<pretrain step>/" + MODEL


def finetune_config(cfg: TrainConfig, pretrain: TrainConfig, where: Path) -> TrainConfig:
    """``cfg`` set to fine-tune from the pretrain step: its ``model.pt`` with a new head.

    The head is always re-initialised (``pretrained_head: new``): the source task's classifier is not
    the target's FC, even when both have C = 10. ConfigError naming the spec when the train preset
    names weights of its own, or when the two trainings disagree on the model or the input
    normalisation.
    """
    if cfg.pretrained is not None:
        raise ConfigError(f"{where}: the train preset sets pretrained={cfg.pretrained!r} and the spec has a "
                          "pretrain section; use one of them")
    if cfg.model != pretrain.model:
        raise ConfigError(f"{where}: the train preset's model {cfg.model} differs from the pretrain preset's "
                          f"{pretrain.model}")
    norms = {c.data.input_norm or DEFAULT_INPUT_NORM for c in (cfg, pretrain)}
    if len(norms) > 1:
        raise ConfigError(f"{where}: the train and pretrain presets use different data.input_norm "
                          f"({', '.join(sorted(norms))})")
    return dataclasses.replace(cfg, pretrained=PRETRAINED_FROM_STEP, pretrained_head="new")


def with_generated_weight(cfg: TrainConfig, weight: float | None) -> TrainConfig:
    """``cfg`` with ``data.generated_weight = weight`` (a ``@λ`` row); ``cfg`` itself when ``weight`` is None."""
    if weight is None:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, generated_weight=float(weight)))


def matched_schedule(epochs: int, milestones: Sequence[int], max_iters: int | None, *, n_real: int,
                     n_generated: int, batch_size: int) -> tuple[int, list[int], int]:
    """The schedule of the iteration-matched baseline: ``(epochs, milestones, max_iters)`` on real images only.

    A row with M generated images runs ``T = epochs · ⌊(N + M) / B⌋`` iterations (full batches per
    epoch, :class:`~replication.training.sampler.EpochBatchSampler`; fewer if ``max_iters`` stops it
    first). On the N real images alone an epoch has ``b = ⌊N / B⌋`` batches, so the matched run gets
    ``⌈T / b⌉`` epochs and ``max_iters = T`` (it stops inside its last epoch at exactly T). The LR
    schedule keeps its shape in iterations: a milestone at epoch m of the generated row (iteration
    ``m · ⌊(N + M) / B⌋``) moves to the nearest epoch boundary of the real-only run,
    ``round(m · ⌊(N + M) / B⌋ / b)``. docs/decisions.md, "Controls (issue #13)".
    """
    per_gen, per_real = (n_real + n_generated) // batch_size, n_real // batch_size
    if per_real < 1:
        raise ConfigError(f"batch size {batch_size} is more than the {n_real} real training images")
    total = epochs * per_gen if max_iters is None else min(max_iters, epochs * per_gen)
    scaled = [int(round(m * per_gen / per_real)) for m in milestones]
    return -(-total // per_real), scaled, total


def train_fn(cfg: TrainConfig, seed: int, match: Mapping[str, Any] | None = None) -> StepFn:
    """Train the classifier with ``seed`` on ``inputs['train']`` (+ generated images and their labels).

    With a ``pretrain`` input it starts from that run's ``model.pt`` (:func:`finetune_config`).
    ``match`` (the sampling config: ``gen_ratio``, ``count``) makes it the iteration-matched
    baseline: real images only, as many iterations as a row with M = :func:`sample_count` generated
    images (:func:`matched_schedule`, computed from the training shards when the step runs).
    """

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        data = {"train": str(inputs["train"] / DATA), "test": str(inputs["test"] / DATA)}
        if "generated" in inputs:
            data.update(generated=str(inputs["generated"] / DATA), label_file=str(inputs["labels"] / LABELS))
        run_cfg = dataclasses.replace(cfg, seed=seed, data=dataclasses.replace(cfg.data, **data))
        if match is not None:
            n_real = len(ShardSet(inputs["train"] / DATA))
            epochs, milestones, max_iters = matched_schedule(
                cfg.epochs, cfg.milestones, cfg.max_iters, n_real=n_real, n_generated=sample_count(match, n_real),
                batch_size=cfg.batch_size)
            run_cfg = dataclasses.replace(run_cfg, epochs=epochs, milestones=milestones, max_iters=max_iters)
        if "pretrain" in inputs:
            run_cfg = dataclasses.replace(run_cfg, pretrained=str(inputs["pretrain"] / MODEL))
        unfinished = (out / "checkpoint.pt").is_file() and not (out / "model.pt").is_file()
        if resume and not unfinished:
            clear_partial(out)  # a finished training whose done was deleted: train again
        train(run_cfg, out, resume=resume and unfinished)

    return fn


def predict_fn(batch_size: int) -> StepFn:
    """Score the generated images ``inputs['data']`` with the trained model ``inputs['model']``."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        predict(inputs["model"], inputs["data"] / DATA, out / PREDS, batch_size=batch_size)

    return fn


PREDS = "preds.npz"
LABELS = "labels.h5"


# --------------------------------------------------------------------------------------------- GAN


def resolve_gan(arch: str, source: str, overrides: Sequence[str], where: Path) -> GanTrainConfig:
    """The GAN config of generator ``arch`` (a spec's ``gan`` key) from a preset + overrides (ConfigError naming
    the spec).

    The preset's own architecture is kept when it is a peer that realises ``arch``
    (:data:`~replication.vocabulary.PEER_OF`: ``torch-dcgan`` for ``dcgan``, the demo's generator); a peer
    preset under another key is an error; any other preset architecture becomes ``arch`` (the key decides
    between the paper's two ports, so one preset serves both).
    """
    try:
        cfg = load_gan_config(source, list(overrides))
        if cfg.arch in PEER_OF and PEER_OF[cfg.arch] != arch:
            raise ConfigError(f"arch {cfg.arch} realises {PEER_OF[cfg.arch]}, not {arch}")
        if cfg.arch != arch and PEER_OF.get(cfg.arch) != arch:
            cfg = load_gan_config(source, [f"arch={arch}", *overrides])
    except ConfigError as e:
        raise ConfigError(f"{where}: gan preset for {arch}: {e}") from None
    return cfg


def generator_label(cfg: GanTrainConfig) -> str:
    """The report's name of the generator that ``cfg`` trains (``DCGAN (PyTorch peer)`` for the peer)."""
    return ARCH_LABELS[cfg.arch]


GAN_RUN = "run"
#: The images and records of the step directories that the report page shows (replication/report/page.py):
#: the GAN's training images (``gan-*``), the first samples (``samples-*``, written by ``sample_gan``
#: beside the shard set), the gallery (``gallery-*``) and the quality record (``quality-*``).
REAL_GRID = f"{GAN_RUN}/samples/{GAN_REAL_GRID}"
SAMPLE_GRID = f"{DATA}-grid.png"
GALLERY = "gallery.png"
QUALITY_FILE = QUALITY


def gan_hash_config(cfg: GanTrainConfig) -> dict:
    """The GAN config without paths and runtime-only keys."""
    return C.without_keys(dataclasses.asdict(cfg), C.unhashed_keys(GanTrainConfig))


def gan_fn(cfg: GanTrainConfig) -> StepFn:
    """Train the GAN on ``inputs['train']`` into ``out/run`` (:func:`replication.gan.run.train_gan`)."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        run = out / GAN_RUN
        run_cfg = dataclasses.replace(cfg, data=str(inputs["train"] / DATA), out=str(run))
        unfinished = (run / "checkpoint.pt").is_file() and not (run / GAN_DONE).is_file()
        if resume and not unfinished:
            clear_partial(out)  # a finished training whose done was deleted: train again
        train_gan(run_cfg, resume=resume and unfinished)

    return fn


def sample_count(cfg: Mapping[str, Any], n_train: int) -> int:
    """M: ``count`` if given, else ``round(gen_ratio × N_train)`` (at least 1)."""
    if cfg.get("count"):
        return int(cfg["count"])
    return max(1, int(round(cfg["gen_ratio"] * n_train)))


def samples_fn(cfg: Mapping[str, Any], batch: int) -> StepFn:
    """Generate M images with the GAN ``inputs['gan']`` into the shard set ``out/data``."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        n = sample_count(cfg, len(ShardSet(inputs["train"] / DATA)))
        clear_partial(out)
        sample_gan(inputs["gan"] / GAN_RUN, n, out / DATA, seed=cfg["seed"], batch=batch)

    return fn


def shuffled_fn(cfg: Mapping[str, Any]) -> StepFn:
    """Write M block-shuffled real canvases of ``inputs['train']`` into ``out/data``, like ``spl gan sample``.

    The non-GAN outliers of the control rows (issue #13; :mod:`replication.data.outliers`): M =
    :func:`sample_count`, canvas ``i`` is real image ``source_order(N, M, seed)[i]`` with its
    ``grid × grid`` blocks permuted by a generator seeded with ``(seed, i)``. The shard set is
    PNG-encoded and unlabeled, every record ``source = generated``, with the training set's classes.
    """

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        clear_partial(out)
        real = ShardSet(inputs["train"] / DATA)
        n = sample_count(cfg, len(real))
        grid, seed = cfg["grid"], cfg["seed"]
        with ShardWriter(out / DATA, dataset=real.dataset, split="generated-shuffled", class_names=real.class_names,
                         encoding="png", label_kind="none", extra={"outliers": dict(cfg), "source_records": len(real)}
                         ) as w:
            for i, j in enumerate(source_order(len(real), n, seed)):
                image = block_shuffle(real[int(j)].image, grid, (seed, i))
                w.add(np.ascontiguousarray(image), label=None, key=f"shuffled-s{seed}-{i:07d}",
                      source=SOURCE_GENERATED)
        real.close()

    return fn


def view_fn(which: str) -> StepFn:
    """Write the unlabeled view ``which`` (``pool`` or ``all``) of the full training split ``inputs['full']``
    minus the labelled set ``inputs['labelled']`` into ``out/data`` (:func:`replication.data.pool.write_image_view`;
    no label is read)."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        clear_partial(out)
        write_image_view(inputs["full"] / DATA, inputs["labelled"] / DATA, out / DATA, which)

    return fn


def real_fn(cfg: Mapping[str, Any]) -> StepFn:
    """Draw M = :func:`sample_count` (N: the labelled ``inputs['train']``) canvases of the unlabeled pool
    ``inputs['pool']`` with seed ``cfg['seed']`` into ``out/data`` (the ``real`` ceiling rows, issue #19;
    :func:`replication.data.pool.write_real_draw`: images only, their labels are never read)."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        clear_partial(out)
        n = sample_count(cfg, len(ShardSet(inputs["train"] / DATA)))
        write_real_draw(inputs["pool"] / DATA, n, cfg["seed"], out / DATA)

    return fn


def quality_fn(cfg: Mapping[str, Any]) -> StepFn:
    """Measure the GAN ``inputs['gan']`` with the classifier ``inputs['classifier']`` into ``out/quality.json``.

    ``n = min(M, cfg['n'])`` samples, M being the size of the sample set ``inputs['samples']`` the rows
    train on, and as many real training images (:func:`replication.gan.quality_step.gan_quality`, noise and
    choice seed ``cfg['seed']``, batches of ``cfg['batch']``).
    """

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        clear_partial(out)
        m = len(ShardSet(inputs["samples"] / DATA))
        gan_quality(inputs["gan"] / GAN_RUN, inputs["classifier"], n=max(2, min(m, cfg["n"])), seed=cfg["seed"],
                    batch=cfg["batch"], out=out / QUALITY)

    return fn


# ---------------------------------------------------------------------------------------- labeling


def labels_fn(cfg: Mapping[str, Any]) -> StepFn:
    """Write the label file of one rule for the generated set ``inputs['generated']``.

    See paper §2.3, Eqs. (1)–(2); docs/labeling.md#label-rules.
    """

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        scores = inputs["scores"] / PREDS if "scores" in inputs else None
        assign_label_file(cfg["rule"], scores, inputs["generated"] / DATA, out / LABELS, k=cfg["k"],
                          spl_input=cfg["spl_input"], temperature=cfg["temperature"], seed=cfg["seed"])

    return fn


# ----------------------------------------------------------------------------------------- metrics


def table_metrics(logits: Any, labels: Any, *, convention: str, top3: str, wider: bool) -> dict[str, float]:
    """docs/metrics.md#definitions metrics (percent) with both Top-3 rules.

    The spec's rule is also stored as ``top3/…``.
    """
    m = evaluate(logits, labels, convention=convention, top3="both", scores_are="logits", wider=wider)
    prefix = {"pure": "top3-pure/", "thresholded": "top3-thr/"}[top3]
    out = {k: float(v) for k, v in m.items()}
    out.update({TOP3_PREFIX + k[len(prefix):]: float(v) for k, v in m.items() if k.startswith(prefix)})
    return out


def metrics_fn(cfg: Mapping[str, Any]) -> StepFn:
    """Evaluate the training's test predictions (``preds.npz``) into the table's ``metrics.json``."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        test = ShardSet(inputs["test"] / DATA)
        preds = read_preds(inputs["model"] / PREDS)
        if preds["keys"] != test.keys():
            raise ShardError(f"{inputs['model'] / PREDS}: predictions do not cover the test set {test.path} in order")
        metrics = table_metrics(preds["logits"], np.asarray(test.labels()), convention=cfg["convention"],
                                top3=cfg["top3"], wider=test.label_kind == "wider")
        record = {
            "table": cfg["table"], "fingerprint": cfg["fingerprint"], "row": cfg["row"], "seed": cfg["seed"],
            "dataset": test.dataset, "convention": cfg["convention"], "top3": cfg["top3"],
            "test_images": len(test), "train_run": inputs["model"].name,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "metrics": metrics,
        }
        atomic_write_json(out / "metrics.json", record)

    return fn


# ----------------------------------------------------------------------------------------- gallery


def gallery_fn(n: int, generator: str) -> StepFn:
    """Draw ``n`` generated images with their SPL and smooth labels (:mod:`replication.report.gallery`)."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        label_files = {rule: inputs[rule] / LABELS for rule in ("spl", "smooth") if rule in inputs}
        draw_gallery(inputs["samples"] / DATA, label_files, out / GALLERY, n=n,
                     title=f"{generator} samples with their soft labels")

    return fn
