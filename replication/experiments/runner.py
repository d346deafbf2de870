"""The dependency chain of one table, planned before anything runs and executed with caching (docs/experiments.md).

For a spec with rows R and generators G the plan is::

    shards(train), shards(test)
    per generator g:  gan(g) ← shards(train);  samples(g) ← gan(g), shards(train)   (M images)
    baseline training (seed 0) ← shards(train, test)                  # the "pre-trained model"
    per g (if pseudo or spl rows use it):  predict(g) ← baseline, samples(g)
    per row rule/g:   labels(rule, g) ← samples(g) [, predict(g) for pseudo and spl]
    per row and seed i: train(row, i) ← shards(train, test) [, samples(g), labels(rule, g)]
                        metrics(row, i) ← train(row, i), shards(test)
    per g: gallery(g) ← samples(g), labels(spl, g), labels(smooth, g)
    per GAN g: quality(g) ← gan(g), baseline training (seed 0), samples(g)    (unless quality.n = 0)

The quality step (issue #13; docs/experiments.md#the-quality-step) measures each GAN's samples in the
features of the model that labels them, the baseline of the same replicate (seed 0 with a shared GAN):
FD, KID, precision, recall and label statistics of ``min(M, quality.n)`` samples (``samples(g)`` is an
input only for M). It writes its own ``quality.json`` and leaves the GAN run untouched. Like the gallery
it is a target of a full run only (not of ``--only``), and it adds steps without changing the key of any
other.

Control rows (issue #13; docs/experiments.md#control-rows) reuse this chain: the source
``shuffled`` takes the place of a GAN, its ``samples(shuffled) ← shards(train)`` being M
block-shuffled real canvases (no ``gan`` step); ``rule/g@λ`` is ``rule/g``'s chain with
``data.generated_weight = λ`` in its trainings (same samples and label file); ``baseline/iters``
is a real-only training per seed whose schedule is stretched to the iterations of a row with M
generated images — or, when the train preset has ``schedule: iterations`` (every row the same
iterations), trained for twice the iteration budget (the plateau check). A spec without control rows
plans exactly the steps above.

With a ``pretrain`` section (issue #13; docs/experiments.md#pretraining) three steps come first::

    shards(pretrain train), shards(pretrain test)          # e.g. single-digit canvases
    pretrain ← shards(pretrain train, pretrain test)       # one classifier training on the source task

and every classifier training above (baseline and rows, every seed) also takes ``pretrain`` as an
input: it fine-tunes from the pretrain run's ``model.pt`` with a new head (``pretrained_head: new``).
Its hashed config says ``pretrained: <pretrain step>/model.pt`` rather than a path, so its key
changes only when the pretraining changes. The pretrain steps live in the group of their source
(``<runs>/digits-single/``), so tables with the same pretraining share one run. Without the
section the plan is exactly the one above.

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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from replication.console.progress import bars_off
from replication.errors import ConfigError
from replication.experiments import stepfns as F
from replication.experiments.spec import PRETRAIN_SOURCES, ExperimentSpec, PresetSpec
from replication.experiments.steps import DEFAULT_THREADS, Step, StepPool, StepRecord, execute, pin_threads, toposort
from replication.training.config import ITERATIONS, TrainConfig, scaled_iterations
from replication.vocabulary import BASELINE, GENERATORS, NEEDS_SCORES, REAL_SOURCE, SHUFFLE_GRID, parse_row_id

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """The planned steps of a spec: targets to run, and the steps by role (for tests and reports)."""

    spec: ExperimentSpec
    seeds: int
    targets: list[Step]
    trains: dict[tuple[str, int], Step] = field(default_factory=dict)
    metrics: dict[tuple[str, int], Step] = field(default_factory=dict)
    named: dict[str, Step] = field(default_factory=dict)
    seed_start: int = 0

    @property
    def replicates(self) -> list[int]:
        """The seeds of the replicates: ``seed_start`` … ``seed_start + seeds − 1``."""
        return list(range(self.seed_start, self.seed_start + self.seeds))

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


def generator_labels(spec: ExperimentSpec) -> dict[str, str]:
    """Generator key → the report's name of the GAN its preset trains (e.g. ``dcgan`` → ``DCGAN (PyTorch peer)``)."""
    return {g: F.generator_label(F.resolve_gan(g, _preset_source(spec.gan[g], spec), spec.gan[g].overrides,
                                                spec.path)) for g in spec.generators}


