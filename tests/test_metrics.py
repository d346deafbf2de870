"""Tests for replication.metrics, ``spl eval`` and ``spl bench metrics``.

Hand-worked cases are written as probabilities (``scores_are="probs"``) so the expected values can
be read off directly. Tolerances: 1e-12 for float64 arithmetic on tiny hand cases; 1e-9 percentage
points between the vectorised code and the loop reference (the sums run in a different order).
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import average_precision_score

from replication.benchmarks.metrics import reference_evaluate
from replication.commands.bench import metrics_command as bench_command
from replication.commands.eval import command as eval_command
from replication.inference.predictions import PredictionsError
from replication.metrics import (
    PRESETS,
    MetricConvention,
    MetricInputError,
    NoPositiveClassWarning,
    descending_order,
    evaluate,
    evaluate_full,
    get_convention,
    per_class_ap,
    precision_recall_f1,
    sigmoid,
    top3_predictions,
    top_k_mask,
)

PLAIN = ["mAP", "F1-C", "P-C", "R-C", "F1-O", "P-O", "R-O"]
TOP = ["F1-C", "P-C", "R-C", "F1-O", "P-O", "R-O"]


def col(*values):
    """A one-class column (N×1) of float32 values."""
    return np.array(values, dtype=np.float32)[:, None]


# ------------------------------------------------------------------------------------ AP hand cases

def test_voc_and_noninterpolated_hand_case():
    # order: neg, pos, pos -> precision at positives 1/2, 2/3
    s, y = col(0.9, 0.8, 0.7), col(0, 1, 1)
    assert per_class_ap(s, y, ap="noninterpolated", scores_are="probs")[0] == pytest.approx(
        (1 / 2 + 2 / 3) / 2, abs=1e-12
    )
    # VOC: precision at the first positive interpolated up to max(1/2, 2/3) = 2/3
    assert per_class_ap(s, y, ap="voc", scores_are="probs")[0] == pytest.approx(2 / 3, abs=1e-12)


def test_voc_hand_case_five_items():
    s, y = col(0.9, 0.8, 0.7, 0.6, 0.5), col(1, 0, 1, 0, 1)
    # precisions at positives 1, 2/3, 3/5 are already non-increasing: both rules give 34/45
    for rule in ("voc", "noninterpolated"):
        assert per_class_ap(s, y, ap=rule, scores_are="probs")[0] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3, abs=1e-12)


def test_ties_keep_image_order_like_matlab_stable_sort():
    s = col(0.5, 0.5, 0.5)
    assert per_class_ap(s, col(0, 1, 1), ap="voc", scores_are="probs")[0] == pytest.approx(2 / 3, abs=1e-12)
    assert per_class_ap(s, col(0, 1, 1), ap="noninterpolated", scores_are="probs")[0] == pytest.approx(
        7 / 12, abs=1e-12
    )
    assert per_class_ap(s, col(1, 1, 0), ap="voc", scores_are="probs")[0] == 1.0
    # -0.0 and +0.0 tie too (logits); a float32 sigmoid saturates: 20 and 30 both -> 1.0 (not in float64, SRN's)
    assert per_class_ap(col(-0.0, 0.0), col(0, 1), ap="noninterpolated", scores_are="logits")[0] == 0.5
    f32 = get_convention("srn", score_dtype="float32")
    assert per_class_ap(col(20.0, 30.0), col(0, 1), ap="noninterpolated", convention=f32)[0] == 0.5
    assert per_class_ap(col(20.0, 30.0), col(0, 1), ap="noninterpolated")[0] == 1.0
    assert per_class_ap(col(20.0, 30.0), col(0, 1), ap="noninterpolated", convention="mlgcn")[0] == 1.0


def test_srn_default_ranks_in_float64_where_float32_ties_by_hand():
    """Issue #19 item 9: SRN's evaluate.m applies the sigmoid in double. Two hand cases where float32 ties:

    * class 0: logits 17.0 and 17.5 (saturated: 1 + exp(−17) rounds to 1 in float32, so both give 1.0);
    * class 1: logits 8.0 and 8.000001 (not saturated: their sigmoids differ by 3e-10, below float32's
      grid of 6e-8 near 1).

    In both the negative image comes first and the positive second. Tied (float32), the stable order
    puts the negative first: AP = 1/2 (precision 1/2 at recall 1). Ranked in float64 the positive comes
    first: AP = 1. With a third, clearly negative image: mAP 50 (float32) vs 100 (float64, the default).
    """
    logits = np.array([[17.0, 8.0], [17.5, 8.000001], [-3.0, -3.0]], dtype=np.float32)
    labels = np.array([[0, 0], [1, 1], [0, 0]], dtype=np.float32)
    p32 = sigmoid(logits, "float32")
    assert p32[0, 0] == p32[1, 0] == 1.0 and p32[0, 1] == p32[1, 1] < 1.0   # float32 ties both classes
    p64 = sigmoid(logits, "float64")
    assert p64[1, 0] > p64[0, 0] and p64[1, 1] > p64[0, 1]                  # float64 does not
    assert get_convention("srn").score_dtype == "float64"
    assert per_class_ap(logits, labels).tolist() == [1.0, 1.0]
    assert per_class_ap(logits, labels, convention=get_convention("srn", score_dtype="float32")).tolist() == [0.5, 0.5]
    assert evaluate(logits, labels)["mAP"] == pytest.approx(100.0, abs=1e-12)
    assert evaluate(logits, labels, score_dtype="float32")["mAP"] == pytest.approx(50.0, abs=1e-12)


def test_class_without_positives_is_nan_and_excluded_with_warning():
    s = np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.3]], dtype=np.float32)
    y = np.array([[1, 0], [0, 0], [0, 0]], dtype=np.float32)
    ap = per_class_ap(s, y, scores_are="probs")
    assert ap[0] == 1.0 and np.isnan(ap[1])
    with pytest.warns(NoPositiveClassWarning, match="1 of 2 classes"):
        assert evaluate(s, y, scores_are="probs")["mAP"] == 100.0
    with pytest.warns(NoPositiveClassWarning):
        assert evaluate(s, y, scores_are="probs", no_positive="zero")["mAP"] == 50.0
    assert np.isnan(evaluate(s, y, scores_are="probs", no_positive="nan")["mAP"])  # MATLAB: NaN


def test_wider_unspecified_labels_are_dropped_from_ap():
    s = col(0.9, 0.8, 0.7, 0.6)
    y = col(0, -1, 1, 1)  # unspecified item ranked first is ignored -> neg, pos, pos
    assert per_class_ap(s, y, ap="voc", scores_are="probs")[0] == pytest.approx(2 / 3, abs=1e-12)
    assert per_class_ap(s, y, ap="noninterpolated", scores_are="probs")[0] == pytest.approx(7 / 12, abs=1e-12)
    # same result as removing the item; binary reading would count it as a negative
    assert per_class_ap(s[1:], y[1:], scores_are="probs")[0] == pytest.approx(2 / 3, abs=1e-12)
    y_bin = col(0, 0, 1, 1)
    assert per_class_ap(s, y_bin, ap="noninterpolated", scores_are="probs")[0] == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_wider_f1_uses_label_one_as_truth():
    s = col(0.9, 0.8, 0.7, 0.1)
    y = col(0, -1, 1, 1)  # predicted: items 0, 1, 2; truth: items 2, 3
    r = evaluate_full(s, y, scores_are="probs", zero_division="zero", top3="none")
    assert r.wider
    assert r.per_class["P"][0] == pytest.approx(1 / 3) and r.per_class["R"][0] == pytest.approx(1 / 2)


# ---------------------------------------------------------------------------------- AP vs sklearn

@pytest.mark.parametrize("seed", range(5))
def test_noninterpolated_equals_sklearn_without_ties(seed):
    rng = np.random.default_rng(seed)
    n, c = 200, 6
    s = rng.permutation(n * c).reshape(n, c).astype(np.float64) / (n * c)  # all distinct
    y = (rng.random((n, c)) < 0.3).astype(np.float32)
    y[0] = 1  # every class has a positive
    ours = per_class_ap(s, y, ap="noninterpolated", scores_are="probs",
                        convention=get_convention(score_dtype="float64"))
    ref = [average_precision_score(y[:, j], s[:, j]) for j in range(c)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


labels_and_scores = st.integers(2, 40).flatmap(lambda n: st.tuples(
    arrays(np.float32, (n, 3), elements=st.integers(0, 6).map(lambda v: v / 6)),  # coarse: many ties
    arrays(np.float32, (n, 3), elements=st.sampled_from([-1.0, 0.0, 1.0]))))


@settings(max_examples=60, deadline=None)
@given(labels_and_scores)
def test_voc_ap_at_least_noninterpolated(data):
    s, y = data
    voc = per_class_ap(s, y, ap="voc", scores_are="probs", wider=True)
    non = per_class_ap(s, y, ap="noninterpolated", scores_are="probs", wider=True)
    ok = ~np.isnan(non)
    assert np.array_equal(ok, ~np.isnan(voc))
    # interpolated precision >= precision at every rank; Δrecall differs from 1/npos by an ulp
    assert np.all(voc[ok] >= non[ok] - 1e-12)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 50), st.integers(1, 6)),
              elements=st.sampled_from([-2.0, -0.0, 0.0, 0.25, 1.0, 3.0, -1e-30, 7e30])))
def test_descending_order_matches_stable_argsort(x):
    np.testing.assert_array_equal(descending_order(x), np.argsort(-x.T, axis=1, kind="stable"))


# ----------------------------------------------------------------------------------- P / R / F1

def test_no_prediction_class_srn_quirk_vs_zero():
    s = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.4]], dtype=np.float32)  # class 1: nothing > 0.5
    y = np.array([[1, 1], [0, 0], [1, 0]], dtype=np.float32)
    srn = evaluate_full(s, y, scores_are="probs", top3="none")
    assert srn.per_class["P"][1] == 1.0  # eps/eps
    assert srn.summary["P-C"] == pytest.approx(100.0)
    zero = evaluate_full(s, y, scores_are="probs", top3="none", zero_division="zero")
    assert zero.per_class["P"][1] == 0.0
    assert zero.summary["P-C"] == pytest.approx(50.0)
    assert zero.summary["R-C"] == pytest.approx(50.0) and zero.summary["F1-C"] == pytest.approx(50.0)


def test_srn_eps_arithmetic_literally():
    p, r, f1 = precision_recall_f1([0, 3, 0], [0, 4, 5], [0, 6, 2], "srn")
    eps = np.finfo(np.float64).eps
    assert p[0] == 1.0 and r[0] == 1.0 + eps and f1[0] == pytest.approx(1.0)
    assert p[1] == (3 + eps) / (4 + eps) and r[1] == (3 + eps) / (6 + eps) + eps
    assert f1[2] < 1e-14  # tp = 0 with predictions: ~0, not NaN
    p, r, f1 = precision_recall_f1([0, 3, 0], [0, 4, 5], [0, 6, 2], "zero")
    np.testing.assert_array_equal(p, [0, 0.75, 0])
    np.testing.assert_array_equal(r, [0, 0.5, 0])
    np.testing.assert_array_equal(f1, [0, 0.6, 0])


def test_threshold_is_strict_by_default_and_switchable():
    s, y = col(0.5, 0.7), col(1, 1)
    assert evaluate(s, y, scores_are="probs", top3="none")["R-O"] == pytest.approx(50.0)
    assert evaluate(s, y, scores_are="probs", top3="none", threshold_op=">=")["R-O"] == pytest.approx(100.0)
    # mlgcn: logit >= 0; srn: sigmoid(0) = 0.5 is not > 0.5
    logits = col(0.0, 2.0)
    assert evaluate(logits, y, convention="mlgcn", top3="none")["R-O"] == pytest.approx(100.0)
    assert evaluate(logits, y, convention="srn", top3="none")["R-O"] == pytest.approx(50.0)
    assert evaluate(sigmoid(logits), y, convention="mlgcn", scores_are="probs", top3="none")["R-O"] == pytest.approx(
        100.0
    )


def test_f1_o_is_harmonic_mean_of_p_o_and_r_o():
    rng = np.random.default_rng(3)
    s = rng.standard_normal((300, 7)).astype(np.float32)
    y = (rng.random((300, 7)) < 0.4).astype(np.float32)
    m = evaluate(s, y, top3="both")
    for prefix in ("", "top3-pure/", "top3-thr/"):
        p, r = m[prefix + "P-O"], m[prefix + "R-O"]
        assert m[prefix + "F1-O"] == pytest.approx(2 * p * r / (p + r), rel=1e-12)


def test_f1_c_is_mean_of_per_class_f1_not_harmonic_of_means():
    # class 0: P = 1, R = 1 -> F1 1.  class 1: 1 TP, 3 predicted, 1 positive -> P 1/3, R 1, F1 1/2
    s = np.array([[0.9, 0.9], [0.1, 0.9], [0.1, 0.9], [0.1, 0.1]], dtype=np.float32)
    y = np.array([[1, 1], [0, 0], [0, 0], [0, 0]], dtype=np.float32)
    m = evaluate(s, y, scores_are="probs", top3="none", zero_division="zero")
    assert m["P-C"] == pytest.approx(100 * (1 + 1 / 3) / 2) and m["R-C"] == pytest.approx(100.0)
    assert m["F1-C"] == pytest.approx(75.0)  # mean(1, 1/2)
    harmonic = 2 * m["P-C"] * m["R-C"] / (m["P-C"] + m["R-C"])
    assert harmonic == pytest.approx(800 / 10)  # 2·(2/3)·1/(5/3) = 0.8
    assert evaluate(s, y, scores_are="probs", top3="none", convention="mlgcn")["F1-C"] == pytest.approx(80.0)
    # and under SRN's own arithmetic the value is the same up to eps
    assert evaluate(s, y, scores_are="probs", top3="none")["F1-C"] == pytest.approx(75.0)


# The paper's numbers (Tables 2 and 3; P-C, R-C, F1-C, P-O, R-O, F1-O): F1-O matches the harmonic
# mean of P-O and R-O within rounding, F1-C lies 1-6 points below the harmonic mean of P-C and R-C,
# which is what a mean of per-class F1 gives (harmonic mean is concave, so by Jensen it can only be
# lower) and a harmonic F1-C cannot.
PAPER_ROWS = {
    "nus baseline": (65.8, 46.8, 51.2, 76.1, 67.9, 71.8),
    "nus baseline top3": (45.3, 52.1, 43.2, 55.4, 68.6, 61.3),
    "nus spl dcgan": (63.6, 50.9, 53.4, 74.4, 70.1, 72.2),
    "coco baseline": (79.8, 58.6, 65.8, 81.9, 63.8, 71.8),
    "coco baseline top3": (82.7, 53.4, 62.2, 85.9, 58.0, 69.2),
    "coco spl wgan-gp": (79.9, 61.3, 67.8, 82.1, 65.6, 72.9),
}


@pytest.mark.parametrize("row", list(PAPER_ROWS))
def test_paper_numbers_rule_out_harmonic_f1_c(row):
    pc, rc, fc, po, ro, fo = PAPER_ROWS[row]
    assert abs(2 * po * ro / (po + ro) - fo) < 0.15  # rounding of 3 one-decimal numbers
    assert 2 * pc * rc / (pc + rc) - fc > 1.0  # far beyond rounding: F1-C is not harmonic(P-C, R-C)


@pytest.mark.filterwarnings("ignore::replication.metrics.NoPositiveClassWarning")
@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (30, 5), elements=st.floats(-3, 3, width=32)),
       arrays(np.float32, (30, 5), elements=st.sampled_from([0.0, 1.0])))
def test_srn_f1_c_never_exceeds_harmonic_of_means(s, y):
    m = evaluate(s, y, top3="pure")
    for prefix in ("", "top3/"):
        pc, rc = m[prefix + "P-C"], m[prefix + "R-C"]
        assert m[prefix + "F1-C"] <= 2 * pc * rc / (pc + rc) + 1e-9


# ---------------------------------------------------------------------------------------- Top-3

def test_pure_top3_exactly_three_and_thresholded_subset():
    rng = np.random.default_rng(0)
    s = (rng.integers(0, 4, (500, 10)) / 3).astype(np.float32)  # heavy ties
    pred = s > 0.5
    pure = top3_predictions(s, pred, "pure")
    thr = top3_predictions(s, pred, "thresholded")
    assert np.all(pure.sum(axis=1) == 3)
    assert np.all(thr.sum(axis=1) <= 3) and not np.any(thr & ~pred) and not np.any(thr & ~pure)
    # equals a stable per-row sort (lower class index wins ties)
    ref = np.zeros_like(pure)
    np.put_along_axis(ref, np.argsort(-s, axis=1, kind="stable")[:, :3], True, axis=1)
    np.testing.assert_array_equal(pure, ref)
    assert top_k_mask(s[:, :2], 3).all()  # fewer than 3 classes: all of them


@pytest.mark.filterwarnings("ignore::replication.metrics.NoPositiveClassWarning")
def test_top3_metrics_hand_case():
    s = np.array([[0.9, 0.8, 0.3, 0.2], [0.1, 0.6, 0.7, 0.4]], dtype=np.float32)
    y = np.array([[1, 0, 0, 1], [0, 1, 0, 0]], dtype=np.float32)
    m = evaluate(s, y, scores_are="probs", top3="both", zero_division="zero")
    # pure: image 0 -> {0,1,2}, image 1 -> {1,2,3}; TP = 2 of 6 predictions, 3 positives
    assert m["top3-pure/P-O"] == pytest.approx(100 * 2 / 6) and m["top3-pure/R-O"] == pytest.approx(100 * 2 / 3)
    # thresholded: image 0 -> {0,1}, image 1 -> {1,2}; TP = 2 of 4
    assert m["top3-thr/P-O"] == pytest.approx(50.0) and m["top3-thr/R-O"] == pytest.approx(100 * 2 / 3)


def test_keys_are_the_paper_columns():
    s, y = np.eye(4, dtype=np.float32) * 4 - 2, np.eye(4, dtype=np.float32)
    assert list(evaluate(s, y)) == PLAIN + ["top3/" + k for k in TOP]
    assert list(evaluate(s, y, top3="both")) == PLAIN + ["top3-pure/" + k for k in TOP] + ["top3-thr/" + k for k in TOP]
    assert list(evaluate(s, y, top3="none")) == PLAIN
    assert evaluate(s, y, convention="mlgcn", top3=None).keys() == evaluate(s, y, top3="thresholded").keys()


# ------------------------------------------------------------------ vectorised vs loop reference

@pytest.mark.parametrize("wider", [False, True])
def test_matches_python_reference_with_ties(wider):
    rng = np.random.default_rng(7)
    n, c = 150, 9
    probs = (rng.integers(0, 12, (n, c)) / 11).astype(np.float32)
    y = rng.choice([-1, 0, 1] if wider else [0, 1], (n, c)).astype(np.float32)
    y[:, 4] = -1 if wider else 0  # one class without positives
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoPositiveClassWarning)
        for kw in ({}, {"ap": "noninterpolated", "zero_division": "zero", "f1_c": "harmonic", "threshold_op": ">="}):
            ours = evaluate(probs, y, scores_are="probs", top3="both", **kw)
            ref = reference_evaluate(probs, y, wider=wider, **kw)
            assert ours.keys() == ref.keys()
            for k in ref:
                assert ours[k] == pytest.approx(ref[k], abs=1e-9), k


def test_logits_and_probs_inputs_agree_and_torch_accepted():
    import torch

    rng = np.random.default_rng(1)
    logits = rng.standard_normal((60, 5)).astype(np.float32) * 4
    y = (rng.random((60, 5)) < 0.4).astype(np.float32)
    y[0] = 1
    a = evaluate(logits, y, top3="both")
    assert evaluate(sigmoid(logits), y, scores_are="probs", top3="both") == a
    assert evaluate(torch.from_numpy(logits), torch.from_numpy(y).bool(), top3="both") == a


# ------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("scores, labels, kw, match", [
    (np.zeros((3, 2)), np.zeros((3, 3)), {}, "does not match"),
    (np.zeros(3), np.zeros(3), {}, "2-D"),
    (np.array([[0.1, np.nan]]), np.zeros((1, 2)), {}, "non-finite"),
    (np.array([[0.1, 1.5]]), np.zeros((1, 2)), {"scores_are": "probs"}, "outside"),
    (np.zeros((2, 2)), np.array([[0, 2], [1, 0]]), {}, "labels outside"),
    (np.zeros((2, 2)), np.array([[0, -1], [1, 0]]), {"wider": False}, "labels outside"),
    (np.zeros((2, 2)), np.array([[0, np.nan], [1, 0]]), {}, "NaN"),
    (np.zeros((2, 2)), np.eye(2), {"class_names": ["a", "b", "c"]}, "3 class names for 2"),
    (np.zeros((2, 2)), np.eye(2), {"convention": "foo"}, "unknown metric convention"),
    (np.zeros((2, 2)), np.eye(2), {"apx": "voc"}, "unknown metric switch"),
    (np.zeros((2, 2)), np.eye(2), {"ap": "11point"}, "ap="),
    (np.zeros((2, 2)), np.eye(2), {"top3": "top5"}, "top3="),
])
def test_bad_inputs_raise_one_line_value_error(scores, labels, kw, match):
    with pytest.raises(MetricInputError, match=match) as e:
        evaluate(scores, labels, **kw)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


def test_presets_are_overridable_dataclasses():
    assert isinstance(PRESETS["srn"], MetricConvention)
    conv = get_convention("mlgcn", ap="voc")
    assert conv.ap == "voc" and conv.f1_c == "harmonic" and PRESETS["mlgcn"].ap == "noninterpolated"
    assert PRESETS["asl"].threshold == 0.8 and PRESETS["asl"].f1_c == "mean"


# ------------------------------------------------------------------------------------------ CLI

def _write_preds(path, *, logits=None, labels=None, names=True):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((40, 4)).astype(np.float32) if logits is None else logits
    labels = (rng.random((40, 4)) < 0.5).astype(np.float32) if labels is None else labels
    arrays_ = {"logits": logits, "labels": labels}
    if names:
        arrays_["class_names"] = np.array(["cat", "dog", "car", "bus"])
    np.savez(path, **arrays_)
    return logits, labels


def test_eval_cli_writes_json_and_plot(tmp_path):
    logits, labels = _write_preds(tmp_path / "p.npz")
    out, png = tmp_path / "m.json", tmp_path / "ap.png"
    res = CliRunner().invoke(eval_command, ["--preds", str(tmp_path / "p.npz"), "--top3", "both",
                                            "--json", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    record = json.loads(out.read_text())
    expected = evaluate(logits, labels, top3="both")
    assert record["metrics"] == pytest.approx(expected)
    assert record["per_class"]["class_names"] == ["cat", "dog", "car", "bus"]
    assert record["convention"]["ap"] == "voc" and record["top3"] == "both"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{expected['mAP']:.1f}" in res.output


def test_eval_cli_convention_and_override(tmp_path):
    logits, labels = _write_preds(tmp_path / "p.npz", names=False)
    out = tmp_path / "m.json"
    res = CliRunner().invoke(eval_command, ["--preds", str(tmp_path / "p.npz"), "--convention", "mlgcn",
                                            "--set", "ap=voc", "--json", str(out)])
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())["metrics"]
    assert got == pytest.approx(evaluate(logits, labels, convention="mlgcn", ap="voc"))


def test_eval_cli_bad_file_names_it(tmp_path):
    np.savez(tmp_path / "p.npz", logits=np.zeros((3, 2), np.float32))
    res = CliRunner().invoke(eval_command, ["--preds", str(tmp_path / "p.npz")])
    assert isinstance(res.exception, PredictionsError)  # the one reader of predictions files
    assert "p.npz" in str(res.exception) and "labels" in str(res.exception)
    _write_preds(tmp_path / "q.npz", labels=np.full((40, 4), 2, np.float32))
    res = CliRunner().invoke(eval_command, ["--preds", str(tmp_path / "q.npz")])
    assert isinstance(res.exception, MetricInputError) and "q.npz: labels outside" in str(res.exception)
    (tmp_path / "r.npz").write_bytes(b"not a zip")
    res = CliRunner().invoke(eval_command, ["--preds", str(tmp_path / "r.npz")])
    assert isinstance(res.exception, PredictionsError) and "r.npz: not a readable" in str(res.exception)


def test_bench_metrics_quick_writes_json(tmp_path):
    out = tmp_path / "metrics.json"
    res = CliRunner().invoke(bench_command, ["--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    record = json.loads(out.read_text())
    assert record["benchmark"] == "metrics" and record["conditions"]["images"] == 500
    assert record["max_abs_diff_percent"] <= 1e-6
    assert {r["implementation"] for r in record["results"]} == {"vectorised", "python-reference"}
