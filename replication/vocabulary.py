"""The names every part of the replication agrees on: rules, generators, metrics, rows, datasets.

Pure constants and tiny pure helpers only; this module imports nothing from :mod:`replication`, so
any module may import it. ``gan_tf_port`` (which never imports :mod:`replication`) keeps its own
``ARCHS``; ``tests/test_vocabulary.py`` checks that it equals :data:`GENERATORS`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

# -- labeling (the paper, Section 3: random, pseudo and smooth labeling, and SPL) ------------------
RULES = ("random", "pseudo", "smooth", "spl")
#: Rules that need no classifier scores of the generated images.
SCORELESS_RULES = ("random", "smooth")
#: Rules that need the baseline classifier's scores of the generated images.
NEEDS_SCORES = ("pseudo", "spl")
#: What a score array holds: sigmoid probabilities or raw logits.
SCORE_KINDS = ("probs", "logits")
#: What SPL's softmax(v / T) is applied to.
SPL_INPUTS = SCORE_KINDS

# -- generators (the paper's two GANs) ------------------------------------------------------------
GENERATORS = ("dcgan", "wgan-gp")
GEN_LABELS = {"dcgan": "DCGAN", "wgan-gp": "WGAN-GP"}
#: GAN architectures `spl gan train` accepts: the paper's two TF ports and the peer PyTorch DCGAN
#: (``replication/gan/torch_dcgan.py``, not a TF port; docs/gan.md, "Collapse diagnosis").
PEER_DCGAN = "torch-dcgan"
GAN_ARCHS = (*GENERATORS, PEER_DCGAN)
#: The generator a peer architecture realises in a table spec: ``gan: {dcgan: {preset: demo-torch-dcgan}}``
#: keeps the preset's ``torch-dcgan`` for the rows ``<rule>/dcgan`` (any other preset arch becomes the key's).
PEER_OF = {PEER_DCGAN: "dcgan"}
#: The report's name of a generator row source realised by each architecture (a peer is never called the paper's).
ARCH_LABELS = {**GEN_LABELS, PEER_DCGAN: "DCGAN (PyTorch peer)"}

# -- metrics (docs/metrics.md) --------------------------------------------------------------------
BASE_METRICS = ("mAP", "F1-C", "P-C", "R-C", "F1-O", "P-O", "R-O")
#: The per-class and overall precision/recall/F1 columns (everything but mAP).
PRF_METRICS = BASE_METRICS[1:]
TOP3_PREFIX = "top3/"
METRIC_KEYS = BASE_METRICS + tuple(TOP3_PREFIX + m for m in PRF_METRICS)
#: Metric conventions (presets of :mod:`replication.metrics`).
CONVENTIONS = ("srn", "mlgcn", "asl")
#: The two Top-3 rules a table shows (pure: the 3 highest scores; thresholded: and score > 0.5).
TOP3_RULES = ("pure", "thresholded")
#: What the classifier and ``spl eval`` may compute: one rule, both rules, or none.
TOP3_CHOICES = TOP3_RULES + ("both", "none")

# -- rows of the paper's tables -------------------------------------------------------------------
BASELINE = "baseline"
ROW_LABELS = {"random": "Random labeling", "pseudo": "Pseudo labeling", "smooth": "Smooth labeling", "spl": "Our SPL"}

# -- datasets -------------------------------------------------------------------------------------
DATASETS = ("digits-mosaic", "coco2014", "nus-wide", "wider-attribute", "folder")
#: Datasets of digits: a mirrored digit is not a digit, so the GANs do not flip them by default.
DIGIT_DATASETS = ("digits-mosaic",)
#: What ``spl data build`` does with an image that cannot be decoded.
BAD_IMAGE_POLICIES = ("stop", "skip")


# -- control rows (issue #13; beyond the paper, never in the paper's CSV) ---------------------------
#: Sources of "generated" images that no GAN made. ``shuffled``: real training canvases cut into a
#: grid of :data:`SHUFFLE_GRID` × :data:`SHUFFLE_GRID` blocks whose places are permuted
#: (:mod:`replication.data.outliers`; docs/decisions.md, "Controls (issue #13)").
OUTLIER_SOURCES = ("shuffled",)
SHUFFLE_GRID = 4
#: The ceiling (issue #19): M real canvases drawn from the unlabeled pool (the training canvases outside the
#: labelled N), labelled by the row's rule from the baseline's scores, never with their own labels. A row
#: source, not a generator: what a perfect generator could reach (docs/experiments.md, "The real ceiling").
REAL_SOURCE = "real"
CEILING_SOURCES = (REAL_SOURCE,)
#: Everything a ``<rule>/<source>`` row may name: the paper's GANs, the non-GAN outliers, the real ceiling.
IMAGE_SOURCES = GENERATORS + OUTLIER_SOURCES + CEILING_SOURCES
SOURCE_LABELS = {**GEN_LABELS, "shuffled": "block-shuffled real", REAL_SOURCE: "real unlabeled canvases"}
#: What a spec's GANs train on (``gan.data``, issue #19): ``all``, the labelled N and the unlabeled pool
#: (the limited-label analogue: images without labels are plentiful); ``labelled``, the N labelled images
#: only (the paper's setting). docs/decisions.md, "The unlabeled pool".
GAN_DATA = ("all", "labelled")
#: The baseline trained longer: real images only, under ``schedule: epochs`` as many iterations as a row with
#: generated images (iteration-matched); under ``schedule: iterations`` (every row the same budget) twice the
#: iteration budget, the plateau check (docs/decisions.md, "baseline/iters").
BASELINE_ITERS = "baseline/iters"
#: ``<rule>/<source>@<λ>``: the row trained with generated-image weight λ (``data.generated_weight``).
WEIGHT_SEP = "@"
#: The λ of the sensitivity study (λ = 1 is the plain row, written without ``@``).
LAMBDA_VALUES = (0.1, 0.3, 1.0)
#: How the tables mark a row that goes beyond the paper.
BEYOND_PAPER_MARK = "†"


def parse_row(row: str) -> tuple[str, str | None]:
    """Split a row id into ``(method, generator)``: ``"baseline"`` → ``("baseline", None)``.

    A plain split at the first "/" (the paper's CSV keys); control rows keep their suffix
    (``"spl/dcgan@0.3"`` → ``("spl", "dcgan@0.3")``), so they never match a paper row.
    :func:`parse_row_id` gives their parts.
    """
    if row == BASELINE:
        return BASELINE, None
    method, _, gen = row.partition("/")
    return method, gen


class RowId(NamedTuple):
    """A row id's parts: ``"spl/dcgan@0.3"`` → method ``spl``, source ``dcgan``, weight 0.3.

    ``source`` is None for the two baselines; ``weight`` is None for a plain row (the train
    preset's λ); ``matched`` marks :data:`BASELINE_ITERS`.
    """

    method: str
    source: str | None = None
    weight: float | None = None
    matched: bool = False

    @property
    def control(self) -> bool:
        """Whether the row goes beyond the paper (a control of issue #13, or a ``real`` ceiling row of issue #19)."""
        return self.matched or self.weight is not None or self.source in OUTLIER_SOURCES + CEILING_SOURCES


def parse_row_id(row: str) -> RowId:
    """The parts of a row id; ValueError (one line, without the spec's name) on a malformed or unknown one.

    Rows: ``baseline``, ``baseline/iters``, ``<rule>/<source>`` and ``<rule>/<source>@<λ>`` with
    rule in :data:`RULES`, source in :data:`IMAGE_SOURCES` and 0 < λ < 1 written as ``f"{λ:g}"``
    (``@0.3``, not ``@.3`` or ``@0.30``; λ = 1 is the plain row).
    """
    if row == BASELINE:
        return RowId(BASELINE)
    if row == BASELINE_ITERS:
        return RowId(BASELINE, matched=True)
    body, sep, lam = row.partition(WEIGHT_SEP)
    method, slash, source = body.partition("/")
    if not slash or method not in RULES or source not in IMAGE_SOURCES:
        raise ValueError(
            f"unknown row {row!r} (expected '{BASELINE}', '{BASELINE_ITERS}' or '<rule>/<source>[{WEIGHT_SEP}λ]' "
            f"with rule in {', '.join(RULES)} and source in {', '.join(IMAGE_SOURCES)})")
    if not sep:
        return RowId(method, source)
    try:
        weight = float(lam)
    except ValueError:
        weight = float("nan")
    if not 0 < weight < 1 or f"{weight:g}" != lam:
        raise ValueError(f"row {row!r}: the generated-image weight after '{WEIGHT_SEP}' must be a number in (0, 1) "
                         f"written plainly, e.g. '{body}{WEIGHT_SEP}0.3' (λ = 1 is the plain row '{body}')")
    return RowId(method, source, weight)


def row_label(row: str, gen_labels: Mapping[str, str] | None = None, *, iteration_schedule: bool = False) -> str:
    """The paper's name of a row, e.g. ``"spl/dcgan"`` → ``"Our SPL (DCGAN)"``.

    Control rows: ``"Baseline, iteration-matched"`` (``"Baseline, 2× iterations"`` when the spec trains with
    ``schedule: iterations``: ``iteration_schedule``), ``"Smooth labeling (block-shuffled real)"``,
    ``"Our SPL (DCGAN), λ = 0.3"`` (without the :data:`BEYOND_PAPER_MARK`, which the tables add).
    ``gen_labels`` (generator → label, e.g. ``{"dcgan": "DCGAN (PyTorch peer)"}``) overrides :data:`GEN_LABELS`.
    """
    rid = parse_row_id(row)
    if rid.source is None:
        if not rid.matched:
            return "Baseline"
        return "Baseline, 2× iterations" if iteration_schedule else "Baseline, iteration-matched"
    source = (gen_labels or {}).get(rid.source) or SOURCE_LABELS[rid.source]
    label = f"{ROW_LABELS[rid.method]} ({source})"
    return label if rid.weight is None else f"{label}, λ = {rid.weight:g}"


def metric_label(key: str) -> str:
    """Column header of a metric key: ``"top3/F1-C"`` → ``"Top-3 F1-C"``."""
    return "Top-3 " + key[len(TOP3_PREFIX):] if key.startswith(TOP3_PREFIX) else key

# -- input normalisation of the classifier (docs/decisions.md, "Pretrained weights") ---------------
#: ``caffe``: BGR, 0–255, minus the mean (104, 117, 123), no std (SRN); ``imagenet``: RGB on 0–1, minus
#: ImageNet's mean, over its std (torchvision); ``inception``: RGB on 0–1, minus 0.5, over 0.5 (what
#: timm's ``resnetv2_101.a1h_in1k`` was trained with).
INPUT_NORMS = ("caffe", "imagenet", "inception")
#: The RGB mean and std (on the 0–1 scale) of the non-Caffe input normalisations.
INPUT_NORM_RGB_STATS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}

# -- step kinds of the experiment runner (replication/experiments/runner.py; docs/experiments.md) ----------
#: Every kind of cached step; the launcher's resources file (tables/launch/slurm.yaml) is keyed by them.
STEP_KINDS = ("shards", "view", "pretrain", "gan", "samples", "predict", "labels", "train", "metrics", "quality",
              "gallery")
#: The launchers of ``spl experiment run --launcher``: this process (+ ``--jobs``), SLURM through submitit, and
#: submitit's local executor (each step a job on this machine: the SLURM path without a cluster).
LAUNCHERS = ("local", "slurm", "submitit-local")
