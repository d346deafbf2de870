"""Pretraining on the embedded data (issue #13): the single-digit source, fine-tuning from a run's model.pt
with a new head, frozen BatchNorm statistics, the cached pretrain step of the experiment runner, and
unchanged hashes for everything that does not use them."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from replication.data.build import build_shards
from replication.data.shards import ShardSet
from replication.data.sources import digits_mosaic as dm
from replication.errors import ConfigError
from replication.experiments.runner import plan_experiment, run_experiment
from replication.experiments.spec import GanOptions, load_spec, spec_from_dict
from replication.experiments.stepfns import train_hash_config
from replication.experiments.steps import DONE, config_hash
from replication.models import build_model
from replication.models.pretrained import classifier_prefix, load_pretrained
from replication.training.checkpoint import MODEL, load_model_file, save_model
from replication.training.config import incompatible_changes, load_train_config
from replication.training.loop import train

REPO = Path(__file__).resolve().parent.parent
SMALL = "preact_resnet_small"


# ----------------------------------------------------------------------------- the single-digit source


def test_single_digit_source_draws_only_from_the_training_pool():
    from sklearn.datasets import load_digits

    digits = load_digits()
    pools = dm.pool_indices()
    # pool_indices are the pools digits-mosaic itself draws from
    expected = (digits.images[pools["train"]] / 16.0).astype(np.float32)
    np.testing.assert_array_equal(dm.digit_pools()["train"][0], expected)
    np.testing.assert_array_equal(dm.digit_pools()["test"][1], digits.target[pools["test"]])
    single = dm.single_pool_indices()
    train_pool, test_pool = set(pools["train"].tolist()), set(pools["test"].tolist())
    assert set(single["train"].tolist()) <= train_pool and set(single["test"].tolist()) <= train_pool
    assert not set(single["train"].tolist()) & set(single["test"].tolist())   # its own test set is held out
    assert len(single["train"]) + len(single["test"]) == len(train_pool)
    for split in ("train", "test"):
        images, labels, glyphs = dm.generate_single(split, 400, seed=0)
        used = set(glyphs.tolist())
        assert used <= set(single[split].tolist()) and not used & test_pool
        assert images.shape == (400, 32, 32, 3) and images.dtype == np.uint8
        # one-hot over the 10 classes, and the label is the class of the glyph drawn
        assert set(np.unique(labels).tolist()) == {0.0, 1.0} and (labels.sum(1) == 1).all()
        np.testing.assert_array_equal(labels.argmax(1), digits.target[glyphs])
        assert len(np.unique(labels.argmax(1))) == 10


def test_single_digit_source_is_deterministic_and_seeded():
    a = dm.generate_single("train", 40, seed=5)
    b = dm.generate_single("train", 40, seed=5)
    c = dm.generate_single("train", 40, seed=6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    # a different stream from the mosaic's: not the mosaic's first canvases with digits removed
    mosaic, _ = dm.generate("train", 40, seed=5)
    assert not np.array_equal(a[0], mosaic)


def test_single_digit_shards_and_cli(tmp_path):
    from replication.cli import cli

    out = build_shards("digits-mosaic", split="train", out=tmp_path / "single", seed=1,
                       source_options={"layout": "single", "canvases": 30}, progress=False)
    s = ShardSet(out)
    assert len(s) == 30 and s.class_names == dm.CLASS_NAMES and s.dataset == "digits-single"
    assert s[0].image.shape == (32, 32, 3)
    labels = np.asarray(s.labels())
    assert (labels.sum(1) == 1).all()
    images, expected, _ = dm.generate_single("train", 30, seed=1)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(s[3].image, images[3])   # PNG is lossless
    # the default size of the single-digit source is 10,000 / 1,000 canvases
    assert dm.SINGLE_COUNTS == {"train": 10000, "test": 1000}
    res = CliRunner().invoke(cli, ["data", "build", "digits-mosaic", "--layout", "single", "--split", "test",
                                   "--canvases", "12", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    t = ShardSet(tmp_path / "cli")
    assert len(t) == 12 and t.dataset == "digits-single" and (np.asarray(t.labels()).sum(1) == 1).all()
    bad = CliRunner().invoke(cli, ["data", "build", "digits-mosaic", "--layout", "single", "--split", "train",
                                   "--canvases", "0", "--out", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "canvases must be >= 1" in bad.output


# ----------------------------------------------------------------------------- fine-tuning from a run


def _source_run_model(path: Path, seed: int = 123) -> dict[str, torch.Tensor]:
    """A 10-way model with non-trivial weights and BN statistics, saved as a run's model.pt."""
    torch.manual_seed(seed)
    model = build_model(SMALL, 10)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.05)
                if name.endswith("running_var"):
                    t.abs_().add_(0.5)
    save_model(path, model, name=SMALL, class_names=dm.CLASS_NAMES, config={"model": SMALL})
    return {k: v.clone() for k, v in load_model_file(path)["state_dict"].items()}


