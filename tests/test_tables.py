"""Table specs and the renderer: a golden test on a committed miniature results folder, and spec validation.

The fixture ``tests/fixtures/runs_golden/`` holds hand-written ``metrics.json`` files (three
baseline seeds, a duplicate run where the later one must win, an unfinished run, a run of an
older spec version and one of another table); ``tests/fixtures/tables_golden/`` holds the
expected Markdown, CSV and LaTeX, compared byte for byte.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from replication.errors import ConfigError
from replication.experiments.spec import load_spec, spec_from_dict
from replication.tables import Cell, build_table, collect_results, load_table, read_paper_table, render_spec

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
    assert (tmp_path / "golden.md").read_bytes() == (GOLDEN_OUT / "golden.md").read_bytes()
    png = (tmp_path / "golden_map.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_edited_spec_hides_old_results(tmp_path):
    raw = yaml.safe_load(GOLDEN_SPEC.read_text())
    raw["train"]["overrides"] = ["epochs=2"]  # a different experiment: old metrics must not show
    raw["paper"]["csv"] = str(REPO / "tables/paper/table3_ms_coco.csv")
    spec = spec_from_dict(raw, tmp_path / "spec.yaml")
    assert collect_results(spec, GOLDEN_RUNS) == {}
    table = load_table(spec, GOLDEN_RUNS)
    assert all(c.ours is None for r in table.rows for c in r.cells)


@pytest.mark.parametrize("name", ["table1", "table2", "table3", "demo"])
def test_shipped_specs_load(name):
    spec = load_spec(REPO / "tables/specs" / f"{name}.yaml")
    assert spec.name == name
    assert len(spec.rows) == 9 and spec.generators == ("dcgan", "wgan-gp")
    assert spec.metrics.convention == "srn"
    expected_top3 = {"table1": "pure", "table2": "pure", "table3": "thresholded", "demo": "thresholded"}[name]
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
