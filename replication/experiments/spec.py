"""Table specs: which dataset, rows, columns, metric convention and presets make one table (docs/experiments.md).

A spec is a YAML file (``tables/specs/table{1,2,3}.yaml``, ``demo.yaml``) loaded into the frozen
dataclass :class:`ExperimentSpec`. Loading is strict and happens before anything runs: an unknown
YAML key, dataset, row, generator, labeling rule, metric column, convention or Top-3 rule raises a
:class:`~replication.errors.ConfigError` whose one-line message names the spec file.

Rows are ``baseline`` (real data only) or ``<rule>/<generator>`` with rule in
:data:`~replication.vocabulary.RULES` (random, pseudo, smooth, spl; paper §2.3, Eqs. (1)–(2);
docs/labeling.md#label-rules) and generator in :data:`~replication.vocabulary.GENERATORS` (dcgan,
wgan-gp; paper §2.2, §3.2; docs/gan.md). Control rows go beyond the paper (issue #13;
docs/experiments.md#control-rows): ``<rule>/shuffled`` (block-shuffled real canvases instead of a
GAN's images), ``baseline/iters`` (real images only, iteration-matched) and ``<rule>/<source>@λ``
(generated-image weight λ). Literature rows (DHC, WARP, CNN-RNN) are never run: they
are shown from the paper's CSV only, and a spec lists them under ``paper.literature``.

Decisions (docs/experiments.md):

* **M, the number of generated images**, is ``round(gen_ratio × N_real_train)`` with
  ``gen_ratio = 1`` by default (the paper does not state M; docs/classifier.md#recipe); ``sampling.count`` fixes it.
* **Replicates include the generator** (issue #19; ``gan.per_replicate``, on by default). Replicate i
  (seed i = S … S+N−1 for ``--seed-start S --seeds N``) is the whole chain with seed i: each GAN trained
  with seed ``preset seed + i``, its M samples drawn with ``sampling.seed + i``, the baseline's seed-i
  training as the labeler of those samples, the label files (random rule: ``labeling.seed + i``) and
  every row's classifier i; so a paired difference (row i − baseline i) carries the generator's
  variance. Replicate 0 keeps the keys of the shared chain. ``per_replicate: false`` is the earlier
  plan: one GAN, one sample set, one labeler (the baseline's seed-S training) and one set of label files
  shared by all seeds; the report then says its intervals exclude the generator.
* **The unlabeled pool** (issue #19; ``gan.data``): with ``dataset.train_count = N`` the training
  canvases outside the labelled N are a pool whose labels no step reads (:mod:`replication.data.pool`).
  ``gan.data: all`` (default) trains the GANs on the labelled images and the pool; ``labelled`` on
  the N labelled images only (the paper's setting). ``<rule>/real`` rows draw M canvases from it.
* **Metric values** are stored ×100 (percent) in each row's ``metrics.json``.
* **GAN quality** (optional ``quality`` section, issue #13; docs/experiments.md#the-quality-step): each
  GAN's samples are measured (:mod:`replication.gan.quality_step`) in the features of the baseline of the
  same replicate (seed 0 with a shared GAN), with ``n = min(M, quality.n)`` samples; absent means on
  with the defaults, ``n: 0`` turns it off. It never enters the fingerprint: it measures, it does not
  change any row's numbers.
* **Pretraining** (optional ``pretrain`` section, issue #13; docs/experiments.md#pretraining): one
  classifier training on a source task (:data:`PRETRAIN_SOURCES`), shared by every classifier
  training of the table, which then fine-tunes from its ``model.pt`` with a new head. A spec
  without the section plans and fingerprints exactly as before the section existed.
"""
from __future__ import annotations

import hashlib
import json
import os
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from replication import config as C
from replication.errors import ConfigError
from replication.gan.quality_step import DEFAULT_N as QUALITY_N
from replication.report.paper_table import read_paper_table
from replication.vocabulary import (
    BAD_IMAGE_POLICIES,
    CONVENTIONS,
    DATASETS,
    GAN_DATA,
    GENERATORS,
    IMAGE_SOURCES,
    METRIC_KEYS,
    REAL_SOURCE,
    RULES,
    SPL_INPUTS,
    TOP3_RULES,
    parse_row_id,
)

T = TypeVar("T")
KIND = "spec"


