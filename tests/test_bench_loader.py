"""The loader benchmark runs and writes comparable rows for both storages (no timing asserted)."""
from __future__ import annotations

import json

from click.testing import CliRunner

from replication.cli import cli


def test_bench_loader_quick_writes_json(tmp_path):
    out = tmp_path / "loader.json"
    r = CliRunner().invoke(cli, ["bench", "loader", "--quick", "--workers", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    assert {(row["storage"], row["workers"]) for row in result["results"]} == {("shards", 0), ("loose-jpeg", 0)}
    assert all(row["images_per_s"] > 0 for row in result["results"])