def test_pretrained_from_a_run_model_pt_with_new_or_kept_head(tmp_path):
    source = _source_run_model(tmp_path / MODEL)
    torch.manual_seed(0)
    model = build_model(SMALL, 10)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    head = classifier_prefix(model)
    info = load_pretrained(model, tmp_path / MODEL, new_head=True)
    state = model.state_dict()
    assert info["skipped"] and all(k.startswith(head) for k in info["skipped"])
    backbone = [k for k in state if not k.startswith(head)]
    assert len(backbone) > 10
    for k in backbone:
        assert torch.equal(state[k], source[k]), k
    for k in info["skipped"]:
        assert torch.equal(state[k], fresh[k]) and not torch.equal(state[k], source[k]), k
    # auto (the old behaviour): C is equal, so the file's head is loaded too
    kept = build_model(SMALL, 10)
    assert load_pretrained(kept, tmp_path / MODEL)["skipped"] == []
    for k, v in kept.state_dict().items():
        assert torch.equal(v, source[k]), k


def _tiny_cfg(train_set: Path, test_set: Path, **kw):
    overrides = [f"data.train={train_set}", f"data.test={test_set}", "epochs=1", "max_iters=1", "batch_size=32",
                 "eval_batch_size=128", "progress=false", "eval_every_epochs=0", "data.num_workers=0"]
    overrides += [f"{k}={v}" for k, v in kw.items()]
    return load_train_config("embedded-finetune", overrides)


def test_train_with_pretrained_head_new_reinitialises_the_head(tmp_path, tiny_digits):
    (tmp_path / "src").mkdir()
    source = _source_run_model(tmp_path / "src" / MODEL)
    cfg = _tiny_cfg(*tiny_digits, pretrained=tmp_path / "src" / MODEL, lr=0.0, seed=7)
    assert cfg.pretrained_head == "new"
    train(cfg, tmp_path / "run")
    trained = load_model_file(tmp_path / "run" / MODEL)["state_dict"]
    torch.manual_seed(7)   # the trainer's seed, then build_model: the head's fresh initialisation
    fresh = build_model(SMALL, 10).state_dict()
    conv = [k for k in trained if k.endswith("conv1.weight") or k.endswith("conv.weight")]
    assert conv
    for k in conv:   # lr 0: the backbone is the source run's exactly
        assert torch.equal(trained[k], source[k]), k
    head = [k for k in trained if k.startswith("fc.")]
    assert head
    for k in head:
        assert torch.equal(trained[k], fresh[k]) and not torch.equal(trained[k], source[k]), k


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_keeps_running_statistics(tmp_path, tiny_digits, freeze):
    (tmp_path / "src").mkdir()
    source = _source_run_model(tmp_path / "src" / MODEL)
    cfg = _tiny_cfg(*tiny_digits, pretrained=tmp_path / "src" / MODEL, freeze_bn=str(freeze).lower(), lr=0.05)
    train(cfg, tmp_path / "run")
    trained = load_model_file(tmp_path / "run" / MODEL)["state_dict"]
    stats = [k for k in trained if k.endswith(("running_mean", "running_var"))]
    counters = [k for k in trained if k.endswith("num_batches_tracked")]
    bn_affine = [k[: -len("running_mean")] + "weight" for k in trained if k.endswith("running_mean")]
    conv = [k for k in trained if k.endswith("conv1.weight")]
    assert stats and counters and conv and bn_affine
    assert all(not torch.equal(trained[k], source[k]) for k in conv)          # the step trained the convs
    assert any(not torch.equal(trained[k], source[k]) for k in bn_affine)     # and BN's affine parameters
    same_stats = [torch.equal(trained[k], source[k]) for k in stats + counters]
    if freeze:
        assert all(same_stats)
    else:
        assert not any(same_stats)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()).get("freeze_bn", False) is freeze


# ----------------------------------------------------------------------------- hashes of unset keys

# Snapshot taken before the keys and the pretrain section existed (issue #13).
EMBEDDED_HASHES = {"embedded": "a2cd9f0c967e", "paper-coco": "accb88017a2c", "paper-nus": "58958583896d",
                   "paper-wider": "23276dbb27ba"}
