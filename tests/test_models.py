"""Tests for replication.models: the layout, parameter counts, gradients, pretrained loading.

Layout: docs/classifier.md#decisions.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from replication.errors import ConfigError
from replication.models import build_model, classifier_prefix, list_models, load_pretrained
from replication.models.preact_resnet import BOTH_PREACT, BRANCH_PREACT, NO_PREACT


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("c, expected", [(80, 42_656_400), (81, 42_658_449), (14, 42_521_166), (1000, 44_541_480)])
def test_preact_resnet101_parameter_count(c, expected):
    # The counts of docs/classifier.md#decisions (fb.resnet.torch preresnet-101 with a C-way FC, no conv biases).
    assert n_params(build_model("preact_resnet101", c)) == expected


def test_no_conv_biases_and_unit_kinds():
    model = build_model("preact_resnet101", 80)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.bias is None for m in convs)
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3, model.layer4)] == [3, 4, 23, 3]
    assert model.layer1[0].kind == NO_PREACT
    for stage in (model.layer2, model.layer3, model.layer4):
        assert stage[0].kind == BOTH_PREACT
        assert isinstance(stage[0].shortcut, nn.Conv2d) and stage[0].shortcut.stride == (2, 2)
        assert all(u.kind == BRANCH_PREACT and isinstance(u.shortcut, nn.Identity) for u in stage[1:])
    # Stride on the 3x3 of the bottleneck, not on the first 1x1.
    assert model.layer2[0].conv1.stride == (1, 1) and model.layer2[0].conv2.stride == (2, 2)
    # The stem ends in BN-ReLU-maxpool; the very first unit's shortcut projects 64 -> 256 at stride 1.
    assert isinstance(model.stem[-1], nn.MaxPool2d)
    assert isinstance(model.layer1[0].shortcut, nn.Conv2d) and model.layer1[0].shortcut.stride == (1, 1)


@pytest.mark.parametrize("name", ["preact_resnet50", "preact_resnet18"])
def test_projection_shortcut_takes_preactivated_input(name):
    torch.manual_seed(0)
    model = build_model(name, 5).eval()
    # Make BN non-trivial so that BN->ReLU(x) differs clearly from x.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    seen: dict[str, torch.Tensor] = {}

    def keep(tag):
        def hook(module, args):
            seen[tag] = args[0].detach().clone()
        return hook

    unit1, unit2 = model.layer1[0], model.layer2[0]
    unit1.register_forward_pre_hook(keep("unit1_in"))
    unit2.register_forward_pre_hook(keep("unit2_in"))
    unit2.shortcut.register_forward_pre_hook(keep("unit2_shortcut_in"))
    unit2.conv1.register_forward_pre_hook(keep("unit2_branch_in"))
    unit1.conv1.register_forward_pre_hook(keep("unit1_branch_in"))
    if isinstance(unit1.shortcut, nn.Conv2d):
        unit1.shortcut.register_forward_pre_hook(keep("unit1_shortcut_in"))
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
        preact = torch.relu(unit2.preact_bn(seen["unit2_in"]))
    assert not torch.allclose(preact, seen["unit2_in"])
    torch.testing.assert_close(seen["unit2_shortcut_in"], preact, rtol=0, atol=0)
    torch.testing.assert_close(seen["unit2_branch_in"], preact, rtol=0, atol=0)
    # The very first unit skips the pre-activation: both paths see the stem output itself.
    torch.testing.assert_close(seen["unit1_branch_in"], seen["unit1_in"], rtol=0, atol=0)
    if "unit1_shortcut_in" in seen:
        torch.testing.assert_close(seen["unit1_shortcut_in"], seen["unit1_in"], rtol=0, atol=0)


def test_identity_units_preactivate_only_the_branch():
    torch.manual_seed(1)
    model = build_model("preact_resnet18", 3).eval()
    unit = model.layer1[1]
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        expected = unit.conv2(torch.relu(unit.bn2(unit.conv1(torch.relu(unit.preact_bn(x)))))) + x
        torch.testing.assert_close(unit(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name, size", [("preact_resnet_small", 28), ("preact_resnet18", 64), ("preact_resnet50", 64)])
def test_forward_backward_every_parameter_gets_a_gradient(name, size):
    torch.manual_seed(0)
    model = build_model(name, 7).train()
    x = torch.randn(3, 3, size, size)
    out = model(x)
    assert out.shape == (3, 7)
    out.square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_small_variant_is_narrow_and_keeps_resolution():
    model = build_model("preact_resnet_small", 10)
    assert model.stem[0].kernel_size == (3, 3) and model.stem[0].stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.fc.in_features == 128
    assert n_params(model) < 1_000_000


def test_all_registered_names_build():
    assert {"preact_resnet18", "preact_resnet34", "preact_resnet50", "preact_resnet101", "preact_resnet152",
            "preact_resnet_small"} <= set(list_models())
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'"):
        build_model("resnet9000", 3)


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.dtype.is_floating_point:
                p.copy_(torch.randn(p.shape, generator=g))
    return model


def test_pretrained_same_classes_loads_everything(tmp_path):
    src = _perturbed(build_model("preact_resnet_small", 10), 0)
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, tmp_path / "w.pt")  # DDP prefix
    dst = build_model("preact_resnet_small", 10)
    info = load_pretrained(dst, tmp_path / "w.pt")
    assert info["skipped"] == []
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_pretrained_new_fc_is_excluded_when_classes_differ(tmp_path):
    src = _perturbed(build_model("preact_resnet_small", 10), 0)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "w.pt")
    torch.manual_seed(5)
    dst = build_model("preact_resnet_small", 4)
    fc_before = {k: v.clone() for k, v in dst.fc.state_dict().items()}
    info = load_pretrained(dst, tmp_path / "w.pt")
    assert classifier_prefix(dst) == "fc."
    assert sorted(info["skipped"]) == ["fc.bias", "fc.weight"]
    for k, v in src.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(dst.state_dict()[k], v), k
    for k, v in fc_before.items():
        assert torch.equal(dst.fc.state_dict()[k], v)


def test_pretrained_strict_check_lists_missing_and_unexpected(tmp_path):
    state = build_model("preact_resnet_small", 10).state_dict()
    del state["layer2.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ConfigError) as e:
        load_pretrained(build_model("preact_resnet_small", 10), tmp_path / "bad.pt")
    msg = str(e.value)
    assert "bad.pt" in msg and "\n" not in msg
    assert "missing keys (1): layer2.0.conv1.weight" in msg
    assert "unexpected keys (1): extra.weight" in msg
    with pytest.raises(ConfigError, match="not found"):
        load_pretrained(build_model("preact_resnet_small", 10), tmp_path / "nope.pt")
    # A differently shaped backbone is a shape mismatch, not silently skipped.
    torch.save(build_model("preact_resnet18", 10).state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ConfigError, match="shape mismatches"):
        load_pretrained(build_model("preact_resnet_small", 10), tmp_path / "r18.pt")


def test_timm_backbone_random_weights():
    timm = pytest.importorskip("timm")  # optional extra; not installed in CI
    model = build_model("timm/resnet18", 6)
    assert isinstance(model, timm.models.ResNet)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 6)
    assert classifier_prefix(model) == "fc."


def test_timm_backbone_without_timm_is_a_config_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm" or name.startswith("timm."):
            raise ImportError("no timm")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(ConfigError, match="timm is not installed"):
        build_model("timm/resnet18", 3)
