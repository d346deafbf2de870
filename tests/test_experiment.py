"""Experiments: cached steps (hash-named run dirs, done markers, re-runs of dependents), planning and the
end-to-end chain on the tiny digits set.

The step-machinery tests use small fake steps that append to a log, so "which steps ran" is
observed directly. The end-to-end test runs the real chain (shards → GANs → samples → baseline →
scores → label files → trainings → metrics → table) with tiny presets.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from replication.errors import ConfigError
from replication.experiments.runner import plan_experiment
from replication.experiments.spec import spec_from_dict
from replication.experiments.steps import DONE, Step, config_hash, execute, toposort

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------- step machinery


def _fake_chain(log: list[str], *, a_param: int = 1):
    """a → b → d, c → d (d has two inputs); each step writes out.txt from its inputs' out.txt."""

    def fn(name):
        def run(out, inputs, resume):
            log.append(name)
            text = name + "(" + ",".join((inputs[k] / "out.txt").read_text() for k in sorted(inputs)) + ")"
            (out / "out.txt").write_text(text)
        return run

    a = Step("a", "g", {"p": a_param}, fn("a"), label="a")
    b = Step("b", "g", {}, fn("b"), {"x": a}, label="b")
    c = Step("c", "g", {"q": 2}, fn("c"), label="c")
    d = Step("d", "g", {}, fn("d"), {"b": b, "c": c}, label="d")
    return a, b, c, d


def test_steps_run_once_then_skip(tmp_path):
    log: list[str] = []
    a, b, c, d = _fake_chain(log)
    records = execute([d], tmp_path, progress=False)
    assert log == ["a", "b", "c", "d"]  # inputs before dependents
    assert [r.status for r in records] == ["ran"] * 4
    assert (d.path(tmp_path) / "out.txt").read_text() == "d(b(a()),c())"
    for s in (a, b, c, d):
        p = s.path(tmp_path)
        assert p == tmp_path / "g" / f"{s.kind}-{s.key}"
        assert (p / DONE).is_file()
        recorded = yaml.safe_load((p / "step.yaml").read_text())
        assert recorded["key"] == s.key and recorded["config"] == s.config
    log.clear()
    records = execute([d], tmp_path, progress=False)
    assert log == [] and all(r.status == "skipped" for r in records)


def test_deleting_done_reruns_step_and_dependents_only(tmp_path):
    log: list[str] = []
    a, b, c, d = _fake_chain(log)
    execute([d], tmp_path, progress=False)
    log.clear()
    (b.path(tmp_path) / DONE).unlink()
    execute([d], tmp_path, progress=False)
    assert log == ["b", "d"]  # not a (upstream), not c (independent)


def test_key_depends_on_config_and_input_keys(tmp_path):
    _, b1, c1, d1 = _fake_chain([])
    _, b2, c2, d2 = _fake_chain([], a_param=2)
    assert c1.key == c2.key  # independent of a
    assert b1.key != b2.key and d1.key != d2.key  # changed upstream → new run dirs downstream
    assert b1.key == config_hash({"kind": "b", "config": {}, "inputs": {"x": b1.inputs["x"].key}})
    log: list[str] = []
    _, _, _, d = _fake_chain(log)
    execute([d], tmp_path, progress=False)
    log.clear()
    _, _, _, d_new = _fake_chain(log, a_param=2)
    execute([d_new], tmp_path, progress=False)
    assert log == ["a", "b", "d"]  # c is shared and stays done


def test_interrupted_step_never_looks_done(tmp_path):
    calls = []

    def boom(out, inputs, resume):
        calls.append(resume)
        (out / "partial").write_text("x")
        if len(calls) == 1:
            raise KeyboardInterrupt

    s = Step("s", "g", {}, boom)
    with pytest.raises(KeyboardInterrupt):
        execute([s], tmp_path, progress=False)
    assert not (s.path(tmp_path) / DONE).exists()
    execute([s], tmp_path, progress=False)
    assert calls == [False, True]  # the second call is told it resumes a partial directory
    assert (s.path(tmp_path) / DONE).is_file()


