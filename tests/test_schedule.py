"""The equal-iteration schedule (issue #19 item 4): ``schedule: iterations`` in the training config.

* the per-batch mix N : M by hand, and the sampler's streams against an independent construction
  from :func:`epoch_order` (the real stream is the real-only run's epochs, end to end);
* config checks and the 2× budget of the plateau check;
* tiny trainings: a real-only row and a row with generated images record the same number of
  iterations and drop the LR at the same iterations; every batch holds exactly the stated mix;
  an interrupted run resumes bit-identically (mid-block, and past a milestone and a block boundary);
* planning: ``baseline/iters`` is the baseline at twice the iteration budget.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import replication.training.loop as loop
from replication.errors import ConfigError
from replication.experiments.runner import plan_experiment
from replication.experiments.spec import spec_from_dict
from replication.train import load_train_config, train
from replication.training.config import TrainConfig, iterations_per_epoch, mix_counts, scaled_iterations
from replication.training.sampler import IterationBatchSampler, epoch_order, generated_pass

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"

# tiny digits: 240 real training canvases; batch 32 → "epochs" of ⌊240/32⌋ = 7 iterations; 10 iterations
# = a block of 7 and one of 3; the LR drops after iteration 6.
ITER = ["batch_size=32", "schedule=iterations", "iterations=10", "iter_milestones=[6]", "data.num_workers=0",
        "kernel_backend=torch", "progress=false", "eval_every_epochs=0", "log_every=2", "device=cpu"]


def iter_cfg(tiny_digits, *extra: str) -> TrainConfig:
    train_path, test_path = tiny_digits
    return load_train_config("embedded", [f"data.train={train_path}", f"data.test={test_path}", *ITER, *extra])


@pytest.fixture(scope="module")
def generated_overrides(generated_set):
    """The shared 48 generated images with smooth labels (tests/conftest.py), as train-config overrides."""
    gen, labels = generated_set
    return [f"data.generated={gen}", f"data.label_file={labels}", "data.generated_weight=0.25"]


# -- the mix and the sampler --------------------------------------------------------------------------
def test_mix_counts_by_hand():
    assert mix_counts(250, 250, 64) == (32, 32)          # the demo: M = N, half of each batch
    assert mix_counts(240, 48, 32) == (27, 5)            # 32 · 48/288 = 5.33 → 5
    assert mix_counts(100, 300, 8) == (2, 6)             # 8 · 0.75 = 6
    assert mix_counts(90, 10, 5) == (4, 1)               # 0.5 rounds up
    assert mix_counts(1000, 1, 64) == (63, 1)            # 0.064 → kept at one generated image
    assert mix_counts(1, 1000, 64) == (1, 63)            # and at one real image
    assert mix_counts(250, 0, 64) == (64, 0)
    assert iterations_per_epoch(250, 64) == 3 and iterations_per_epoch(20, 64) == 1
    with pytest.raises(ValueError):
        mix_counts(10, 10, 1)


def _stream(count: int, passes, first: int = 0) -> list[tuple[int, int]]:
    """Independent construction: passes concatenated end to end."""
    out = []
    for perm, seeds in passes:
        out += [(first + int(i), int(s)) for i, s in zip(perm, seeds)]
    return out


def test_iteration_sampler_streams_mix_resume_and_ranks():
    n, m, r, g, seed = 30, 12, 5, 3, 4
    full = list(IterationBatchSampler(n, m, r, g, seed=seed, start=0, stop=20))
    assert len(full) == 20 and all(len(b) == r + g for b in full)
    real = _stream(n, [epoch_order(n, seed, p) for p in range(4)])      # 20 · 5 = 100 real positions
    gen = _stream(m, [generated_pass(m, seed, p) for p in range(5)], first=n)  # 60 generated positions
    assert [x for b in full for x in b[:r]] == real[:100]
    assert [x for b in full for x in b[r:]] == gen[:60]
    assert all(sum(i < n for i, _ in b) == r for b in full)              # exactly r real, g generated per batch
    # the real-only run with the same seed sees the same real sequence, B per batch
    base = list(IterationBatchSampler(n, 0, r + g, 0, seed=seed, start=0, stop=10))
    assert [x for b in base for x in b] == real[:80]
    # resume: a later start is a suffix; ranks partition every global batch
    assert list(IterationBatchSampler(n, m, r, g, seed=seed, start=7, stop=20)) == full[7:]
    ranks = [list(IterationBatchSampler(n, m, r, g, seed=seed, start=0, stop=20, rank=k, world_size=4))
             for k in range(4)]
    assert all(sorted(x for k in range(4) for x in ranks[k][t]) == sorted(full[t]) for t in range(20))
    assert list(IterationBatchSampler(n, m, r, g, seed=seed + 1, start=0, stop=1)) != full[:1]
    with pytest.raises(ValueError):
        IterationBatchSampler(n, 0, r, g, seed=0, start=0, stop=1)      # generated slots without generated images


# -- config -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, match", [
    (["iterations=10"], "need schedule: iterations"),
    (["iter_milestones=[3]"], "need schedule: iterations"),
    (["schedule=iterations"], "'iterations'"),
    (["schedule=iterations", "iterations=10", "iter_milestones=[10]"], "iter_milestones"),
    (["schedule=iterations", "iterations=10", "iter_milestones=[5, 3]"], "iter_milestones"),
    (["schedule=steps"], "'schedule'"),
])
def test_schedule_config_errors_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_train_config("embedded", overrides)


def test_schedule_keys_left_out_at_their_defaults_and_the_doubled_budget():
    plain = load_train_config("embedded")
    assert not {"schedule", "iterations", "iter_milestones"} & set(plain.to_dict())   # old hashes unchanged
    cfg = load_train_config("embedded", ["schedule=iterations", "iterations=300", "iter_milestones=[200, 270]"])
    assert {k: cfg.to_dict()[k] for k in ("schedule", "iterations", "iter_milestones")} == {
        "schedule": "iterations", "iterations": 300, "iter_milestones": [200, 270]}
    double = scaled_iterations(cfg, 2)
    assert (double.iterations, double.iter_milestones) == (600, [400, 540]) and cfg.iterations == 300
    with pytest.raises(ConfigError, match="schedule: iterations"):
        scaled_iterations(plain, 2)
    ft = load_train_config("embedded-finetune")
    assert ft.schedule == "iterations" and ft.iterations and ft.iter_milestones


# -- training -----------------------------------------------------------------------------------------
def _history(run: Path) -> dict:
    return json.loads((run / "history.json").read_text())


@pytest.fixture(scope="module")
def runs(tiny_digits, generated_overrides, tmp_path_factory):
    """Uninterrupted tiny runs: real only, and with the 48 generated images (every batch's weights recorded)."""
    out = tmp_path_factory.mktemp("iter")
    batches = []
    real_loss = loop.compute_loss

    def recording(logits, targets, weights, mask, cfg):
        batches.append(weights.clone())
        return real_loss(logits, targets, weights, mask, cfg)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "compute_loss", recording)
        train(iter_cfg(tiny_digits), out / "baseline")
        n_base = len(batches)
        train(iter_cfg(tiny_digits, *generated_overrides), out / "row")
    return out, batches[:n_base], batches[n_base:]


