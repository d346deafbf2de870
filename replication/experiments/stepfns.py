"""The functions behind each experiment step, and the resolved configs that name their run directories.

Every step function has the signature ``fn(out, inputs, resume)`` of
:data:`replication.experiments.steps.StepFn`; ``inputs`` maps input names to the upstream run
directories. Outputs inside a run directory:

* ``shards-*/data/`` and ``samples-*/data/`` — shard sets (a subfolder, since a shard writer
  owns its folder);
* ``gan-*/run/`` — what :func:`replication.gan.train_gan` writes (config, checkpoint, sample grids);
* ``predict-*/preds.npz``, ``labels-*/labels.h5``;
* ``train-*/`` — :func:`replication.train.train`'s outputs (``model.pt``, ``preds.npz`` on the
  test set, ``metrics.json`` with the preset's convention, curves);
* ``metrics-*/metrics.json`` — the table's metrics (percent) with the spec's name, fingerprint,
  row and seed, read by :mod:`replication.tables`;
* ``gallery-*/gallery.png``.

Only this module calls the other parts' libraries (data, GAN, classifier, labeling, metrics), so
an API change there is absorbed here.
"""
from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from replication.errors import ConfigError, ShardError
from replication.experiments.steps import StepFn, clear_partial
from replication.io_utils import atomic_write_json

log = logging.getLogger(__name__)
DATA = "data"
#: TrainConfig fields that do not change the result: left out of the run directory's hash.
TRAIN_RUNTIME_KEYS = ("device", "checkpoint_every_iters", "eval_batch_size", "progress", "log_every", "num_threads")
TRAIN_DATA_PATHS = ("train", "test", "generated", "label_file")


# ------------------------------------------------------------------------------------------- shards


def shards_fn(cfg: Mapping[str, Any], root: Path | None) -> StepFn:
    """Build one split's shard set into ``out/data`` (``replication.data.build.build_shards``)."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        from replication.data.build import build_shards

        build_shards(cfg["source"], split=cfg["split"], out=out / DATA, root=root, size=cfg["size"], seed=cfg["seed"],
                     tiny=cfg["tiny"], on_bad_image=cfg["on_bad_image"], overwrite=True)

    return fn


# -------------------------------------------------------------------------------------- classifier


def resolve_train(source: str, overrides: Sequence[str], where: Path) -> Any:
    """The :class:`~replication.train.TrainConfig` of a preset + overrides (ConfigError naming the spec)."""
    from replication.train import load_train_config

    try:
        return load_train_config(source, list(overrides))
    except ConfigError as e:
        raise ConfigError(f"{where}: train preset: {e}") from None


def train_hash_config(cfg: Any, seed: int) -> dict:
    """The part of a TrainConfig that determines the result: no data paths, no runtime-only keys."""
    d = dataclasses.replace(cfg, seed=seed).to_dict()
    for k in TRAIN_RUNTIME_KEYS:
        d.pop(k, None)
    data = dict(d["data"])
    for k in TRAIN_DATA_PATHS:
        data.pop(k, None)
    data.pop("num_workers", None)
    d["data"] = data
    return d


def train_fn(cfg: Any, seed: int) -> StepFn:
    """Train the classifier with ``seed`` on ``inputs['train']`` (+ generated images and their labels)."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        from replication.train import train

        data = {"train": str(inputs["train"] / DATA), "test": str(inputs["test"] / DATA)}
        if "generated" in inputs:
            data.update(generated=str(inputs["generated"] / DATA), label_file=str(inputs["labels"] / LABELS))
        run_cfg = dataclasses.replace(cfg, seed=seed, data=dataclasses.replace(cfg.data, **data))
        unfinished = (out / "checkpoint.pt").is_file() and not (out / "model.pt").is_file()
        if resume and not unfinished:
            clear_partial(out)  # a finished training whose done was deleted: train again
        train(run_cfg, out, resume=resume and unfinished)

    return fn