def test_toposort_dedupes_shared_inputs():
    a, b, c, d = _fake_chain([])
    order = toposort([d, b, c])
    assert [s.kind for s in order] == ["a", "b", "c", "d"]


# ------------------------------------------------------------------------------- planning


def _tiny_spec_dict(tmp_path: Path) -> dict:
    raw = yaml.safe_load((Path(__file__).parent / "fixtures" / "experiment_tiny.yaml").read_text())
    raw["paper"]["csv"] = str(REPO / "tables/paper/table3_ms_coco.csv")
    return raw


def test_plan_structure_and_dependencies(tmp_path):
    raw = _tiny_spec_dict(tmp_path)
    raw["gan"]["per_replicate"] = False  # one shared chain (the per-replicate plan: tests/test_replicates.py)
    spec = spec_from_dict(raw, tmp_path / "tiny.yaml")
    plan = plan_experiment(spec, seeds=2)
    kinds = [s.kind for s in plan.steps]
    # 2 shards, 2 GANs, 2 sample sets, 2 score sets (pseudo/spl), 8 label files,
    # 1 + 8×2 + 1 trainings (baseline seeds 0,1; rows × 2 seeds), 9×2 metrics, 2 galleries
    assert kinds.count("shards") == 2 and kinds.count("gan") == 2 and kinds.count("samples") == 2
    assert kinds.count("predict") == 2 and kinds.count("labels") == 8
    assert kinds.count("train") == 18 and kinds.count("metrics") == 18 and kinds.count("gallery") == 2
    assert kinds.count("quality") == 2 and kinds.index("quality") > kinds.index("train")  # after the labeler
    # the seed-0 baseline row is the labeler; random/smooth labels do not depend on it
    base0 = plan.trains[("baseline", 0)]
    assert plan.named["predict/dcgan"].inputs["model"] is base0
    assert "scores" not in plan.named["labels/random/dcgan"].inputs
    assert "scores" not in plan.named["labels/smooth/wgan-gp"].inputs
    assert plan.named["labels/spl/wgan-gp"].inputs["scores"] is plan.named["predict/wgan-gp"]
    # seeds give distinct training runs; the same spec planned twice gives the same keys
    assert plan.trains[("spl/dcgan", 0)].key != plan.trains[("spl/dcgan", 1)].key
    again = plan_experiment(spec, seeds=2)
    assert [s.key for s in again.steps] == [s.key for s in plan.steps]
    # --only: that row's steps and dependencies, nothing of the other rows
    only = plan_experiment(spec, seeds=1, only=["smooth/dcgan"])
    only_kinds = [s.kind for s in only.steps]
    assert only_kinds.count("train") == 1 and only_kinds.count("metrics") == 1
    assert only_kinds.count("gan") == 1 and "predict" not in only_kinds  # smooth needs no baseline