def test_every_row_trains_the_same_iterations_with_the_same_milestones(runs):
    out, base_batches, row_batches = runs
    assert len(base_batches) == len(row_batches) == 10
    for name in ("baseline", "row"):
        h = _history(out / name)
        assert h["epoch"] == [1, 2] and h["iteration"] == [7, 10], name
        assert h["lr_drop_iteration"] == [6], name                    # LR ×0.1 after iteration 6 in both
        assert h["lr"] == [pytest.approx(0.01), pytest.approx(0.01)]  # the last iteration of each block
        assert torch.load(out / name / "checkpoint.pt", weights_only=False)["global_step"] == 10
    assert _history(out / "baseline")["schedule"]["generated_per_batch"] == 0
    assert _history(out / "row")["schedule"] == {
        "schedule": "iterations", "iterations": 10, "milestones": [6], "real_per_batch": 27,
        "generated_per_batch": 5, "real_images": 240, "generated_images": 48}


def test_every_batch_holds_the_stated_mix(runs):
    _, base_batches, row_batches = runs
    assert all(int((w == 0.25).sum()) == 5 and int((w == 1.0).sum()) == 27 for w in row_batches)
    assert all(len(w) == 32 and bool((w == 1.0).all()) for w in base_batches)


@pytest.mark.parametrize("stop", [4, 8])   # mid-block before the milestone; past the milestone and a block end
def test_resume_mid_run_is_bit_identical(runs, tiny_digits, generated_overrides, tmp_path, stop):
    out, _, _ = runs
    train(iter_cfg(tiny_digits, *generated_overrides, f"max_iters={stop}"), tmp_path)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ck["global_step"] == stop and (ck["epoch"], ck["batch_in_epoch"]) == divmod(stop, 7)
    train(iter_cfg(tiny_digits, *generated_overrides), tmp_path, resume=True)
    ref = torch.load(out / "row" / "model.pt", weights_only=False)["state_dict"]
    got = torch.load(tmp_path / "model.pt", weights_only=False)["state_dict"]
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    h, h_ref = _history(tmp_path), _history(out / "row")
    assert h["train_loss"] == h_ref["train_loss"] and h["lr_drop_iteration"] == [6]


