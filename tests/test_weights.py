"""Pretrained ImageNet weights: timm's ResNetV2 → our layout, offline loading, input normalisation.

docs/decisions.md, "Pretrained weights"; docs/classifier.md#pretrained-weights.
"""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from click.testing import CliRunner

from replication.cli import cli
from replication.errors import ConfigError
from replication.experiments.stepfns import train_hash_config
from replication.models import build_model
from replication.models.pretrained import (
    convert_weights,
    expected_input_norm,
    load_pretrained,
    norm_from_stats,
    read_weights,
    sidecar_path,
)
from replication.models.timm_convert import STEM_BN, convert_resnetv2_state_dict
from replication.training.config import load_train_config, resolve_input_norm
from replication.training.loop import train

timm = pytest.importorskip("timm")  # the [dev] extra installs it
safetensors_torch = pytest.importorskip("safetensors.torch")

ARCH = "resnetv2_101"


def _randomise_bn(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Positive BN scales and random running statistics (eval mode then exercises every BN term)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=gen) * 0.9 + 0.1
            m.bias.data = torch.randn(c, generator=gen) * 0.1
            m.running_mean = torch.randn(c, generator=gen) * 0.1
            m.running_var = torch.rand(c, generator=gen) * 0.5 + 0.5


@pytest.fixture(scope="module")
def timm_r101():
    """timm's resnetv2_101 with random weights (pretrained=False), all BN scales positive, in eval mode."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = timm.create_model(ARCH, pretrained=False, num_classes=1000)
    _randomise_bn(model, gen)
    return model.eval()


@pytest.fixture(scope="module")
def timm_file(timm_r101, tmp_path_factory):
    """The random timm checkpoint saved as a local .safetensors file."""
    path = tmp_path_factory.mktemp("timm") / "model.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in timm_r101.state_dict().items()}, str(path))
    return path


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# -- the converter ---------------------------------------------------------------------------------
def test_converted_weights_give_timms_logits(timm_r101):
    ours_state, report = convert_resnetv2_state_dict(timm_r101.state_dict())
    assert report["model"] == "preact_resnet101" and report["stem_negative_scale"] == 0
    assert report["num_classes"] == 1000 and report["depths"] == [3, 4, 23, 3]
    ours = build_model("preact_resnet101", 1000)
    ours.load_state_dict(ours_state, strict=True)  # every key of our layout, nothing else
    ours.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = timm_r101(x), ours(x)
    rel = ((got - want).abs().max() / want.abs().max()).item()
    assert rel < 1e-4, rel


def test_negative_stem_scales_are_counted_exactly(timm_r101, tmp_path):
    state = {k: v.clone() for k, v in timm_r101.state_dict().items()}
    neg = [0, 5, 17, 33, 63]
    state[f"{STEM_BN}.weight"][neg] *= -1
    state["stages.1.blocks.2.norm1.weight"][:9] *= -1  # negative scales elsewhere are exact: not counted
    _, report = convert_resnetv2_state_dict(state)
    assert report["stem_negative_scale"] == len(neg) and report["stem_channels"] == 64
    src = tmp_path / "neg.pth"
    torch.save(state, src)
    info = convert_weights(str(src), tmp_path / "neg.pt", input_norm="imagenet")
    side = json.loads(sidecar_path(tmp_path / "neg.pt").read_text())
    assert side["stem_negative_scale"] == info["stem_negative_scale"] == len(neg)


def test_converter_refuses_other_layouts(timm_r101):
    state = dict(timm_r101.state_dict())
    with pytest.raises(ConfigError, match="not a timm ResNetV2"):
        convert_resnetv2_state_dict(build_model("preact_resnet18", 3).state_dict())
    gn = {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var"))}
    with pytest.raises(ConfigError, match="GroupNorm"):
        convert_resnetv2_state_dict(gn)
    with pytest.raises(ConfigError, match="no place in our layout: extra.weight"):
        convert_resnetv2_state_dict({**state, "extra.weight": torch.zeros(1)})


# -- offline loading -------------------------------------------------------------------------------
@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    for var in ("HF_HOME", "HF_HUB_CACHE", "TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    return cache


def test_missing_cache_is_a_one_line_error_naming_the_cache(empty_caches):
    with pytest.raises(ConfigError) as e:
        read_weights("timm:resnetv2_101.a1h_in1k")
    msg = _one_line(e)
    assert "not in the local cache" in msg and str(empty_caches / "hub" / "models--timm--resnetv2_101.a1h_in1k") in msg
    with pytest.raises(ConfigError, match="not in the local cache"):
        load_pretrained(build_model("preact_resnet18", 3), "timm:resnetv2_101.a1h_in1k")
    res = CliRunner().invoke(cli, ["weights", "convert", "--from", "timm:resnetv2_101.a1h_in1k",
                                   "--out", str(empty_caches / "w.pt")])
    assert res.exit_code != 0 and "not in the local cache" in res.output
    with pytest.raises(ConfigError, match="knows no pretrained weights"):
        read_weights("timm:no_such_model_xyz")


@pytest.mark.parametrize("name", ["bad.safetensors", "bad.pth"])
def test_malformed_file_is_a_one_line_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00not a checkpoint\n" * 10)
    with pytest.raises(ConfigError) as e:
        load_pretrained(build_model("preact_resnet18", 3), f"timm:{path}")
    assert "cannot read pretrained weights" in _one_line(e) and str(path) in str(e.value)
    with pytest.raises(ConfigError, match="cannot read pretrained weights"):
        load_pretrained(build_model("preact_resnet18", 3), path)


def test_timm_name_loads_from_a_populated_hf_cache(timm_file, empty_caches):
    # The Hugging Face cache layout: models--org--name/{refs/main, snapshots/<commit>/model.safetensors}.
    repo = empty_caches / "hub" / "models--timm--resnetv2_101.a1h_in1k"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snap / "model.safetensors").write_bytes(timm_file.read_bytes())
    state, path = read_weights("timm:resnetv2_101.a1h_in1k")
    assert path == str(snap / "model.safetensors") and "stem.conv.weight" in state
    # a1h was trained with mean 0.5 / std 0.5 (timm's pretrained config), not ImageNet's statistics.
    cfg = timm.models.get_pretrained_cfg("resnetv2_101.a1h_in1k")
    assert expected_input_norm("timm:resnetv2_101.a1h_in1k") == norm_from_stats(cfg.mean, cfg.std, "x") == "inception"
    model = build_model("preact_resnet101", 80)
    assert load_pretrained(model, "timm:resnetv2_101.a1h_in1k")["skipped"] == ["fc.weight", "fc.bias"]


def test_timm_file_loads_into_a_timm_model_as_it_is(timm_r101, timm_file):
    model = build_model(f"timm/{ARCH}", 1000)
    assert load_pretrained(model, f"timm:{timm_file}")["skipped"] == []
    for k, v in timm_r101.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


# -- spl weights convert → spl train --------------------------------------------------------------
def test_convert_cli_output_fits_the_paper_coco_model(timm_file, tmp_path):
    timm_file_orig = timm_file
    out = tmp_path / "weights" / "preact_resnet101_in1k.pt"
    (tmp_path / "snap").mkdir()
    timm_file = tmp_path / "snap" / "model.safetensors"
    timm_file.write_bytes(timm_file_orig.read_bytes())
    runner = CliRunner()
    res = runner.invoke(cli, ["weights", "convert", "--from", str(timm_file), "--out", str(out)])
    assert res.exit_code != 0 and "set data.input_norm" in res.output  # nothing says which normalisation
    (timm_file.parent / "config.json").write_text(json.dumps({"pretrained_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    res = runner.invoke(cli, ["weights", "convert", "--from", f"timm:{timm_file}", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "preact_resnet101" in res.output and "0 of 64 stem channels" in res.output
    side = json.loads(sidecar_path(out).read_text())
    assert side["input_norm"] == "inception" and side["stem_negative_scale"] == 0
    assert side["source"] == f"timm:{timm_file}"

    cfg = load_train_config("paper-coco", [f"pretrained={out}"])
    assert cfg.data.input_norm is None and resolve_input_norm(cfg).data.input_norm == "inception"
    assert resolve_input_norm(load_train_config("paper-coco", [f"pretrained={out}", "data.input_norm=caffe"])) \
        .data.input_norm == "caffe"  # an explicit value wins over the sidecar
    model = build_model(cfg.model, 80)
    assert load_pretrained(model, cfg.pretrained)["skipped"] == ["fc.weight", "fc.bias"]  # strict key check


# -- the config key data.input_norm ----------------------------------------------------------------
def test_input_norm_defaults_keep_hashes_and_validate():
    base = load_train_config("paper-coco")
    assert base.data.input_norm is None and resolve_input_norm(base).data.input_norm == "caffe"
    assert "input_norm" not in base.to_dict()["data"]  # unset: the run-directory hash is as before the key
    assert "input_norm" not in yaml.safe_dump(train_hash_config(base, 0))
    assert train_hash_config(load_train_config("paper-coco", ["data.input_norm=imagenet"]), 0)["data"][
        "input_norm"] == "imagenet"
    with pytest.raises(ConfigError, match="data.input_norm"):
        load_train_config("paper-coco", ["data.input_norm=rgb"])


def test_training_records_the_resolved_input_norm(tiny_digits, tmp_path):
    # Weights in our layout with a sidecar saying "imagenet": the run takes it and config.yaml records it.
    weights = tmp_path / "small.pt"
    torch.save(build_model("preact_resnet_small", 10).state_dict(), weights)
    sidecar_path(weights).write_text(json.dumps({"input_norm": "imagenet"}))
    train_path, test_path = tiny_digits
    cfg = load_train_config("embedded", [
        f"data.train={train_path}", f"data.test={test_path}", f"pretrained={weights}", "batch_size=32", "epochs=1",
        "max_iters=1", "data.num_workers=0", "kernel_backend=torch", "progress=false", "eval_every_epochs=0",
        "device=cpu"])
    train(cfg, tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["input_norm"] == "imagenet"
