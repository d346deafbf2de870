"""Tests for replication.train: config, sampler, exact resume, signals, non-finite loss, generated data."""
from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

import replication.training.loop as loop
from replication.data.shards import ShardSet
from replication.errors import ConfigError
from replication.train import TrainConfig, TrainingError, TrainingInterrupted, load_train_config, train
from replication.training.config import config_to_yaml, list_presets, resolve_input_norm
from replication.training.sampler import EpochBatchSampler, SeededDataset, epoch_order

# Small, fast settings on the tiny digits set (240 train / 120 test): 7 iterations per epoch.
TINY = ["batch_size=32", "epochs=2", "milestones=[1]", "data.num_workers=0", "kernel_backend=torch", "progress=false",
        "eval_every_epochs=0", "log_every=2", "device=cpu"]



def tiny_cfg(tiny_digits, *extra: str) -> TrainConfig:
    train_path, test_path = tiny_digits
    return load_train_config("embedded", [f"data.train={train_path}", f"data.test={test_path}", *TINY, *extra])


def weights_of(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=False)["state_dict"]


def assert_same_weights(a, b) -> None:
    wa, wb = weights_of(a), weights_of(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# -- config ---------------------------------------------------------------------------------------
def test_presets_hold_the_paper_recipe():
    assert {"embedded", "paper-coco", "paper-nus", "paper-wider"} <= set(list_presets())
    for name in ("paper-coco", "paper-nus", "paper-wider"):
        cfg = load_train_config(name)
        assert cfg.model == "preact_resnet101"
        assert (cfg.lr, cfg.lr_fc_mult, cfg.momentum, cfg.weight_decay) == (1e-3, 10.0, 0.9, 1e-4)
        assert (cfg.batch_size, cfg.epochs, cfg.milestones, cfg.gamma) == (24, 20, [12, 17], 0.1)
        assert (cfg.data.crop, cfg.data.load_size, cfg.data.flip, cfg.data.test_mode) == (224, 256, True, "resize")
        assert cfg.loss == "sigmoid_bce" and cfg.normalize == "batch"
    assert load_train_config("paper-nus").top3 == "pure"
    assert load_train_config("paper-coco").top3 == "thresholded"
    emb = load_train_config("embedded")
    assert (emb.model, emb.data.crop, emb.data.load_size, emb.data.flip) == ("preact_resnet_small", 28, 32, False)


def test_overrides_and_yaml_roundtrip(tmp_path):
    cfg = load_train_config("embedded", ["epochs=3", "data.train=/x/train", "amp=true", "milestones=[1, 2]", "lr=1"])
    assert cfg.epochs == 3 and cfg.data.train == "/x/train" and cfg.amp is True and cfg.milestones == [1, 2]
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(cfg))
    assert load_train_config(path) == cfg
    assert load_train_config(cfg.to_dict()) == cfg
    assert load_train_config({}) == TrainConfig()  # defaults = docs/classifier.md#recipe


