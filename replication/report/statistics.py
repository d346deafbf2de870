"""Statistics over seeds: mean ± std, paired differences with t confidence intervals, verdicts (docs/metrics.md).

Pure functions on numbers; no files. The table renderer (``replication/report/``) uses them for
the mean ± std of every cell, the paired Δ mAP of each row against the baseline with its 95%
confidence interval and verdict, the verdict on the paper's claims, and one sentence per comparison
that a control row (issue #13, beyond the paper) answers (:func:`control_paragraph`), each GAN row
against its rule's ``real`` ceiling (issue #19, :func:`ceiling_paragraph`), and the agreement of the
verdicts of two seed sets (:func:`all_verdicts`, :func:`compare_verdicts`).

* **Pairing.** Seed i of a row is paired with seed i of the reference row (the baseline, or the
  other side of a claim): the spec's seed i gives every row the same initialisation and the same
  real-data order, so the difference of the pair removes the seed-to-seed variation the rows share.
  Only seeds present in both rows are paired.
* **Confidence interval.** For the n paired differences d_i: mean d̄, sample std s (ddof = 1),
  95% CI = d̄ ± t_{0.975, n−1} · s / √n, with the t quantile of :func:`t_quantile_975`.
* **Replicates.** With ``gan.per_replicate`` (issue #19) seed i is the whole chain — GAN, samples,
  labeler, label files and classifier — so the paired differences carry the generator's variance;
  without it they cover the classifier's seeds only.
* **Verdict.** "better" if the whole CI lies above 0, "worse" if it lies wholly below 0, "no
  detectable difference" if it contains 0; "n/a" with fewer than 2 paired seeds (one difference
  gives no estimate of its spread, so no interval can be formed).

The t quantiles come from a table (df 1–30, computed to 17 significant digits with mpmath's
incomplete beta function and checked against SciPy in the tests) and, for df > 30, the
Cornish–Fisher expansion around the normal quantile (|error| < 3e-8 there), so SciPy, only an
indirect dependency of scikit-learn, is not needed.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from replication.errors import ConfigError
from replication.vocabulary import (
    BASELINE,
    BEYOND_PAPER_MARK,
    CEILING_SOURCES,
    GEN_LABELS,
    GENERATORS,
    REAL_SOURCE,
    parse_row_id,
    row_label,
)

#: Two-sided 95% quantiles of Student's t, t_{0.975, df} for df = 1 … 30 (index df − 1).
T975_TABLE: tuple[float, ...] = (
    12.706204736174705, 4.3026527297494639, 3.1824463052837096, 2.7764451051977944, 2.5705818356363155,
    2.4469118511449700, 2.3646242515927853, 2.3060041352041667, 2.2621571627982055, 2.2281388519862747,
    2.2009851600916399, 2.1788128296672289, 2.1603686564627925, 2.1447866879178038, 2.1314495455597757,
    2.1199052992212547, 2.1098155778333171, 2.1009220402410385, 2.0930240544083098, 2.0859634472658648,
    2.0796138447276804, 2.0738730679040262, 2.0686576104190487, 2.0638985616280258, 2.0595385527532977,
    2.0555294386428732, 2.0518305164802856, 2.0484071417952452, 2.0452296421327043, 2.0422724563012383,
)
#: The normal limit z_{0.975} (df → ∞).
Z975 = 1.9599639845400542

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no detectable difference"
NOT_AVAILABLE = "n/a"
VERDICTS = (BETTER, WORSE, NO_DIFFERENCE, NOT_AVAILABLE)

HELD = "held"
NOT_HELD = "not held"
NOT_DETECTABLE = "not detectable"
SKIPPED = "skipped"
CLAIM_STATUSES = (HELD, NOT_HELD, NOT_DETECTABLE, SKIPPED)
#: A paired verdict of ``A − B`` → the status of the claim "A beats B".
CLAIM_OF_VERDICT = {BETTER: HELD, WORSE: NOT_HELD, NO_DIFFERENCE: NOT_DETECTABLE}


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: the two-sided 95% quantile of Student's t with ``df`` ≥ 1 degrees of freedom.

    Exact table values for df ≤ 30; above, the Cornish–Fisher expansion in 1/df around
    :data:`Z975` (four terms; |error| < 3e-8 for df > 30), which tends to the normal limit.
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be an integer ≥ 1, got {df!r}")
    if df <= len(T975_TABLE):
        return T975_TABLE[df - 1]
    z, v = Z975, float(df)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4))


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1) of ``values``; the std is None for one value."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def verdict(low: float | None, high: float | None) -> str:
    """The verdict of a confidence interval ``[low, high]`` of a difference (row − reference).

    "better" if ``low > 0``, "worse" if ``high < 0``, "no detectable difference" if the interval
    contains 0, "n/a" if there is no interval (None bounds: fewer than 2 paired seeds).
    """
    if low is None or high is None:
        return NOT_AVAILABLE
    if low > high:
        raise ValueError(f"confidence interval with low {low} > high {high}")
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return NO_DIFFERENCE


@dataclass(frozen=True)
class PairedDiff:
    """The paired difference ``row − reference`` over seeds: mean, sample std, 95% CI and verdict.

    ``seeds`` are the paired seeds (present in both rows). With one seed, ``std``, ``low`` and
    ``high`` are None and the verdict is "n/a".
    """

    seeds: tuple[int, ...]
    mean: float
    std: float | None
    low: float | None
    high: float | None

    @property
    def n(self) -> int:
        """The number of paired seeds."""
        return len(self.seeds)

    @property
    def verdict(self) -> str:
        """:func:`verdict` of the confidence interval."""
        return verdict(self.low, self.high)


def paired_ci(diffs: Sequence[float]) -> tuple[float, float | None, float | None, float | None]:
    """Mean, sample std and 95% t confidence interval ``(mean, std, low, high)`` of paired differences.

    CI = mean ± t_{0.975, n−1} · std / √n. With a single difference the std and the interval are
    None (n − 1 = 0 degrees of freedom: no estimate of the spread).
    """
    mean, std = mean_std(diffs)
    if std is None:
        return mean, None, None, None
    half = t_quantile_975(len(diffs) - 1) * std / math.sqrt(len(diffs))
    return mean, std, mean - half, mean + half


def paired_difference(row: Mapping[int, float], reference: Mapping[int, float]) -> PairedDiff | None:
    """The paired difference ``row − reference`` (seed → value each) over their common seeds.

    Seed i of ``row`` is paired with seed i of ``reference``; seeds in only one of them are left
    out. None when they share no seed.
    """
    seeds = tuple(sorted(set(row) & set(reference)))
    if not seeds:
        return None
    mean, std, low, high = paired_ci([row[s] - reference[s] for s in seeds])
    return PairedDiff(seeds, mean, std, low, high)


# ------------------------------------------------------------------------------------ the paper's claims


@dataclass(frozen=True)
class ClaimSpec:
    """A claim "``better`` beats ``worse``" of the paper, in words."""

    text: str
    better: str
    worse: str


@dataclass(frozen=True)
class Claim:
    """A tested claim: its words, its status (:data:`CLAIM_STATUSES`), the paired difference, and a note."""

    text: str
    status: str
    diff: PairedDiff | None = None
    note: str = ""


@dataclass(frozen=True)
class ClaimGroup:
    """A claim made of several claims that must all hold (e.g. "SPL beats the baseline with both GANs")."""

    text: str
    status: str
    parts: tuple[Claim, ...]


def paper_claims(generators: Sequence[str] = GENERATORS,
                 gen_labels: Mapping[str, str] | None = None) -> tuple[ClaimSpec, ...]:
    """The paper's ordering SPL ≥ smooth > baseline > pseudo and random, one set per generator.

    Per generator g: SPL vs smooth, smooth vs baseline, baseline vs pseudo, baseline vs random and
    SPL vs baseline (the claim "SPL beats the baseline", asked for every GAN).
    """
    out = []
    for g in generators:
        gen = {**GEN_LABELS, **(gen_labels or {})}.get(g, g)
        out += [
            ClaimSpec(f"SPL ≥ smooth labeling ({gen})", f"spl/{g}", f"smooth/{g}"),
            ClaimSpec(f"smooth labeling > baseline ({gen})", f"smooth/{g}", BASELINE),
            ClaimSpec(f"baseline > pseudo labeling ({gen})", BASELINE, f"pseudo/{g}"),
            ClaimSpec(f"baseline > random labeling ({gen})", BASELINE, f"random/{g}"),
            ClaimSpec(f"SPL > baseline ({gen})", f"spl/{g}", BASELINE),
        ]
    return tuple(out)


def check_claim(claim: ClaimSpec, values: Mapping[str, Mapping[int, float]], rows: Sequence[str]) -> Claim:
    """Test one claim on ``values`` (row → seed → metric), paired by seed.

    "held" if the 95% CI of ``better − worse`` lies above 0, "not held" if it lies below 0, "not
    detectable" if it contains 0. "skipped" (with a note) if a row is not in ``rows`` (the spec),
    has no results, or the two rows share fewer than 2 seeds.
    """
    absent = [r for r in (claim.better, claim.worse) if r not in rows]
    if absent:
        return Claim(claim.text, SKIPPED, note=f"row {', '.join(absent)} not in the table")
    missing = [r for r in (claim.better, claim.worse) if not values.get(r)]
    if missing:
        return Claim(claim.text, SKIPPED, note=f"no results for {', '.join(missing)}")
    diff = paired_difference(values[claim.better], values[claim.worse])
    if diff is None:
        return Claim(claim.text, SKIPPED, note="the two rows share no seed")
    if diff.verdict == NOT_AVAILABLE:
        return Claim(claim.text, SKIPPED, diff, note="a confidence interval needs at least 2 paired seeds")
    return Claim(claim.text, CLAIM_OF_VERDICT[diff.verdict], diff)


def group_status(parts: Sequence[Claim]) -> str:
    """The status of "all of ``parts`` hold".

    "not held" if any part is not held; else "skipped" if any part was skipped (the group cannot be
    tested as a whole); else "held" if every part held; else "not detectable".
    """
    statuses = [p.status for p in parts]
    if NOT_HELD in statuses:
        return NOT_HELD
    if not statuses or SKIPPED in statuses:
        return SKIPPED
    if all(s == HELD for s in statuses):
        return HELD
    return NOT_DETECTABLE


def evaluate_claims(values: Mapping[str, Mapping[int, float]], rows: Sequence[str],
                    generators: Sequence[str] = GENERATORS, gen_labels: Mapping[str, str] | None = None,
                    ) -> tuple[tuple[Claim, ...], ClaimGroup]:
    """Every claim of :func:`paper_claims` tested on ``values``, and the group "SPL beats the baseline with both GANs".

    ``values`` maps row → seed → metric (mAP in the tables); ``rows`` are the spec's rows; ``gen_labels``
    (generator → name, e.g. ``DCGAN (PyTorch peer)``) overrides the paper's GAN names in the text.
    """
    specs = paper_claims(generators, gen_labels)
    claims = tuple(check_claim(c, values, rows) for c in specs)
    spl_parts = tuple(c for spec, c in zip(specs, claims, strict=True)
                      if spec.better.startswith("spl/") and spec.worse == BASELINE)
    names = " and ".join({**GEN_LABELS, **(gen_labels or {})}.get(g, g) for g in generators)
    group = ClaimGroup(f"SPL beats the baseline with both GANs ({names})", group_status(spl_parts), spl_parts)
    return claims, group


def _signed(x: float, digits: int = 2) -> str:
    text = f"{x:+.{digits}f}"
    return text.replace("-", "−")


def describe_diff(diff: PairedDiff, metric: str = "mAP") -> str:
    """``Δ mAP = +1.23, 95% CI [+0.45, +2.01], 3 paired seeds`` (one seed: no interval)."""
    seeds = f"{diff.n} paired seed{'s' if diff.n != 1 else ''}"
    if diff.low is None or diff.high is None:
        return f"Δ {metric} = {_signed(diff.mean)}, {seeds}"
    return f"Δ {metric} = {_signed(diff.mean)}, 95% CI [{_signed(diff.low)}, {_signed(diff.high)}], {seeds}"


def verdict_paragraph(claims: Sequence[Claim], group: ClaimGroup, metric: str = "mAP") -> str:
    """A plain-language Markdown paragraph (and one bullet per claim) saying which claims held.

    Generated from the numbers only: the counts, then per claim its status, the paired Δ of the
    claimed-better row minus the other and its 95% CI, or why it was skipped.
    """
    tested = [c for c in claims if c.status != SKIPPED]
    counts = {s: sum(1 for c in tested if c.status == s) for s in (HELD, NOT_HELD, NOT_DETECTABLE)}

    def names(status: str) -> str:
        chosen = [c.text for c in tested if c.status == status]
        return "; ".join(chosen) if chosen else "none"

    lines = ["## Verdict on the paper's claims", ""]
    if not tested:
        lines.append(
            f"None of the paper's claims could be tested on these results: each needs both of its rows with at "
            f"least 2 paired seeds ({len(claims) - len(tested)} claims skipped, reasons below)."
        )
    else:
        lines.append(
            f"The paper claims SPL ≥ smooth > baseline > pseudo and random labeling, and that SPL beats the baseline "
            f"with both GANs. Tested on {metric}, paired by seed, with 95% t confidence intervals: a claim held if the "
            f"interval of (claimed-better row − other row) lies entirely above 0, did not hold if it lies entirely "
            f"below 0, and is not detectable if it contains 0. Of {len(tested)} claims tested, {counts[HELD]} held, "
            f"{counts[NOT_HELD]} did not hold and {counts[NOT_DETECTABLE]} were not detectable "
            f"({len(claims) - len(tested)} skipped). Held: {names(HELD)}. Not held: {names(NOT_HELD)}. "
            f"Not detectable: {names(NOT_DETECTABLE)}. {group.text}: **{group.status}**."
        )
    lines.append("")
    for c in claims:
        detail = describe_diff(c.diff, metric) if c.diff is not None else ""
        if c.note:
            detail = f"{detail}; {c.note}" if detail else c.note
        lines.append(f"- {c.text}: **{c.status}** ({detail})")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ the controls (issue #13)

CONTROLS_HEADING = "## Controls (beyond the paper)"


#: What ``baseline/iters`` − baseline and GAN row − ``baseline/iters`` test, by the spec's schedule: under
#: ``schedule: epochs`` the baseline matched to a GAN row's iterations; under ``schedule: iterations`` (every
#: row the same budget) the baseline at twice the budget, the plateau check (docs/decisions.md).
MORE_ITERATIONS = {
    False: ("more iterations alone", "a gain beyond more iterations"),
    True: ("the baseline trained for 2× the iterations: does more optimisation alone help?",
           "a gain beyond doubling the baseline's iterations"),
}


def control_comparisons(rows: Sequence[str], *, iteration_schedule: bool = False) -> list[tuple[str, str, str]]:
    """The comparisons the control rows of ``rows`` answer: ``(row A, row B, what A − B tests)``.

    * ``baseline/iters``: it vs the baseline (do more steps alone help?), then each plain SPL and
      smooth GAN row vs it (is a gain more than more steps?); worded by ``iteration_schedule``
      (:data:`MORE_ITERATIONS`);
    * ``<rule>/shuffled``: it vs the baseline, then each ``<rule>/<GAN>`` row vs it (does the GAN matter?);
    * ``<rule>/<source>@λ``: it vs the baseline.
    """
    out: list[tuple[str, str, str]] = []
    alone, beyond = MORE_ITERATIONS[iteration_schedule]
    for row in rows:
        rid = parse_row_id(row)
        if not rid.control or rid.source in CEILING_SOURCES:  # the real ceiling has its own section
            continue
        if rid.matched:
            out.append((row, BASELINE, alone))
            out += [(f"{rule}/{g}", row, beyond) for g in GENERATORS
                    for rule in ("spl", "smooth") if f"{rule}/{g}" in rows]
        elif rid.weight is None:
            out.append((row, BASELINE, "outliers that no GAN made"))
            out += [(f"{rid.method}/{g}", row, "does the GAN matter") for g in GENERATORS
                    if f"{rid.method}/{g}" in rows]
        else:
            out.append((row, BASELINE, f"generated-image weight λ = {rid.weight:g}"))
    return out


def _row_name(row: str, gen_labels: Mapping[str, str] | None = None, iteration_schedule: bool = False) -> str:
    return "baseline" if row == BASELINE else row_label(row, gen_labels, iteration_schedule=iteration_schedule)


#: The controls paragraph's sentence on ``baseline/iters`` under ``schedule: iterations``.
PLATEAU_NOTE = ("Every row trains the same number of iterations; `baseline/iters` is the baseline trained for twice "
                "that budget, the plateau check: with no detectable difference the budget is at the baseline's "
                "plateau, so the other rows' differences are not a matter of too few iterations.")


def control_paragraph(values: Mapping[str, Mapping[int, float]], rows: Sequence[str], metric: str = "mAP",
                      gen_labels: Mapping[str, str] | None = None, *, iteration_schedule: bool = False) -> str:
    """A Markdown section with one sentence per comparison of :func:`control_comparisons`; "" without control rows.

    Each sentence: the two rows, what the difference tests, the paired Δ (A − B) with its 95% CI
    and the verdict, or why there is none. Generated from the numbers only. ``iteration_schedule``: the
    spec trains with ``schedule: iterations`` (``baseline/iters`` is then the plateau check, :data:`PLATEAU_NOTE`).
    """
    comparisons = control_comparisons(rows, iteration_schedule=iteration_schedule)
    if not comparisons:
        return ""
    plateau = f" {PLATEAU_NOTE}" if iteration_schedule and any(parse_row_id(r).matched for r in rows) else ""
    lines = [CONTROLS_HEADING, "",
             f"These rows go beyond the paper (marked {BEYOND_PAPER_MARK} in the table). Each line gives the paired "
             f"difference of {metric} (first row − second row, seed i with seed i), its 95% t confidence interval "
             f"and the verdict: better if the interval lies above 0, worse if below, no detectable difference if it "
             f"contains 0.{plateau}", ""]
    for a, b, what in comparisons:
        names = _row_name(a, gen_labels, iteration_schedule), _row_name(b, gen_labels, iteration_schedule)
        text, _ = _comparison_line(f"- {names[0]} − {names[1]} ({what})", values, a, b, metric)
        lines.append(text + ".")
    return "\n".join(lines) + "\n"


def _comparison_line(head: str, values: Mapping[str, Mapping[int, float]], a: str, b: str,
                     metric: str) -> tuple[str, PairedDiff | None]:
    """``head`` followed by the paired Δ (a − b) and its verdict, or why there is none; and the difference."""
    missing = [r for r in (a, b) if not values.get(r)]
    if missing:
        return f"{head}: no results for {', '.join(missing)}", None
    diff = paired_difference(values[a], values[b])
    if diff is None:
        return f"{head}: the two rows share no seed", None
    return f"{head}: {describe_diff(diff, metric)} → **{diff.verdict}**", diff


# ------------------------------------------------------------------------------------ the real ceiling (issue #19)

CEILING_HEADING = "## The real ceiling (beyond the paper)"


def ceiling_comparisons(rows: Sequence[str]) -> list[tuple[str, str, str]]:
    """The comparisons the ``<rule>/real`` rows of ``rows`` answer: ``(row A, row B, what A − B tests)``.

    Per rule with a ``real`` row: the ceiling vs the baseline (what M real unlabeled canvases labelled by
    the rule add), then each plain ``<rule>/<GAN>`` row vs the ceiling (how far the GAN is from it).
    """
    out: list[tuple[str, str, str]] = []
    for row in rows:
        rid = parse_row_id(row)
        if rid.source != REAL_SOURCE or rid.weight is not None:
            continue
        out.append((row, BASELINE, "the ceiling: real unlabeled canvases instead of generated ones"))
        out += [(f"{rid.method}/{g}", row, "the GAN against the ceiling") for g in GENERATORS
                if f"{rid.method}/{g}" in rows]
    return out


def ceiling_share(gan: Mapping[int, float], real: Mapping[int, float], baseline: Mapping[int, float]) -> float | None:
    """How much of the ceiling's gain the GAN row reaches: ``mean(gan − baseline) / mean(real − baseline)``.

    Over the seeds the three rows share. None when they share none, or when the ceiling's mean gain is not
    positive (then there is no gain to share, and the ratio would mislead).
    """
    seeds = sorted(set(gan) & set(real) & set(baseline))
    if not seeds:
        return None
    ceiling = math.fsum(real[s] - baseline[s] for s in seeds) / len(seeds)
    if ceiling <= 0:
        return None
    return math.fsum(gan[s] - baseline[s] for s in seeds) / len(seeds) / ceiling


def ceiling_paragraph(values: Mapping[str, Mapping[int, float]], rows: Sequence[str], metric: str = "mAP",
                      gen_labels: Mapping[str, str] | None = None) -> str:
    """A Markdown section with one line per comparison of :func:`ceiling_comparisons`; "" without ``real`` rows.

    Each line: the paired Δ (A − B) with its 95% CI and verdict; a GAN row's line also gives the share
    of the ceiling's gain it reaches (:func:`ceiling_share`) when the ceiling gains at all.
    """
    comparisons = ceiling_comparisons(rows)
    if not comparisons:
        return ""
    lines = [CEILING_HEADING, "",
             f"A `<rule>/real` row ({BEYOND_PAPER_MARK}) trains on M real canvases drawn from the unlabeled pool "
             f"(the training canvases outside the labelled N), labelled by the same rule from the same baseline's "
             f"scores, never with their own labels: what a perfect generator could reach. Each line gives the paired "
             f"difference of {metric} (first row − second row, seed i with seed i), its 95% t confidence interval "
             f"and the verdict.", ""]
    base = values.get(BASELINE, {})
    for a, b, what in comparisons:
        text, diff = _comparison_line(f"- {_row_name(a, gen_labels)} − {_row_name(b, gen_labels)} ({what})",
                                      values, a, b, metric)
        share = ceiling_share(values[a], values[b], base) if diff is not None and b != BASELINE else None
        if share is not None:
            text += f"; the GAN row reaches {share:.0%} of the ceiling's mean gain over the baseline"
        lines.append(text + ".")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ reproduction (issue #19)

AGREE = "agree"
UNSTABLE = "unstable"
NOT_COMPARED = "not compared"


def all_verdicts(values: Mapping[str, Mapping[int, float]], rows: Sequence[str], *,
                 iteration_schedule: bool = False) -> dict[str, str]:
    """Every verdict a report states, by name: each row vs the baseline, the paper's claims, the controls and
    the ceiling comparisons (:func:`check_claim`, :func:`control_comparisons`, :func:`ceiling_comparisons`;
    ``iteration_schedule`` words the controls as the report does).

    A claim maps to its status (held / not held / not detectable / skipped); a comparison ``A − B`` to its
    verdict (better / worse / no detectable difference / n/a). Missing rows give "skipped" / "n/a".
    """
    out: dict[str, str] = {}

    def compare(a: str, b: str) -> str:
        if not values.get(a) or not values.get(b):
            return NOT_AVAILABLE
        diff = paired_difference(values[a], values[b])
        return NOT_AVAILABLE if diff is None else diff.verdict

    for row in rows:
        if row != BASELINE and BASELINE in rows:
            out[f"{row} − baseline"] = compare(row, BASELINE)
    claims, group = evaluate_claims(values, rows)
    out.update({c.text: c.status for c in claims})
    out[group.text] = group.status
    for a, b, what in control_comparisons(rows, iteration_schedule=iteration_schedule) + ceiling_comparisons(rows):
        out.setdefault(f"{a} − {b} ({what})", compare(a, b))
    return out


@dataclass(frozen=True)
class Agreement:
    """One verdict in two seed sets: ``agree``, ``unstable`` (it flips) or ``not compared`` (untested in one)."""

    name: str
    first: str
    second: str

    @property
    def status(self) -> str:
        """``not compared`` if either set could not test it (skipped, n/a or absent), else agree / unstable."""
        untested = (SKIPPED, NOT_AVAILABLE, "")
        if self.first in untested or self.second in untested:
            return NOT_COMPARED
        return AGREE if self.first == self.second else UNSTABLE


def compare_verdicts(a: Mapping[str, str], b: Mapping[str, str]) -> list[Agreement]:
    """The verdicts of two seed sets side by side (name → verdict each, e.g. :func:`all_verdicts`), in ``a``'s
    order then ``b``'s extra names. A verdict that differs between the sets is unstable, not a finding."""
    names = list(a) + [n for n in b if n not in a]
    return [Agreement(n, a.get(n, ""), b.get(n, "")) for n in names]


