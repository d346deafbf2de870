"""replication/statistics.py: t quantiles, mean ± std, paired CIs and verdicts, and the paper's claims.

The expected numbers are written out by hand (closed forms for the t quantiles with 1, 2 and 4
degrees of freedom; the CI of the differences [1, 2, 4] step by step), so a wrong formula, a wrong
degrees-of-freedom count, an unpaired comparison or a flipped verdict fails here.
"""
from __future__ import annotations

import math

import pytest

from replication.report.statistics import (
    BETTER,
    HELD,
    NO_DIFFERENCE,
    NOT_AVAILABLE,
    NOT_DETECTABLE,
    NOT_HELD,
    SKIPPED,
    T975_TABLE,
    WORSE,
    Z975,
    Claim,
    describe_diff,
    evaluate_claims,
    group_status,
    mean_std,
    paired_ci,
    paired_difference,
    t_quantile_975,
    verdict,
    verdict_paragraph,
)

# ------------------------------------------------------------------------------------ t quantiles


def test_t_quantile_closed_forms():
    # df = 1 (Cauchy): t = tan(π (p − 1/2)) with p = 0.975
    assert t_quantile_975(1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-14)
    # df = 2: t = (2p − 1) / sqrt(2 p (1 − p))
    assert t_quantile_975(2) == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025), rel=1e-14)
    assert t_quantile_975(2) == pytest.approx(4.302652729749464, abs=1e-14)
    # df = 4: with a = 4 p (1 − p), t = 2 sqrt(cos(arccos(sqrt(a)) / 3) / sqrt(a) − 1)
    a = 4 * 0.975 * 0.025
    assert t_quantile_975(4) == pytest.approx(2 * math.sqrt(math.cos(math.acos(math.sqrt(a)) / 3) / math.sqrt(a) - 1),
                                              rel=1e-14)


# the three-decimal values of printed t tables (two-sided 95%)
PRINTED = {3: 3.182, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086,
           25: 2.060, 29: 2.045, 30: 2.042}


@pytest.mark.parametrize("df, value", sorted(PRINTED.items()))
def test_t_quantile_printed_tables(df, value):
    assert round(t_quantile_975(df), 3) == value


@pytest.mark.parametrize("df, value", [(31, 2.0395134463964086), (40, 2.021075390306273), (60, 2.0002978220142604),
                                       (120, 1.9799304050824402), (1000, 1.9623390808264085)])
def test_t_quantile_beyond_the_table(df, value):
    assert t_quantile_975(df) == pytest.approx(value, abs=5e-8)


def test_t_quantile_decreases_to_the_normal_limit():
    qs = [t_quantile_975(df) for df in range(1, 400)]
    assert all(a > b for a, b in zip(qs, qs[1:]))
    assert len(T975_TABLE) == 30 and t_quantile_975(30) == T975_TABLE[-1]
    assert Z975 == pytest.approx(1.959963984540054, abs=1e-15)
    # (z³ + z) / (4 df) ≈ 2.4e-7 above the normal limit at df = 10⁷
    assert 0 < t_quantile_975(10**7) - Z975 < 3e-7


def test_t_table_against_scipy():
    stats = pytest.importorskip("scipy.stats")  # an indirect dependency (scikit-learn); the table must agree
    for df in range(1, 31):
        assert t_quantile_975(df) == pytest.approx(float(stats.t.ppf(0.975, df)), rel=1e-12)


@pytest.mark.parametrize("df", [0, -1, 2.0, True])
def test_t_quantile_rejects_bad_df(df):
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile_975(df)


# ------------------------------------------------------------------------------------ mean, std, paired CI


def test_mean_std_by_hand():
    mean, std = mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    # ((1 − 7/3)² + (2 − 7/3)² + (4 − 7/3)²) / (3 − 1) = (16/9 + 1/9 + 25/9) / 2 = 7/3
    assert std == pytest.approx(math.sqrt(7 / 3))
    assert mean_std([5.0]) == (5.0, None)
    with pytest.raises(ValueError):
        mean_std([])


def test_paired_ci_hand_computation():
    # differences [1, 2, 4]: mean 7/3, sample sd sqrt(7/3), n = 3, df = 2, t_{0.975,2} = 4.302652729749464
    mean, sd, low, high = paired_ci([1.0, 2.0, 4.0])
    half = 4.302652729749464 * math.sqrt(7 / 3) / math.sqrt(3)  # = 3.794580…
    assert half == pytest.approx(3.7945830, abs=1e-6)
    assert mean == pytest.approx(7 / 3)
    assert sd == pytest.approx(math.sqrt(7 / 3))
    assert low == pytest.approx(7 / 3 - half) and low == pytest.approx(-1.4612497, abs=1e-6)
    assert high == pytest.approx(7 / 3 + half) and high == pytest.approx(6.1279164, abs=1e-6)


def test_paired_ci_two_seeds_uses_one_degree_of_freedom():
    # [1, 3]: mean 2, sd sqrt(2), half = 12.706204736174705 · sqrt(2) / sqrt(2) = 12.706…
    _, sd, low, high = paired_ci([1.0, 3.0])
    assert sd == pytest.approx(math.sqrt(2))
    assert (low, high) == pytest.approx((2 - 12.706204736174705, 2 + 12.706204736174705))