@pytest.mark.parametrize("override, match", [
    ("bogus=1", "unknown config key 'bogus'"),
    ("data.bogus=1", "unknown config key 'data.bogus'"),
    ("epochs=three", "config key 'epochs': expected an integer"),
    ("loss=hinge", "config key 'loss': 'hinge' is not one of"),
    ("data.test_mode=tencrop", "config key 'data.test_mode'"),
    ("data.crop=300", "config key 'data.crop'"),
    ("milestones=[5, 2]", "config key 'milestones'"),
    ("data.generated=/g", "'data.generated' and 'data.label_file'"),
    ("epochs", "expected key=value"),
])
def test_config_errors_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_train_config("embedded", [override])
    assert "\n" not in str(e.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config file or preset"):
        load_train_config("no-such-preset")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: malformed YAML"):
        load_train_config(bad)
    (tmp_path / "unk.yaml").write_text("modle: preact_resnet18\n")
    with pytest.raises(ConfigError, match="unk.yaml: unknown config key 'modle'"):
        load_train_config(tmp_path / "unk.yaml")


# -- sampler --------------------------------------------------------------------------------------
def test_sampler_ranks_partition_the_global_batches_and_resume_is_a_suffix():
    full = list(EpochBatchSampler(103, 8, seed=3, epoch=1))
    assert len(full) == 103 // 8 and all(len(b) == 8 for b in full)
    flat = [i for b in full for i, _ in b]
    assert len(set(flat)) == len(flat)  # a permutation, tail dropped
    ranks = [list(EpochBatchSampler(103, 8, seed=3, epoch=1, rank=r, world_size=4)) for r in range(4)]
    for b, batch in enumerate(full):
        union = sorted(x for r in range(4) for x in ranks[r][b])
        assert union == sorted(batch)
    assert list(EpochBatchSampler(103, 8, seed=3, epoch=1, start_batch=5)) == full[5:]
    other_epoch = [i for b in EpochBatchSampler(103, 8, seed=3, epoch=2) for i, _ in b]
    assert other_epoch != flat
    with pytest.raises(ValueError):
        EpochBatchSampler(103, 6, seed=0, epoch=0, world_size=4)


def test_epoch_order_without_generated_images_is_the_plain_seeded_permutation():
    # the real-only order (every baseline run) is numpy's permutation of the (seed, epoch) stream
    rng = np.random.default_rng([4, 2, 0x5EED])
    perm, seeds = epoch_order(50, 4, 2)
    assert np.array_equal(perm, rng.permutation(50))
    assert np.array_equal(seeds, rng.integers(0, 2**62, size=50, dtype=np.int64))
    assert all(np.array_equal(a, b) for a, b in zip(epoch_order(50, 4, 2, num_real=50), (perm, seeds)))


@pytest.mark.parametrize("m", [1, 7, 50])
def test_epoch_order_keeps_the_real_order_and_seeds_whatever_is_added(m):
    k = 40
    real_perm, real_seeds = epoch_order(k, 9, 3)
    perm, seeds = epoch_order(k + m, 9, 3, num_real=k)
    assert sorted(perm.tolist()) == list(range(k + m))
    is_real = perm < k
    assert np.array_equal(perm[is_real], real_perm) and np.array_equal(seeds[is_real], real_seeds)
    assert sorted(perm[~is_real].tolist()) == list(range(k, k + m))
    # the generated stream is seeded too: same call, same order; another seed, another placement
    assert np.array_equal(epoch_order(k + m, 9, 3, num_real=k)[0], perm)
    assert not np.array_equal(epoch_order(k + m, 10, 3, num_real=k)[0][:k], perm[:k])
    flat = [i for b in EpochBatchSampler(k + m, 8, seed=9, epoch=3, num_real=k) for i, _ in b]
    assert flat == perm[: (k + m) // 8 * 8].tolist()
    with pytest.raises(ValueError):
        epoch_order(5, 0, 0, num_real=6)


def test_seeded_dataset_is_deterministic_and_leaves_rngs_alone():
    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return torch.rand(3), torch.tensor(float(np.random.rand())), torch.tensor(1.0)

    ds = SeededDataset(Noise(), num_real=4)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a, b, c = ds[(2, 77)], ds[(2, 77)], ds[(2, 78)]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    assert bool(a[3]) and not bool(ds[(7, 1)][3])


def test_wider_targets():
    y = torch.tensor([[1.0, 0.0, -1.0], [0.2, 0.0, 0.8]])
    real = torch.tensor([True, False])
    t, m = loop.training_targets(y, real, "wider", "negative")
    assert torch.equal(t, torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.0, 0.8]])) and m is None
    t, m = loop.training_targets(y, real, "wider", "ignore")
    assert torch.equal(m, torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]))  # only real unspecified ignored
    t, m = loop.training_targets(y, real, "binary", "ignore")
    assert t is y and m is None


# -- training runs --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_run(tiny_digits, tmp_path_factory):
    """An uninterrupted tiny run: 2 epochs × 7 iterations."""
    out = tmp_path_factory.mktemp("ref")
    metrics = train(tiny_cfg(tiny_digits), out)
    return out, metrics


