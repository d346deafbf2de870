"""Table specs: which dataset, rows, columns, metric convention and presets make one table (SPEC §10).

A spec is a YAML file (``tables/specs/table{1,2,3}.yaml``, ``demo.yaml``) loaded into the frozen
dataclass :class:`ExperimentSpec`. Loading is strict and happens before anything runs: an unknown
YAML key, dataset, row, generator, labeling rule, metric column, convention or Top-3 rule raises a
:class:`~replication.errors.ConfigError` whose one-line message names the spec file.

Rows are ``baseline`` (real data only) or ``<rule>/<generator>`` with rule in
:data:`RULES` (random, pseudo, smooth, spl; SPEC §5) and generator in :data:`GENERATORS`
(dcgan, wgan-gp; SPEC §4). Literature rows (DHC, WARP, CNN-RNN) are never run: they are shown
from the paper's CSV only, and a spec lists them under ``paper.literature``.

Decisions (docs/experiments.md):

* **M, the number of generated images**, is ``round(gen_ratio × N_real_train)`` with
  ``gen_ratio = 1`` by default (the paper does not state M; SPEC §7); ``sampling.count`` fixes it.
* **One GAN, one sample set, one baseline labeler per table.** ``--seeds N`` repeats only the
  classifier trainings (seed i = 0 … N−1); the GANs, their samples, the "pre-trained model"
  (the baseline row's training with seed 0) and the label files are shared by all seeds.
* **Metric values** are stored ×100 (percent) in each row's ``metrics.json``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from replication.errors import ConfigError

RULES = ("random", "pseudo", "smooth", "spl")
GENERATORS = ("dcgan", "wgan-gp")
BASELINE = "baseline"
DATASETS = ("digits-mosaic", "coco2014", "nus-wide", "wider-attribute", "folder")
BASE_METRICS = ("mAP", "F1-C", "P-C", "R-C", "F1-O", "P-O", "R-O")
TOP3_PREFIX = "top3/"
METRIC_KEYS = BASE_METRICS + tuple(TOP3_PREFIX + m for m in BASE_METRICS if m != "mAP")
CONVENTIONS = ("srn", "mlgcn", "asl")
TOP3_RULES = ("pure", "thresholded")
SPL_INPUTS = ("probs", "logits")
BAD_IMAGE_POLICIES = ("stop", "skip")
ROW_LABELS = {"random": "Random labeling", "pseudo": "Pseudo labeling", "smooth": "Smooth labeling", "spl": "Our SPL"}
GEN_LABELS = {"dcgan": "DCGAN", "wgan-gp": "WGAN-GP"}


def parse_row(row: str) -> tuple[str, str | None]:
    """Split a row id into ``(method, generator)``: ``"baseline"`` → ``("baseline", None)``."""
    if row == BASELINE:
        return BASELINE, None
    method, _, gen = row.partition("/")
    return method, gen


def row_label(row: str) -> str:
    """The paper's name of a row, e.g. ``"spl/dcgan"`` → ``"Our SPL (DCGAN)"``."""
    method, gen = parse_row(row)
    if gen is None:
        return "Baseline"
    return f"{ROW_LABELS[method]} ({GEN_LABELS[gen]})"


def metric_label(key: str) -> str:
    """Column header of a metric key: ``"top3/F1-C"`` → ``"Top-3 F1-C"``."""
    return "Top-3 " + key[len(TOP3_PREFIX):] if key.startswith(TOP3_PREFIX) else key


@dataclass(frozen=True)
class DatasetSpec:
    """The dataset: a source of ``replication.data.sources`` and how its shards are built."""

    source: str
    size: int | None = None  # stored side; None = the source's default (256 photos, 32 digits)
    seed: int = 0
    tiny: bool = False
    on_bad_image: str = "stop"


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
    """Parameters of the label rules (SPEC §5): K for random/pseudo, the SPL input and temperature."""

    k: int = 3
    spl_input: str = "probs"
    temperature: float = 1.0
    seed: int = 0  # seed of the random rule


@dataclass(frozen=True)
class MetricsSpec:
    """Metric convention (SPEC §8) and the Top-3 rule the table shows."""

    convention: str = "srn"
    top3: str = "pure"


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
    path: Path = field(default=Path("<dict>"), compare=False)

    @property
    def generators(self) -> tuple[str, ...]:
        """Generators used by at least one row, in :data:`GENERATORS` order."""
        used = {parse_row(r)[1] for r in self.rows}
        return tuple(g for g in GENERATORS if g in used)

    @property
    def rules(self) -> tuple[str, ...]:
        """Labeling rules used by at least one row, in :data:`RULES` order."""
        used = {parse_row(r)[0] for r in self.rows}
        return tuple(r for r in RULES if r in used)

    def fingerprint(self) -> str:
        """Hash of everything that determines the numbers (not the rows, columns or captions).

        Each row's ``metrics.json`` records it, so the renderer shows only results made with
        the spec as it is now.
        """
        payload = {
            "dataset": asdict(self.dataset),
            "gan": {g: asdict(self.gan[g]) for g in sorted(self.gan)},
            "train": asdict(self.train),
            "sampling": asdict(self.sampling),
            "labeling": asdict(self.labeling),
            "metrics": asdict(self.metrics),
        }
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


