"""Progress bars on or off per process (replication/console/progress.py): ``--no-progress`` silences the steps' bars
too, and ``--jobs`` workers draw none (their bars would garble the runner's terminal)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from replication.console import progress as P
from replication.data.build import build_shards

REPO = Path(__file__).resolve().parent.parent


def test_progress_on_follows_the_environment(monkeypatch):
    monkeypatch.delenv(P.ENV, raising=False)
    assert P.bars_allowed() and P.progress_on(True) and not P.progress_on(False)
    monkeypatch.setenv(P.ENV, "0")
    assert not P.bars_allowed() and not P.progress_on(True)
    monkeypatch.setenv(P.ENV, "1")
    assert P.progress_on(True)


@pytest.mark.parametrize("before", [None, "1"])
def test_bars_off_restores_what_was_there(monkeypatch, before):
    if before is None:
        monkeypatch.delenv(P.ENV, raising=False)
    else:
        monkeypatch.setenv(P.ENV, before)
    with P.bars_off():
        assert os.environ[P.ENV] == "0" and not P.progress_on(True)
    assert os.environ.get(P.ENV) == before
    with pytest.raises(RuntimeError), P.bars_off():
        raise RuntimeError("a failing command")
    assert os.environ.get(P.ENV) == before
    with P.bars_off(False):
        assert P.progress_on(True) == (before != "0")


def test_a_steps_bar_obeys_the_switch(tmp_path, monkeypatch, capsys):
    """A real bar (the shard build's): drawn with progress on, absent under ``bars_off``."""
    monkeypatch.delenv(P.ENV, raising=False)
    build_shards("digits-mosaic", split="test", out=tmp_path / "a", tiny=True, count=8, progress=True)
    assert "build digits-mosaic/test" in capsys.readouterr().err
    with P.bars_off():
        build_shards("digits-mosaic", split="test", out=tmp_path / "b", tiny=True, count=8, progress=True)
    assert "build digits-mosaic/test" not in capsys.readouterr().err


def test_run_experiment_without_progress_turns_the_steps_bars_off(tmp_path, monkeypatch):
    """``run_experiment(progress=False)`` (``--no-progress``): bars are off while the steps execute, and back after."""
    import yaml

    from replication.experiments import runner
    from replication.experiments.spec import load_spec

    fixture = REPO / "tests" / "fixtures" / "experiment_tiny.yaml"
    raw = yaml.safe_load(fixture.read_text())
    raw["paper"]["csv"] = str(REPO / "tables" / "paper" / "table3_ms_coco.csv")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    seen = []
    monkeypatch.setattr(runner, "execute", lambda steps, runs, pool, progress: seen.append(P.bars_allowed()) or [])
    monkeypatch.delenv(P.ENV, raising=False)
    spec = load_spec(path)
    runner.run_experiment(spec, runs=tmp_path / "runs", only=["baseline"], progress=False)
    runner.run_experiment(spec, runs=tmp_path / "runs", only=["baseline"], progress=True)
    assert seen == [False, True] and P.ENV not in os.environ
