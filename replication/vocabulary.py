"""The names every part of the replication agrees on: rules, generators, metrics, rows, datasets.

Pure constants and tiny pure helpers only; this module imports nothing from :mod:`replication`, so
any module may import it. ``gan_tf_port`` (which never imports :mod:`replication`) keeps its own
``ARCHS``; ``tests/test_vocabulary.py`` checks that it equals :data:`GENERATORS`.
"""
from __future__ import annotations

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