DEMO_FINGERPRINT = "a489cbbf11d9a26e"
# The step keys were taken again when issue #20 put each step's torch thread count (1) into its key;
# the shards' keys (not pinned: no torch) are the snapshot's. Issue #19 then made a GAN per replicate
# (on labelled + pool) the default, which enters the fingerprint and so the metrics steps' keys; the
# snapshot is of the earlier plan (one shared GAN chain on the labelled images), so the test plans the
# file with that plan. Recomputed with the merged planner (#19 + #20): fingerprint and keys as below.
DEMO_KEYS = {
    "shards digits-mosaic/train": "d4f7730686f3", "shards digits-mosaic/test": "17c2b65af1a9",
    "train baseline seed 0": "edd3c747905e", "train baseline seed 1": "9d98077bbdf8",
    "train baseline seed 2": "ee4dcb2e9f58", "metrics baseline seed 0": "65b1d6d1e722",
    "metrics baseline seed 1": "0fd703cdb4a8", "metrics baseline seed 2": "9c7729594277",
}


def test_unset_keys_keep_existing_hashes():
    for name, key in EMBEDDED_HASHES.items():
        cfg = load_train_config(name)
        assert "pretrained_head" not in cfg.to_dict() and "freeze_bn" not in cfg.to_dict()
        assert config_hash(train_hash_config(cfg, 0)) == key, name
        # setting them does change the hash (so the snapshot above can catch a leak)
        assert config_hash(train_hash_config(dataclasses.replace(cfg, freeze_bn=True), 0)) != key
        assert config_hash(train_hash_config(dataclasses.replace(cfg, pretrained_head="new"), 0)) != key
    current = load_spec(REPO / "tests/fixtures/specs/demo-2026-11.yaml")
    spec = dataclasses.replace(current, gan_options=GanOptions(per_replicate=False, data="labelled"))
    assert spec.pretrain is None and spec.fingerprint() == DEMO_FINGERPRINT
    plan = plan_experiment(spec, seeds=3)
    keys = {s.describe(): s.key for s in plan.steps}
    assert {k: keys[k] for k in DEMO_KEYS} == DEMO_KEYS
    # under the per-replicate default the fingerprint (hence the metrics keys) differs, the trainings' keys do not
    assert current.gan_options.per_replicate and current.fingerprint() != DEMO_FINGERPRINT
    now = {s.describe(): s.key for s in plan_experiment(current, seeds=3).steps}
    assert {k: now[k] for k in DEMO_KEYS if not k.startswith("metrics")} == {
        k: v for k, v in DEMO_KEYS.items() if not k.startswith("metrics")}
    assert not any(s.kind == "pretrain" or "pretrain" in s.inputs for s in plan.steps)


def test_resume_refuses_a_changed_freeze_bn():
    cfg = load_train_config("embedded")
    assert incompatible_changes(cfg, dataclasses.replace(cfg, freeze_bn=True)) == ["freeze_bn"]
    assert incompatible_changes(cfg, dataclasses.replace(cfg, pretrained_head="new")) == ["pretrained_head"]


# ----------------------------------------------------------------------------- the cached pretrain step


def _pretrain_spec_dict(**train_overrides) -> dict:
    return {
        "name": "pretrain-tiny",
        "dataset": {"source": "digits-mosaic", "tiny": True},
        "rows": ["baseline"],
        "columns": ["mAP"],
        "metrics": {"convention": "srn", "top3": "thresholded"},
        "gan": {},
        "train": {"preset": "embedded-finetune",
                  "overrides": {"epochs": 1, "max_iters": 1, "batch_size": 32, "eval_batch_size": 128,
                                "eval_every_epochs": 0, "progress": False, **train_overrides}},
        "pretrain": {"source": "digits-single", "preset": "embedded-pretrain", "count": 64, "test_count": 32,
                     "overrides": {"epochs": 1, "max_iters": 2, "batch_size": 32, "eval_batch_size": 128,
                                   "progress": False}},
        "paper": {"csv": str(REPO / "tables/paper/table3_ms_coco.csv"), "caption": "x"},
    }


def _done_mtimes(runs: Path) -> dict[str, int]:
    return {str(p.parent.relative_to(runs)): p.stat().st_mtime_ns for p in runs.rglob(DONE)}


