"""The shared benchmark harness: percentiles against numpy, timing counts, atomic and device-keyed
result files (no speed is asserted), and a tiny end-to-end run of a benchmark into tmp_path."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from replication.benchmarks import harness
from replication.commands.bench import command as bench

SAMPLES = [[3.0], [2.0, 1.0], [5.0, 1.0, 4.0, 2.0, 3.0], list(np.random.default_rng(0).random(37))]


@pytest.mark.parametrize("xs", SAMPLES)
def test_percentiles_match_numpy(xs):
    for q in (0, 20, 50, 80, 100):
        assert harness.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), abs=1e-12)
    s = harness.summarize(xs, digits=12)
    assert s["median"] == pytest.approx(float(np.median(xs))) and s["reps"] == len(xs)
    assert s["min"] <= s["p20"] <= s["median"] <= s["p80"]
    with pytest.raises(ValueError):
        harness.percentile([], 50)


def test_time_calls_counts_warmup_setup_and_samples():
    calls = {"fn": 0, "setup": 0, "sync": 0}
    t = harness.time_calls(lambda: calls.__setitem__("fn", calls["fn"] + 1), warmup=2, reps=5,
                           setup=lambda: calls.__setitem__("setup", calls["setup"] + 1),
                           sync=lambda: calls.__setitem__("sync", calls["sync"] + 1))
    assert len(t.samples) == 5 and calls == {"fn": 7, "setup": 7, "sync": 6}  # one sync after warm-up
    assert t.total_s == pytest.approx(sum(t.samples)) and t.device_samples is None
    t = harness.time_calls(lambda: None, warmup=0, min_reps=3, max_reps=4, min_time_s=10.0)
    assert len(t.samples) == 4  # max_reps caps the time-based loop
    t = harness.time_calls(lambda: None, warmup=0, min_reps=3, max_reps=100, min_time_s=0.0)
    assert len(t.samples) == 3


def test_machine_info_and_device_keyed_names_never_collide():
    m = harness.machine_info("cpu")
    assert m["device"] == "cpu" and m["device_slug"].startswith("cpu-") and m["torch_threads"] >= 1
    assert {"torch", "numpy", "numba", "python", "device_name"} <= set(m) and "hostname" not in m
    cpu1 = dict(m, device_slug=harness.slug("cpu-AMD EPYC"), torch_threads=1)
    machines = (cpu1, dict(cpu1, torch_threads=2), dict(cpu1, device_slug=harness.slug("cuda-NVIDIA H200")))
    names = {harness.result_name(b, m) for b in ("loader", "metrics", "kernels", "gan", "train") for m in machines}
    assert len(names) == 15
    assert harness.result_name("gan", cpu1) == "gan-cpu-amd-epyc-t1.json"
    assert harness.slug("cuda-NVIDIA H100 80GB HBM3") == "cuda-nvidia-h100-80gb-hbm3"


def test_write_result_is_atomic_and_keyed(tmp_path, monkeypatch):
    m = dict(harness.machine_info("cpu"), device_slug="cpu-x", torch_threads=3)
    rec = harness.record("gan", m, {"a": 1}, [{"v": 1}])
    path = harness.write_result(rec, tmp_path)
    assert path == tmp_path / "gan-cpu-x-t3.json" and harness.read_result(path)["results"] == [{"v": 1}]
    gpu = harness.record("gan", dict(m, device_slug="cuda-y"), {}, [{"v": 2}])
    assert harness.write_result(gpu, tmp_path) != path and harness.read_result(path)["results"] == [{"v": 1}]

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        harness.write_result(dict(rec, results=[{"v": 99}]), tmp_path)
    assert harness.read_result(path)["results"] == [{"v": 1}]  # old content intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gan-cpu-x-t3.json", "gan-cuda-y-t3.json"]  # no temp left


def test_bench_metrics_end_to_end_into_results_dir(tmp_path):
    res = CliRunner().invoke(bench, ["metrics", "--quick", "--results-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    m = harness.machine_info("cpu")
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == [harness.result_name("metrics", m)]
    rec = json.loads(files[0].read_text())
    assert rec["machine"]["device_slug"] == m["device_slug"] and rec["conditions"]["images"] == 500
    row = rec["results"][0]
    assert row["implementation"] == "vectorised" and row["p20_s"] <= row["median_s"] <= row["p80_s"]


def test_bench_kernels_json_rows_merge_per_device(tmp_path):
    args = ["kernels", "--quick", "--results-dir", str(tmp_path), "--device", "cpu", "--providers", "torch-eager"]
    assert CliRunner().invoke(bench, args + ["--ops", "assign_labels"]).exit_code == 0
    res = CliRunner().invoke(bench, args + ["--ops", "soft_cross_entropy"])
    assert res.exit_code == 0, res.output
    (path,) = tmp_path.iterdir()
    assert path.name == harness.result_name("kernels", harness.machine_info("cpu"))
    rows = json.loads(path.read_text())["results"]
    assert {r["op"] for r in rows} == {"assign_labels", "soft_cross_entropy"}  # the second run merged
    assert all(r["status"] == "ok" and r["p20"] <= r["p50"] <= r["p80"] for r in rows)


# ----------------------------------------------------------------------------- spl bench train vs GEMM (issue #20)


def _hand_forward_flops(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(forward FLOPs of every conv and linear layer, the first conv's share), from each layer's output shape:
    a conv costs 2·|out|·(C_in/groups)·k_h·k_w, a linear layer 2·B·in·out (multiply-adds count 2)."""
    counts: list[int] = []

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            kh, kw = mod.kernel_size
            counts.append(2 * out.numel() * (mod.in_channels // mod.groups) * kh * kw)
        else:
            counts.append(2 * inp[0].shape[0] * mod.in_features * mod.out_features)

    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in layers]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return sum(counts), counts[0]


def test_train_step_flops_match_a_hand_count():
    """A training step is forward + backward: the backward of each conv/linear layer costs twice its forward
    (input and weight gradients), except the stem conv, whose input needs no gradient."""
    from replication.benchmarks.train import _synthetic, step_flops
    from replication.models import build_model

    x, _, _ = _synthetic(4, 28, 10, torch.device("cpu"))
    fwd, stem = _hand_forward_flops(build_model("preact_resnet_small", 10), x)
    assert step_flops("preact_resnet_small", 10, 4, 28, torch.device("cpu")) == 3 * fwd - stem


def test_bench_train_quick_reports_gflops_against_gemm(tmp_path):
    import json

    from click.testing import CliRunner

    from replication.benchmarks.train import step_flops
    from replication.cli import cli

    out = tmp_path / "train.json"
    res = CliRunner().invoke(cli, ["bench", "train", "--quick", "--device", "cpu", "--cases", "embedded",
                                   "--threads", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "% of fp32 GEMM" in res.output
    data = json.loads(out.read_text())
    assert data["conditions"]["gemm_n"] == 256
    (row,) = data["results"]
    want = step_flops("preact_resnet_small", 10, 8, 28, torch.device("cpu"))
    assert row["gflop_per_step"] == pytest.approx(want / 1e9, abs=1e-4)
    assert row["gflops"] == pytest.approx(row["gflop_per_step"] / row["step_s"]["median"], rel=0.01)
    assert row["gemm_ratio"] == pytest.approx(row["gflops"] / row["gemm_gflops"], rel=0.01)


def test_profile_ops_counts_calls_and_splits_the_self_time():
    """A call of one 384² matmul and two small adds: the matmul leads by self time, each op's calls per
    call are counted, the shares add up to 1, and the ops past ``top`` are summed into "(other)"."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(384, 384, generator=gen), torch.randn(384, 384, generator=gen)
    x = torch.zeros(8)

    def fn():
        torch.mm(a, b)
        torch.add(x, 1)
        torch.add(x, 2)
        torch.neg(x)

    rows = harness.profile_ops(fn, iters=3, top=2)
    ops = {r["op"]: r for r in rows}
    assert rows[0]["op"] == "aten::mm" and ops["aten::mm"]["calls_per_iter"] == 1
    assert rows[-1]["op"] == "(other)" and len(rows) == 3
    assert sum(r["share"] for r in rows) == pytest.approx(1.0, abs=1e-3)
    everything = {r["op"]: r for r in harness.profile_ops(fn, iters=3, top=100)}
    assert everything["aten::add"]["calls_per_iter"] == 2 and everything["aten::neg"]["calls_per_iter"] == 1
    assert "(other)" not in everything
    assert everything["aten::mm"]["share"] > everything["aten::add"]["share"]