@dataclass(frozen=True)
class DatasetSpec:
    """The dataset: a source of ``replication.data.sources`` and how its shards are built."""

    source: str
    size: int | None = None  # stored side; None = the source's default (256 photos, 32 digits)
    seed: int = 0
    tiny: bool = False
    on_bad_image: str = "stop"
    train_count: int | None = None  # a seeded subset of the training split (limited labels); None = all


@dataclass(frozen=True)
class PresetSpec:
    """A named preset (or YAML path) plus ``key=value`` overrides, resolved by the step's library."""

    preset: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class SamplingSpec:
    """How many images each GAN generates: ``count`` if set, else ``round(gen_ratio × N_train)``."""

    gen_ratio: float = 1.0
    count: int | None = None
    seed: int = 0
    batch: int = 256


@dataclass(frozen=True)
class LabelingSpec:
    """Parameters of the label rules: K for random/pseudo, the SPL input and temperature.

    See paper §2.3, Eqs. (1)–(2); docs/labeling.md#label-rules.
    """

    k: int = 3
    spl_input: str = "probs"
    temperature: float = 1.0
    seed: int = 0  # seed of the random rule


@dataclass(frozen=True)
class MetricsSpec:
    """Metric convention (paper §3.1; docs/metrics.md#definitions) and the Top-3 rule the table shows."""

    convention: str = "srn"
    top3: str = "pure"


#: Pretraining sources: name → (data source, its source options). ``digits-single``: one digit per
#: canvas from digits-mosaic's training digit pool (docs/datasets.md#single-digit-canvases-the-pretraining-source).
PRETRAIN_SOURCES: dict[str, tuple[str, dict[str, Any]]] = {
    "digits-single": ("digits-mosaic", {"layout": "single"}),
}


@dataclass(frozen=True)
class PretrainSpec:
    """The source task every classifier training of the table fine-tunes from (issue #13).

    ``count`` / ``test_count``: canvases in the source's train / test split (None = the source's
    defaults, 10,000 / 1,000 for ``digits-single``); ``seed`` seeds their build and the training.
    """

    source: str
    preset: str
    overrides: tuple[str, ...] = ()
    count: int | None = None
    test_count: int | None = None
    size: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class QualitySpec:
    """The quality step of each GAN (issue #13): ``n`` samples at most (``min(M, n)``; 0 = no quality step),
    drawn and compared with noise/choice seed ``seed``."""

    n: int = QUALITY_N  # replication.gan.quality_step's default, 5,000
    seed: int = 0

    @property
    def enabled(self) -> bool:
        """Whether the plan has a quality step per GAN (``n > 0``)."""
        return self.n > 0


@dataclass(frozen=True)
class GanOptions:
    """How the GANs enter the replicates and what they train on (issue #19; the ``gan`` section's two option keys).

    ``per_replicate``: a GAN (and its samples, labeler and label files) per replicate, else one shared by
    all; ``data``: ``all`` (labelled + unlabeled pool) or ``labelled`` (:data:`~replication.vocabulary.GAN_DATA`).
    """

    per_replicate: bool = True
    data: str = "all"


#: The keys of the ``gan`` section that are options, not generators.
GAN_OPTION_KEYS = tuple(f.name for f in fields(GanOptions))