def _check_data_root(spec: ExperimentSpec, data_root: Path | None) -> Path | None:
    if spec.dataset.source == "digits-mosaic":
        return None
    if data_root is None:
        raise ConfigError(f"{spec.path}: dataset {spec.dataset.source} needs --data-root (the folder of its raw files)")
    root = Path(data_root)
    if not root.is_dir():
        raise ConfigError(f"{root}: data root of {spec.dataset.source} is not a folder")
    return root


class _Planner:
    """Builds the steps of one spec in the order of the module docstring; :func:`plan_experiment` drives it.

    Chain-level steps (GAN, samples, scores, label files, quality) are keyed by ``(…, chain)``: the chain of
    replicate ``seed`` is ``seed`` itself with ``gan.per_replicate`` and ``seed_start`` (one shared chain)
    without. ``named`` holds each as ``<role>/<…>/<chain>`` and the first chain's also without the suffix.
    """

    def __init__(self, spec: ExperimentSpec, root: Path | None, seed_start: int = 0) -> None:
        self.spec, self.root, self.group = spec, root, spec.dataset.source
        self.seed_start = seed_start
        self.named: dict[str, Step] = {}
        self.train_shards = self.named["shards/train"] = self.shards("train")
        self.test_shards = self.named["shards/test"] = self.shards("test")
        self.train_base = F.resolve_train(_preset_source(spec.train, spec), spec.train.overrides, spec.path)
        self.pretrain: Step | None = None
        if spec.pretrain is not None:
            self.pretrain = self.named["pretrain"] = self.pretraining()
            self.train_base = F.finetune_config(self.train_base, self.pretrain_cfg, spec.path)
        self.gan_data, self.pool = self.train_shards, None
        self.unlabeled_views()
        self.baselines: dict[int, Step] = {}
        self.samples: dict[tuple[str, int], Step] = {}
        self.scores: dict[tuple[str, int], Step] = {}
        self.labels: dict[tuple[str, str, int], Step] = {}
        self.gans: dict[tuple[str, int], Step] = {}

    def chain(self, seed: int) -> int:
        """The chain of replicate ``seed``: its own with ``gan.per_replicate``, else the shared one (``seed_start``)."""
        return seed if self.spec.gan_options.per_replicate else self.seed_start

    def name(self, key: str, chain: int, step: Step) -> Step:
        """Record ``step`` in ``named`` as ``key/chain`` and, for the first chain, as ``key``."""
        self.named[f"{key}/{chain}"] = step
        if chain == self.seed_start:
            self.named[key] = step
        return step

    def shards(self, split: str, *, subset: bool = True) -> Step:
        """The shard set of one split (``subset=False``: the whole training split, ignoring ``train_count``)."""
        ds = self.spec.dataset
        cfg = {"source": ds.source, "split": split, "size": ds.size, "seed": ds.seed, "tiny": ds.tiny,
               "on_bad_image": ds.on_bad_image}
        if split == "train" and ds.train_count is not None and subset:  # only when set: other hashes stay
            cfg["count"] = ds.train_count
        return Step("shards", self.group, cfg, F.shards_fn(cfg, self.root), label=f"shards {ds.source}/{split}")

    def unlabeled_views(self) -> None:
        """With ``train_count``: the whole training split, the pool (for ``real`` rows) and the GANs' images
        (labelled + pool with ``gan.data: all``), both unlabeled views (:mod:`replication.data.pool`)."""
        spec = self.spec
        if spec.dataset.train_count is None:
            return
        wants_pool = REAL_SOURCE in spec.sources
        wants_all = spec.gan_data == "all" and bool(spec.generators)
        if not (wants_pool or wants_all):
            return
        full = self.named["shards/train-all"] = self.shards("train", subset=False)
        for which, wanted in (("pool", wants_pool), ("all", wants_all)):
            if wanted:
                step = self.named[f"view/{which}"] = Step(
                    "view", self.group, {"view": which}, F.view_fn(which),
                    {"full": full, "labelled": self.train_shards},
                    label="unlabeled pool" if which == "pool" else "GAN images (labelled + pool, unlabeled)")
                if which == "pool":
                    self.pool = step
                else:
                    self.gan_data = step

    def pretraining(self) -> Step:
        """The source task's shards (train and test) and the training on them (module docstring)."""
        pre = self.spec.pretrain
        assert pre is not None
        source, options = PRETRAIN_SOURCES[pre.source]
        steps = {}
        for split, count in (("train", pre.count), ("test", pre.test_count)):
            opts = dict(options) if count is None else {**options, "canvases": count}
            cfg = {"source": source, "source_options": opts, "split": split, "size": pre.size, "seed": pre.seed,
                   "tiny": False, "on_bad_image": "stop"}
            steps[split] = self.named[f"shards/pretrain-{split}"] = Step(
                "shards", pre.source, cfg, F.shards_fn(cfg, None), label=f"shards {pre.source}/{split}")
        self.pretrain_cfg = F.resolve_train(_preset_source(PresetSpec(pre.preset), self.spec), pre.overrides,
                                            self.spec.path)
        return Step("pretrain", pre.source, F.train_hash_config(self.pretrain_cfg, pre.seed),
                    F.train_fn(self.pretrain_cfg, pre.seed), {"train": steps["train"], "test": steps["test"]},
                    label=f"pretrain on {pre.source}")

    def training(self, row: str, seed: int, gen: Step | None = None, labels: Step | None = None, *,
                 weight: float | None = None, matched: bool = False) -> Step:
        """One classifier training: real images, plus generated images and their labels for a GAN row.

        ``weight``: the λ of a ``@λ`` row (``data.generated_weight``); ``matched``: ``baseline/iters``. Under
        ``schedule: epochs`` the iteration-matched baseline, whose hashed config also holds the sampling
        numbers that fix M (its schedule is computed from N and M when it runs:
        :func:`~replication.experiments.stepfns.matched_schedule`); under ``schedule: iterations`` the
        baseline at twice the iteration budget (the plateau check).
        """
        base = F.with_generated_weight(self.train_base, weight)
        if matched and base.schedule == ITERATIONS:   # the plateau check: the baseline at 2× the iteration budget
            base, matched = scaled_iterations(base, 2), False
        cfg = F.train_hash_config(base, seed)
        match = None
        if matched:
            sm = self.spec.sampling
            match = {"gen_ratio": sm.gen_ratio, "count": sm.count}
            cfg["match_iterations"] = match
        inputs = {"train": self.train_shards, "test": self.test_shards}
        if self.pretrain is not None:
            inputs["pretrain"] = self.pretrain
        if gen is not None and labels is not None:
            inputs.update(generated=gen, labels=labels)
        return Step("train", self.group, cfg, F.train_fn(base, seed, match), inputs,
                    label=f"train {row} seed {seed}")

    def baseline(self, seed: int) -> Step:
        """The baseline row's training with ``seed`` (one Step per seed: the row's and, as labeler, the chain's)."""
        if seed not in self.baselines:
            self.baselines[seed] = self.named[f"train/baseline/{seed}"] = self.training(BASELINE, seed)
        return self.baselines[seed]

    def source(self, g: str, c: int) -> None:
        """Image source ``g`` of chain ``c``: a GAN (:meth:`generator`), the block-shuffled real canvases or a
        draw from the unlabeled pool; then the chain's baseline scores on its images if a pseudo or SPL row
        uses them."""
        sm = self.spec.sampling
        if g in GENERATORS:
            self.generator(g, c)
        elif g == REAL_SOURCE:
            assert self.pool is not None
            s_cfg = {"source": g, "gen_ratio": sm.gen_ratio, "count": sm.count, "seed": sm.seed + c}
            self.samples[(g, c)] = self.name(f"samples/{g}", c, Step(
                "samples", self.group, s_cfg, F.real_fn(s_cfg), {"pool": self.pool, "train": self.train_shards},
                label=f"samples {g} (unlabeled pool) chain {c}"))
        else:
            s_cfg = {"source": g, "grid": SHUFFLE_GRID, "gen_ratio": sm.gen_ratio, "count": sm.count,
                     "seed": sm.seed + c}
            self.samples[(g, c)] = self.name(f"samples/{g}", c, Step(
                "samples", self.group, s_cfg, F.shuffled_fn(s_cfg), {"train": self.train_shards},
                label=f"samples {g} (block-shuffled real canvases) chain {c}"))
        if any(parse_row_id(r)[:2] in ((rule, g) for rule in NEEDS_SCORES) for r in self.spec.rows):
            self.scores[(g, c)] = self.name(f"predict/{g}", c, Step(
                "predict", self.group, {"what": "baseline scores of generated images"},
                F.predict_fn(self.spec.predict_batch), {"model": self.baseline(c), "data": self.samples[(g, c)]},
                label=f"baseline {c} scores on {g} samples"))

    def generator(self, g: str, c: int) -> None:
        """GAN ``g`` of chain ``c`` (seed: the preset's + ``c``) and its samples (``sampling.seed + c``)."""
        spec = self.spec
        gan_cfg = F.resolve_gan(g, _preset_source(spec.gan[g], spec), spec.gan[g].overrides, spec.path)
        gan_cfg = replace(gan_cfg, seed=gan_cfg.seed + c)
        gan = self.gans[(g, c)] = self.name(f"gan/{g}", c, Step(
            "gan", self.group, F.gan_hash_config(gan_cfg), F.gan_fn(gan_cfg), {"train": self.gan_data},
            label=f"GAN {g} chain {c}"))
        sm = spec.sampling
        s_cfg = {"gen_ratio": sm.gen_ratio, "count": sm.count, "seed": sm.seed + c}
        self.samples[(g, c)] = self.name(f"samples/{g}", c, Step(
            "samples", self.group, s_cfg, F.samples_fn(s_cfg, sm.batch), {"gan": gan, "train": self.train_shards},
            label=f"samples {g} chain {c}"))

    def label_file(self, rule: str, g: str, c: int) -> None:
        """The label file of ``rule`` for the samples of ``g`` in chain ``c`` (random rule: ``labeling.seed + c``)."""
        lab = self.spec.labeling
        l_cfg = {"rule": rule, "k": lab.k, "spl_input": lab.spl_input, "temperature": lab.temperature,
                 "seed": lab.seed + c}
        inputs = {"generated": self.samples[(g, c)]}
        if rule in NEEDS_SCORES:
            inputs["scores"] = self.scores[(g, c)]
        self.labels[(rule, g, c)] = self.name(f"labels/{rule}/{g}", c, Step(
            "labels", self.group, l_cfg, F.labels_fn(l_cfg), inputs, label=f"{rule} labels for {g} chain {c}"))

    def row(self, plan: Plan, row: str, seeds: Sequence[int], only: Sequence[str]) -> None:
        """The trainings and metrics of one row for every seed."""
        rid = parse_row_id(row)
        m_base = {"table": self.spec.name, "fingerprint": self.spec.fingerprint(),
                  "convention": self.spec.metrics.convention, "top3": self.spec.metrics.top3}
        for seed in seeds:
            c = self.chain(seed)
            if rid.matched:
                t = self.training(row, seed, matched=True)
            elif rid.source is None:
                t = self.baseline(seed)
            else:
                t = self.training(row, seed, self.samples[(rid.source, c)], self.labels[(rid.method, rid.source, c)],
                                  weight=rid.weight)
            m_cfg = {**m_base, "row": row, "seed": seed}
            m = Step("metrics", self.group, m_cfg, F.metrics_fn(m_cfg), {"model": t, "test": self.test_shards},
                     label=f"metrics {row} seed {seed}")
            plan.trains[(row, seed)], plan.metrics[(row, seed)] = t, m
            if not only or row in only:
                plan.targets.append(m)

    def gallery(self, plan: Plan, g: str) -> None:
        """The gallery of ``g``'s samples (first chain) with their SPL and smooth labels (when those rows exist)."""
        c = self.seed_start
        inputs = {"samples": self.samples[(g, c)]}
        for rule in ("spl", "smooth"):
            if (rule, g, c) in self.labels:
                inputs[rule] = self.labels[(rule, g, c)]
        if len(inputs) > 1:
            n = self.spec.gallery
            gal = self.named[f"gallery/{g}"] = Step("gallery", self.group, {"n": n, "generator": g},
                                                    F.gallery_fn(n, g), inputs, label=f"gallery {g}")
            plan.targets.append(gal)

    def quality(self, plan: Plan, g: str, c: int) -> None:
        """GAN ``g``'s quality in chain ``c``, measured with the chain's labeler (the baseline's seed-c training)."""
        q = self.spec.quality
        cfg = {"n": q.n, "seed": q.seed, "batch": self.spec.sampling.batch, "generator": g}
        step = self.name(f"quality/{g}", c, Step(
            "quality", self.group, cfg, F.quality_fn(cfg),
            {"gan": self.gans[(g, c)], "classifier": self.baseline(c), "samples": self.samples[(g, c)]},
            label=f"quality of {g} samples chain {c}"))
        plan.targets.append(step)


