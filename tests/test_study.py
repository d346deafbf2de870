"""The study beyond the paper (issue #13): gain over the baseline against the labelled-set size N.

* deriving one table spec per N: only ``dataset.train_count``, the rows and the gallery change; the
  fingerprints and the training shards differ per N, the test shards are shared;
* collecting: the Δ / CI / verdict per N and row equal :mod:`replication.report.statistics` called directly on
  the same synthetic finished metrics (no training), results of other sizes never mix in;
* the figure's data (x = N, y = Δ, bars = the CI, a zero line, a log x axis) on the Axes, not pixels;
* the conclusion sentence where the answer is known (gain at large N only, no gain anywhere, nothing tested);
* bad study specs → one-line errors naming the file; the CLI; one tiny end-to-end run without a GAN.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from matplotlib.container import ErrorbarContainer

from replication.errors import ConfigError
from replication.experiments.runner import plan_experiment
from replication.experiments.spec import load_spec
from replication.experiments.study import derive_spec, load_study, plan_study, study_from_dict, study_specs
from replication.report.statistics import NO_DIFFERENCE, PairedDiff, mean_std, paired_difference
from replication.report.study import (
    StudyResult,
    collect_study,
    conclusion,
    figure_series,
    format_study_csv,
    study_reproduction_report,
    write_study,
)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
COUNTS = [250, 500, 1000, 2000, 5000]


def _base_raw(**edits) -> dict:
    raw = yaml.safe_load((FIXTURES / "experiment_tiny.yaml").read_text())
    raw["paper"]["csv"] = str(REPO / "tables/paper/table3_ms_coco.csv")
    raw.update(edits)
    return raw


def _write_study(tmp_path: Path, study: dict, base: dict | None = None, name: str = "study.yaml") -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base or _base_raw()))
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"name": "study", "base": "base.yaml", "train_counts": COUNTS, **study}))
    return path


# ------------------------------------------------------------------------------------ the per-N specs


def test_derived_specs_change_only_the_labelled_set(tmp_path):
    study = load_study(_write_study(tmp_path, {"train_counts": [500, 250], "rows": ["spl/dcgan", "smooth/dcgan"]}))
    base = load_spec(tmp_path / "base.yaml")
    assert study.base == base and study.train_counts == (250, 500)          # sorted
    specs = study_specs(study)
    assert list(specs) == [250, 500]
    for n, spec in specs.items():
        assert spec.dataset.train_count == n
        assert spec.rows == ("baseline", "spl/dcgan", "smooth/dcgan") and spec.gallery == 0
        # everything else is the base's, field by field
        assert spec == base.__class__(**{**vars(base), "dataset": spec.dataset, "rows": spec.rows, "gallery": 0})
        assert {k: v for k, v in vars(spec.dataset).items() if k != "train_count"} == \
            {k: v for k, v in vars(base.dataset).items() if k != "train_count"}
        assert spec.name == base.name  # so a base run at this N shares every step, metrics included
    fps = {spec.fingerprint() for spec in specs.values()} | {base.fingerprint()}
    assert len(fps) == 3
    assert derive_spec(study, 250).fingerprint() == specs[250].fingerprint()  # deterministic
    plans = plan_study(study, seeds=2)
    assert [plans[n].named["shards/train"].config["count"] for n in (250, 500)] == [250, 500]
    assert plans[250].named["shards/train"].key != plans[500].named["shards/train"].key
    assert plans[250].named["shards/test"].key == plans[500].named["shards/test"].key  # one test set
    assert plans[250].named["gan/dcgan"].key != plans[500].named["gan/dcgan"].key      # a GAN per N
    assert "gan/wgan-gp" not in plans[250].named and not any(s.kind == "gallery" for s in plans[250].steps)
    assert set(plans[250].trains) == {(r, s) for r in specs[250].rows for s in (0, 1)}
    # the same spec as the base with train_count set by hand plans the same keys (shared cache)
    by_hand = plan_experiment(specs[250], seeds=2)
    assert [s.key for s in by_hand.steps] == [s.key for s in plans[250].steps]


def test_default_rows_are_spl_and_smooth_per_gan(tmp_path):
    study = load_study(_write_study(tmp_path, {}))
    assert study.rows == ("spl/dcgan", "smooth/dcgan", "spl/wgan-gp", "smooth/wgan-gp") and study.seeds == 3


def test_shipped_study_spec_loads():
    study = load_study(REPO / "tables/specs/study.yaml")
    assert study.base.path == REPO / "tables/specs/demo.yaml" or study.base.path.resolve() == \
        (REPO / "tables/specs/demo.yaml").resolve()
    counts = study.train_counts
    assert counts == tuple(sorted(set(counts))) and len(counts) >= 3
    assert load_spec(REPO / "tables/specs/demo.yaml").dataset.train_count in counts   # the demo's N is reused
    assert all(r.startswith(("spl/", "smooth/")) for r in study.rows) and study.seeds >= 3


# ------------------------------------------------------------------------------------ collecting (no training)


def _write_run(runs: Path, spec, row: str, seed: int, map_value: float, tag: str = "") -> None:
    d = runs / spec.dataset.source / f"metrics-{abs(hash((row, seed, spec.fingerprint(), tag))) % 10**12:012x}"
    d.mkdir(parents=True)
    metrics = {c: 50.0 for c in spec.columns}
    metrics["mAP"] = map_value
    rec = {"table": spec.name, "fingerprint": spec.fingerprint(), "row": row, "seed": seed,
           "finished": "2025-01-01T00:00:00Z", "metrics": metrics}
    (d / "metrics.json").write_text(json.dumps(rec))
    (d / "done").write_text("")


BASE_MAP = {250: (60.0, 64.0, 59.0), 500: (70.0, 71.5, 69.0), 1000: (80.0, 79.0, 81.0)}
GAIN = {  # row → N → per-seed offsets vs the baseline
    "spl/dcgan": {250: (-1.0, 0.5, 2.0), 500: (1.0, 1.2, 0.8), 1000: (2.0, 2.5, 1.5)},
    "smooth/dcgan": {250: (-3.0, -3.5, -2.5), 500: (0.3, -0.6, 0.2), 1000: (0.5,)},  # N=1000: one seed only
}


@pytest.fixture()
def synthetic(tmp_path):
    study = load_study(_write_study(tmp_path, {"train_counts": list(BASE_MAP), "rows": list(GAIN)}))
    runs = tmp_path / "runs"
    specs = study_specs(study)
    for n, spec in specs.items():
        for s, b in enumerate(BASE_MAP[n]):
            _write_run(runs, spec, "baseline", s, b)
        for row, by_n in GAIN.items():
            for s, off in enumerate(by_n[n]):
                _write_run(runs, spec, row, s, BASE_MAP[n][s] + off)
    # distractors that must not mix in: the base spec itself (no train_count) and a size not in the study
    for s in range(3):
        _write_run(runs, study.base, "spl/dcgan", s, 99.0, "base")
        _write_run(runs, study.base, "baseline", s, 1.0, "base")
        _write_run(runs, derive_spec(study, 777), "spl/dcgan", s, 99.0, "other")
    return study, runs


def test_collected_deltas_equal_statistics_directly(synthetic):
    study, runs = synthetic
    result = collect_study(study, runs)
    assert result.counts == (250, 500, 1000) and result.rows == ("spl/dcgan", "smooth/dcgan")
    for n, base in BASE_MAP.items():
        base_by_seed = dict(enumerate(base))
        assert result.baseline[n] == base_by_seed
        mean, std = mean_std(list(base))
        assert result.baseline_stats(n) == pytest.approx((mean, std, 3))
        for row, by_n in GAIN.items():
            values = {s: base[s] + off for s, off in enumerate(by_n[n])}
            assert result.deltas[(n, row)] == paired_difference(values, base_by_seed)
    # one case by hand: spl at N = 500, offsets 1.0, 1.2, 0.8: mean 1, sd 0.2, half = t(2)·0.2/√3
    d = result.deltas[(500, "spl/dcgan")]
    half = 4.302652729749464 * 0.2 / math.sqrt(3)
    assert d.mean == pytest.approx(1.0) and (d.low, d.high) == pytest.approx((1 - half, 1 + half))
    assert result.verdicts("spl/dcgan") == {250: NO_DIFFERENCE, 500: "better", 1000: "better"}
    assert result.verdicts("smooth/dcgan") == {250: "worse", 500: NO_DIFFERENCE, 1000: "n/a"}
    assert result.deltas[(1000, "smooth/dcgan")].n == 1


def test_only_the_studys_seeds_count(synthetic):
    """A runs folder with more replicates at one size (the demo's second seed set at N = 250) must not give that
    size more seeds than the others: seeds 0 … seeds − 1 only, ``seeds`` overriding the spec's."""
    study, runs = synthetic
    spec = study_specs(study)[250]
    for s in (3, 4):
        _write_run(runs, spec, "baseline", s, 10.0)
        _write_run(runs, spec, "spl/dcgan", s, 99.0)
    result = collect_study(study, runs)
    assert result.baseline_stats(250)[2] == 3 and result.deltas[(250, "spl/dcgan")].n == 3
    assert result.deltas[(250, "spl/dcgan")] == paired_difference(
        {s: BASE_MAP[250][s] + GAIN["spl/dcgan"][250][s] for s in range(3)}, dict(enumerate(BASE_MAP[250])))
    two = collect_study(study, runs, seeds=2)
    assert two.baseline[250] == {0: 60.0, 1: 64.0} and two.deltas[(500, "spl/dcgan")].n == 2
    five = collect_study(study, runs, seeds=5)
    assert five.deltas[(250, "spl/dcgan")].n == 5 and five.deltas[(500, "spl/dcgan")].n == 3


def _second_set(study, runs, flip: bool) -> None:
    """Seeds 3–5 of every size: the first set's numbers again, except (``flip``) spl at N = 500 made worse."""
    for n, spec in study_specs(study).items():
        for s, b in enumerate(BASE_MAP[n]):
            _write_run(runs, spec, "baseline", 3 + s, b)
        for row, by_n in GAIN.items():
            for s, off in enumerate(by_n[n]):
                off = -off if flip and (row, n) == ("spl/dcgan", 500) else off
                _write_run(runs, spec, row, 3 + s, BASE_MAP[n][s] + off)


def test_a_second_seed_set_is_collected_on_its_own(synthetic):
    """``seed_start`` picks seeds ``seed_start`` … ``seed_start + seeds − 1``: the second set's numbers only."""
    study, runs = synthetic
    _second_set(study, runs, flip=True)
    second = collect_study(study, runs, seeds=3, seed_start=3)
    assert second.baseline[250] == {3: 60.0, 4: 64.0, 5: 59.0}
    assert second.deltas[(500, "spl/dcgan")] == paired_difference(
        {3 + s: BASE_MAP[500][s] - off for s, off in enumerate(GAIN["spl/dcgan"][500])},
        {3 + s: b for s, b in enumerate(BASE_MAP[500])})
    assert second.verdicts("spl/dcgan")[500] == "worse"
    assert collect_study(study, runs).verdicts("spl/dcgan")[500] == "better"   # the first set is unchanged


def test_study_reproduction_names_the_verdict_that_flips(synthetic, tmp_path):
    study, runs = synthetic
    _second_set(study, runs, flip=True)
    text = study_reproduction_report(study, runs, 3, [0, 3])
    assert "## seeds 0–2 against seeds 3–5" in text
    assert "Of 6 verdicts, 4 agree between the seed sets seeds 0–2 and seeds 3–5, 1 are **unstable**" in text
    assert "| N = 500: spl/dcgan − baseline | better | worse | **unstable** |" in text
    assert "| N = 250: smooth/dcgan − baseline | worse | worse | agree |" in text
    assert "| N = 1000: smooth/dcgan − baseline | n/a | n/a | not compared |" in text  # one seed: untested
    with pytest.raises(ConfigError, match="overlap"):
        study_reproduction_report(study, runs, 3, [0, 2])
    with pytest.raises(ConfigError, match="at least two seed sets"):
        study_reproduction_report(study, runs, 3, [0])
    # the command writes <name>_reproduce.md
    from replication.cli import cli
    res = CliRunner().invoke(cli, ["study", "reproduce", str(study.path), "--runs", str(runs), "--seeds", "3",
                                   "--seed-sets", "0,3", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / f"{study.name}_reproduce.md").read_text() == text


def test_missing_size_or_row_stays_empty(tmp_path):
    study = load_study(_write_study(tmp_path, {"train_counts": [250, 500], "rows": ["spl/dcgan"]}))
    runs = tmp_path / "runs"
    spec = derive_spec(study, 250)
    for s, b in enumerate((60.0, 62.0)):
        _write_run(runs, spec, "baseline", s, b)
    result = collect_study(study, runs)
    assert result.deltas == {(250, "spl/dcgan"): None, (500, "spl/dcgan"): None}
    assert result.baseline_stats(500) == (None, None, 0)
    assert conclusion(result).startswith("No conclusion yet")
    written = write_study(result, tmp_path / "out")
    assert "png" not in written and "| 500 | – |" in written["md"].read_text()


def test_outputs_table_csv_and_figure(synthetic, tmp_path):
    study, runs = synthetic
    result = collect_study(study, runs)
    written = write_study(result, tmp_path / "out")
    assert {p.name for p in written.values()} == {"study.md", "study.csv", "study.png"}
    assert written["png"].stat().st_size > 1000
    md = written["md"].read_text()
    assert conclusion(result) in md and "![" in md and "(study.png)" in md
    d = result.deltas[(500, "spl/dcgan")]
    assert f"| 500 | 70.2 ± 1.3 (3) | +1.00 [{d.low:+.2f}, {d.high:+.2f}] | better |" in md
    assert "| +0.50 (1 seed) | n/a |" in md
    rows = list(csv.DictReader(io.StringIO(format_study_csv(result))))
    assert len(rows) == 6
    r = next(x for x in rows if x["N"] == "250" and x["row"] == "smooth/dcgan")
    d = result.deltas[(250, "smooth/dcgan")]
    assert (float(r["delta"]), float(r["delta_low"]), float(r["delta_high"])) == \
        pytest.approx((d.mean, d.low, d.high), abs=0.005)
    assert r["verdict"] == "worse" and r["paired_seeds"] == "3" and r["baseline_seeds"] == "3"
    assert float(r["baseline_mean"]) == pytest.approx(61.0, abs=0.005)


def test_outputs_byte_for_byte_as_before_the_report_package(synthetic, tmp_path):
    """``tests/fixtures/study_golden/`` was written by the study's own formatters before they were replaced by
    the table's (issue #23, at commit af6801d); the shared formats must give the same bytes. Since then the
    page states what the GANs train on and the conditions (issue #19), and its seed set (issue #20's second seed
    set): those three lines were updated by hand."""
    study, runs = synthetic
    written = write_study(collect_study(study, runs), tmp_path / "out", plot=False)
    for k in ("md", "csv"):
        text = written[k].read_text(encoding="utf-8").replace(str(tmp_path), "<tmp>")
        assert text == (FIXTURES / "study_golden" / f"study.{k}").read_text(encoding="utf-8")


def test_figure_data_on_the_axes(synthetic):
    from replication.report.plots import PlotInputError, study_gain_figure

    study, runs = synthetic
    result = collect_study(study, runs)
    series = figure_series(result)
    fig = study_gain_figure(series)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    containers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert [c.get_label() for c in containers] == ["Our SPL (DCGAN)", "Smooth labeling (DCGAN)"]
    for c, row in zip(containers, study.rows, strict=True):
        line, _, (bars,) = c.lines
        ns = [n for n in result.counts if result.deltas[(n, row)] is not None]
        assert list(line.get_xdata()) == ns
        assert list(line.get_ydata()) == pytest.approx([result.deltas[(n, row)].mean for n in ns])
        segs = bars.get_segments()
        assert len(segs) == len(ns)
        for seg, n in zip(segs, ns, strict=True):
            d = result.deltas[(n, row)]
            (x0, y0), (x1, y1) = seg
            assert x0 == x1 == n
            if d.low is None:   # one seed: no interval, a bar of zero length
                assert y0 == y1 == pytest.approx(d.mean)
            else:
                assert (y0, y1) == pytest.approx((d.low, d.high))
    zero = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [0, 0]]
    assert len(zero) == 1
    # every point, bar end and the zero line lie inside the axes (the nudged lines escape autoscaling)
    ds = [d for d in result.deltas.values() if d is not None]
    ys = [0.0] + [d.mean for d in ds] + [v for d in ds for v in (d.low, d.high) if v is not None]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 < min(result.counts) and max(result.counts) < x1 and y0 < min(ys) and max(ys) < y1
    assert [t.get_text() for t in ax.get_xticklabels()] == ["250", "500", "1,000"]
    with pytest.raises(PlotInputError, match="mean outside"):
        study_gain_figure({"x": ([1], [2.0], [3.0], [4.0])})


# ------------------------------------------------------------------------------------ the conclusion


def _result(tmp_path: Path, deltas: dict[tuple[int, str], tuple[float, ...] | None]) -> StudyResult:
    """A StudyResult from per-(N, row) paired differences (statistics computes the CI)."""
    study = load_study(_write_study(tmp_path, {"rows": ["spl/dcgan", "smooth/dcgan"]}))
    out = {}
    for key, diffs in deltas.items():
        out[key] = None if diffs is None else paired_difference(dict(enumerate(diffs)), dict.fromkeys(
            range(len(diffs)), 0.0))
    return StudyResult(study, {n: {} for n in COUNTS}, out, range(study.seeds))


FLAT = (-0.5, 0.4, 0.1)          # CI contains 0
GAIN_ = (1.0, 1.3, 0.9)          # CI above 0
LOSS = (-2.0, -2.2, -1.9)        # CI below 0


def test_conclusion_gain_at_large_n_only(tmp_path):
    deltas = {(n, "spl/dcgan"): (GAIN_ if n >= 2000 else FLAT) for n in COUNTS}
    deltas |= {(n, "smooth/dcgan"): FLAT for n in COUNTS}
    result = _result(tmp_path, deltas)
    text = conclusion(result)
    assert "Our SPL (DCGAN) at N = 2,000 and 5,000" in text and "Smooth labeling (DCGAN) at no N" in text
    assert "250" not in text.split("labelled images")[1] and "\n" not in text and text.endswith(".")
    assert text.count(". ") == 0  # one sentence


def test_conclusion_no_gain_anywhere(tmp_path):
    deltas = {(n, r): FLAT for n in COUNTS for r in ("spl/dcgan", "smooth/dcgan")}
    deltas[(250, "smooth/dcgan")] = LOSS
    deltas[(5000, "spl/dcgan")] = (0.7,)   # one seed: not tested
    text = conclusion(_result(tmp_path, deltas))
    assert text.startswith("No N with a detectable gain")
    assert "Smooth labeling (DCGAN) loses at N = 250" in text and "N = 5,000 not tested" in text
    assert "\n" not in text and text.endswith(".")


def test_conclusion_changes_when_the_numbers_do(tmp_path):
    flat = {(n, r): FLAT for n in COUNTS for r in ("spl/dcgan", "smooth/dcgan")}
    gained = {**flat, (500, "smooth/dcgan"): GAIN_}
    assert conclusion(_result(tmp_path, gained)) != conclusion(_result(tmp_path, flat))
    assert "Smooth labeling (DCGAN) at N = 500" in conclusion(_result(tmp_path, gained))
    nothing = {k: None for k in flat}
    assert conclusion(_result(tmp_path, nothing)).startswith("No conclusion yet")


# ------------------------------------------------------------------------------------ bad specs


@pytest.mark.parametrize("edit, message", [
    ({"train_counts": []}, "train_counts must be a non-empty list"),
    ({"train_counts": [250, 0]}, "train_counts must be a non-empty list of positive integers"),
    ({"train_counts": [250, "500"]}, "positive integers"),
    ({"train_counts": [True]}, "positive integers"),
    ({"train_counts": [250, 250]}, "lists a size twice"),
    ({"rows": ["baseline"]}, "do not list 'baseline'"),
    ({"rows": ["spl/vae"]}, "unknown row"),
    ({"rows": []}, "rows must be a non-empty list"),
    ({"rows": ["spl/dcgan", "spl/dcgan"]}, "listed twice"),
    ({"seeds": 0}, "seeds must be a positive integer"),
    ({"seeds": 1.5}, "seeds must be a positive integer"),
    ({"budget": 60}, "unknown key 'budget'"),
    ({"base": "missing.yaml"}, "base spec: "),
    ({"base": 3}, "base must be the path"),
    ({"name": "a/b"}, "name must be a file name"),
])
def test_bad_study_specs_one_line_error_naming_the_file(tmp_path, edit, message):
    path = _write_study(tmp_path, edit, name="bad_study.yaml")
    with pytest.raises(ConfigError) as e:
        load_study(path)
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_bad_study_specs_base_and_file(tmp_path):
    only_dcgan = _base_raw(rows=["baseline", "spl/dcgan"])
    del only_dcgan["gan"]["wgan-gp"]
    path = _write_study(tmp_path, {"rows": ["spl/wgan-gp"]}, base=only_dcgan)
    with pytest.raises(ConfigError, match=r"study.yaml: row 'spl/wgan-gp' needs a 'gan.wgan-gp' preset"):
        load_study(path)
    no_map = _base_raw(columns=["F1-C"])
    with pytest.raises(ConfigError, match=r"study.yaml: the base spec .* has no 'mAP' column"):
        load_study(_write_study(tmp_path, {"rows": ["spl/dcgan"]}, base=no_map))
    bad_base = _base_raw(rows=["baseline", "spl/nope"])
    with pytest.raises(ConfigError, match=r"study.yaml: base spec: .*base.yaml: unknown row"):
        load_study(_write_study(tmp_path, {"rows": ["spl/dcgan"]}, base=bad_base))
    with pytest.raises(ConfigError, match="nowhere.yaml: study spec file not found"):
        load_study(tmp_path / "nowhere.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="list.yaml"):
        load_study(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="missing key 'train_counts'"):
        study_from_dict({"name": "x", "base": str(tmp_path / "base.yaml")}, tmp_path / "x.yaml")


# ------------------------------------------------------------------------------------ the CLI


def test_cli_render_and_errors(synthetic, tmp_path):
    from replication.cli import cli

    study, runs = synthetic
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["study", "render", str(study.path), "--runs", str(runs), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().endswith(conclusion(collect_study(study, runs)))
    assert (out / "study.md").is_file() and (out / "study.csv").is_file() and (out / "study.png").is_file()
    bad = _write_study(tmp_path, {"seeds": -1}, name="bad.yaml")
    res = CliRunner().invoke(cli, ["study", "run", str(bad), "--runs", str(tmp_path / "r")])
    assert res.exit_code == 1 and f"error: {bad}: seeds must be" in res.output
    assert not (tmp_path / "r").exists()


def test_cli_run_hands_jobs_and_threads_to_every_size(tmp_path, monkeypatch):
    """``spl study run --jobs 2 --threads-per-step 3``: every size runs with the same process pool and thread
    count (the count is part of each step's key, so it must reach every size's plan)."""
    from replication.cli import cli
    from replication.experiments import study as study_mod
    from replication.experiments.parallel import ProcessStepPool

    calls, starts = [], []

    def fake_run(spec, **kw):
        calls.append((spec.dataset.train_count, kw["threads"], kw["pool"], kw["seeds"]))
        starts.append(kw["seed_start"])
        return study_mod.ExperimentResult(plan_experiment(spec, seeds=kw["seeds"], threads=kw["threads"]), [])

    monkeypatch.setattr(study_mod, "run_experiment", fake_run)
    path = _write_study(tmp_path, {"train_counts": [48, 96], "rows": ["smooth/shuffled"], "seeds": 2},
                        base=_base_raw(rows=["baseline", "smooth/shuffled"]))
    res = CliRunner().invoke(cli, ["study", "run", str(path), "--runs", str(tmp_path / "r"), "--jobs", "2",
                                   "--threads-per-step", "3", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert [(n, t, s) for n, t, _, s in calls] == [(48, 3, 2), (96, 3, 2)]
    assert isinstance(calls[0][2], ProcessStepPool) and calls[0][2] is calls[1][2]   # one pool for all sizes
    calls.clear()
    res = CliRunner().invoke(cli, ["study", "run", str(path), "--runs", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 0 and [(t, p) for _, t, p, _ in calls] == [(1, None), (1, None)]
    assert starts == [0, 0, 0, 0]
    res = CliRunner().invoke(cli, ["study", "run", str(path), "--runs", str(tmp_path / "r"), "--no-progress",
                                   "--seed-start", "5"])
    assert res.exit_code == 0 and starts[-2:] == [5, 5]   # the second seed set at every size


# ------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_study_end_to_end_tiny(tmp_path):
    """Two sizes of the tiny digits set, baseline vs smooth labels on block-shuffled real canvases (no GAN),
    2 seeds: each size trains on its own N images, the outputs render, and a second run is all cached."""
    from replication.cli import cli
    from replication.data.shards import ShardSet
    from replication.experiments.study import run_study

    base = _base_raw(rows=["baseline", "smooth/shuffled"])
    path = _write_study(tmp_path, {"train_counts": [96, 48], "rows": ["smooth/shuffled"], "seeds": 2}, base=base)
    study = load_study(path)
    runs = tmp_path / "runs"
    results = run_study(study, runs=runs, progress=False)
    assert list(results) == [48, 96]
    for n, res in results.items():
        assert not any(s.kind == "gan" for s in res.plan.steps)
        assert len(ShardSet(res.plan.named["shards/train"].path(runs) / "data")) == n
        assert {(r, s) for r, s in res.plan.metrics} == {(r, s) for r in ("baseline", "smooth/shuffled")
                                                         for s in (0, 1)}
    result = collect_study(study, runs)
    assert all(result.deltas[(n, "smooth/shuffled")].n == 2 for n in (48, 96))
    assert all(result.baseline_stats(n)[2] == 2 for n in (48, 96))
    for n in (48, 96):   # the study's numbers are the metrics files of that size's runs
        m = {(row, s): json.loads((step.path(runs) / "metrics.json").read_text())["metrics"]["mAP"]
             for (row, s), step in results[n].plan.metrics.items()}
        d = result.deltas[(n, "smooth/shuffled")]
        assert d.mean == pytest.approx(np.mean([m[("smooth/shuffled", s)] - m[("baseline", s)] for s in (0, 1)]))
    again = run_study(study, runs=runs, progress=False)
    assert all(r.status == "skipped" for res in again.values() for r in res.records)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["study", "render", str(path), "--runs", str(runs), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "study.png").stat().st_size > 1000 and "| 48 |" in (out / "study.md").read_text()
    assert isinstance(result.deltas[(48, "smooth/shuffled")], PairedDiff)


def test_cli_renders_the_second_seed_set_on_its_own(synthetic, tmp_path):
    """``spl study render --seed-start 3``: the page of seeds 3–5 only (spl at N = 500 flipped there), saying so."""
    from replication.cli import cli

    study, runs = synthetic
    _second_set(study, runs, flip=True)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["study", "render", str(study.path), "--runs", str(runs), "--out", str(out),
                                   "--seeds", "3", "--seed-start", "3", "--no-plot"])
    assert res.exit_code == 0, res.output
    second = collect_study(study, runs, seeds=3, seed_start=3)
    assert res.output.rstrip().endswith(conclusion(second))
    assert conclusion(second) != conclusion(collect_study(study, runs))
    md = (out / "study.md").read_text()
    d = second.deltas[(500, "spl/dcgan")]
    assert "- Replicates: seeds 3–5 " in md and f"| {d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}] | worse |" in md
    first = (out / "first").as_posix()
    assert CliRunner().invoke(cli, ["study", "render", str(study.path), "--runs", str(runs), "--out", first,
                                    "--no-plot"]).exit_code == 0
    assert "- Replicates: seeds 0–2 " in (out / "first" / "study.md").read_text()
