"""Batch-norm statistics and generated images (issue #13, 3b): ``bn_generated: shared | real-stats | separate``.

The layer against hand-computed torch references, the conversion and the plain ``model.pt``, and tiny
trainings: ``shared`` unchanged, the diagnostic, prediction from the saved model, exact resume, refusals.
"""
from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from replication.data.labelfile import write_label_file
from replication.data.shards import SOURCE_GENERATED, ShardSet, ShardWriter
from replication.errors import ConfigError
from replication.experiments.stepfns import train_hash_config
from replication.experiments.steps import config_hash
from replication.inference.predict import predict
from replication.models import build_model
from replication.models.domain_bn import (
    DomainBatchNorm2d,
    RowSplit,
    convert_domain_bn,
    domain_layers,
    domain_rows,
    generated_shift,
    plain_state_dict,
)
from replication.training.config import incompatible_changes, load_train_config
from replication.training.loop import train

SMALL = "preact_resnet_small"
MASK = torch.tensor([True, False, True, True, False, False, True, False, True])
EPS = 1e-5

# Hashes of the presets before the key existed (the snapshot of tests/test_pretrain.py).
PRESET_HASHES = {"embedded": "a2cd9f0c967e", "paper-coco": "accb88017a2c", "paper-nus": "58958583896d",
                 "paper-wider": "23276dbb27ba"}


def _plain_bn(c: int = 4, seed: int = 0) -> nn.BatchNorm2d:
    """A float64 BatchNorm2d with non-trivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c, eps=EPS).double()
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
        bn.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
    return bn


def _batch(n: int = 9, c: int = 4, seed: int = 1) -> torch.Tensor:
    """Real and generated rows drawn from different distributions (the generated ones shifted and wider)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, 5, 6, generator=g, dtype=torch.float64)
    x[~MASK[:n]] = 3.0 * x[~MASK[:n]] + 2.0
    return x