def plan_experiment(spec: ExperimentSpec, *, data_root: str | Path | None = None, seeds: int = 1,
                    only: Sequence[str] = (), check_data: bool = True, seed_start: int = 0,
                    threads: int = DEFAULT_THREADS) -> Plan:
    """Build the step graph of ``spec`` (module docstring); nothing runs, every preset is resolved.

    ``seeds`` repeats each row's training with seeds ``seed_start`` … ``seed_start + seeds − 1`` (the
    replicates; with ``gan.per_replicate`` each with its own GAN chain); ``only`` restricts the targets
    to those rows (their dependencies are planned too; no gallery, no quality step).
    ``check_data=False`` skips the data-root check, for a plan that only locates finished run
    directories (the report page, :mod:`replication.report.page`); such a plan must not be executed.
    ``threads``: torch threads of every step, part of the keys (:func:`~replication.experiments.steps.pin_threads`).
    """
    if seeds < 1:
        raise ConfigError(f"{spec.path}: --seeds must be ≥ 1, got {seeds}")
    if seed_start < 0:
        raise ConfigError(f"{spec.path}: --seed-start must be ≥ 0, got {seed_start}")
    for r in only:
        if r not in spec.rows:
            raise ConfigError(f"{spec.path}: --only {r!r} is not a row of this spec ({', '.join(spec.rows)})")
    root = Path(data_root) if data_root is not None else None
    planner = _Planner(spec, _check_data_root(spec, root) if check_data else root, seed_start)
    _check_weights(spec, planner.train_base.data.generated_weight)
    replicates = list(range(seed_start, seed_start + seeds))
    chains = sorted({planner.chain(s) for s in replicates})
    planner.baseline(seed_start)  # the first labeler, planned first (as before replicates had chains)
    for c in chains:
        for g in spec.sources:
            planner.source(g, c)
        for row in spec.rows:
            rid = parse_row_id(row)
            if rid.source is not None and (rid.method, rid.source, c) not in planner.labels:
                planner.label_file(rid.method, rid.source, c)
    plan = Plan(spec=spec, seeds=seeds, targets=[], named=planner.named, seed_start=seed_start)
    for row in spec.rows:
        planner.row(plan, row, replicates, only)
    if not only and spec.gallery > 0:
        for g in spec.sources:
            planner.gallery(plan, g)
    if not only and spec.quality.enabled:
        for c in chains:
            for g in spec.generators:
                planner.quality(plan, g, c)
    pin_threads([*plan.named.values(), *plan.trains.values(), *plan.metrics.values(), *plan.targets], threads)
    return plan


