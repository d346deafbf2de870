"""`spl bench gpu-check` (replication/benchmarks/gpu_check.py): the stage list is wired to real commands
and fits the 8-minute budget; the runner enforces per-stage timeouts (killing the stage's whole process
group) and writes a summary; without CUDA the CUDA stages are skipped with the reason. The real run is
not part of the suite (it is `make gpu-check`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from replication.benchmarks import gpu_check
from replication.cli import cli
from replication.errors import ConfigError
from replication.experiments import steps


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The click command an `spl …` argv names, and its remaining arguments."""
    cmd, i = cli, 0
    while isinstance(cmd, click.Group) and i < len(words) and words[i] in cmd.commands:
        cmd, i = cmd.commands[words[i]], i + 1
    return cmd, words[i:]


def test_stage_list_is_wired_and_fits_the_budget(tmp_path):
    stages = gpu_check.STAGES
    assert [s.name for s in stages] == ["pytest-gpu", "kernels", "train", "train-compile", "loader", "gan", "demo"]
    assert sum(s.budget_s for s in stages) <= gpu_check.TOTAL_BUDGET_S == 480
    for s in stages:
        assert s.budget_s > 0 and s.commands
        for template in s.commands + (s.cpu_commands or ()):
            words = gpu_check.argv(template, tmp_path / "out", tmp_path / "scratch")
            assert words[0] == sys.executable
            if words[1:3] == ["-m", "replication.cli"]:
                cmd, args = _resolve(words[3:])
                assert not isinstance(cmd, click.Group), f"{s.name}: {words[3:5]} is not an spl command"
                cmd.make_context(cmd.name, list(args))  # raises on an unknown option or a bad value
            else:
                assert words[1:4] == ["-m", "pytest", "-m"] and "--timeout" in words
            assert not any("{" in w for w in words), words
    assert {s.name for s in stages if s.needs_cuda} == {"kernels", "train", "train-compile", "gan", "demo"}


