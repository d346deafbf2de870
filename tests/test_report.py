"""The quality step and the report page (issue #13, items 4 and 5; docs/experiments.md).

* planning: one quality step per GAN (none for the shuffled source), inputs and config, and no other
  step's key or the fingerprint changes; ``quality: {n: 0}`` turns it off; bad values are refused;
* ``plot_delta_map``: one bar per row at its mean, the CI as an error bar (the plotted data, not pixels);
* the time per step kind from the ``done`` records;
* end to end on the tiny digits set: the quality step writes what ``gan_quality`` gives for that GAN
  and classifier, leaves the GAN run untouched and is cached; ``spl tables render`` writes one page
  with the verdict, the table, the quality numbers, the figures and image links that resolve.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from replication.errors import ConfigError
from replication.experiments.runner import plan_experiment
from replication.experiments.spec import QualitySpec, load_spec, spec_from_dict
from replication.experiments.steps import DONE
from replication.report.page import format_quality, load_report, quality_cell
from replication.report.plots import DELTA_COLORS, PlotInputError, delta_map_figure, plot_delta_map

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"


def _tiny_raw(**edits) -> dict:
    raw = yaml.safe_load((FIXTURES / "experiment_tiny.yaml").read_text())
    raw["paper"]["csv"] = str(REPO / "tables/paper/table3_ms_coco.csv")
    raw.update(edits)
    return raw


def _keys(plan, *, skip: str = "quality") -> dict[str, str]:
    return {s.describe(): s.key for s in plan.steps if s.kind != skip}


# ------------------------------------------------------------------------------------ planning


def test_one_quality_step_per_gan_changes_no_other_key(tmp_path):
    spec = spec_from_dict(_tiny_raw(), tmp_path / "tiny.yaml")
    assert spec.quality == QualitySpec(n=5000, seed=0)  # absent: on, with gan_quality's default n
    off = replace(spec, quality=QualitySpec(n=0))
    plan, plan_off = plan_experiment(spec, seeds=2), plan_experiment(off, seeds=2)
    assert spec.fingerprint() == off.fingerprint()
    assert _keys(plan) == _keys(plan_off, skip="")  # the quality steps are added; every other key stays
    assert not any(s.kind == "quality" for s in plan_off.steps)
    quality = [s for s in plan.steps if s.kind == "quality"]
    # one per GAN and replicate (gan.per_replicate, issue #19), measured with that replicate's labeler
    assert [s.config["generator"] for s in quality] == ["dcgan", "wgan-gp"] * 2
    for g in ("dcgan", "wgan-gp"):
        for c in (0, 1):
            q = plan.named[f"quality/{g}/{c}"]
            assert q.inputs["gan"] is plan.named[f"gan/{g}/{c}"]
            assert q.inputs["samples"] is plan.named[f"samples/{g}/{c}"]
            assert q.inputs["classifier"] is plan.trains[("baseline", c)]  # the labeler of the samples
            assert q.config == {"n": 5000, "seed": 0, "batch": 64, "generator": g}
            assert q in plan.targets
    # another n or seed: new quality keys, nothing else
    other = plan_experiment(replace(spec, quality=QualitySpec(n=100, seed=1)), seeds=2)
    assert _keys(other) == _keys(plan)
    assert {s.key for s in other.steps if s.kind == "quality"}.isdisjoint(s.key for s in quality)
    # --only plans no quality step, like no gallery
    assert not any(s.kind == "quality" for s in plan_experiment(spec, only=["spl/dcgan"]).steps)


def test_shipped_specs_keep_their_keys(tmp_path):
    """The demo (and every digits spec) plans its old steps unchanged: the quality section only adds leaves."""
    for path in [REPO / "tables/specs/demo.yaml", *sorted((REPO / "tables/specs/calibration").glob("*.yaml"))]:
        spec = load_spec(path)
        plan, plan_off = plan_experiment(spec, seeds=3), plan_experiment(replace(spec, quality=QualitySpec(0)), seeds=3)
        assert _keys(plan) == _keys(plan_off, skip="")
        n_quality = sum(s.kind == "quality" for s in plan.steps)
        assert n_quality == len(spec.generators) * (3 if spec.gan_options.per_replicate else 1)
        assert not any(i.kind == "quality" for s in plan.steps for i in s.inputs.values())  # nothing depends on it


def test_no_quality_step_for_the_shuffled_source(tmp_path):
    spec = spec_from_dict(_tiny_raw(rows=["baseline", "smooth/shuffled", "spl/dcgan"]), tmp_path / "t.yaml")
    quality = [s for s in plan_experiment(spec).steps if s.kind == "quality"]
    assert [s.config["generator"] for s in quality] == ["dcgan"]


@pytest.mark.parametrize("value, message", [
    ({"n": 1}, "quality.n must be 0"), ({"n": -5}, "quality.n must be 0"), ({"seed": -1}, "quality.seed"),
    ({"size": 3}, "unknown key 'size' in quality"), ({"n": "many"}, "quality.n must be int"),
])
def test_bad_quality_section(tmp_path, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        spec_from_dict(_tiny_raw(quality=value), tmp_path / "t.yaml")


# ------------------------------------------------------------------------------------ Δ figure


def test_plot_delta_map_draws_one_bar_per_row_with_its_ci(tmp_path):
    labels = ["A", "B", "C", "D"]
    means, lows, highs = [1.0, -2.0, 0.5, 0.3], [0.5, -3.5, -1.0, None], [1.5, -0.5, 2.0, None]
    fig = delta_map_figure(labels, means, lows, highs)
    ax = fig.axes[0]
    bars = ax.containers[0]
    assert len(bars) == 4
    assert [b.get_width() for b in bars] == pytest.approx(means)
    ys = [b.get_y() + b.get_height() / 2 for b in bars]
    assert ys == pytest.approx([0, 1, 2, 3])
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    # colours by where the interval lies
    from matplotlib.colors import to_rgba
    want = [DELTA_COLORS[k] for k in ("above", "below", "contains", "none")]
    assert [b.get_facecolor() for b in bars] == [to_rgba(c) for c in want]
    # the error bars: one horizontal segment [low, high] at each row with an interval, none for D
    err = ax.containers[1]
    segments = err.lines[2][0].get_segments()
    assert len(segments) == 3
    for seg, y, lo, hi in zip(segments, ys, lows, highs, strict=False):
        assert seg[:, 0] == pytest.approx([lo, hi]) and seg[:, 1] == pytest.approx([y, y])
    png = plot_delta_map(labels, means, lows, highs, tmp_path / "d.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(PlotInputError, match="inside its interval"):
        delta_map_figure(["A"], [2.0], [0.0], [1.0])
    with pytest.raises(PlotInputError, match="2 labels for 1 means"):
        delta_map_figure(["A", "B"], [2.0], [0.0], [1.0])


# ------------------------------------------------------------------------------------ time per step


def test_time_per_step_kind_from_the_done_records(tmp_path):
    spec = spec_from_dict(_tiny_raw(), tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"
    plan = plan_experiment(spec, seeds=2)
    trains = [plan.trains[("baseline", 0)], plan.trains[("spl/dcgan", 1)], plan.trains[("smooth/wgan-gp", 0)]]
    for step, sec in zip([*trains, plan.named["gan/dcgan"]], [2.0, 3.5, 1.25, 40.0], strict=True):
        step.path(runs).mkdir(parents=True)
        (step.path(runs) / DONE).write_text(json.dumps({"finished": "x", "seconds": sec}))
    times = {t.kind: t for t in load_report(spec, runs, seeds=2).times}
    assert times["train"].planned == 18 and times["train"].done == 3
    assert times["train"].seconds == pytest.approx(6.75) and times["train"].longest == 3.5
    assert times["train"].longest_label == "train spl/dcgan seed 1"
    assert times["gan"].done == 1 and times["gan"].seconds == 40.0 and times["metrics"].done == 0
    assert list(times)[:2] == ["shards", "train"]  # in plan order: the baseline trains before any GAN
    assert times["quality"].planned == 4  # per GAN and replicate (2 seeds)


def test_quality_cells():
    rec = {"fd": 12.34567, "kid": 0.0123456, "kid_std": 0.001, "precision": 0.5, "recall": 0.25, "iteration": 7,
           "n_generated": 64, "n_real": 64,
           "labels": {"generated": {"mean_max_confidence": 0.61, "spl_entropy_mean": 2.2},
                      "real": {"mean_max_confidence": 0.97, "spl_entropy_mean": 2.1}}}
    assert quality_cell(rec, ("fd",), "{:.4g}") == "12.35"
    assert quality_cell(rec, ("kid",), "{:.4g}") == "0.01235 ± 0.001"
    # one subset size = the whole set (250 of 250): every subset is the same, the std is rounding noise
    assert quality_cell({**rec, "kid_std": 1.388e-17}, ("kid",), "{:.4g}") == "0.01235 ± 0"
    assert quality_cell({**rec, "kid_std": 2e-8}, ("kid",), "{:.4g}") == "0.01235 ± 2e-08"
    assert quality_cell(rec, ("labels", "generated", "mean_max_confidence"), "{:.3f}") == "0.610 (real 0.970)"
    spec = spec_from_dict(_tiny_raw(), Path("tiny.yaml"))
    md = format_quality(spec, {"wgan-gp": rec})
    assert md.splitlines()[2] == ("| WGAN-GP | 7 | 64 / 64 | 12.35 | 0.01235 ± 0.001 | 0.500 | 0.250 | "
                                  "0.610 (real 0.970) | 2.200 (real 2.100) |")
    assert format_quality(spec, {}) == ""


# ------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_report_page_end_to_end_tiny(tmp_path):
    """One GAN, SPL and smooth rows, a λ row, 2 seeds (a GAN per replicate, issue #19): run, render with the CLI,
    read the page."""
    from replication.cli import cli
    from replication.experiments.runner import run_experiment
    from replication.gan.quality_step import gan_quality

    raw = _tiny_raw(rows=["baseline", "smooth/dcgan", "spl/dcgan", "spl/dcgan@0.3"])
    del raw["gan"]["wgan-gp"]
    path = tmp_path / "rep.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path)
    runs, out = tmp_path / "runs", tmp_path / "out"
    first = run_experiment(spec, runs=runs, seeds=2, progress=False)
    plan = first.plan
    q_step = plan.named["quality/dcgan"]
    gan_run = plan.named["gan/dcgan"].path(runs) / "run"
    ran = [s.describe() for s in first.ran]
    assert "quality of dcgan samples chain 0" in ran and "quality of dcgan samples chain 1" in ran
    measured = json.loads((q_step.path(runs) / "quality.json").read_text())
    assert not list(gan_run.glob("quality*.json"))  # the GAN run stays as it was
    # the numbers are gan_quality's for that GAN and the seed-0 baseline, with n = min(M, 5000) = M = 64
    labeler = plan.trains[("baseline", 0)].path(runs)
    direct = gan_quality(gan_run, labeler, n=64, seed=0, batch=64, out=tmp_path / "direct.json")
    assert measured["n_generated"] == 64 and measured["classifier"] == str(labeler.resolve())
    for k in ("fd", "kid", "precision", "recall"):
        assert measured[k] == pytest.approx(direct[k], rel=1e-9, abs=1e-12)
    for side in ("generated", "real"):
        assert measured["labels"][side] == pytest.approx(direct["labels"][side])

    # cached: a second run runs nothing, the quality record is not rewritten
    before = (q_step.path(runs) / DONE).stat().st_mtime_ns
    again = run_experiment(spec, runs=runs, seeds=2, progress=False)
    assert again.ran == [] and (q_step.path(runs) / DONE).stat().st_mtime_ns == before
    assert {r.status for r in again.records if r.step.kind == "quality"} == {"skipped"}

    res = CliRunner().invoke(cli, ["tables", "render", str(path), "--runs", str(runs), "--out", str(out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    md_path = out / "tiny.md"
    md = md_path.read_text()
    # top to bottom: verdict, table, quality, images, galleries, Δ figure, λ figure, time per step
    heads = ["## Verdict on the paper's claims", "| Method |", "## GAN sample quality",
             "## Generated images beside real ones", "## SPL-label galleries", "## Δ mAP per row",
             "## Generated-image weight λ", "## Time per step"]
    positions = [md.index(h) for h in heads]
    assert positions == sorted(positions)
    assert "| Our SPL (DCGAN) | 2 |" in md and "Δ mAP vs baseline [95% CI]" in md
    assert spec.gan_options.per_replicate and "so the intervals include the generator's variance" in md
    row = next(line for line in md.splitlines() if line.startswith("| DCGAN, replicate 0 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == str(direct["iteration"]) and cells[2] == "64 / 64"
    kid_std = 0.0 if abs(direct["kid_std"]) <= 1e-9 * abs(direct["kid"]) else direct["kid_std"]  # 64 of 64: noise
    assert cells[3] == f"{direct['fd']:.4g}" and cells[4] == f"{direct['kid']:.4g} ± {kid_std:.4g}"
    assert cells[5] == f"{direct['precision']:.3f}" and cells[6] == f"{direct['recall']:.3f}"
    assert cells[7] == (f"{direct['labels']['generated']['mean_max_confidence']:.3f} "
                        f"(real {direct['labels']['real']['mean_max_confidence']:.3f})")
    assert cells[8].startswith(f"{direct['labels']['generated']['spl_entropy_mean']:.3f} (real ")
    # replicate 1's GAN has its own row, and a last row gives the mean ± sample std over the two GANs
    other = json.loads((plan.named["quality/dcgan/1"].path(runs) / "quality.json").read_text())
    assert other["classifier"] == str(plan.trains[("baseline", 1)].path(runs).resolve())
    assert any(line.startswith("| DCGAN, replicate 1 |") for line in md.splitlines())
    mean_row = next(line for line in md.splitlines() if line.startswith("| **DCGAN, mean ± std (2 GANs)** |"))
    fds = [measured["fd"], other["fd"]]
    assert [c.strip() for c in mean_row.strip("|").split("|")][3] == \
        f"{np.mean(fds):.4g} ± {np.std(fds, ddof=1):.4g}"
    # every image link is relative and resolves to a file next to the page
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"tiny_delta.png", "tiny_lambda.png", "tiny_files/dcgan-real.png", "tiny_files/dcgan-samples.png",
            "tiny_files/dcgan-gallery.png"} <= set(links)
    for link in links:
        assert not Path(link).is_absolute() and (md_path.parent / link).stat().st_size > 500, link
    assert (out / "tiny_files/dcgan-real.png").read_bytes() == (gan_run / "samples/real.png").read_bytes()
    assert "| quality | 2 / 2 |" in md and "| train | 8 / 8 |" in md
    assert (out / "tiny.csv").is_file() and (out / "tiny.tex").is_file()
    assert np.isfinite(measured["fd"])