# -- planning -----------------------------------------------------------------------------------------
def test_baseline_iters_is_the_baseline_at_twice_the_iteration_budget(tmp_path):
    raw = yaml.safe_load((FIXTURES / "experiment_tiny.yaml").read_text())
    raw["paper"]["csv"] = str(REPO / "tables/paper/table3_ms_coco.csv")
    raw["rows"] = ["baseline", "baseline/iters", "smooth/dcgan"]
    raw["train"]["overrides"].pop("max_iters", None)
    raw["train"]["overrides"].update({"schedule": "iterations", "iterations": 40, "iter_milestones": [30]})
    plan = plan_experiment(spec_from_dict(raw, tmp_path / "tiny.yaml"), seeds=2)
    for seed in (0, 1):
        base, iters = plan.trains[("baseline", seed)].config, plan.trains[("baseline/iters", seed)].config
        row = plan.trains[("smooth/dcgan", seed)].config
        assert base["iterations"] == row["iterations"] == 40 and row["iter_milestones"] == [30]
        assert iters["iterations"] == 80 and iters["iter_milestones"] == [60] and "match_iterations" not in iters
        assert {k: v for k, v in iters.items() if k not in ("iterations", "iter_milestones")} == {
            k: v for k, v in base.items() if k not in ("iterations", "iter_milestones")}


@pytest.mark.slow
def test_tiny_spec_every_row_records_the_same_iterations(tmp_path):
    """A tiny spec end to end (no GAN: block-shuffled canvases as the generated images), 1 seed: the
    baseline and the rows with generated images record the same iterations and LR drops; the plateau
    check trains twice as long."""
    from replication.experiments.runner import run_experiment

    raw = yaml.safe_load((FIXTURES / "experiment_tiny.yaml").read_text())
    raw["paper"]["csv"] = str(REPO / "tables/paper/table3_ms_coco.csv")
    raw["rows"] = ["baseline", "baseline/iters", "smooth/shuffled", "random/shuffled"]
    raw["quality"] = {"n": 0}
    raw["gallery"] = 0
    raw["train"]["overrides"].pop("max_iters")
    raw["train"]["overrides"].update({"schedule": "iterations", "iterations": 9, "iter_milestones": [5],
                                      "eval_every_epochs": 0})
    spec = spec_from_dict(raw, tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"
    plan = run_experiment(spec, runs=runs, seeds=1, progress=False).plan
    records = {row: _history(plan.trains[(row, 0)].path(runs)) for row in raw["rows"]}
    for row in ("baseline", "smooth/shuffled", "random/shuffled"):
        h = records[row]
        assert h["iteration"][-1] == 9 and h["lr_drop_iteration"] == [5], row
        assert h["schedule"]["iterations"] == 9 and h["schedule"]["milestones"] == [5], row
    mix = records["smooth/shuffled"]["schedule"]
    assert mix["generated_images"] == 64 and mix["real_per_batch"] + mix["generated_per_batch"] == 32
    assert mix["generated_per_batch"] == mix_counts(mix["real_images"], 64, 32)[1] > 0
    assert records["baseline/iters"]["iteration"][-1] == 18 and records["baseline/iters"]["lr_drop_iteration"] == [10]
    assert records["baseline/iters"]["schedule"]["generated_per_batch"] == 0