def predict_fn(batch_size: int) -> StepFn:
    """Score the generated images ``inputs['data']`` with the trained model ``inputs['model']``."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        from replication.predict import predict

        predict(inputs["model"], inputs["data"] / DATA, out / PREDS, batch_size=batch_size)

    return fn


PREDS = "preds.npz"
LABELS = "labels.h5"


# --------------------------------------------------------------------------------------------- GAN


def resolve_gan(arch: str, source: str, overrides: Sequence[str], where: Path) -> Any:
    """The GAN config of ``arch`` from a preset + overrides (ConfigError naming the spec)."""
    from replication import gan

    try:
        cfg = gan.load_gan_config(source, [f"arch={arch}", *overrides])
    except ConfigError as e:
        raise ConfigError(f"{where}: gan preset for {arch}: {e}") from None
    return cfg


#: GanTrainConfig fields that do not change the result (paths, cadences, device): not hashed.
GAN_RUNTIME_KEYS = ("data", "out", "sample_every", "checkpoint_every_iters", "log_every", "device", "compile",
                    "num_workers", "preload", "threads", "progress")
GAN_RUN = "run"


def gan_hash_config(cfg: Any) -> dict:
    """The GAN config without paths and runtime-only keys."""
    d = dataclasses.asdict(cfg)
    for k in GAN_RUNTIME_KEYS:
        d.pop(k, None)
    return d


def gan_fn(cfg: Any) -> StepFn:
    """Train the GAN on ``inputs['train']`` into ``out/run`` (:func:`replication.gan.train_gan`)."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        from replication.gan import train_gan

        run = out / GAN_RUN
        run_cfg = dataclasses.replace(cfg, data=str(inputs["train"] / DATA), out=str(run))
        unfinished = (run / "checkpoint.pt").is_file() and not (run / "done").is_file()
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
        from replication.data.shards import ShardSet
        from replication.gan import sample_gan

        n = sample_count(cfg, len(ShardSet(inputs["train"] / DATA)))
        clear_partial(out)
        sample_gan(inputs["gan"] / GAN_RUN, n, out / DATA, seed=cfg["seed"], batch=batch)

    return fn


# ---------------------------------------------------------------------------------------- labeling


def labels_fn(cfg: Mapping[str, Any]) -> StepFn:
    """Write the label file of one rule for the generated set ``inputs['generated']`` (SPEC §5)."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        from replication.labeling import assign_label_file

        scores = inputs["scores"] / PREDS if "scores" in inputs else None
        assign_label_file(cfg["rule"], scores, inputs["generated"] / DATA, out / LABELS, k=cfg["k"],
                          spl_input=cfg["spl_input"], temperature=cfg["temperature"], seed=cfg["seed"])

    return fn


# ----------------------------------------------------------------------------------------- metrics


def table_metrics(logits: Any, labels: Any, *, convention: str, top3: str, wider: bool) -> dict[str, float]:
    """SPEC §8 metrics (percent) with both Top-3 rules; the spec's rule is also stored as ``top3/…``."""
    from replication.metrics import evaluate

    m = evaluate(logits, labels, convention=convention, top3="both", scores_are="logits", wider=wider)
    prefix = {"pure": "top3-pure/", "thresholded": "top3-thr/"}[top3]
    out = {k: float(v) for k, v in m.items()}
    out.update({"top3/" + k[len(prefix):]: float(v) for k, v in m.items() if k.startswith(prefix)})
    return out


def metrics_fn(cfg: Mapping[str, Any]) -> StepFn:
    """Evaluate the training's test predictions (``preds.npz``) into the table's ``metrics.json``."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        import numpy as np

        from replication.data.shards import ShardSet
        from replication.predict import read_preds

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
    """Draw ``n`` generated images with their SPL and smooth labels (:mod:`replication.gallery`)."""

    def fn(out: Path, inputs: Mapping[str, Path], resume: bool) -> None:
        from replication.gallery import draw_gallery

        label_files = {rule: inputs[rule] / LABELS for rule in ("spl", "smooth") if rule in inputs}
        draw_gallery(inputs["samples"] / DATA, label_files, out / "gallery.png", n=n,
                     title=f"{generator} samples with their soft labels")

    return fn
