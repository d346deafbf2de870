"""Multi-label evaluation faithful to SRN's ``evaluate.m``, with every convention a named switch.

Pure NumPy (no I/O). Inputs are ``scores`` (N×C; logits by default, or probabilities with
``scores_are="probs"``) and ``labels`` (N×C in {0, 1}, or WIDER-Attribute's {−1, 0, 1} where 0 means
"unspecified"). Torch tensors are accepted and copied to NumPy.

Definitions (paper §3.1; docs/metrics.md#definitions; SRN's ``tools/AP_VOC.m``,
``tools/precision_recall_f1.m``, ``evaluate.m``):

* probabilities p = sigmoid(logits), computed in float64 (``score_dtype``), as SRN's MATLAB does; pred = p > 0.5.
  In float32 the probabilities above logit ≈ 2.5 lie on a grid of 6e-8, so distinct logits tie long
  before 1.0 (and every logit above ≈ 16.6 gives exactly 1.0); float64 keeps them apart.
* AP ``voc``: per class, sort by descending score (stable: ties keep image order, as MATLAB's
  ``sort``), cumulative TP/FP, rec = TP/npos, prec = TP/(TP+FP), precision made monotone by a running
  max from the right, AP = Σ Δrec · prec_interp. ``noninterpolated``: the mean precision at each
  positive, in the same (stable) order, as ML-GCN and ASL compute it; it equals scikit-learn's
  ``average_precision_score`` when there are no ties (scikit-learn groups tied scores instead).
* WIDER: per attribute, label 0 items are dropped from AP (−1 negatives, 1 positives; SRN's
  ``get_mAP_eccv16.m``); for P/R/F1 the truth is ``label == 1`` (unspecified counts as negative).
* per class: P_c = TP_c/Pred_c, R_c = TP_c/GT_c, F1_c = 2 P_c R_c/(P_c + R_c); P-C, R-C, F1-C are
  means over classes (F1-C is the mean of F1_c, not the harmonic mean of P-C and R-C: the paper's
  Tables 2–3 rule that out, see docs/metrics.md). ``zero_division="srn"`` reproduces MATLAB's
  ``+eps`` arithmetic literally, so 0/0 gives 1 (a class with no predicted positive gets P_c = 1, a
  class with no positive gets R_c = 1); ``"zero"`` gives 0 instead.
* overall: P-O = ΣTP/ΣPred, R-O = ΣTP/ΣGT, F1-O = harmonic mean of P-O and R-O (same zero rule).
* Top-3 (not in SRN; decision from the paper's numbers): ``pure`` marks the 3 highest scores of
  each image positive (ties: lower class index first, i.e. a stable descending sort of the row);
  ``thresholded`` keeps, among those 3, the ones that pass the threshold.

Decisions (also in docs/metrics.md): a class without positives has AP = NaN (MATLAB gives NaN and
so a NaN mAP); by default (``no_positive="exclude"``) it is left out of the mean with a
:class:`NoPositiveClassWarning`; ``"zero"`` counts it as 0, ``"nan"`` propagates NaN like MATLAB.
Values are returned in percent, not rounded.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from replication.errors import ReplicationError
from replication.vocabulary import BASE_METRICS, PRF_METRICS, SCORE_KINDS, TOP3_RULES

_EPS = float(np.finfo(np.float64).eps)  # MATLAB's eps
_CHUNK_ELEMENTS = 1 << 21  # AP works on (classes × N) blocks of about this many elements

SUMMARY_KEYS = BASE_METRICS
PRF_KEYS = PRF_METRICS


class MetricInputError(ReplicationError, ValueError):
    """Scores, labels, class names or a metric switch are invalid (one-line message)."""


class NoPositiveClassWarning(UserWarning):
    """Some class has no positive label, so its AP is undefined (NaN)."""


_CHOICES = {
    "ap": ("voc", "noninterpolated"),
    "threshold_op": (">", ">="),
    "score_space": SCORE_KINDS,
    "f1_c": ("mean", "harmonic"),
    "zero_division": ("srn", "zero"),
    "no_positive": ("exclude", "zero", "nan"),
    "top3": TOP3_RULES,
    "score_dtype": ("float32", "float64"),
}


@dataclass(frozen=True)
class MetricConvention:
    """The switches that differ between evaluation codes; the defaults are SRN's (``srn``).

    Attributes:
        ap: ``"voc"`` (interpolated, SRN's ``AP_VOC.m``) or ``"noninterpolated"``.
        threshold: decision threshold, in the space named by ``score_space``.
        threshold_op: ``">"`` (SRN: ``probs > 0.5``) or ``">="`` (ML-GCN: ``logit >= 0``).
        score_space: ``"probs"`` (rank and threshold sigmoid(logits)) or ``"logits"`` (rank and
            threshold the raw logits; with probability inputs the threshold is mapped through the
            sigmoid and the ranking is the same).
        f1_c: ``"mean"`` (mean of per-class F1_c, SRN and ASL) or ``"harmonic"`` (2·P-C·R-C/(P-C+R-C),
            ML-GCN).
        zero_division: ``"srn"`` (MATLAB ``+eps``: 0/0 → 1) or ``"zero"`` (0/0 → 0).
        no_positive: AP of a class without positives in the mean: ``"exclude"`` (warning),
            ``"zero"`` or ``"nan"``.
        top3: the Top-3 rule used when :func:`evaluate` is called with ``top3=None``.
        score_dtype: dtype of the sigmoid and of the ranking: ``"float64"`` (SRN's MATLAB, which applies
            the sigmoid in double) or ``"float32"`` (the network's output precision, as ML-GCN's and ASL's
            torch code). float32 ties distinct logits wherever their sigmoids fall on one float32 value,
            which happens well before saturation (docs/metrics.md#decisions-for-docsdecisionsmd).
    """

    ap: str = "voc"
    threshold: float = 0.5
    threshold_op: str = ">"
    score_space: str = "probs"
    f1_c: str = "mean"
    zero_division: str = "srn"
    no_positive: str = "exclude"
    top3: str = "pure"
    score_dtype: str = "float64"

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise MetricInputError(f"metric switch {name}={value!r}: expected one of {', '.join(allowed)}")
        if not np.isfinite(self.threshold):
            raise MetricInputError(f"metric switch threshold={self.threshold!r}: must be finite")


PRESETS: dict[str, MetricConvention] = {
    "srn": MetricConvention(),
    "mlgcn": MetricConvention(ap="noninterpolated", threshold=0.0, threshold_op=">=", score_space="logits",
                              f1_c="harmonic", zero_division="zero", top3="thresholded", score_dtype="float32"),
    "asl": MetricConvention(ap="noninterpolated", threshold=0.8, f1_c="mean", zero_division="zero",
                            no_positive="zero", score_dtype="float32"),
}


def get_convention(convention: str | MetricConvention = "srn", **overrides: Any) -> MetricConvention:
    """Return the preset named ``convention`` (or the given one) with ``overrides`` applied.

    Raises:
        MetricInputError: unknown preset name, unknown switch or invalid value.
    """
    if isinstance(convention, str):
        if convention not in PRESETS:
            raise MetricInputError(f"unknown metric convention {convention!r}: expected one of {', '.join(PRESETS)}")
        convention = PRESETS[convention]
    elif not isinstance(convention, MetricConvention):
        raise MetricInputError(f"convention must be a preset name or MetricConvention, got {type(convention).__name__}")
    fields = {f.name for f in dataclasses.fields(MetricConvention)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise MetricInputError(f"unknown metric switch {unknown[0]!r}: expected one of {', '.join(sorted(fields))}")
    if "threshold" in overrides:
        overrides["threshold"] = float(overrides["threshold"])
    return dataclasses.replace(convention, **overrides)


# ----------------------------------------------------------------------------------------- inputs

def _as_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        x = (x.float() if x.is_floating_point() and x.element_size() < 4 else x).numpy()  # bf16/fp16
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise MetricInputError(f"{name}: cannot be read as an array ({e})") from None


def _first_bad(mask: np.ndarray) -> str:
    i, j = np.argwhere(mask)[0]
    return f"{int(mask.sum())} entries, first at row {i}, class {j}"


def check_inputs(scores: Any, labels: Any, *, scores_are: str = "logits", wider: bool | str = "auto",
                 class_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate and convert inputs; return ``(scores, labels as float32, wider)``.

    ``wider="auto"`` means WIDER labels when any label is −1. Raises :class:`MetricInputError` on a
    shape mismatch, non-finite scores, probabilities outside [0, 1], labels outside {0, 1} (or
    {−1, 0, 1} for WIDER) and a class-name count that differs from C.
    """
    if scores_are not in ("logits", "probs"):
        raise MetricInputError(f"scores_are={scores_are!r}: expected 'logits' or 'probs'")
    s = _as_numpy(scores, "scores")
    y = _as_numpy(labels, "labels")
    if s.ndim != 2 or y.ndim != 2:
        raise MetricInputError(f"scores and labels must be 2-D (N×C); got shapes {s.shape} and {y.shape}")
    if s.shape != y.shape:
        raise MetricInputError(f"scores shape {s.shape} does not match labels shape {y.shape}")
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise MetricInputError(f"scores shape {s.shape}: need at least one image and one class")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise MetricInputError(f"scores dtype {s.dtype} is not numeric")
    if class_names is not None and len(class_names) != s.shape[1]:
        raise MetricInputError(f"{len(class_names)} class names for {s.shape[1]} score columns")
    bad = ~np.isfinite(s)
    if bad.any():
        raise MetricInputError(f"scores contain non-finite values ({_first_bad(bad)})")
    if scores_are == "probs" and ((s < 0) | (s > 1)).any():
        raise MetricInputError(f"scores_are='probs' but scores outside [0, 1] ({_first_bad((s < 0) | (s > 1))})")
    if y.dtype == bool:
        y = y.astype(np.float32)
    if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
        raise MetricInputError(f"labels dtype {y.dtype} is not numeric")
    y = y.astype(np.float32, copy=False)
    if np.isnan(y).any():
        raise MetricInputError(f"labels contain NaN (unlabeled rows?) ({_first_bad(np.isnan(y))})")
    if wider == "auto":
        wider = bool((y == -1).any())
    elif not isinstance(wider, (bool, np.bool_)):
        raise MetricInputError(f"wider={wider!r}: expected True, False or 'auto'")
    allowed = (y == 0) | (y == 1) | ((y == -1) if wider else False)
    if not allowed.all():
        values = "{-1, 0, 1}" if wider else "{0, 1}"
        raise MetricInputError(f"labels outside {values} ({_first_bad(~allowed)}: {y[~allowed][0]!r})")
    return s, y, bool(wider)


def sigmoid(x: Any, dtype: str = "float32") -> np.ndarray:
    """σ(x) = 1 / (1 + exp(−x)) in ``dtype`` (SRN's formula; exp overflow gives exactly 0)."""
    x = np.asarray(x, dtype=dtype)
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(dtype, copy=False)


def _ranking_and_pred(s: np.ndarray, scores_are: str, conv: MetricConvention) -> tuple[np.ndarray, np.ndarray]:
    """Scores to rank by and the thresholded prediction mask under ``conv``."""
    if scores_are == "logits" and conv.score_space == "probs":
        rank = sigmoid(s, conv.score_dtype)
        thr = conv.threshold
    elif scores_are == "probs" and conv.score_space == "logits":
        rank = s.astype(conv.score_dtype, copy=False)
        thr = float(sigmoid(conv.threshold, conv.score_dtype))
    else:
        rank = s.astype(conv.score_dtype, copy=False)
        thr = conv.threshold
    pred = rank > thr if conv.threshold_op == ">" else rank >= thr
    return rank, pred


# ---------------------------------------------------------------------------------------------- AP

def descending_order(x: np.ndarray) -> np.ndarray:
    """Per column of ``x`` (N×C), the row indices sorted by descending value, ties in row order.

    Equals ``np.argsort(-x.T, axis=1, kind="stable")`` (MATLAB's ``sort(x, 'descend')``) and returns
    C×N. For float32 it sorts one packed uint64 key per element (order-preserving score bits in
    the high word, row index in the low word), which is unique and so needs no stable sort.
    """
    if x.dtype == np.float32:
        xt = np.ascontiguousarray(x.T) + np.float32(0)  # -0.0 becomes +0.0: the two tie
        bits = xt.view(np.uint32)
        ascending = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
        keys = (~ascending).astype(np.uint64) << np.uint64(32)
        keys |= np.arange(x.shape[0], dtype=np.uint64)
        keys.sort(axis=1)
        return (keys & np.uint64(0xFFFFFFFF)).astype(np.intp)
    return np.argsort(-x.T, axis=1, kind="stable")


def _ap_block(rank: np.ndarray, pos: np.ndarray, neg: np.ndarray, ap: str) -> np.ndarray:
    """AP of each column of an N×c block (``pos``/``neg`` masks; items in neither are dropped)."""
    order = descending_order(rank)
    pos_s = np.take_along_axis(pos.T, order, axis=1)
    neg_s = np.take_along_axis(neg.T, order, axis=1)
    tp = np.cumsum(pos_s, axis=1, dtype=np.float64)
    fp = np.cumsum(neg_s, axis=1, dtype=np.float64)
    npos = tp[:, -1:]
    seen = tp + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
        if ap == "noninterpolated":
            return np.where(pos_s, prec, 0.0).sum(axis=1) / npos[:, 0]
        rec = tp / npos
    interp = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
    drec = np.diff(rec, axis=1, prepend=0.0)
    return (drec * interp).sum(axis=1)


def _ap_from_prepared(rank: np.ndarray, y: np.ndarray, wider: bool, ap: str) -> np.ndarray:
    pos = y == 1
    neg = (y == -1) if wider else (y == 0)
    n, c = rank.shape
    step = max(1, _CHUNK_ELEMENTS // n)
    out = np.empty(c, dtype=np.float64)
    for j in range(0, c, step):  # a loop over class blocks (memory), never over images
        out[j:j + step] = _ap_block(rank[:, j:j + step], pos[:, j:j + step], neg[:, j:j + step], ap)
    return out


def per_class_ap(scores: Any, labels: Any, *, ap: str = "voc", wider: bool | str = "auto",
                 scores_are: str = "logits", convention: str | MetricConvention = "srn") -> np.ndarray:
    """AP_c of every class (fractions, shape (C,)); NaN for a class with no positive label.

    ``ap`` is ``"voc"`` (SRN's interpolated AP) or ``"noninterpolated"``; with WIDER labels
    (``wider=True``, or ``"auto"`` and some −1 present) label-0 items are dropped per class. Scores
    are ranked in ``convention``'s score space and dtype (SRN: float64 sigmoid of the logits).
    """
    conv = get_convention(convention, ap=ap)
    s, y, wider = check_inputs(scores, labels, scores_are=scores_are, wider=wider)
    rank, _ = _ranking_and_pred(s, scores_are, conv)
    return _ap_from_prepared(rank, y, wider, conv.ap)


def mean_ap(ap: np.ndarray, no_positive: str = "exclude") -> float:
    """mAP (fraction) from per-class APs, handling NaN (no-positive) classes per ``no_positive``."""
    ap = np.asarray(ap, dtype=np.float64)
    missing = np.isnan(ap)
    if no_positive not in _CHOICES["no_positive"]:
        raise MetricInputError(f"no_positive={no_positive!r}: expected one of exclude, zero, nan")
    if missing.any() and no_positive != "nan":
        what = "left out of mAP" if no_positive == "exclude" else "counted as AP = 0"
        warnings.warn(f"{int(missing.sum())} of {ap.size} classes have no positive label "
                      f"(indices {np.flatnonzero(missing)[:10].tolist()}); {what}",
                      NoPositiveClassWarning, stacklevel=3)
    if no_positive == "zero":
        return float(np.where(missing, 0.0, ap).mean())
    if no_positive == "exclude":
        return float(ap[~missing].mean()) if (~missing).any() else float("nan")
    return float(ap.mean())


# ------------------------------------------------------------------------------------ P / R / F1

def precision_recall_f1(tp: Any, n_pred: Any, n_gt: Any, zero_division: str = "srn"
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P = TP/Pred, R = TP/GT, F1 = 2PR/(P+R) from counts (arrays or scalars), as float64.

    ``"srn"`` is SRN's ``precision_recall_f1.m`` literally: P = (TP+eps)/(Pred+eps),
    R = (TP+eps)/(GT+eps) + eps, so 0/0 gives 1; ``"zero"`` gives 0 for 0/0 (and F1 = 0 when P+R = 0).
    """
    tp, n_pred, n_gt = (np.asarray(a, dtype=np.float64) for a in (tp, n_pred, n_gt))
    if zero_division == "srn":
        p = (tp + _EPS) / (n_pred + _EPS)
        r = (tp + _EPS) / (n_gt + _EPS) + _EPS
        return p, r, 2 * p * r / (p + r)
    if zero_division != "zero":
        raise MetricInputError(f"zero_division={zero_division!r}: expected 'srn' or 'zero'")
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n_pred > 0, tp / np.maximum(n_pred, 1), 0.0)
        r = np.where(n_gt > 0, tp / np.maximum(n_gt, 1), 0.0)
        f1 = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1.0), 0.0)
    return p, r, f1


def _harmonic(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def prf_metrics(pred: np.ndarray, truth: np.ndarray, conv: MetricConvention
                ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Class-averaged and overall P/R/F1 (percent) of a boolean prediction mask against ``truth``.

    Returns ``(summary, per_class)``: summary keys F1-C, P-C, R-C, F1-O, P-O, R-O; per_class holds
    arrays ``P``, ``R``, ``F1``, ``TP``, ``n_pred``, ``n_gt`` (fractions and counts).
    """
    tp = (pred & truth).sum(axis=0)
    n_pred = pred.sum(axis=0)
    n_gt = truth.sum(axis=0)
    p_c, r_c, f1_c = precision_recall_f1(tp, n_pred, n_gt, conv.zero_division)
    p_o, r_o, f1_o = precision_recall_f1(tp.sum(), n_pred.sum(), n_gt.sum(), conv.zero_division)
    pc, rc = float(p_c.mean()), float(r_c.mean())
    fc = float(f1_c.mean()) if conv.f1_c == "mean" else _harmonic(pc, rc)
    summary = {"F1-C": 100 * fc, "P-C": 100 * pc, "R-C": 100 * rc,
               "F1-O": 100 * float(f1_o), "P-O": 100 * float(p_o), "R-O": 100 * float(r_o)}
    return summary, {"P": p_c, "R": r_c, "F1": f1_c, "TP": tp, "n_pred": n_pred, "n_gt": n_gt}


# -------------------------------------------------------------------------------------------- Top-3

def top_k_mask(rank: np.ndarray, k: int = 3) -> np.ndarray:
    """Boolean N×C mask of the ``k`` highest scores of each row (ties: lower class index first).

    Vectorised: the k-th largest value per row from one partition, then all larger entries plus
    the first tied ones in class order, so every row gets exactly min(k, C) entries.
    """
    n, c = rank.shape
    k = min(k, c)
    if k <= 0:
        return np.zeros((n, c), dtype=bool)
    kth = -np.partition(-rank, k - 1, axis=1)[:, k - 1:k]
    above = rank > kth
    tied = rank == kth
    need = k - above.sum(axis=1, keepdims=True)
    return above | (tied & (np.cumsum(tied, axis=1) <= need))


def top3_predictions(rank: np.ndarray, pred: np.ndarray, rule: str) -> np.ndarray:
    """Top-3 prediction mask: ``pure`` (3 highest per image) or ``thresholded`` (those ∩ ``pred``)."""
    if rule not in TOP3_RULES:
        raise MetricInputError(f"top3 rule {rule!r}: expected one of {', '.join(TOP3_RULES)}")
    top = top_k_mask(rank, 3)
    return top & pred if rule == "thresholded" else top


# ---------------------------------------------------------------------------------------- evaluate

@dataclass
class MetricsResult:
    """Everything :func:`evaluate_full` computed: ``summary`` (the paper's columns, percent),
    ``per_class`` (arrays: AP fractions with NaN for no-positive classes, P, R, F1, counts),
    the resolved ``convention``, the ``top3`` rule(s) and whether WIDER labels were used."""

    summary: dict[str, float]
    per_class: dict[str, np.ndarray]
    convention: MetricConvention
    top3: str
    wider: bool


def _top3_rules(top3: str | None, conv: MetricConvention) -> list[tuple[str, str]]:
    """(key prefix, rule) pairs for the requested Top-3 output."""
    top3 = conv.top3 if top3 is None else top3
    if top3 == "both":
        return [("top3-pure/", "pure"), ("top3-thr/", "thresholded")]
    if top3 in TOP3_RULES:
        return [("top3/", top3)]
    if top3 == "none":
        return []
    raise MetricInputError(f"top3={top3!r}: expected pure, thresholded, both or none")


def evaluate_full(scores: Any, labels: Any, *, convention: str | MetricConvention = "srn",
                  top3: str | None = "pure", scores_are: str = "logits", wider: bool | str = "auto",
                  class_names: Sequence[str] | None = None, **overrides: Any) -> MetricsResult:
    """Like :func:`evaluate`, but also returns per-class arrays and the resolved settings."""
    conv = get_convention(convention, **overrides)
    rules = _top3_rules(top3, conv)
    s, y, wider = check_inputs(scores, labels, scores_are=scores_are, wider=wider, class_names=class_names)
    rank, pred = _ranking_and_pred(s, scores_are, conv)
    ap = _ap_from_prepared(rank, y, wider, conv.ap)
    truth = y == 1
    summary = {"mAP": 100 * mean_ap(ap, conv.no_positive)}
    prf, per_class = prf_metrics(pred, truth, conv)
    summary.update(prf)
    per_class = {"AP": ap, **per_class}
    top = top_k_mask(rank, 3) if rules else None
    for prefix, rule in rules:
        top_summary, top_per_class = prf_metrics(top & pred if rule == "thresholded" else top, truth, conv)
        summary.update({prefix + key: value for key, value in top_summary.items()})
        per_class.update({prefix + key: top_per_class[key] for key in ("P", "R", "F1")})
    used = "both" if len(rules) == 2 else rules[0][1] if rules else "none"
    return MetricsResult(summary=summary, per_class=per_class, convention=conv, top3=used, wider=wider)


def evaluate(scores: Any, labels: Any, *, convention: str | MetricConvention = "srn", top3: str | None = "pure",
             scores_are: str = "logits", wider: bool | str = "auto", class_names: Sequence[str] | None = None,
             **overrides: Any) -> dict[str, float]:
    """The paper's metric columns (percent, unrounded) for ``scores`` (N×C) against ``labels`` (N×C).

    Keys: ``mAP, F1-C, P-C, R-C, F1-O, P-O, R-O`` and ``top3/F1-C … top3/R-O`` for one Top-3 rule
    (``top3="pure"`` or ``"thresholded"``), ``top3-pure/…`` and ``top3-thr/…`` for ``"both"``, none
    for ``"none"``; ``top3=None`` uses the convention's rule. ``convention`` is a preset name
    (``srn``, ``mlgcn``, ``asl``) or a :class:`MetricConvention`; ``overrides`` replace single
    switches (e.g. ``ap="noninterpolated"``). ``scores_are`` is ``"logits"`` (sigmoid applied in
    float32) or ``"probs"``. ``class_names``, when given, must have C entries.

    Raises:
        MetricInputError (a ``ValueError``): invalid inputs or switches, with a one-line message.
    """
    return evaluate_full(scores, labels, convention=convention, top3=top3, scores_are=scores_are, wider=wider,
                         class_names=class_names, **overrides).summary
