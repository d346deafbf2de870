"""Table specs and the renderer: a golden test on a committed miniature results folder, and spec validation.

The fixture ``tests/fixtures/runs_golden/`` holds hand-written ``metrics.json`` files (three
baseline seeds, a duplicate run where the later one must win, an unfinished run, a run of an
older spec version and one of another table); ``tests/fixtures/tables_golden/`` holds the
expected Markdown, CSV and LaTeX, compared byte for byte.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from replication.errors import ConfigError
from replication.experiments.spec import load_spec, spec_from_dict
from replication.report.formats import format_csv, format_latex, format_markdown
from replication.report.paper_table import read_paper_table
from replication.report.render import render_spec
from replication.report.table import Cell, build_table, collect_results, load_table

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN_SPEC = FIXTURES / "golden_spec.yaml"
GOLDEN_RUNS = FIXTURES / "runs_golden"
GOLDEN_OUT = FIXTURES / "tables_golden"
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("fmt", ["md", "csv", "tex"])
def test_golden_render_byte_for_byte(tmp_path, fmt):
    written = render_spec(load_spec(GOLDEN_SPEC), GOLDEN_RUNS, tmp_path, formats=[fmt], plot=False)
    assert written[fmt].read_bytes() == (GOLDEN_OUT / f"golden.{fmt}").read_bytes()


def test_golden_values_against_hand_computation():
    spec = load_spec(GOLDEN_SPEC)
    results = collect_results(spec, GOLDEN_RUNS)
    # unfinished (no done), other-fingerprint and other-table runs are ignored; the later duplicate wins
    assert sorted(results) == ["baseline", "pseudo/dcgan", "spl/dcgan"]
    assert sorted(results["baseline"]) == [0, 1, 2]
    assert results["spl/dcgan"][0]["mAP"] == 73.9
    table = build_table(spec, results, read_paper_table(spec.paper.csv))
    base = next(r for r in table.rows if r.row == "baseline")
    cell = base.cells[spec.columns.index("mAP")]
    vals = [70.0, 71.0, 72.5]
    mean = sum(vals) / 3
    assert cell.ours == pytest.approx(mean)
    assert cell.std == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in vals) / 2))  # sample std
    assert cell.paper == 71.9 and cell.diff == pytest.approx(-0.7)
    assert [r.row for r in table.rows][0] == "WARP" and table.rows[0].literature


def test_cell_difference_uses_displayed_numbers():
    # the difference is between the displayed (one-decimal) numbers: 70.26 → 70.3, 70.24 → 70.2
    assert Cell(70.26, None, 70.0).diff == pytest.approx(0.3)
    assert Cell(70.24, None, 70.0).diff == pytest.approx(0.2)
    assert Cell(None, None, 70.0).diff is None and Cell(70.0, None, None).diff is None


def test_render_writes_png_and_cli(tmp_path):
    from replication.commands.tables import command

    res = CliRunner().invoke(command, ["render", str(GOLDEN_SPEC), "--runs", str(GOLDEN_RUNS), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "| Our SPL (DCGAN) | 1 | 73.9 / 73.4 / +0.5 |" in res.output
    # the report page: the golden table, then the Δ figure and links to the other outputs (no GAN ran here,
    # so no quality table, grids, galleries or step times: tests/test_report.py)
    md = (tmp_path / "golden.md").read_text()
    golden = (GOLDEN_OUT / "golden.md").read_text()
    assert md.startswith(golden) and "## GAN sample quality" not in md and "## Time per step" not in md
    assert md[len(golden):] == ("\n## Δ mAP per row\n\nThe paired difference to the baseline of each row with its 95% "
                                "confidence interval (bars: green when the interval lies above 0, red below, gray when "
                                "it contains 0, light gray with one seed).\n\n![Δ mAP per row](golden_delta.png)\n\n"
                                "Also: [CSV](golden.csv), [TEX](golden.tex), [mAP figure](golden_map.png).\n")
    for name in ("golden_map.png", "golden_delta.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_edited_spec_hides_old_results(tmp_path):
    raw = yaml.safe_load(GOLDEN_SPEC.read_text())
    raw["train"]["overrides"] = ["epochs=2"]  # a different experiment: old metrics must not show
    raw["paper"]["csv"] = str(REPO / "tables/paper/table3_ms_coco.csv")
    spec = spec_from_dict(raw, tmp_path / "spec.yaml")
    assert collect_results(spec, GOLDEN_RUNS) == {}
    table = load_table(spec, GOLDEN_RUNS)
    assert all(c.ours is None for r in table.rows for c in r.cells)


@pytest.mark.parametrize("name", ["table1", "table2", "table3", "demo", "demo-full"])
def test_shipped_specs_load(name):
    spec = load_spec(REPO / "tables/specs" / f"{name}.yaml")
    assert spec.name == name
    paper_rows = ["baseline"] + [f"{r}/{g}" for r in ("random", "pseudo", "smooth", "spl")
                                 for g in ("dcgan", "wgan-gp")]
    if name == "demo":   # the budget's cut (issues #13, #19): the four rules with one GAN, the SPL ceiling, controls
        assert set(spec.rows) == {"baseline", "random/dcgan", "pseudo/dcgan", "smooth/dcgan", "spl/dcgan",
                                  "spl/real", "smooth/shuffled", "baseline/iters"}
        assert spec.generators == ("dcgan",)
    else:
        assert set(paper_rows) <= set(spec.rows) and spec.generators == ("dcgan", "wgan-gp")
        assert len(spec.rows) == (9 if name != "demo-full" else 16)
        if name == "demo-full":  # everything in the demo: its ceiling and controls, plus WGAN-GP and the λ rows
            assert {"spl/real", "smooth/shuffled", "baseline/iters"} <= set(spec.rows)
    assert spec.metrics.convention == "srn"
    expected_top3 = {"table1": "pure", "table2": "pure", "table3": "thresholded", "demo": "thresholded",
                     "demo-full": "thresholded"}[name]
    assert spec.metrics.top3 == expected_top3
    paper = read_paper_table(spec.paper.csv)
    assert set(spec.columns) <= set(paper.columns)


def test_paper_tables_copied_verbatim():
    for name in ("table1_wider_attribute", "table2_nus_wide", "table3_ms_coco"):
        shipped = REPO / "tables/paper" / f"{name}.csv"
        assert shipped.is_file()
    paper = read_paper_table(REPO / "tables/paper/table3_ms_coco.csv")
    assert paper.get("spl/wgan-gp", "mAP") == 73.5 and paper.get("baseline", "top3/R-O") == 58.0
    assert paper.get("WARP", "mAP") is None and paper.literature == ("WARP", "CNN-RNN")


def _raw() -> dict:
    raw = yaml.safe_load(GOLDEN_SPEC.read_text())
    raw["paper"]["csv"] = str(REPO / "tables/paper/table3_ms_coco.csv")
    return raw


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r["rows"].append("spl/biggan"), "unknown row 'spl/biggan'"),
        (lambda r: r["rows"].append("mixup/dcgan"), "unknown row 'mixup/dcgan'"),
        (lambda r: r["dataset"].update(source="imagenet"), "unknown dataset 'imagenet'"),
        (lambda r: r["columns"].append("F2-C"), "unknown metric key 'F2-C'"),
        (lambda r: r.update(colour="red"), "unknown key 'colour' in the spec"),
        (lambda r: r["dataset"].update(resolution=64), "unknown key 'resolution' in dataset"),
        (lambda r: r.update(metrics={"convention": "srn", "top3": "top5"}), "unknown metrics.top3 'top5'"),
        (lambda r: r.update(metrics={"convention": "voc"}), "unknown metrics.convention 'voc'"),
        (lambda r: r.update(labeling={"spl_input": "probs", "temprature": 2}), "unknown key 'temprature' in labeling"),
        (lambda r: r["dataset"].update(tiny="yes"), "dataset.tiny must be bool"),
        (lambda r: r["gan"].pop("wgan-gp"), "needs a 'gan.wgan-gp' preset"),
        (lambda r: r["paper"].update(literature=["DHC"]), "literature row 'DHC' is not in"),
        (lambda r: r.pop("train"), "missing key 'train'"),
    ],
)
def test_invalid_specs_rejected(tmp_path, edit, message):
    raw = _raw()
    edit(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as e:
        load_spec(path)
    assert message in str(e.value)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_metric_column_missing_from_paper(tmp_path):
    raw = _raw()
    raw["paper"]["csv"] = str(REPO / "tables/paper/table1_wider_attribute.csv")
    raw["paper"]["literature"] = []
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="column 'top3/F1-C' is not in the paper table"):
        load_spec(path)


def test_fingerprint_ignores_presentation_only():
    a = spec_from_dict(_raw(), "a.yaml")
    raw = _raw()
    raw["title"] = "other"
    raw["rows"] = ["baseline"]
    raw["columns"] = ["mAP"]
    assert spec_from_dict(raw, "b.yaml").fingerprint() == a.fingerprint()
    raw["labeling"] = {"temperature": 2.0}
    assert spec_from_dict(raw, "b.yaml").fingerprint() != a.fingerprint()


def test_malformed_metrics_json_names_file(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN_RUNS, runs)
    bad = runs / "digits-mosaic" / "metrics-0000000000a0" / "metrics.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="metrics-0000000000a0/metrics.json: malformed JSON"):
        collect_results(load_spec(GOLDEN_SPEC), runs)
    json.loads((GOLDEN_RUNS / "digits-mosaic" / "metrics-0000000000a0" / "metrics.json").read_text())


# ------------------------------------------------------------------------------------ paired Δ, CI and verdict

# mAP per seed (3 seeds); the other rows are the baseline plus a known offset per seed, so the paired
# differences are exactly these offsets (written out with their hand-computed CIs below).
BASE_MAP = (70.0, 75.0, 68.0)
OFFSETS = {
    "smooth/dcgan": (1.0, 1.2, 0.8),  # mean 1, sd 0.2: half = 4.302652729749464 · 0.2 / √3 = 0.4968 → better
    "pseudo/dcgan": (-3.0, -3.5, -2.5),  # mean −3, sd 0.5: half = 4.302652729749464 · 0.5 / √3 = 1.2421 → worse
    "spl/dcgan": (1.0, 2.0, 4.0),  # mean 7/3, sd √(7/3): half = 4.302652729749464 · √(7/9) = 3.7946 → overlap
}
ONE_SEED = {"spl/wgan-gp": 0.5}  # seed 0 only: Δ without an interval


def _stat_spec(tmp_path: Path, rows: list[str]):
    raw = _raw()
    raw["rows"] = rows
    return spec_from_dict(raw, tmp_path / "stat_spec.yaml")


def _write_run(runs: Path, spec, row: str, seed: int, map_value: float, done: bool = True) -> None:
    d = runs / spec.dataset.source / f"metrics-{abs(hash((row, seed))) % 10**12:012x}"
    d.mkdir(parents=True)
    metrics = {c: 50.0 + seed for c in spec.columns}
    metrics["mAP"] = map_value
    rec = {"table": spec.name, "fingerprint": spec.fingerprint(), "row": row, "seed": seed,
           "finished": "2025-01-01T00:00:00Z", "metrics": metrics}
    (d / "metrics.json").write_text(json.dumps(rec))
    if done:
        (d / "done").write_text("")


@pytest.fixture()
def stat_runs(tmp_path):
    spec = _stat_spec(tmp_path, ["baseline", *OFFSETS, *ONE_SEED])
    runs = tmp_path / "runs"
    for s, b in enumerate(BASE_MAP):
        _write_run(runs, spec, "baseline", s, b)
        for row, offs in OFFSETS.items():
            _write_run(runs, spec, row, s, b + offs[s])
    for row, off in ONE_SEED.items():
        _write_run(runs, spec, row, 0, BASE_MAP[0] + off)
    return spec, runs


def test_paired_delta_in_the_table(stat_runs):
    spec, runs = stat_runs
    table = load_table(spec, runs)
    rows = {r.row: r for r in table.rows}
    assert rows["baseline"].delta is None
    d = rows["smooth/dcgan"].delta
    half = 4.302652729749464 * 0.2 / math.sqrt(3)
    assert d.seeds == (0, 1, 2) and d.mean == pytest.approx(1.0)
    assert (d.low, d.high) == pytest.approx((1.0 - half, 1.0 + half))
    assert d.verdict == "better"
    assert rows["pseudo/dcgan"].delta.verdict == "worse"
    assert rows["spl/dcgan"].delta.verdict == "no detectable difference"
    assert rows["spl/wgan-gp"].delta.n == 1 and rows["spl/wgan-gp"].delta.verdict == "n/a"


def test_markdown_shows_ci_and_verdict(stat_runs, tmp_path):
    spec, runs = stat_runs
    written = render_spec(spec, runs, tmp_path / "out", formats=["md"], plot=False)
    md = written["md"].read_text(encoding="utf-8")
    assert "| Method | Seeds | mAP | Δ mAP vs baseline [95% CI] | Verdict | F1-C |" in md
    assert "| Baseline | 3 | 71.0 ± 3.6 / 71.9 / -0.9 | – | reference |" in md
    assert "| Smooth labeling (DCGAN) | 3 | 72.0 ± 3.8 / 73.2 / -1.2 | +1.00 [+0.50, +1.50] | better |" in md
    assert "| Pseudo labeling (DCGAN) | 3 | 68.0 ± 3.1 / 70.4 / -2.4 | -3.00 [-4.24, -1.76] | worse |" in md
    assert "| +2.33 [-1.46, +6.13] | no detectable difference |" in md
    # one seed: no ± and no interval, verdict n/a
    assert "| Our SPL (WGAN-GP) | 1 | 70.5 / 73.5 / -3.0 | +0.50 (1 seed) | n/a |" in md
    # the report page starts with the verdict on the paper's claims, then the table
    assert md.index("## Verdict on the paper's claims") < md.index("| Method |")
    assert "- smooth labeling > baseline (DCGAN): **held** (Δ mAP = +1.00, 95% CI [+0.50, +1.50], 3 paired seeds)" in md
    assert "- baseline > pseudo labeling (DCGAN): **held** (Δ mAP = +3.00, 95% CI [+1.76, +4.24], 3 paired seeds)" in md
    assert "- SPL > baseline (DCGAN): **not detectable** (Δ mAP = +2.33, 95% CI [−1.46, +6.13]" in md
    assert "- SPL ≥ smooth labeling (DCGAN): **not detectable**" in md
    assert "- SPL > baseline (WGAN-GP): **skipped** (Δ mAP = +0.50, 1 paired seed;" in md
    assert "- baseline > random labeling (DCGAN): **skipped** (row random/dcgan not in the table)" in md
    assert "SPL beats the baseline with both GANs (DCGAN and WGAN-GP): **skipped**." in md


def test_csv_shows_ci_and_verdict(stat_runs, tmp_path):
    spec, runs = stat_runs
    written = render_spec(spec, runs, tmp_path / "out", formats=["csv"], plot=False)
    rows = {(r["method"], r["generator"]): r for r in csv.DictReader(io.StringIO(written["csv"].read_text()))}
    keys = ["mAP:delta", "mAP:delta_low", "mAP:delta_high", "mAP:paired_seeds", "mAP:verdict"]
    assert [rows[("smooth", "dcgan")][k] for k in keys] == ["+1.00", "+0.50", "+1.50", "3", "better"]
    assert [rows[("pseudo", "dcgan")][k] for k in keys] == ["-3.00", "-4.24", "-1.76", "3", "worse"]
    assert [rows[("spl", "dcgan")][k] for k in keys] == ["+2.33", "-1.46", "+6.13", "3", "no detectable difference"]
    assert [rows[("spl", "wgan-gp")][k] for k in keys] == ["+0.50", "", "", "1", "n/a"]
    assert [rows[("baseline", "")][k] for k in keys] == ["", "", "", "", "reference"]
    header = written["csv"].read_text().splitlines()[0].split(",")
    assert header.index("mAP:delta") == header.index("mAP:diff") + 1


def test_latex_shows_ci_and_verdict(stat_runs, tmp_path):
    spec, runs = stat_runs
    written = render_spec(spec, runs, tmp_path / "out", formats=["tex"], plot=False)
    tex = written["tex"].read_text()
    n_cols = 2 + len(spec.columns) + 2
    assert "\\begin{tabular}{ll" + "r" * len(spec.columns) + "rl}" in tex
    assert "$\\Delta$ [95\\% CI] & verdict \\\\" in tex
    assert "& +1.00 [+0.50, +1.50] & better \\\\" in tex
    assert "& $-$3.00 [$-$4.24, $-$1.76] & worse \\\\" in tex
    assert "& +2.33 [$-$1.46, +6.13] & no detectable difference \\\\" in tex
    assert "& +0.50 (1 seed) & n/a \\\\" in tex
    assert "& -- & reference \\\\" in tex
    body = tex[tex.index("\\midrule"):tex.index("\\bottomrule")]
    data = [line for line in body.splitlines() if line.endswith("\\\\")]
    assert data and all(line.count("&") == n_cols - 1 for line in data)  # every row has every column


def test_cli_ends_with_the_verdict(stat_runs, tmp_path):
    from replication.commands.tables import command

    spec, runs = stat_runs
    spec_file = tmp_path / "stat_spec.yaml"
    raw = _raw()
    raw["rows"] = list(spec.rows)
    spec_file.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(command, ["render", str(spec_file), "--runs", str(runs), "--out", str(tmp_path / "o"),
                                       "--no-plot"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert out.count("## Verdict on the paper's claims") == 1
    assert out.index("| Our SPL (WGAN-GP) |") < out.index("## Verdict on the paper's claims")
    assert out.rstrip().endswith("- SPL > baseline (WGAN-GP): **skipped** (Δ mAP = +0.50, 1 paired seed; "
                                 "a confidence interval needs at least 2 paired seeds)")
    assert "## Verdict on the paper's claims" in (tmp_path / "o" / f"{spec.name}.md").read_text()


def test_one_seed_table_stays_readable(tmp_path):
    spec = _stat_spec(tmp_path, ["baseline", "smooth/dcgan", "spl/dcgan"])
    runs = tmp_path / "runs"
    for row, v in (("baseline", 70.0), ("smooth/dcgan", 71.0), ("spl/dcgan", 69.0)):
        _write_run(runs, spec, row, 0, v)
    md = format_markdown(load_table(spec, runs))
    assert "±" not in md.split("| Method |")[1]
    assert "| Our SPL (DCGAN) | 1 | 69.0 / 73.4 / -4.4 | -1.00 (1 seed) | n/a |" in md
    assert "None of the paper's claims could be tested" in md


def test_no_delta_columns_without_a_baseline(tmp_path):
    spec = _stat_spec(tmp_path, ["smooth/dcgan", "spl/dcgan"])
    runs = tmp_path / "runs"
    for s in range(3):
        _write_run(runs, spec, "spl/dcgan", s, 70.0 + s)
    table = load_table(spec, runs)
    assert not table.has_delta
    assert "Verdict" not in format_markdown(table).split("| Method |")[1]
    assert "mAP:delta" not in format_csv(table) and "verdict" not in format_latex(table)
