"""The dependency chain of one table, planned before anything runs and executed with caching (SPEC §10).

For a spec with rows R and generators G the plan is::

    shards(train), shards(test)
    per generator g:  gan(g) ← shards(train);  samples(g) ← gan(g), shards(train)   (M images)
    baseline training (seed 0) ← shards(train, test)                  # the "pre-trained model"
    per g (if pseudo or spl rows use it):  predict(g) ← baseline, samples(g)
    per row rule/g:   labels(rule, g) ← samples(g) [, predict(g) for pseudo and spl]
    per row and seed i: train(row, i) ← shards(train, test) [, samples(g), labels(rule, g)]
                        metrics(row, i) ← train(row, i), shards(test)
    per g: gallery(g) ← samples(g), labels(spl, g), labels(smooth, g)

Random and smooth labels need no scores, so they do not depend on the baseline. The test
predictions of each training are the ``preds.npz`` its training writes at the end (the final
model scoring the whole test set, the same computation as ``spl predict``); the metrics step
evaluates them with the spec's convention (both Top-3 rules are stored; the spec's one is
also stored as ``top3/…``).

Planning resolves every preset (classifier and GAN) and checks the data root, so a bad spec,
preset or override fails with a :class:`~replication.errors.ConfigError` before any step runs.
The step functions live in :mod:`replication.experiments.stepfns`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from replication.errors import ConfigError
from replication.experiments import stepfns as F
from replication.experiments.spec import BASELINE, ExperimentSpec, PresetSpec, parse_row
from replication.experiments.steps import Step, StepRecord, execute, toposort

log = logging.getLogger(__name__)
NEEDS_SCORES = ("pseudo", "spl")


@dataclass
class Plan:
    """The planned steps of a spec: targets to run, and the steps by role (for tests and reports)."""

    spec: ExperimentSpec
    seeds: int
    targets: list[Step]
    trains: dict[tuple[str, int], Step] = field(default_factory=dict)
    metrics: dict[tuple[str, int], Step] = field(default_factory=dict)
    named: dict[str, Step] = field(default_factory=dict)

    @property
    def steps(self) -> list[Step]:
        """Every step the targets need, in execution order."""
        return toposort(self.targets)


def _preset_source(preset: PresetSpec, spec: ExperimentSpec) -> str:
    """A preset name as is; a relative YAML path is taken relative to the spec file."""
    p = preset.preset
    if p.endswith((".yaml", ".yml")) and not Path(p).is_absolute() and spec.path.name != "<dict>":
        return str(spec.path.parent / p)
    return p


def _check_data_root(spec: ExperimentSpec, data_root: Path | None) -> Path | None:
    if spec.dataset.source == "digits-mosaic":
        return None
    if data_root is None:
        raise ConfigError(f"{spec.path}: dataset {spec.dataset.source} needs --data-root (the folder of its raw files)")
    root = Path(data_root)
    if not root.is_dir():
        raise ConfigError(f"{root}: data root of {spec.dataset.source} is not a folder")
    return root


def plan_experiment(spec: ExperimentSpec, *, data_root: str | Path | None = None, seeds: int = 1,
                    only: Sequence[str] = ()) -> Plan:
    """Build the step graph of ``spec`` (module docstring); nothing runs, every preset is resolved.

    ``seeds`` repeats each row's training with seeds 0 … seeds−1; ``only`` restricts the targets
    to those rows (their dependencies are planned too; no gallery).
    """
    if seeds < 1:
        raise ConfigError(f"{spec.path}: --seeds must be ≥ 1, got {seeds}")
    for r in only:
        if r not in spec.rows:
            raise ConfigError(f"{spec.path}: --only {r!r} is not a row of this spec ({', '.join(spec.rows)})")
    root = _check_data_root(spec, Path(data_root) if data_root is not None else None)
    group = spec.dataset.source
    ds = spec.dataset
    named: dict[str, Step] = {}

    def shards(split: str) -> Step:
        cfg = {"source": ds.source, "split": split, "size": ds.size, "seed": ds.seed, "tiny": ds.tiny,
               "on_bad_image": ds.on_bad_image}
        return Step("shards", group, cfg, F.shards_fn(cfg, root), label=f"shards {ds.source}/{split}")

    train_shards, test_shards = named["shards/train"], named["shards/test"] = shards("train"), shards("test")

    train_base = F.resolve_train(_preset_source(spec.train, spec), spec.train.overrides, spec.path)

    def training(row: str, seed: int, gen: Step | None = None, labels: Step | None = None) -> Step:
        cfg = F.train_hash_config(train_base, seed)
        inputs = {"train": train_shards, "test": test_shards}
        if gen is not None and labels is not None:
            inputs.update(generated=gen, labels=labels)
        return Step("train", group, cfg, F.train_fn(train_base, seed), inputs, label=f"train {row} seed {seed}")

    baseline0 = named["train/baseline/0"] = training(BASELINE, 0)

    samples: dict[str, Step] = {}
    scores: dict[str, Step] = {}
    for g in spec.generators:
        gan_cfg = F.resolve_gan(g, _preset_source(spec.gan[g], spec), spec.gan[g].overrides, spec.path)
        gan = named[f"gan/{g}"] = Step("gan", group, F.gan_hash_config(gan_cfg), F.gan_fn(gan_cfg),
                                       {"train": train_shards}, label=f"GAN {g}")
        sm = spec.sampling
        s_cfg = {"gen_ratio": sm.gen_ratio, "count": sm.count, "seed": sm.seed}
        samples[g] = named[f"samples/{g}"] = Step(
            "samples", group, s_cfg, F.samples_fn(s_cfg, sm.batch), {"gan": gan, "train": train_shards},
            label=f"samples {g}")
        if any(parse_row(r) in ((rule, g) for rule in NEEDS_SCORES) for r in spec.rows):
            scores[g] = named[f"predict/{g}"] = Step(
                "predict", group, {"what": "baseline scores of generated images"},
                F.predict_fn(spec.predict_batch), {"model": baseline0, "data": samples[g]},
                label=f"baseline scores on {g} samples")

    lab = spec.labeling
    labels: dict[tuple[str, str], Step] = {}
    for row in spec.rows:
        rule, g = parse_row(row)
        if g is None:
            continue
        l_cfg = {"rule": rule, "k": lab.k, "spl_input": lab.spl_input, "temperature": lab.temperature, "seed": lab.seed}
        inputs = {"generated": samples[g]}
        if rule in NEEDS_SCORES:
            inputs["scores"] = scores[g]
        labels[(rule, g)] = named[f"labels/{rule}/{g}"] = Step(
            "labels", group, l_cfg, F.labels_fn(l_cfg), inputs, label=f"{rule} labels for {g}")

    plan = Plan(spec=spec, seeds=seeds, targets=[], named=named)
    m_base = {"table": spec.name, "fingerprint": spec.fingerprint(), "convention": spec.metrics.convention,
              "top3": spec.metrics.top3}
    for row in spec.rows:
        rule, g = parse_row(row)
        for seed in range(seeds):
            if g is None:
                t = baseline0 if seed == 0 else training(row, seed)
            else:
                t = training(row, seed, samples[g], labels[(rule, g)])
            m_cfg = {**m_base, "row": row, "seed": seed}
            m = Step("metrics", group, m_cfg, F.metrics_fn(m_cfg), {"model": t, "test": test_shards},
                     label=f"metrics {row} seed {seed}")
            plan.trains[(row, seed)], plan.metrics[(row, seed)] = t, m
            if not only or row in only:
                plan.targets.append(m)
    if not only and spec.gallery > 0:
        for g in spec.generators:
            inputs = {"samples": samples[g]}
            for rule in ("spl", "smooth"):
                if (rule, g) in labels:
                    inputs[rule] = labels[(rule, g)]
            if len(inputs) > 1:
                gal = named[f"gallery/{g}"] = Step("gallery", group, {"n": spec.gallery, "generator": g},
                                                    F.gallery_fn(spec.gallery, g), inputs, label=f"gallery {g}")
                plan.targets.append(gal)
    return plan


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` did: the plan and one record per step (``ran`` / ``skipped``)."""

    plan: Plan
    records: list[StepRecord]

    @property
    def ran(self) -> list[Step]:
        """Steps that ran in this invocation."""
        return [r.step for r in self.records if r.status == "ran"]


def run_experiment(spec: ExperimentSpec, *, runs: str | Path = "runs", data_root: str | Path | None = None,
                   seeds: int = 1, only: Sequence[str] = (), progress: bool = True) -> ExperimentResult:
    """Plan ``spec`` and execute every step not yet done under ``runs`` (see :func:`plan_experiment`)."""
    plan = plan_experiment(spec, data_root=data_root, seeds=seeds, only=only)
    steps = plan.steps
    todo = sum(1 for s in steps if not s.is_done(Path(runs)))
    log.info("%s: %d steps, %d to run, under %s", spec.path, len(steps), todo, runs)
    records = execute(steps, runs, progress=progress)
    return ExperimentResult(plan, records)


__all__ = ["Plan", "ExperimentResult", "plan_experiment", "run_experiment"]