def _fields(cls) -> tuple[str, ...]:
    return tuple(cls.__dataclass_fields__)


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _build(cls, d: Any, where: Path, what: str):
    """Build dataclass ``cls`` from mapping ``d``: unknown keys and wrongly typed scalars are refused."""
    d = _mapping(d, where, what)
    _check_keys(d, _fields(cls), where, what)
    for name, value in d.items():
        type_names = [t.strip() for t in str(cls.__dataclass_fields__[name].type).split("|")]
        allowed = tuple(t for n in type_names for t in _TYPES.get(n, ()))
        ok = (value is None and "None" in type_names) or (
            isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        )
        if allowed and not ok:
            raise _err(where, f"{what}.{name} must be {' or '.join(type_names)}, got {value!r}")
    try:
        return cls(**d)
    except TypeError as e:
        raise _err(where, f"{what}: {e}") from None


def _overrides(value: Any, where: Path, what: str) -> tuple[str, ...]:
    """Overrides as ``key=value`` strings, from a mapping (values in YAML flow style) or a list."""
    if value is None:
        return ()
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            text = v if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True).strip()
            if text.endswith("\n...") or text.endswith("..."):
                text = text.removesuffix("...").strip()
            out.append(f"{k}={text}")
        return tuple(out)
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
    if not isinstance(row, str):
        raise _err(where, f"row {row!r} must be a string")
    method, gen = parse_row(row)
    if method == BASELINE:
        return
    if method not in RULES or gen not in GENERATORS:
        raise _err(
            where,
            f"unknown row {row!r} (expected 'baseline' or '<rule>/<generator>' with rule in "
            f"{', '.join(RULES)} and generator in {', '.join(GENERATORS)})",
        )


TOP_KEYS = (
    "name", "title", "dataset", "rows", "columns", "metrics", "gan", "train", "paper",
    "sampling", "labeling", "predict_batch", "gallery",
)


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

    metrics = _build(MetricsSpec, raw.get("metrics"), where, "metrics")
    _check_choice(metrics.convention, CONVENTIONS, where, "metrics.convention")
    _check_choice(metrics.top3, TOP3_RULES, where, "metrics.top3")

    gan_raw = _mapping(raw["gan"], where, "gan")
    for g in gan_raw:
        _check_choice(g, GENERATORS, where, "generator in gan")
    gan = {g: _preset(v, where, f"gan.{g}") for g, v in gan_raw.items()}
    for r in rows:
        gen = parse_row(r)[1]
        if gen is not None and gen not in gan:
            raise _err(where, f"row {r!r} needs a 'gan.{gen}' preset")

    train = _preset(raw["train"], where, "train")

    paper_raw = dict(_mapping(raw["paper"], where, "paper"))
    _check_keys(paper_raw, _fields(PaperSpec), where, "paper")
    if "csv" not in paper_raw or "caption" not in paper_raw:
        raise _err(where, "paper needs 'csv' and 'caption'")
    csv_path = Path(paper_raw["csv"])
    if not csv_path.is_absolute():
        csv_path = Path(os.path.normpath(where.parent / csv_path)) if where.name != "<dict>" else csv_path
    paper_raw["csv"] = csv_path
    paper_raw["literature"] = tuple(paper_raw.get("literature") or ())
    paper = PaperSpec(**paper_raw)

    sampling = _build(SamplingSpec, raw.get("sampling"), where, "sampling")
    if sampling.gen_ratio <= 0 or (sampling.count is not None and sampling.count <= 0):
        raise _err(where, "sampling.gen_ratio and sampling.count must be positive")
    labeling = _build(LabelingSpec, raw.get("labeling"), where, "labeling")
    _check_choice(labeling.spl_input, SPL_INPUTS, where, "labeling.spl_input")
    if labeling.temperature <= 0 or labeling.k < 1:
        raise _err(where, "labeling.temperature must be > 0 and labeling.k ≥ 1")

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
        path=where,
    )
    _check_paper(spec)
    return spec


def _check_paper(spec: ExperimentSpec) -> None:
    """The paper CSV exists, has every column the spec shows, and lists its literature rows."""
    from replication.tables import read_paper_table  # local: tables imports this module

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
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: malformed YAML ({str(e).splitlines()[0]})") from None
    return spec_from_dict(raw, p)


__all__ = [
    "ExperimentSpec", "DatasetSpec", "PresetSpec", "SamplingSpec", "LabelingSpec", "MetricsSpec", "PaperSpec",
    "load_spec", "spec_from_dict", "parse_row", "row_label", "metric_label",
    "RULES", "GENERATORS", "BASELINE", "METRIC_KEYS", "DATASETS",
]