def _reference(x: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Normalise all of ``x`` with the biased batch mean/variance of ``x[rows]`` (by hand), then scale and shift."""
    xr = x[rows]
    mean = xr.mean(dim=(0, 2, 3))
    var = ((xr - mean[None, :, None, None]) ** 2).mean(dim=(0, 2, 3))
    return (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + EPS) * weight[None, :, None, None] \
        + bias[None, :, None, None]


# ----------------------------------------------------------------------------- real-stats


def test_real_stats_normalises_every_row_with_the_real_rows_statistics():
    bn = _plain_bn()
    layer = DomainBatchNorm2d.from_batchnorm(bn, "real-stats").train()
    plain = copy.deepcopy(bn).train()
    x = _batch()
    with domain_rows(layer, RowSplit.from_mask(MASK)):
        y = layer(x)
    expected = _reference(x, MASK, bn.weight.detach(), bn.bias.detach())
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    # the real rows (and the running averages) are exactly what a plain BN fed the real rows alone gives
    y_plain = plain(x[MASK])
    assert torch.equal(y[MASK], y_plain)
    assert torch.equal(layer.running_mean, plain.running_mean)
    assert torch.equal(layer.running_var, plain.running_var)
    assert int(layer.num_batches_tracked) == int(plain.num_batches_tracked) == 1
    # a shared BN would have normalised the generated rows differently (the test can tell the two apart)
    shared = copy.deepcopy(bn).train()(x)
    assert not torch.allclose(shared[~MASK], y[~MASK], atol=1e-3)
    # the generated rows' running statistics are tracked for the diagnostic, with the same momentum
    xg = x[~MASK]
    torch.testing.assert_close(layer.generated_mean, 0.9 * bn.running_mean + 0.1 * xg.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(layer.generated_var,
                               0.9 * bn.running_var + 0.1 * xg.transpose(0, 1).reshape(4, -1).var(dim=1))


def test_real_stats_gradients_match_the_hand_computed_reference():
    bn = _plain_bn()
    layer = DomainBatchNorm2d.from_batchnorm(bn, "real-stats").train()
    x = _batch().requires_grad_(True)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with domain_rows(layer, RowSplit.from_mask(MASK)):
        (layer(x) * w).sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    weight = bn.weight.detach().clone().requires_grad_(True)
    bias = bn.bias.detach().clone().requires_grad_(True)
    (_reference(x_ref, MASK, weight, bias) * w).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer.weight.grad, weight.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer.bias.grad, bias.grad, rtol=1e-10, atol=1e-10)
    # a loss on the generated rows alone reaches the real rows (through the statistics), as it must
    layer.zero_grad()
    x2 = _batch().requires_grad_(True)
    with domain_rows(layer, RowSplit.from_mask(MASK)):
        layer(x2)[~MASK].pow(2).sum().backward()
    assert x2.grad[MASK].abs().sum() > 0 and x2.grad[~MASK].abs().sum() > 0


def test_real_stats_without_real_rows_uses_the_running_statistics_and_updates_nothing():
    bn = _plain_bn()
    layer = DomainBatchNorm2d.from_batchnorm(bn, "real-stats").train()
    x = _batch()[~MASK]
    with domain_rows(layer, RowSplit.from_mask(torch.zeros(len(x), dtype=torch.bool))):
        y = layer(x)
    assert torch.equal(y, copy.deepcopy(bn).eval()(x))
    assert torch.equal(layer.running_mean, bn.running_mean) and torch.equal(layer.running_var, bn.running_var)
    assert int(layer.num_batches_tracked) == 0


# ----------------------------------------------------------------------------- separate


def test_separate_gives_real_and_generated_rows_their_own_batch_norm():
    bn = _plain_bn()
    layer = DomainBatchNorm2d.from_batchnorm(bn, "separate").train()
    with torch.no_grad():   # make the generated copy differ from the real one
        layer.bn_generated.weight.mul_(2.0)
        layer.bn_generated.bias.add_(1.0)
        layer.bn_generated.running_mean.add_(0.5)
    real_ref, gen_ref = copy.deepcopy(bn).train(), copy.deepcopy(layer.bn_generated).train()
    x = _batch().requires_grad_(True)
    with domain_rows(layer, RowSplit.from_mask(MASK)):
        y = layer(x)
    assert torch.equal(y[MASK], real_ref(x[MASK]))
    assert torch.equal(y[~MASK], gen_ref(x[~MASK]))
    for a, b in ((layer, real_ref), (layer.bn_generated, gen_ref)):
        assert torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)
        assert int(a.num_batches_tracked) == 1
    # each copy's affine parameters get gradients from its own rows only
    y[MASK].pow(2).sum().backward()
    assert layer.weight.grad.abs().min() > 0 and layer.bias.grad.abs().min() > 0
    assert not layer.bn_generated.weight.grad.any() and not layer.bn_generated.bias.grad.any()
    assert x.grad[~MASK].abs().sum() == 0 and x.grad[MASK].abs().sum() > 0


@pytest.mark.parametrize("mode", ["real-stats", "separate"])
def test_eval_and_unsplit_batches_use_the_real_copy_only(mode):
    bn = _plain_bn()
    layer = DomainBatchNorm2d.from_batchnorm(bn, mode)
    if mode == "separate":
        with torch.no_grad():
            layer.bn_generated.running_mean.add_(3.0)
            layer.bn_generated.weight.mul_(2.0)
    x = _batch()
    layer.eval()
    with domain_rows(layer, RowSplit.from_mask(MASK)):
        y = layer(x)
    assert torch.equal(y, copy.deepcopy(bn).eval()(x))
    # training without a split, or with real rows only: a plain BN on the whole batch
    for split in (None, RowSplit.from_mask(torch.ones(len(x), dtype=torch.bool))):
        layer.train()
        plain = copy.deepcopy(bn).train()
        with domain_rows(layer, split):
            assert torch.equal(layer(x), plain(x))
        assert torch.equal(layer.running_mean, plain.running_mean)
        layer.running_mean.copy_(bn.running_mean)
        layer.running_var.copy_(bn.running_var)


def test_the_split_is_cleared_after_the_block_and_must_cover_the_batch():
    layer = DomainBatchNorm2d.from_batchnorm(_plain_bn(), "separate").train()
    with domain_rows(layer, RowSplit.from_mask(MASK)):
        assert layer.split is not None
        with pytest.raises(ValueError, match="covers 9 rows, the batch has 4"):
            layer(_batch()[:4])
    assert layer.split is None


# ----------------------------------------------------------------------------- conversion and model.pt


@pytest.mark.parametrize("mode", ["real-stats", "separate"])
def test_conversion_keeps_the_plain_keys_and_values(mode):
    torch.manual_seed(0)
    model = build_model(SMALL, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_bn = sum(type(m) is nn.BatchNorm2d for m in model.modules())
    convert_domain_bn(model, mode)
    assert len(list(domain_layers(model))) == n_bn > 5
    assert all(type(m) is not nn.BatchNorm2d or name.endswith(".bn_generated") for name, m in model.named_modules())
    extra = set(model.state_dict()) - set(before)
    assert extra and set(plain_state_dict(model)) == set(before)
    for k, v in plain_state_dict(model).items():
        assert torch.equal(v, before[k]), k
    plain = build_model(SMALL, 10)
    plain.load_state_dict(plain_state_dict(model), strict=True)
    assert generated_shift(model) == {name: 0.0 for name, _ in domain_layers(model)}   # copies start equal
    assert convert_domain_bn(build_model(SMALL, 10), "shared").state_dict().keys() == before.keys()


def test_conversion_refuses_other_batch_norms_and_models_without_any():
    mixed = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.BatchNorm1d(4 * 6 * 6))
    with pytest.raises(ValueError, match=r"plain BatchNorm2d layers only; this model also has 3 \(BatchNorm1d\)"):
        convert_domain_bn(mixed, "separate")
    with pytest.raises(ValueError, match="has none"):
        convert_domain_bn(nn.Sequential(nn.Conv2d(3, 4, 3)), "real-stats")


@pytest.mark.parametrize("mode", ["real-stats", "separate"])
def test_channels_last_and_bf16_autocast_on_cpu(mode):
    torch.manual_seed(0)
    model = convert_domain_bn(build_model(SMALL, 10), mode).to(memory_format=torch.channels_last).train()
    x = torch.randn(9, 3, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16), domain_rows(model, RowSplit.from_mask(MASK)):
        logits = model(x)
    logits.float().sum().backward()
    assert logits.shape == (9, 10) and torch.isfinite(logits.float()).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(v > 0 for v in generated_shift(model).values())


# ----------------------------------------------------------------------------- config


def test_config_key_hashes_and_refusals():
    for name, key in PRESET_HASHES.items():
        cfg = load_train_config(name)
        assert cfg.bn_generated == "shared" and "bn_generated" not in cfg.to_dict()
        assert config_hash(train_hash_config(cfg, 0)) == key, name
        assert config_hash(train_hash_config(load_train_config(name, ["bn_generated=shared"]), 0)) == key
        for mode in ("real-stats", "separate"):
            changed = load_train_config(name, [f"bn_generated={mode}"])
            assert changed.to_dict()["bn_generated"] == mode
            assert config_hash(train_hash_config(changed, 0)) != key
    cfg = load_train_config("embedded")
    assert incompatible_changes(cfg, dataclasses.replace(cfg, bn_generated="separate")) == ["bn_generated"]
    with pytest.raises(ConfigError, match="config key 'bn_generated': 'both' is not one of shared, real-stats"):
        load_train_config("embedded", ["bn_generated=both"])
    for other in ("freeze_bn=true", "sync_bn=true", "compile=true"):
        with pytest.raises(ConfigError, match=f"'bn_generated' \\(separate\\) and '{other.split('=')[0]}' cannot"):
            load_train_config("embedded", ["bn_generated=separate", other])
    load_train_config("embedded", ["bn_generated=shared", "freeze_bn=true", "sync_bn=true"])   # shared: allowed


# ----------------------------------------------------------------------------- tiny trainings

TINY = ["batch_size=32", "epochs=2", "milestones=[1]", "data.num_workers=0", "kernel_backend=torch", "progress=false",
        "eval_every_epochs=1", "log_every=2", "device=cpu", "num_threads=1"]


@pytest.fixture(scope="module")
def generated(tiny_digits, tmp_path_factory):
    """64 'generated' images (test canvases re-stored as unlabeled, source=1) with smooth labels."""
    root = tmp_path_factory.mktemp("gen-bn")
    test = ShardSet(tiny_digits[1])
    with ShardWriter(root / "gen", dataset="digits-mosaic", split="generated", class_names=test.class_names,
                     encoding="png", label_kind="none") as w:
        for i in range(64):
            w.add(255 - test[i].image, label=None, key=f"gen-{i:05d}", source=SOURCE_GENERATED)
    write_label_file(root / "smooth.h5", np.full((64, 10), 0.1, np.float32), ShardSet(root / "gen"), rule="smooth")
    return root / "gen", root / "smooth.h5"


def _cfg(tiny_digits, generated, *extra: str):
    (train_set, test_set), (gen, labels) = tiny_digits, generated
    return load_train_config("embedded", [f"data.train={train_set}", f"data.test={test_set}", f"data.generated={gen}",
                                          f"data.label_file={labels}", *TINY, *extra])


def _weights(run) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def runs(tiny_digits, generated, tmp_path_factory):
    """Two-epoch runs on real + generated images: unset, explicit ``shared``, ``real-stats``, ``separate``."""
    root = tmp_path_factory.mktemp("bn-runs")
    settings = {"unset": [], "shared": ["bn_generated=shared"], "real-stats": ["bn_generated=real-stats"],
                "separate": ["bn_generated=separate"]}
    for name, extra in settings.items():
        train(_cfg(tiny_digits, generated, *extra), root / name)
    return root


def test_shared_is_the_training_of_before(runs):
    a, b = _weights(runs / "unset"), _weights(runs / "shared")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("unset", "shared"):
        assert "bn_generated" not in yaml.safe_load((runs / name / "config.yaml").read_text())
        assert "bn_shift" not in json.loads((runs / name / "history.json").read_text())
    # the switch does change the training on this data (so the equality above is not vacuous)
    for mode in ("real-stats", "separate"):
        c = _weights(runs / mode)
        assert c.keys() == a.keys() and not all(torch.equal(a[k], c[k]) for k in a), mode


@pytest.mark.parametrize("mode", ["real-stats", "separate"])
def test_model_pt_is_the_plain_model_and_predicts_what_the_run_evaluated(runs, tiny_digits, mode, tmp_path):
    run = runs / mode
    assert yaml.safe_load((run / "config.yaml").read_text())["bn_generated"] == mode
    state = _weights(run)
    plain = build_model(SMALL, 10)
    plain.load_state_dict(state, strict=True)
    # the checkpoint keeps the generated copies (trained away from the real ones), model.pt does not
    ck = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    extra = set(ck) - set(state)
    assert extra and all(("bn_generated." in k) == (mode == "separate") for k in extra)
    moved = [k for k in extra if k.endswith(("bn_generated.running_mean", "generated_mean"))]
    assert moved and all(not torch.equal(ck[k], ck[k.replace("bn_generated.", "").replace("generated_mean",
                                                                                         "running_mean")])
                         for k in moved)
    # spl predict with model.pt gives the logits the trainer's evaluation of the wrapped model gave
    out = predict(run, tiny_digits[1], tmp_path / "preds.npz", device="cpu")
    with np.load(out) as p, np.load(run / "preds.npz") as r:
        np.testing.assert_array_equal(p["logits"], r["logits"])
    # the diagnostic: one entry per epoch, every converted layer, positive distances, and a curve
    hist = json.loads((run / "history.json").read_text())
    assert len(hist["bn_shift"]) == 2
    names = {n for n, m in plain.named_modules() if isinstance(m, nn.BatchNorm2d)}
    for epoch in hist["bn_shift"]:
        assert set(epoch) == names and all(np.isfinite(v) and v > 0 for v in epoch.values())


def test_resume_keeps_the_generated_copies_and_refuses_a_changed_switch(runs, tiny_digits, generated, tmp_path):
    train(_cfg(tiny_digits, generated, "bn_generated=separate", "max_iters=4"), tmp_path)
    with pytest.raises(ConfigError, match="changed config keys bn_generated"):
        train(_cfg(tiny_digits, generated, "bn_generated=real-stats"), tmp_path, resume=True)
    with pytest.raises(ConfigError, match="changed config keys bn_generated"):
        train(_cfg(tiny_digits, generated), tmp_path, resume=True)
    train(_cfg(tiny_digits, generated, "bn_generated=separate"), tmp_path, resume=True)
    ref, got = torch.load(runs / "separate" / "checkpoint.pt", weights_only=True)["model"], \
        torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    assert json.loads((tmp_path / "history.json").read_text())["bn_shift"] == \
        json.loads((runs / "separate" / "history.json").read_text())["bn_shift"]