def test_pretrain_step_is_cached_and_reused(tmp_path):
    spec = spec_from_dict(_pretrain_spec_dict(lr=0.0), tmp_path / "s.yaml")
    runs = tmp_path / "runs"
    first = run_experiment(spec, runs=runs, seeds=2, progress=False)
    plan = first.plan
    pre = plan.named["pretrain"]
    ran = [r.step.describe() for r in first.records if r.status == "ran"]
    assert ran.count("pretrain on digits-single") == 1 and len(ran) == len(first.records)
    # every classifier training depends on the pretrain step and fine-tunes from its model.pt with a new head
    for seed in (0, 1):
        t = plan.trains[("baseline", seed)]
        assert t.inputs["pretrain"] is pre
        assert t.config["pretrained"] == "<pretrain step>/model.pt" and t.config["pretrained_head"] == "new"
        run_cfg = yaml.safe_load((t.path(runs) / "config.yaml").read_text())
        assert run_cfg["pretrained"] == str(pre.path(runs) / MODEL) and run_cfg["pretrained_head"] == "new"
    assert pre.path(runs).parent.name == "digits-single"
    source = ShardSet(pre.inputs["train"].path(runs) / "data")
    assert len(source) == 64 and source.dataset == "digits-single"
    pre_model = load_model_file(pre.path(runs) / MODEL)["state_dict"]
    tuned = load_model_file(plan.trains[("baseline", 0)].path(runs) / MODEL)["state_dict"]
    convs = [k for k in tuned if k.endswith("conv1.weight")]
    assert convs and all(torch.equal(tuned[k], pre_model[k]) for k in convs)     # lr 0: the pretrained backbone
    assert not torch.equal(tuned["fc.weight"], pre_model["fc.weight"])           # a new head

    before = _done_mtimes(runs)
    second = run_experiment(spec, runs=runs, seeds=2, progress=False)
    assert second.ran == [] and {r.status for r in second.records} == {"skipped"}
    assert _done_mtimes(runs) == before

    # a new fine-tuning setting reuses the pretraining; a new pretraining changes every training below it
    changed_train = spec_from_dict(_pretrain_spec_dict(lr=0.001), tmp_path / "s.yaml")
    third = run_experiment(changed_train, runs=runs, seeds=1, progress=False)
    status = {r.step.describe(): r.status for r in third.records}
    assert status["pretrain on digits-single"] == "skipped" and status["train baseline seed 0"] == "ran"
    assert third.plan.named["pretrain"].key == pre.key
    assert _done_mtimes(runs)[str(pre.path(runs).relative_to(runs))] == before[str(pre.path(runs).relative_to(runs))]
    raw = _pretrain_spec_dict(lr=0.0)
    raw["pretrain"]["overrides"]["max_iters"] = 3
    changed_pre = plan_experiment(spec_from_dict(raw, tmp_path / "s.yaml"), seeds=2)
    assert changed_pre.named["pretrain"].key != pre.key
    assert changed_pre.named["shards/pretrain-train"].key == plan.named["shards/pretrain-train"].key
    for seed in (0, 1):
        assert changed_pre.trains[("baseline", seed)].key != plan.trains[("baseline", seed)].key
    assert changed_pre.named["shards/train"].key == plan.named["shards/train"].key


def test_pretrain_section_changes_the_fingerprint_and_is_validated(tmp_path):
    with_pre = spec_from_dict(_pretrain_spec_dict(), tmp_path / "s.yaml")
    raw = _pretrain_spec_dict()
    del raw["pretrain"]
    without = spec_from_dict(raw, tmp_path / "s.yaml")
    assert with_pre.fingerprint() != without.fingerprint()
    assert "pretrain" not in plan_experiment(without).named

    raw = _pretrain_spec_dict()
    raw["pretrain"]["source"] = "cifar10"
    with pytest.raises(ConfigError, match="unknown pretrain.source 'cifar10'"):
        spec_from_dict(raw, tmp_path / "s.yaml")
    raw = _pretrain_spec_dict()
    raw["pretrain"]["epochs"] = 3
    with pytest.raises(ConfigError, match="unknown key 'epochs' in pretrain"):
        spec_from_dict(raw, tmp_path / "s.yaml")
    raw = _pretrain_spec_dict(pretrained="weights.pt")
    with pytest.raises(ConfigError, match="sets pretrained=.*pretrain section"):
        plan_experiment(spec_from_dict(raw, tmp_path / "s.yaml"))
    raw = _pretrain_spec_dict(model="preact_resnet101")
    with pytest.raises(ConfigError, match="model preact_resnet101 differs"):
        plan_experiment(spec_from_dict(raw, tmp_path / "s.yaml"))