def test_paired_difference_pairs_by_seed_not_by_order():
    base = {0: 70.0, 1: 71.0, 2: 72.5}
    row = {2: 76.5, 0: 71.0, 1: 73.0, 7: 99.0}  # seed 7 has no baseline partner: left out
    d = paired_difference(row, base)
    assert d.seeds == (0, 1, 2) and d.n == 3
    assert d.mean == pytest.approx(7 / 3) and d.std == pytest.approx(math.sqrt(7 / 3))
    assert d.low == pytest.approx(-1.4612497, abs=1e-6) and d.high == pytest.approx(6.1279164, abs=1e-6)
    assert d.verdict == NO_DIFFERENCE
    assert paired_difference({5: 1.0}, base) is None


def test_pairing_removes_the_shared_seed_spread():
    # the baseline swings by ±5 between seeds; the row is the baseline + 1 ± 0.1 on every seed.
    base = {0: 70.0, 1: 80.0, 2: 65.0, 3: 75.0}
    row = {0: 71.1, 1: 80.9, 2: 66.0, 3: 76.0}
    d = paired_difference(row, base)
    assert d.verdict == BETTER and d.low > 0.8
    # an unpaired comparison (differences of shuffled seeds) could not see it
    unpaired = paired_difference({0: row[1], 1: row[2], 2: row[3], 3: row[0]}, base)
    assert unpaired.verdict == NO_DIFFERENCE


# ------------------------------------------------------------------------------------ the verdict rule


@pytest.mark.parametrize(
    "diffs, expected",
    [
        ([1.0, 1.2, 0.9], BETTER),  # clear gain: the whole CI above 0
        ([-2.0, -2.5, -1.8], WORSE),  # clear loss: the whole CI below 0
        ([1.0, -1.0, 0.5], NO_DIFFERENCE),  # overlap: the CI contains 0
        ([0.3, 0.35, 0.25, 0.3, 0.32], BETTER),  # small but consistent gain
        ([1.0, 2.0, 4.0], NO_DIFFERENCE),  # a mean of +2.3 whose CI still reaches below 0
    ],
)
def test_verdict_on_synthetic_results(diffs, expected):
    base = {i: 70.0 + 3 * i for i in range(len(diffs))}
    row = {i: base[i] + d for i, d in enumerate(diffs)}
    d = paired_difference(row, base)
    assert d.verdict == expected
    if expected == BETTER:
        assert d.low > 0
    elif expected == WORSE:
        assert d.high < 0
    else:
        assert d.low <= 0 <= d.high


def test_verdict_one_seed_is_not_available():
    d = paired_difference({0: 75.0}, {0: 70.0, 1: 71.0})
    assert d.n == 1 and d.mean == pytest.approx(5.0)
    assert d.std is None and d.low is None and d.high is None
    assert d.verdict == NOT_AVAILABLE


def test_verdict_boundaries():
    assert verdict(1e-9, 2.0) == BETTER
    assert verdict(-2.0, -1e-9) == WORSE
    assert verdict(0.0, 2.0) == NO_DIFFERENCE  # touching 0 is not excluding it
    assert verdict(-2.0, 0.0) == NO_DIFFERENCE
    assert verdict(None, None) == NOT_AVAILABLE
    with pytest.raises(ValueError):
        verdict(1.0, -1.0)


def test_describe_diff():
    d = paired_difference({0: 71.0, 1: 73.0, 2: 76.5}, {0: 70.0, 1: 71.0, 2: 72.5})
    assert describe_diff(d) == "Δ mAP = +2.33, 95% CI [−1.46, +6.13], 3 paired seeds"
    assert describe_diff(paired_difference({0: 69.5}, {0: 70.0})) == "Δ mAP = −0.50, 1 paired seed"


# ------------------------------------------------------------------------------------ the paper's claims

NOISE = (0.1, -0.1, 0.05, -0.05)
BASE = (70.0, 75.0, 68.0, 72.0)


def _row(offset: float, noise: tuple[float, ...] = NOISE) -> dict[int, float]:
    return {s: BASE[s] + offset + noise[s] for s in range(4)}


def _claims_fixture():
    values = {
        "baseline": {s: BASE[s] for s in range(4)},
        "spl/dcgan": _row(2.0),  # > smooth/dcgan (+1) > baseline
        "smooth/dcgan": _row(1.0, (0.0, 0.0, 0.1, -0.1)),
        "pseudo/dcgan": _row(-3.0),  # below the baseline
        "random/dcgan": _row(0.0, (1.0, -1.0, 0.5, -0.8)),  # indistinguishable from the baseline
        "spl/wgan-gp": _row(-1.0),  # below the baseline: "SPL beats the baseline" fails for WGAN-GP
        "smooth/wgan-gp": _row(-2.0, (0.0, 0.0, 0.1, -0.1)),  # below SPL, below the baseline
        "random/wgan-gp": {0: 60.0},  # one seed only
    }
    rows = list(values)  # pseudo/wgan-gp is not in the spec
    return values, rows