def format_reproduction(agreements: Sequence[Agreement], labels: tuple[str, str] = ("first", "second")) -> str:
    """A Markdown summary and table of :func:`compare_verdicts`: each verdict in both sets and whether they agree."""
    counts = {s: sum(1 for g in agreements if g.status == s) for s in (AGREE, UNSTABLE, NOT_COMPARED)}
    lines = [f"Of {len(agreements)} verdicts, {counts[AGREE]} agree between the seed sets {labels[0]} and "
             f"{labels[1]}, {counts[UNSTABLE]} are **unstable** (they flip) and {counts[NOT_COMPARED]} could not "
             "be compared (untested in a set).", "",
             f"| Verdict | {labels[0]} | {labels[1]} | Reproduces |", "|---|---|---|---|"]
    for g in agreements:
        status = f"**{g.status}**" if g.status == UNSTABLE else g.status
        lines.append(f"| {g.name} | {g.first or '–'} | {g.second or '–'} | {status} |")
    return "\n".join(lines) + "\n"


def check_seed_sets(where: object, starts: Sequence[int], seeds: int) -> dict[int, range]:
    """``start → range`` of each seed set (``seeds`` seeds from each start); ConfigError naming ``where``
    unless there are at least two sets and no two overlap."""
    if len(starts) < 2:
        raise ConfigError(f"{where}: the reproduction check needs at least two seed sets, got {list(starts)}")
    sets = {s: range(s, s + seeds) for s in starts}
    if any(set(sets[a]) & set(sets[b]) for a in starts for b in starts if a < b):
        raise ConfigError(f"{where}: seed sets {list(starts)} with {seeds} seeds each overlap; use disjoint sets")
    return sets