@dataclass(frozen=True)
class PaperSpec:
    """The paper's numbers shown beside ours: CSV, caption, literature rows, and a note."""

    csv: Path
    caption: str
    literature: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class ExperimentSpec:
    """One table: dataset, rows, columns, metric convention and the presets of every step."""

    name: str
    title: str
    dataset: DatasetSpec
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    metrics: MetricsSpec
    gan: Mapping[str, PresetSpec]
    train: PresetSpec
    paper: PaperSpec
    sampling: SamplingSpec = SamplingSpec()
    labeling: LabelingSpec = LabelingSpec()
    predict_batch: int = 256
    gallery: int = 16  # images per generator in the gallery PNG (0 = none)
    pretrain: PretrainSpec | None = None
    quality: QualitySpec = QualitySpec()
    gan_options: GanOptions = GanOptions()
    path: Path = field(default=Path("<dict>"), compare=False)

    @property
    def gan_data(self) -> str:
        """What the GANs train on in effect: ``all`` only when there is a pool (``dataset.train_count`` set)."""
        return "all" if self.gan_options.data == "all" and self.dataset.train_count is not None else "labelled"

    @property
    def sources(self) -> tuple[str, ...]:
        """Image sources (GANs and non-GAN outliers) used by at least one row, in :data:`IMAGE_SOURCES` order."""
        used = {parse_row_id(r).source for r in self.rows}
        return tuple(g for g in IMAGE_SOURCES if g in used)

    @property
    def generators(self) -> tuple[str, ...]:
        """GANs used by at least one row, in :data:`GENERATORS` order."""
        return tuple(g for g in self.sources if g in GENERATORS)

    @property
    def rules(self) -> tuple[str, ...]:
        """Labeling rules used by at least one row, in :data:`RULES` order."""
        used = {parse_row_id(r).method for r in self.rows}
        return tuple(r for r in RULES if r in used)

    def fingerprint(self) -> str:
        """Hash of everything that determines the numbers (not the rows, columns or captions).

        Each row's ``metrics.json`` records it, so the renderer shows only results made with
        the spec as it is now.
        """
        dataset = asdict(self.dataset)
        if dataset["train_count"] is None:  # unset: the fingerprint of every spec written before the key
            del dataset["train_count"]
        payload = {
            "dataset": dataset,
            "gan": {g: asdict(self.gan[g]) for g in sorted(self.gan)},
            "train": asdict(self.train),
            "sampling": asdict(self.sampling),
            "labeling": asdict(self.labeling),
            "metrics": asdict(self.metrics),
        }
        if self.pretrain is not None:  # only when set: the fingerprint of every spec without one stays
            payload["pretrain"] = asdict(self.pretrain)
        options = {}  # only what differs from the earlier plan (one shared GAN on the labelled images)
        if self.gan_options.per_replicate:
            options["per_replicate"] = True
        if self.gan_data == "all":
            options["data"] = "all"
        if options:
            payload["gan_options"] = options
        blob = json.dumps(payload, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ---------------------------------------------------------------------------------------- loading


def _err(where: Path, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}")


def _mapping(value: Any, where: Path, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(where, f"{what} must be a mapping, got {type(value).__name__}")
    return value


def _check_keys(d: Mapping, allowed: tuple[str, ...], where: Path, what: str) -> None:
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise _err(where, f"unknown key {unknown[0]!r} in {what} (expected one of: {', '.join(allowed)})")


def _build(cls: type[T], d: Any, where: Path, what: str) -> T:
    """Build dataclass ``cls`` from mapping ``d``: unknown keys and wrongly typed scalars are refused.

    Types are checked by :func:`replication.config.check_value`; the messages keep the spec's wording
    (``dataset.tiny must be bool, got 'yes'``). An int stays an int in a float field (``gen_ratio: 1``),
    as the spec's fingerprint and the run directories' hashes have always seen it.
    """
    d = _mapping(d, where, what)
    _check_keys(d, tuple(f.name for f in fields(cls)), where, what)
    hints = typing.get_type_hints(cls)
    for name, value in d.items():
        try:
            C.check_value(f"{what}.{name}", value, hints[name], kind=KIND, ints_to_float=False)
        except ConfigError:
            type_names = [t.strip() for t in str(cls.__dataclass_fields__[name].type).split("|")]
            raise _err(where, f"{what}.{name} must be {' or '.join(type_names)}, got {value!r}") from None
    with C.naming(where):
        return C.from_dict(cls, d, kind=KIND, prefix=f"{what}.", ints_to_float=False)


def _overrides(value: Any, where: Path, what: str) -> tuple[str, ...]:
    """Overrides as ``key=value`` strings, from a mapping (values in YAML flow style) or a list."""
    if value is None:
        return ()
    if isinstance(value, dict):
        return C.override_strings(value)
    if isinstance(value, list) and all(isinstance(x, str) and "=" in x for x in value):
        return tuple(value)
    raise _err(where, f"{what}.overrides must be a mapping or a list of 'key=value' strings")


def _preset(value: Any, where: Path, what: str) -> PresetSpec:
    if isinstance(value, str):
        return PresetSpec(preset=value)
    d = _mapping(value, where, what)
    _check_keys(d, ("preset", "overrides"), where, what)
    if not isinstance(d.get("preset"), str):
        raise _err(where, f"{what}.preset must name a preset or a YAML file")
    return PresetSpec(preset=d["preset"], overrides=_overrides(d.get("overrides"), where, what))


def _check_choice(value: Any, choices: tuple, where: Path, what: str) -> None:
    if value not in choices:
        raise _err(where, f"unknown {what} {value!r} (expected one of: {', '.join(map(str, choices))})")


def _check_row(row: Any, where: Path) -> None:
    """A row id :func:`~replication.vocabulary.parse_row_id` accepts (control rows included); else ConfigError."""
    if not isinstance(row, str):
        raise _err(where, f"row {row!r} must be a string")
    try:
        parse_row_id(row)
    except ValueError as e:
        raise _err(where, str(e)) from None


TOP_KEYS = (
    "name", "title", "dataset", "rows", "columns", "metrics", "gan", "train", "paper",
    "sampling", "labeling", "predict_batch", "gallery", "pretrain", "quality",
)


def _pretrain(value: Any, where: Path) -> PretrainSpec | None:
    """The optional ``pretrain`` section (:class:`PretrainSpec`); None when absent."""
    if value is None:
        return None
    d = dict(_mapping(value, where, "pretrain"))
    _check_keys(d, tuple(f.name for f in fields(PretrainSpec)), where, "pretrain")
    for key in ("source", "preset"):
        if not isinstance(d.get(key), str):
            raise _err(where, f"pretrain.{key} must be given as a string")
    _check_choice(d["source"], tuple(PRETRAIN_SOURCES), where, "pretrain.source")
    d["overrides"] = _overrides(d.get("overrides"), where, "pretrain")
    for key in ("count", "test_count", "size", "seed"):
        v = d.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "seed" else 1)):
            raise _err(where, f"pretrain.{key} must be a {'whole number' if key == 'seed' else 'positive integer'}"
                              f"{'' if key == 'seed' else ' or null'}, got {v!r}")
    if d.get("seed") is None:
        d.pop("seed", None)
    return PretrainSpec(**d)


