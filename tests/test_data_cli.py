"""``spl data build|info|verify`` through click's runner."""
from __future__ import annotations

import h5py
from click.testing import CliRunner

from replication.cli import cli


def test_build_info_verify(tmp_path):
    runner = CliRunner()
    out = tmp_path / "train"
    r = runner.invoke(cli, ["data", "build", "digits-mosaic", "--split", "train", "--out", str(out), "--tiny"])
    assert r.exit_code == 0, r.output
    assert "records      240" in r.output and "labels/image" in r.output
    r = runner.invoke(cli, ["data", "info", str(out), "--json"])
    assert r.exit_code == 0 and '"records": 240' in r.output
    r = runner.invoke(cli, ["data", "verify", str(out)])
    assert r.exit_code == 0 and "OK" in r.output
    with h5py.File(out / "part-00000.h5", "r+") as f:
        f["labels"][0, 0] = 5.0
    r = runner.invoke(cli, ["data", "verify", str(out)])
    assert r.exit_code == 1 and "part-00000.h5" in r.output


def test_errors_are_one_line(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["data", "info", str(tmp_path / "missing")])
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines == [f"error: {tmp_path / 'missing'}: no such shard set folder"]
    r = runner.invoke(cli, ["data", "build", "coco2014", "--split", "train", "--root", str(tmp_path),
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "instances_train2014.json" in r.output and "Traceback" not in r.output