def test_a_peer_preset_keeps_its_arch_and_the_report_names_it(tmp_path):
    """``gan: {dcgan: {preset: demo-torch-dcgan}}``: the gan step trains the peer (not the TF port with the
    peer's batch and width), and the report calls it "DCGAN (PyTorch peer)" wherever the paper's DCGAN would be."""
    from replication.experiments.runner import generator_labels
    from replication.report.page import format_quality
    from replication.report.paper_table import read_paper_table
    from replication.report.table import build_table

    raw = _tiny_spec_dict(tmp_path)
    raw["gan"]["dcgan"] = {"preset": "demo-torch-dcgan", "overrides": {"epochs": 1, "progress": False}}
    spec = spec_from_dict(raw, tmp_path / "tiny.yaml")
    plan = plan_experiment(spec)
    peer = plan.named["gan/dcgan"].config
    assert (peer["arch"], peer["width"], peer["batch"], peer["epochs"]) == ("torch-dcgan", 32, 16, 1)
    assert plan.named["gan/wgan-gp"].config["arch"] == "wgan-gp"  # the other key keeps its port
    port = plan_experiment(spec_from_dict(_tiny_spec_dict(tmp_path), tmp_path / "tiny.yaml")).named["gan/dcgan"]
    assert port.config["arch"] == "dcgan" and port.key != plan.named["gan/dcgan"].key
    # a port preset under the dcgan key is still forced to the key's arch (one preset serves both ports)
    raw_w = _tiny_spec_dict(tmp_path)
    raw_w["gan"]["dcgan"] = {"preset": "embedded-wgan-gp"}
    assert plan_experiment(spec_from_dict(raw_w, tmp_path / "tiny.yaml")).named["gan/dcgan"].config["arch"] == "dcgan"
    # the peer realises a DCGAN only: under wgan-gp it is refused in one line naming the spec
    raw_bad = _tiny_spec_dict(tmp_path)
    raw_bad["gan"]["wgan-gp"] = {"preset": "demo-torch-dcgan"}
    with pytest.raises(ConfigError, match=r"tiny.yaml: gan preset for wgan-gp: arch torch-dcgan realises dcgan"):
        plan_experiment(spec_from_dict(raw_bad, tmp_path / "tiny.yaml"))

    peer_name = "DCGAN (PyTorch peer)"
    assert generator_labels(spec) == {"dcgan": peer_name, "wgan-gp": "WGAN-GP"}
    table = build_table(spec, {"baseline": {0: {"mAP": 50.0}}, "spl/dcgan": {0: {"mAP": 51.0}}},
                        read_paper_table(spec.paper.csv))
    labels = {r.row: r.label for r in table.rows}
    assert labels["spl/dcgan"] == f"Our SPL ({peer_name})" and labels["spl/wgan-gp"] == "Our SPL (WGAN-GP)"
    assert f"SPL > baseline ({peer_name})" in [c.text for c in table.claims]
    assert table.claim_group is not None and f"({peer_name} and WGAN-GP)" in table.claim_group.text
    quality = format_quality(spec, {"dcgan": {"iteration": 3}}, gen_labels=table.gen_labels)
    assert f"| {peer_name} | 3 |" in quality
    plain = build_table(spec_from_dict(_tiny_spec_dict(tmp_path), tmp_path / "tiny.yaml"), {},
                        read_paper_table(spec.paper.csv))
    assert {r.row: r.label for r in plain.rows}["spl/dcgan"] == "Our SPL (DCGAN)"