def test_claims_on_synthetic_results_with_known_truth():
    values, rows = _claims_fixture()
    claims, group = evaluate_claims(values, rows)
    status = {c.text: c.status for c in claims}
    assert status == {
        "SPL ≥ smooth labeling (DCGAN)": HELD,
        "smooth labeling > baseline (DCGAN)": HELD,
        "baseline > pseudo labeling (DCGAN)": HELD,
        "baseline > random labeling (DCGAN)": NOT_DETECTABLE,
        "SPL > baseline (DCGAN)": HELD,
        "SPL ≥ smooth labeling (WGAN-GP)": HELD,
        "smooth labeling > baseline (WGAN-GP)": NOT_HELD,
        "baseline > pseudo labeling (WGAN-GP)": SKIPPED,
        "baseline > random labeling (WGAN-GP)": SKIPPED,
        "SPL > baseline (WGAN-GP)": NOT_HELD,
    }
    by_text = {c.text: c for c in claims}
    # the difference is (claimed-better row − other row), paired by seed
    assert by_text["baseline > pseudo labeling (DCGAN)"].diff.mean == pytest.approx(3.0)
    assert by_text["SPL ≥ smooth labeling (DCGAN)"].diff.mean == pytest.approx(1.0)
    assert by_text["SPL > baseline (WGAN-GP)"].diff.mean == pytest.approx(-1.0)
    assert "pseudo/wgan-gp not in the table" in by_text["baseline > pseudo labeling (WGAN-GP)"].note
    assert "at least 2 paired seeds" in by_text["baseline > random labeling (WGAN-GP)"].note
    assert group.text == "SPL beats the baseline with both GANs (DCGAN and WGAN-GP)"
    assert group.status == NOT_HELD
    assert [p.text for p in group.parts] == ["SPL > baseline (DCGAN)", "SPL > baseline (WGAN-GP)"]


def test_claim_with_rows_missing_results_is_skipped():
    values, rows = _claims_fixture()
    rows.append("pseudo/wgan-gp")  # in the spec, but no results yet
    claims, _ = evaluate_claims(values, rows)
    c = next(c for c in claims if c.text == "baseline > pseudo labeling (WGAN-GP)")
    assert c.status == SKIPPED and c.note == "no results for pseudo/wgan-gp"


def test_group_status():
    def c(status):
        return Claim("x", status)

    assert group_status([c(HELD), c(HELD)]) == HELD
    assert group_status([c(HELD), c(NOT_DETECTABLE)]) == NOT_DETECTABLE
    assert group_status([c(HELD), c(SKIPPED)]) == SKIPPED
    assert group_status([c(SKIPPED), c(NOT_HELD)]) == NOT_HELD
    assert group_status([c(NOT_DETECTABLE), c(NOT_HELD)]) == NOT_HELD
    assert group_status([]) == SKIPPED


def test_spl_beats_baseline_with_both_gans_held():
    values = {"baseline": {s: BASE[s] for s in range(4)}, "spl/dcgan": _row(1.5), "spl/wgan-gp": _row(0.8)}
    _, group = evaluate_claims(values, list(values))
    assert group.status == HELD
    values["spl/wgan-gp"] = _row(0.0, (0.5, -0.5, 0.4, -0.3))
    _, group = evaluate_claims(values, list(values))
    assert group.status == NOT_DETECTABLE


def test_verdict_paragraph_from_the_numbers():
    values, rows = _claims_fixture()
    claims, group = evaluate_claims(values, rows)
    text = verdict_paragraph(claims, group)
    assert text.startswith("## Verdict on the paper's claims\n")
    assert "Of 8 claims tested, 5 held, 2 did not hold and 1 were not detectable (2 skipped)." in text
    assert "Not held: smooth labeling > baseline (WGAN-GP); SPL > baseline (WGAN-GP)." in text
    assert "Not detectable: baseline > random labeling (DCGAN)." in text
    assert "SPL beats the baseline with both GANs (DCGAN and WGAN-GP): **not held**." in text
    assert "- baseline > pseudo labeling (DCGAN): **held** (Δ mAP = +3.00, 95% CI [" in text
    assert "- SPL > baseline (WGAN-GP): **not held** (Δ mAP = −1.00, 95% CI [" in text
    assert "- baseline > pseudo labeling (WGAN-GP): **skipped** (row pseudo/wgan-gp not in the table)" in text
    assert ("- baseline > random labeling (WGAN-GP): **skipped** (Δ mAP = +10.00, 1 paired seed; a confidence "
            "interval needs at least 2 paired seeds)") in text
    assert len([line for line in text.splitlines() if line.startswith("- ")]) == 10


def test_verdict_paragraph_with_nothing_testable():
    values = {"baseline": {0: 70.0}, "spl/dcgan": {0: 72.0}}
    claims, group = evaluate_claims(values, list(values))
    text = verdict_paragraph(claims, group)
    assert "None of the paper's claims could be tested" in text
    assert "10 claims skipped" in text and "**held**" not in text and group.status == SKIPPED