def test_run_directory_contents(reference_run, tiny_digits):
    out, metrics = reference_run
    for name in ("config.yaml", "checkpoint.pt", "model.pt", "metrics.json", "preds.npz", "history.json",
                 "curves.png", "per_class_ap.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert {"mAP", "F1-C", "P-C", "R-C", "F1-O", "P-O", "R-O"} <= set(metrics)
    test = ShardSet(tiny_digits[1])
    with np.load(out / "preds.npz") as z:
        assert z["logits"].shape == (len(test), 10) and np.isfinite(z["logits"]).all()
        assert list(z["keys"]) == test.keys() and np.array_equal(z["labels"], test.labels())
        assert list(z["class_names"]) == test.class_names
    hist = json.loads((out / "history.json").read_text())
    assert hist["epoch"] == [1, 2] and hist["iteration"] == [7, 14]
    assert hist["lr"] == [pytest.approx(0.1), pytest.approx(0.01)]  # ×0.1 at milestone 1
    assert load_train_config(out / "config.yaml") == resolve_input_norm(tiny_cfg(tiny_digits))  # input_norm: caffe
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (ck["epoch"], ck["batch_in_epoch"], ck["global_step"]) == (2, 0, 14)


def test_resume_after_max_iters_is_bit_identical(reference_run, tiny_digits, tmp_path):
    ref, ref_metrics = reference_run
    train(tiny_cfg(tiny_digits, "max_iters=5"), tmp_path)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert (ck["epoch"], ck["batch_in_epoch"], ck["global_step"]) == (0, 5, 5)
    # Resume with one DataLoader worker: the data order and augmentations do not depend on workers.
    metrics = train(tiny_cfg(tiny_digits, "data.num_workers=1"), tmp_path, resume=True)
    assert_same_weights(ref, tmp_path)
    assert metrics == ref_metrics
    hist, ref_hist = (json.loads((d / "history.json").read_text()) for d in (tmp_path, ref))
    assert hist["train_loss"] == ref_hist["train_loss"]


def test_resume_after_a_crash_from_the_periodic_checkpoint(reference_run, tiny_digits, tmp_path, monkeypatch):
    ref, _ = reference_run
    calls = {"n": 0}
    real_loss = loop.compute_loss

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 11:
            raise RuntimeError("injected crash")
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(loop, "compute_loss", crashing)
    with pytest.raises(RuntimeError, match="injected crash"):
        train(tiny_cfg(tiny_digits, "checkpoint_every_iters=3"), tmp_path)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ck["global_step"] == 9 and (ck["epoch"], ck["batch_in_epoch"]) == (1, 2)
    monkeypatch.setattr(loop, "compute_loss", real_loss)
    with pytest.raises(ConfigError, match="holds a checkpoint already"):
        train(tiny_cfg(tiny_digits, "checkpoint_every_iters=3"), tmp_path)
    with pytest.raises(ConfigError, match="changed config keys lr"):
        train(tiny_cfg(tiny_digits, "checkpoint_every_iters=3", "lr=0.5"), tmp_path, resume=True)
    train(tiny_cfg(tiny_digits, "checkpoint_every_iters=3"), tmp_path, resume=True)
    assert_same_weights(ref, tmp_path)


def test_sigterm_checkpoints_and_resume_matches(reference_run, tiny_digits, tmp_path, monkeypatch):
    ref, _ = reference_run
    calls = {"n": 0}
    real_loss = loop.compute_loss

    def signalling(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(loop, "compute_loss", signalling)
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="interrupted by signal at iteration 4"):
        train(tiny_cfg(tiny_digits), tmp_path)  # log_every=2: the flag is read at iteration 4
    assert signal.getsignal(signal.SIGTERM) == handler_before  # handlers restored
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ck["global_step"] == 4
    monkeypatch.setattr(loop, "compute_loss", real_loss)
    train(tiny_cfg(tiny_digits), tmp_path, resume=True)
    assert_same_weights(ref, tmp_path)


def test_non_finite_loss_names_the_iteration_and_keeps_the_last_good_checkpoint(tiny_digits, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = loop.compute_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(loop, "compute_loss", poisoned)
    with pytest.raises(TrainingError, match="non-finite loss at iteration 5") as e:
        train(tiny_cfg(tiny_digits, "checkpoint_every_iters=2", "log_every=3"), tmp_path)
    assert "checkpoint.pt is kept" in str(e.value)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ck["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.dtype.is_floating_point)


def test_training_with_generated_images_and_weight(tiny_digits, generated_set, tmp_path, monkeypatch):
    gen, labels = generated_set
    seen = []
    real_loss = loop.compute_loss

    def recording(logits, targets, weights, mask, cfg):
        seen.append((targets.clone(), weights.clone()))
        return real_loss(logits, targets, weights, mask, cfg)

    monkeypatch.setattr(loop, "compute_loss", recording)
    cfg = tiny_cfg(tiny_digits, f"data.generated={gen}", f"data.label_file={labels}", "data.generated_weight=0.25",
                   "epochs=1")
    train(cfg, tmp_path)
    targets = torch.cat([t for t, _ in seen])
    weights = torch.cat([w for _, w in seen])
    assert len(seen) == (240 + 48) // 32
    is_gen = weights == 0.25
    assert set(weights.unique().tolist()) == {0.25, 1.0}
    # generated rows carry the smooth labels, real rows multi-hot labels; both shuffled together
    assert torch.allclose(targets[is_gen], torch.full((int(is_gen.sum()), 10), 0.1))
    assert set(targets[~is_gen].unique().tolist()) <= {0.0, 1.0}
    per_batch = [int((w == 0.25).sum()) for _, w in seen]
    assert 0 < int(is_gen.sum()) <= 48 and len(set(per_batch)) > 1


def test_cli_train_resume_and_errors(tiny_digits, tmp_path):
    from click.testing import CliRunner

    from replication.cli import cli

    runner = CliRunner()
    sets = [f"data.train={tiny_digits[0]}", f"data.test={tiny_digits[1]}", *TINY, "max_iters=2"]
    args = ["train", "--config", "embedded", "--out", str(tmp_path / "run")]
    for s in sets:
        args += ["--set", s]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "mAP" in json.loads(res.output.strip().splitlines()[-1])
    # --resume without --config reads RUN_DIR/config.yaml; max_iters may change on resume.
    res = runner.invoke(cli, ["train", "--out", str(tmp_path / "run"), "--resume", "--set", "max_iters=4"])
    assert res.exit_code == 0, res.output
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["global_step"] == 4
    res = runner.invoke(cli, ["train", "--config", "embedded", "--set", "bogus=1", "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "error:" in res.output and "unknown config key 'bogus'" in res.output
    res = runner.invoke(cli, ["train", "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "--config is required" in res.output


@pytest.mark.slow
def test_bench_train_quick_writes_json(tmp_path):
    from click.testing import CliRunner

    from replication.cli import cli

    out = tmp_path / "train.json"
    res = CliRunner().invoke(cli, ["bench", "train", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    assert {(r["case"], r["mode"]) for r in rows} == {("embedded", "eager"), ("r101-reduced", "eager")}
    for r in rows:
        assert r["synthetic_images_per_s"] > 0 and r["loader_images_per_s"] > 0
        assert r["loader_fraction"] == pytest.approx(r["loader_images_per_s"] / r["synthetic_images_per_s"], abs=1e-3)
    # the embedded presets' mode (channels_last, float32) at two batch sizes
    res = CliRunner().invoke(cli, ["bench", "train", "--quick", "--out", str(out), "--cases", "embedded",
                                   "--modes", "cl", "--embedded-batches", "4,6"])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    assert [(r["case"], r["mode"], r["batch"]) for r in rows] == [("embedded", "cl", 4), ("embedded", "cl", 6)]
    assert rows[1]["gflop_per_step"] == pytest.approx(1.5 * rows[0]["gflop_per_step"], rel=1e-3)  # FLOPs ∝ batch


def test_bench_cl_mode_is_the_presets_float32_channels_last_step():
    from replication.benchmarks.train import _Step

    step = _Step("preact_resnet_small", 10, torch.device("cpu"), "cl")
    assert step.cl and not step.amp and step.fwd is step.model
    convs = [m.weight for m in step.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert all(w.dtype == torch.float32 for w in convs)


@pytest.mark.slow
def test_training_learns_well_above_the_label_frequency_chance_level(tiny_digits, tmp_path):
    # 10 epochs × 7 iterations of the embedded model on 240 tiny canvases. A random ranking has an
    # expected AP equal to the class's positive rate, so chance-level mAP = mean label frequency.
    metrics = train(tiny_cfg(tiny_digits, "epochs=10", "milestones=[8]", "lr=0.05"), tmp_path)
    labels = ShardSet(tiny_digits[1]).labels()
    chance = 100 * labels.mean(axis=0).mean()
    assert 20 < chance < 40
    assert metrics["mAP"] > chance + 15, (metrics["mAP"], chance)


def test_pretrained_weights_are_loaded(reference_run, tiny_digits, tmp_path):
    ref, _ = reference_run
    # lr 0: the weights stay at what was loaded (BN running statistics still move in train mode).
    train(tiny_cfg(tiny_digits, f"pretrained={ref / 'model.pt'}", "lr=0", "max_iters=1"), tmp_path / "a")
    ref_w, new_w = weights_of(ref), weights_of(tmp_path / "a")
    for k in ref_w:
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(ref_w[k], new_w[k]), k
    bad = tmp_path / "bad.pt"
    torch.save({"stem.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(ConfigError, match="bad.pt: state dict does not fit the model; missing keys"):
        train(tiny_cfg(tiny_digits, f"pretrained={bad}", "max_iters=1"), tmp_path / "b")


@pytest.mark.gpu
def test_cuda_run_uses_bf16_autocast_and_channels_last(tiny_digits, tmp_path, monkeypatch):
    seen = {}
    real_loss = loop.compute_loss

    def recording(logits, targets, weights, mask, cfg):
        seen.setdefault("dtype", logits.dtype)
        out = real_loss(logits, targets, weights, mask, cfg)
        seen.setdefault("loss_dtype", out.dtype)
        return out

    monkeypatch.setattr(loop, "compute_loss", recording)
    cfg = tiny_cfg(tiny_digits, "device=cuda", "max_iters=4", "kernel_backend=auto")
    assert cfg.amp is None and cfg.channels_last is None  # defaults: on for CUDA
    metrics = train(cfg, tmp_path)
    assert seen["dtype"] == torch.bfloat16 and seen["loss_dtype"] == torch.float32
    assert np.isfinite(metrics["mAP"])