def seed_set_text(start: int, seeds: int) -> str:
    """A seed set's name: ``seeds 5–9`` (``seeds`` seeds from ``start``), ``seed 5`` for one."""
    return f"seed {start}" if seeds == 1 else f"seeds {start}–{start + seeds - 1}"


def reproduction_markdown(title: str, verdicts: Mapping[int, Mapping[str, str]], seeds: int) -> str:
    """The reproduction check as Markdown: the verdicts of each seed set (``start → {name: verdict}``, in the
    sets' order) compared with the first set's, one :func:`format_reproduction` section per later set."""
    starts = list(verdicts)
    names = {s: seed_set_text(s, seeds) for s in starts}
    out = [f"# Reproduction check: {title}", ""]
    for s in starts[1:]:
        out += [f"## {names[starts[0]]} against {names[s]}", "",
                format_reproduction(compare_verdicts(verdicts[starts[0]], verdicts[s]), (names[starts[0]], names[s]))]
    return "\n".join(out)


__all__ = [
    "check_seed_sets", "seed_set_text", "reproduction_markdown",
    "CEILING_HEADING", "ceiling_comparisons", "ceiling_share", "ceiling_paragraph",
    "AGREE", "UNSTABLE", "NOT_COMPARED", "all_verdicts", "Agreement", "compare_verdicts", "format_reproduction",
    "CONTROLS_HEADING", "MORE_ITERATIONS", "PLATEAU_NOTE", "control_comparisons", "control_paragraph",
    "T975_TABLE", "Z975", "VERDICTS", "BETTER", "WORSE", "NO_DIFFERENCE", "NOT_AVAILABLE", "CLAIM_STATUSES",
    "HELD", "NOT_HELD", "NOT_DETECTABLE", "SKIPPED", "t_quantile_975", "mean_std", "verdict", "PairedDiff",
    "paired_ci", "paired_difference", "ClaimSpec", "Claim", "ClaimGroup", "paper_claims", "check_claim",
    "group_status", "evaluate_claims", "describe_diff", "verdict_paragraph",
]