def resolved_train(spec: ExperimentSpec) -> TrainConfig:
    """``spec``'s train preset with its overrides, as planned (before the fine-tuning fields are set)."""
    return F.resolve_train(_preset_source(spec.train, spec), spec.train.overrides, spec.path)


def train_schedule(spec: ExperimentSpec) -> str:
    """The ``schedule`` (``epochs`` / ``iterations``) of ``spec``'s train preset with its overrides, as planned
    (the report words ``baseline/iters`` after it)."""
    return resolved_train(spec).schedule


def _check_weights(spec: ExperimentSpec, preset_weight: float) -> None:
    """``@λ`` rows need the plain rows at λ = 1 (the λ figure puts them there); ConfigError naming the spec."""
    weighted = [r for r in spec.rows if parse_row_id(r).weight is not None]
    if weighted and preset_weight != 1.0:
        raise ConfigError(f"{spec.path}: rows {', '.join(weighted)} set λ themselves, so the train preset's "
                          f"data.generated_weight must be 1 (the plain rows are λ = 1), got {preset_weight}")


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
                   seeds: int = 1, only: Sequence[str] = (), progress: bool = True, seed_start: int = 0,
                   threads: int = DEFAULT_THREADS, pool: StepPool | None = None) -> ExperimentResult:
    """Plan ``spec`` and execute every step not yet done under ``runs`` (see :func:`plan_experiment`);
    ``pool`` runs independent steps concurrently (:func:`~replication.experiments.steps.execute`).
    ``progress=False``: no bar at all, the steps' own included (:func:`replication.console.progress.bars_off`)."""
    plan = plan_experiment(spec, data_root=data_root, seeds=seeds, only=only, seed_start=seed_start,
                           threads=threads)
    steps = plan.steps
    todo = sum(1 for s in steps if not s.is_done(Path(runs)))
    log.info("%s: %d steps, %d to run, under %s", spec.path, len(steps), todo, runs)
    with bars_off(not progress):
        records = execute(steps, runs, pool=pool, progress=progress)
    return ExperimentResult(plan, records)


__all__ = ["Plan", "ExperimentResult", "generator_labels", "plan_experiment", "resolved_train", "run_experiment",
           "train_schedule"]