def test_dry_run_lists_stages_commands_and_budgets(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = CliRunner().invoke(cli, ["bench", "gpu-check", "--dry-run"])
    assert res.exit_code == 0, res.output
    for s in gpu_check.STAGES:
        assert s.name in res.output
    assert "bench kernels --device cuda" in res.output and "--bulk-n 4000000" in res.output
    assert "--modes compile" in res.output and "experiment run tables/specs/demo.yaml" in res.output
    assert "skip: no CUDA device" in res.output and "run (CPU flavour)" in res.output
    assert "sum of budgets: 470 s (limit 480 s)" in res.output
    scaled = CliRunner().invoke(cli, ["bench", "gpu-check", "--dry-run", "--stages", "kernels,demo",
                                      "--budget-scale", "2"])
    assert scaled.exit_code == 0 and "sum of budgets: 320 s" in scaled.output and "train" not in scaled.output


def test_unknown_stage_is_an_error():
    with pytest.raises(ConfigError, match="unknown stage"):
        gpu_check.select(gpu_check.STAGES, ("kernels", "nope"))


def _state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (None when it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def test_runner_times_out_a_stage_and_summarises(tmp_path):
    py = sys.executable
    pid_file = tmp_path / "child.pid"
    slow = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            f" open({str(pid_file)!r}, 'w').write(str(p.pid)); print('slow started', flush=True); time.sleep(60)")
    stages = (gpu_check.Stage("fast", "prints and exits", 30, ((py, "-c", "print('fast done')"),)),
              gpu_check.Stage("slow", "sleeps past its budget", 2, ((py, "-c", slow),)),
              gpu_check.Stage("broken", "exits 3", 30, ((py, "-c", "import sys; sys.exit(3)"),)))
    events: list[str] = []
    summary = gpu_check.run_check(stages, results_dir=tmp_path / "res", cuda=False, copy_to=tmp_path / "copy",
                                  on_event=events.append)
    rows = {r["stage"]: r for r in summary["results"]}
    assert rows["fast"]["status"] == "ok" and rows["fast"]["returncode"] == 0
    assert rows["slow"]["status"] == "timeout" and 2 <= rows["slow"]["seconds"] < 15
    assert "slow started" in rows["slow"]["output_tail"] and "budget of 2 s exceeded" in rows["slow"]["output_tail"]
    assert _state(int(pid_file.read_text())) in (None, "Z")  # the stage's own child was killed too
    assert rows["broken"]["status"] == "failed" and rows["broken"]["returncode"] == 3
    path = Path(summary["path"])
    assert path.parent == tmp_path / "res" and path.name.startswith("gpu-check-cpu-")
    on_disk = json.loads(path.read_text())
    assert [r["status"] for r in on_disk["results"]] == ["ok", "timeout", "failed"]
    assert on_disk["conditions"]["sum_of_budgets_s"] == 62
    out = gpu_check.out_dir(tmp_path / "res", on_disk["machine"])
    assert "fast done" in (out / "fast.log").read_text()
    assert (tmp_path / "copy" / path.name).is_file()
    text = "\n".join(gpu_check.format_summary(summary))
    for needle in ("fast ", "ok", "timeout", "exit 3", "goals", "not measured", str(path)):
        assert needle in text
    assert any(e.startswith("[slow] timeout") for e in events)


def test_without_cuda_the_cuda_stages_are_skipped_with_a_reason(tmp_path, monkeypatch):
    def never(*a, **k):
        raise AssertionError("a skipped stage ran")
    monkeypatch.setattr(gpu_check, "run_commands", never)
    cuda_stages = tuple(s for s in gpu_check.STAGES if s.needs_cuda)
    summary = gpu_check.run_check(cuda_stages, results_dir=tmp_path, cuda=False)
    assert {r["stage"] for r in summary["results"]} == {"kernels", "train", "train-compile", "gan", "demo"}
    for r in summary["results"]:
        assert r["status"] == "skipped" and r["reason"] == gpu_check.NO_CUDA and r["seconds"] == 0
    assert all(g["met"] is None for g in summary["goals"])
    text = "\n".join(gpu_check.format_summary(summary))
    assert "CUDA NO" in text and "CUDA stages skipped (no CUDA device" in text


def test_cli_on_a_machine_without_cuda_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = CliRunner().invoke(cli, ["bench", "gpu-check", "--stages", "kernels,gan", "--results-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "the CUDA stages are skipped" in res.output
    assert "kernels        skipped" in res.output and "gan            skipped" in res.output


def test_goals_are_ratios_of_numbers_from_the_same_run():
    numbers = {
        "kernels": {"fused_over_compile": {"sigmoid": 0.5, "softmax": 1.2}, "bulk_over_copy": {"spl": 0.85}},
        "train": {"r101": [{"mode": "cl+amp", "synthetic_images_per_s": 2100.0, "loader_fraction": 0.95}]},
        "train-compile": {"r101": [{"mode": "compile", "error": "out of memory"}]},
    }
    goals = gpu_check.goals([{"stage": k, "numbers": v} for k, v in numbers.items()])
    assert [(g["ratio"], g["met"]) for g in goals] == [(1.2, False), (0.85, True), (1.05, True), (0.95, True)]


def test_collectors_read_the_benchmark_files(tmp_path):
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    out.mkdir()
    rows = [dict(op="soft_cross_entropy", variant="sigmoid", N=24, C=80, mode="full", metric="gpu_time",
                 status="ok", backend=b, p50=v) for b, v in (("cupy", 8.0), ("numba-cuda", 12.0),
                                                              ("torch-compile", 10.0), ("torch-eager", 30.0))]
    rows += [dict(op="assign_labels", variant="spl", N=gpu_check.BULK_N, C=80, mode="fwd", metric="bandwidth",
                  status="ok", backend=b, p50=v) for b, v in (("cupy", 3000.0), ("d2d-copy", 4000.0))]
    (out / "kernels.json").write_text(json.dumps({"benchmark": "kernels", "results": rows}))
    k = gpu_check.collect("kernels", out, scratch)
    assert k["fused_over_compile"] == {"sigmoid": 0.8} and k["bulk_over_copy"] == {"spl": 0.75}
    # the demo's per-step wall times come from the runner's marker files
    step = scratch / "runs" / "digits" / "train-abc"
    step.mkdir(parents=True)
    (step / steps.STEP_FILE).write_text("label: train baseline\n")
    (step / steps.DONE).write_text(json.dumps({"finished": "2026-01-01T00:00:00+00:00", "seconds": 12.5}))
    unfinished = scratch / "runs" / "digits" / "gan-def"
    unfinished.mkdir()
    (unfinished / steps.STEP_FILE).write_text("label: gan dcgan\n")
    d = gpu_check.collect("demo", out, scratch)
    assert d["steps"] == [{"step": "train baseline", "seconds": 12.5, "finished": "2026-01-01T00:00:00+00:00"}]
    assert d["unfinished"] == ["gan dcgan"] and "slowest train baseline 12.5 s" in d["brief"]
    (out / "gan.json").write_text("{not json")
    assert "collect_error" in gpu_check.collect("gan", out, scratch)


def test_runner_marker_names_match_the_experiment_runner():
    assert (gpu_check.STEP_DONE, gpu_check.STEP_FILE) == (steps.DONE, steps.STEP_FILE)


def test_bench_kernels_size_options(tmp_path):
    out = tmp_path / "k.json"
    res = CliRunner().invoke(cli, ["bench", "kernels", "--quick", "--device", "cpu", "--providers", "torch-eager",
                                   "--rules", "spl", "--step-n", "24", "--classes", "80", "--large-n", "",
                                   "--bulk-n", "300", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    assert {(r["op"], r["variant"], r["N"], r["C"]) for r in rows} == {
        ("assign_labels", "spl", 24, 80), ("assign_labels", "spl", 300, 80),
        ("soft_cross_entropy", "sigmoid", 24, 80), ("soft_cross_entropy", "softmax", 24, 80)}
    bad = CliRunner().invoke(cli, ["bench", "kernels", "--quick", "--rules", "nope", "--out", str(out)])
    assert bad.exit_code != 0 and "unknown rule" in bad.output


def test_bench_train_case_and_mode_options(tmp_path):
    out = tmp_path / "t.json"
    res = CliRunner().invoke(cli, ["bench", "train", "--quick", "--device", "cpu", "--cases", "embedded",
                                   "--modes", "eager", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    assert [(r["case"], r["mode"]) for r in rows] == [("embedded", "eager")]
    bad = CliRunner().invoke(cli, ["bench", "train", "--quick", "--modes", "fast", "--out", str(out)])
    assert bad.exit_code != 0 and "unknown mode" in bad.output