def _rows_and_columns(raw: Mapping[str, Any], where: Path) -> tuple[list[str], list[str]]:
    """The spec's ``rows`` (valid row ids, each once) and ``columns`` (metric keys), checked."""
    rows = raw["rows"]
    if not isinstance(rows, list) or not rows:
        raise _err(where, "rows must be a non-empty list")
    for r in rows:
        _check_row(r, where)
    if len(set(rows)) != len(rows):
        raise _err(where, "rows are listed twice")

    columns = raw["columns"]
    if not isinstance(columns, list) or not columns:
        raise _err(where, "columns must be a non-empty list of metric keys")
    for c in columns:
        _check_choice(c, METRIC_KEYS, where, "metric key")
    return rows, columns


def _paper(raw: Any, where: Path) -> PaperSpec:
    """The ``paper`` section; its ``csv`` path is relative to the spec file."""
    paper_raw = dict(_mapping(raw, where, "paper"))
    _check_keys(paper_raw, tuple(f.name for f in fields(PaperSpec)), where, "paper")
    if "csv" not in paper_raw or "caption" not in paper_raw:
        raise _err(where, "paper needs 'csv' and 'caption'")
    csv_path = Path(paper_raw["csv"])
    if not csv_path.is_absolute():
        csv_path = Path(os.path.normpath(where.parent / csv_path)) if where.name != "<dict>" else csv_path
    paper_raw["csv"] = csv_path
    paper_raw["literature"] = tuple(paper_raw.get("literature") or ())
    return PaperSpec(**paper_raw)


def _step_sections(raw: Mapping[str, Any], where: Path) -> tuple[SamplingSpec, LabelingSpec, QualitySpec]:
    """The optional ``sampling``, ``labeling`` and ``quality`` sections, with their defaults, checked."""
    sampling = _build(SamplingSpec, raw.get("sampling"), where, "sampling")
    if sampling.gen_ratio <= 0 or (sampling.count is not None and sampling.count <= 0):
        raise _err(where, "sampling.gen_ratio and sampling.count must be positive")
    labeling = _build(LabelingSpec, raw.get("labeling"), where, "labeling")
    _check_choice(labeling.spl_input, SPL_INPUTS, where, "labeling.spl_input")
    if labeling.temperature <= 0 or labeling.k < 1:
        raise _err(where, "labeling.temperature must be > 0 and labeling.k ≥ 1")

    quality = _build(QualitySpec, raw.get("quality"), where, "quality")
    if quality.n < 0 or quality.n == 1 or quality.seed < 0:
        raise _err(where, f"quality.n must be 0 (no quality step) or at least 2 and quality.seed ≥ 0, "
                          f"got n={quality.n}, seed={quality.seed}")
    return sampling, labeling, quality