def test_plan_errors_before_running(tmp_path):
    spec = spec_from_dict(_tiny_spec_dict(tmp_path), tmp_path / "tiny.yaml")
    with pytest.raises(ConfigError, match="--only 'spl/biggan' is not a row"):
        plan_experiment(spec, only=["spl/biggan"])
    raw = _tiny_spec_dict(tmp_path)
    raw["dataset"] = {"source": "coco2014"}
    coco = spec_from_dict(raw, tmp_path / "coco.yaml")
    with pytest.raises(ConfigError, match="coco2014 needs --data-root"):
        plan_experiment(coco)
    raw = _tiny_spec_dict(tmp_path)
    raw["train"] = {"preset": "embedded", "overrides": {"epohcs": 1}}
    with pytest.raises(ConfigError, match="tiny.yaml: train preset.*epohcs"):
        plan_experiment(spec_from_dict(raw, tmp_path / "tiny.yaml"))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r["rows"].append("spl/stylegan"), "unknown row 'spl/stylegan'"),
        (lambda r: r["dataset"].update(source="cifar10"), "unknown dataset 'cifar10'"),
        (lambda r: r["columns"].append("top5/F1-C"), "unknown metric key 'top5/F1-C'"),
    ],
)
def test_cli_rejects_bad_spec_before_running(tmp_path, edit, message):
    from replication.cli import cli

    raw = _tiny_spec_dict(tmp_path)
    edit(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    runs = tmp_path / "runs"
    res = CliRunner().invoke(cli, ["experiment", "run", str(path), "--runs", str(runs)])
    assert res.exit_code == 1
    assert message in res.output and str(path) in res.output
    assert not runs.exists()  # nothing ran


# ------------------------------------------------------------------------------- end to end


def _done_mtimes(runs: Path) -> dict[str, float]:
    return {str(p.parent.relative_to(runs)): p.stat().st_mtime_ns for p in runs.rglob(DONE)}


@pytest.mark.slow
def test_end_to_end_tiny_chain(tmp_path):
    """Tiny digits chain: every row rendered; a re-run runs nothing; deleting one row's training
    ``done`` re-runs only that training and its metrics."""
    from replication.experiments.runner import run_experiment
    from replication.report.render import write_table
    from replication.report.table import load_table

    spec = spec_from_dict(_tiny_spec_dict(tmp_path), tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"
    first = run_experiment(spec, runs=runs, progress=False)
    assert all(r.status == "ran" for r in first.records)
    table = load_table(spec, runs)
    ours = {r.row: r for r in table.rows if not r.literature}
    assert list(ours) == list(spec.rows)
    for r in ours.values():
        assert r.seeds == 1
        assert all(c.ours is not None and 0.0 <= c.ours <= 100.0 for c in r.cells)
    written = write_table(table, tmp_path / "out")
    md = written["md"].read_text()
    for row in ours.values():
        assert f"| {row.label} | 1 |" in md
    # the gallery and the quality record of each generator exist
    for g in spec.generators:
        assert (first.plan.named[f"gallery/{g}"].path(runs) / "gallery.png").stat().st_size > 1000
        assert (first.plan.named[f"quality/{g}"].path(runs) / "quality.json").is_file()

    before = _done_mtimes(runs)
    second = run_experiment(spec, runs=runs, progress=False)
    assert second.ran == [] and _done_mtimes(runs) == before

    target = first.plan.trains[("pseudo/wgan-gp", 0)]
    (target.path(runs) / DONE).unlink()
    third = run_experiment(spec, runs=runs, progress=False)
    assert sorted(s.describe() for s in third.ran) == ["metrics pseudo/wgan-gp seed 0", "train pseudo/wgan-gp seed 0"]
    after = _done_mtimes(runs)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {str(target.path(runs).relative_to(runs)),
                       str(first.plan.metrics[("pseudo/wgan-gp", 0)].path(runs).relative_to(runs))}


# ------------------------------------------------------------------------------- gallery and counts


def test_gallery_label_text():
    import numpy as np

    from replication.report.gallery import describe_label, top_classes

    names = [str(i) for i in range(10)]
    spl = np.full(10, 0.09, dtype=np.float32)
    spl[[3, 7]] = [0.15, 0.13]
    assert top_classes(spl, names, 3) == [
        ("3", pytest.approx(0.15)), ("7", pytest.approx(0.13)), ("0", pytest.approx(0.09))
    ]
    assert describe_label("spl", spl, names) == "spl: 3 .150, 7 .130, 0 .090"
    assert describe_label("smooth", np.full(10, 0.1, dtype=np.float32), names) == "smooth: all .100"


def test_sample_count():
    from replication.experiments.stepfns import sample_count

    assert sample_count({"gen_ratio": 1.0, "count": None}, 5000) == 5000  # M = N by default
    assert sample_count({"gen_ratio": 0.5, "count": None}, 5001) == 2500  # round half to even
    assert sample_count({"gen_ratio": 1.0, "count": 64}, 5000) == 64


def test_cli_status_lists_every_step(tmp_path):
    from replication.cli import cli

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(_tiny_spec_dict(tmp_path)))
    res = CliRunner().invoke(cli, ["experiment", "status", str(path), "--runs", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 38 and all(line.startswith("todo") for line in lines)  # 36 + a quality step per GAN
    assert sum("quality of" in line for line in lines) == 2
    assert any("train spl/wgan-gp seed 0" in line for line in lines)
    assert not (tmp_path / "runs").exists()