def spec_from_dict(raw: Any, where: str | Path = "<dict>") -> ExperimentSpec:
    """Validate a parsed YAML mapping and build the :class:`ExperimentSpec` (paths relative to ``where``)."""
    where = Path(where)
    raw = _mapping(raw, where, "the spec")
    _check_keys(raw, TOP_KEYS, where, "the spec")
    for key in ("name", "dataset", "rows", "columns", "gan", "train", "paper"):
        if key not in raw:
            raise _err(where, f"missing key {key!r}")

    dataset = _build(DatasetSpec, raw["dataset"], where, "dataset")
    _check_choice(dataset.source, DATASETS, where, "dataset")
    _check_choice(dataset.on_bad_image, BAD_IMAGE_POLICIES, where, "dataset.on_bad_image")

    rows, columns = _rows_and_columns(raw, where)

    metrics = _build(MetricsSpec, raw.get("metrics"), where, "metrics")
    _check_choice(metrics.convention, CONVENTIONS, where, "metrics.convention")
    _check_choice(metrics.top3, TOP3_RULES, where, "metrics.top3")

    gan_raw = dict(_mapping(raw["gan"], where, "gan"))
    gan_options = _build(GanOptions, {k: gan_raw.pop(k) for k in GAN_OPTION_KEYS if k in gan_raw}, where, "gan")
    _check_choice(gan_options.data, GAN_DATA, where, "gan.data")
    for g in gan_raw:
        _check_choice(g, GENERATORS, where, "generator in gan")
    gan = {g: _preset(v, where, f"gan.{g}") for g, v in gan_raw.items()}
    for r in rows:
        gen = parse_row_id(r).source
        if gen in GENERATORS and gen not in gan:
            raise _err(where, f"row {r!r} needs a 'gan.{gen}' preset")
        if gen == REAL_SOURCE and dataset.train_count is None:
            raise _err(where, f"row {r!r} draws from the unlabeled pool, which needs dataset.train_count "
                              "(the labelled N; the rest of the training split is the pool)")

    train = _preset(raw["train"], where, "train")

    paper = _paper(raw["paper"], where)
    sampling, labeling, quality = _step_sections(raw, where)

    spec = ExperimentSpec(
        name=str(raw["name"]),
        title=str(raw.get("title", raw["name"])),
        dataset=dataset,
        rows=tuple(rows),
        columns=tuple(columns),
        metrics=metrics,
        gan=gan,
        train=train,
        paper=paper,
        sampling=sampling,
        labeling=labeling,
        predict_batch=int(raw.get("predict_batch", 256)),
        gallery=int(raw.get("gallery", 16)),
        pretrain=_pretrain(raw.get("pretrain"), where),
        quality=quality,
        gan_options=gan_options,
        path=where,
    )
    _check_paper(spec)
    return spec


def _check_paper(spec: ExperimentSpec) -> None:
    """The paper CSV exists, has every column the spec shows, and lists its literature rows."""
    paper = read_paper_table(spec.paper.csv)
    for lit in spec.paper.literature:
        if lit not in paper.literature:
            raise _err(spec.path, f"literature row {lit!r} is not in {spec.paper.csv}")
    missing = [c for c in spec.columns if c not in paper.columns]
    if missing:
        raise _err(spec.path, f"column {missing[0]!r} is not in the paper table {spec.paper.csv}")


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate a table spec YAML file; :class:`ConfigError` naming the file on any problem."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: spec file not found")
    return spec_from_dict(C.read_yaml(p, kind=KIND), p)


def with_train_overrides(spec: ExperimentSpec, sets: tuple[str, ...] | list[str]) -> ExperimentSpec:
    """``spec`` with ``key=value`` overrides appended to its train preset's (they enter its fingerprint)."""
    return replace(spec, train=replace(spec.train, overrides=(*spec.train.overrides, *sets)))


__all__ = ["with_train_overrides",
    "ExperimentSpec", "DatasetSpec", "PresetSpec", "PretrainSpec", "PRETRAIN_SOURCES",
    "SamplingSpec", "LabelingSpec", "MetricsSpec", "PaperSpec", "QualitySpec", "QUALITY_N", "GanOptions",
    "GAN_OPTION_KEYS",
    "load_spec", "spec_from_dict",
]
