"""``spl gan train|sample``, ``spl bench gan`` and the shard wiring of replication.gan.

See paper §2.2, §3.2; docs/gan.md.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from replication.cli import cli
from replication.data.shards import SOURCE_GENERATED, ShardSet, ShardWriter
from replication.errors import ConfigError
from replication.gan import run as gan_run
from replication.gan.config import load_gan_config
from replication.gan.images import load_gan_images, minmax_stretch, preprocess_gan_image
from replication.gan.run import GanTrainingError, sample_gan, train_gan

TINY = ["--size", "16", "--width", "4", "--batch", "16", "--threads", "1", "--set", "sample_every=0",
        "--set", "log_every=5", "--set", "progress=false"]


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory, tiny_digits):
    """A tiny DCGAN trained for one epoch from the CLI on the tiny digits-mosaic train split."""
    train, _ = tiny_digits
    run = tmp_path_factory.mktemp("gan") / "dcgan"
    res = _invoke("gan", "train", "--arch", "dcgan", "--data", str(train), "--out", str(run), "--epochs", "1", *TINY)
    assert res.exit_code == 0, res.output
    return run


def test_train_writes_a_complete_run_dir(dcgan_run, tiny_digits):
    cfg = yaml.safe_load((dcgan_run / "config.yaml").read_text())
    assert cfg["arch"] == "dcgan" and cfg["size"] == 16 and cfg["width"] == 4
    assert cfg["flip"] is False  # digits-mosaic: a mirrored digit is not a digit
    source = json.loads((dcgan_run / "source.json").read_text())
    assert source["class_names"] == ShardSet(tiny_digits[0]).class_names
    assert (dcgan_run / "done").exists()
    ckpt = torch.load(dcgan_run / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 240 // 16 and ckpt["finished"]
    assert cv2.imread(str(dcgan_run / "samples" / "final.png")).shape == (8 * 16, 8 * 16, 3)


def test_train_writes_a_grid_of_the_real_images_beside_the_samples(dcgan_run, tiny_digits):
    real = cv2.imread(str(dcgan_run / "samples" / "real.png"))  # BGR, 8×8 grid of 16×16 cells
    assert real.shape == (8 * 16, 8 * 16, 3)
    shards = ShardSet(tiny_digits[0])
    for i in (0, 9, 63):  # cell i = record i resized to 16×16 with INTER_AREA, as the GAN sees it
        want = cv2.resize(shards[i].image, (16, 16), interpolation=cv2.INTER_AREA)
        r, c = divmod(i, 8)
        assert np.array_equal(real[16 * r:16 * (r + 1), 16 * c:16 * (c + 1)], want)


def test_train_is_not_repeated_when_done_and_refuses_other_settings(dcgan_run, tiny_digits):
    mtime = (dcgan_run / "checkpoint.pt").stat().st_mtime_ns
    res = _invoke("gan", "train", "--arch", "dcgan", "--data", str(tiny_digits[0]), "--out", str(dcgan_run),
                  "--epochs", "1", *TINY)
    assert res.exit_code == 0 and (dcgan_run / "checkpoint.pt").stat().st_mtime_ns == mtime
    res = CliRunner().invoke(cli, ["gan", "train", "--arch", "dcgan", "--data", str(tiny_digits[0]),
                                   "--out", str(dcgan_run), "--epochs", "1", *TINY, "--set", "width=8"])
    assert res.exit_code == 1
    assert "other settings (width)" in res.output and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(cli, ["gan", "train", "--arch", "dcgan", "--data", str(tiny_digits[0]),
                                   "--out", str(dcgan_run), "--epochs", "2", *TINY])
    assert res.exit_code == 1 and "pass --resume" in res.output
    assert (dcgan_run / "checkpoint.pt").stat().st_mtime_ns == mtime


def test_sample_twice_with_the_same_seed_gives_identical_shards(dcgan_run, tiny_digits, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, "3"), (b, "3"), (c, "4")):
        res = _invoke("gan", "sample", "--run", str(dcgan_run), "-n", "40", "--out", str(out), "--seed", seed,
                      "--batch", "16")
        assert res.exit_code == 0, res.output
    sa, sb, sc = ShardSet(a), ShardSet(b), ShardSet(c)
    assert sa.content_hash == sb.content_hash != sc.content_hash
    assert len(sa) == 40 and sa.label_kind == "none" and sa.manifest["encoding"] == "png"
    assert sa.class_names == ShardSet(tiny_digits[0]).class_names
    assert np.isnan(sa.labels()).all() and (sa.sources() == SOURCE_GENERATED).all()
    assert sa[0].image.shape == (16, 16, 3)
    assert cv2.imread(str(tmp_path / "a-grid.png")).shape == (6 * 16, 7 * 16, 3)  # 40 images: 6×7 grid
    assert sample_gan(dcgan_run, 40, a, seed=3, batch=16) == a  # identical request: kept as is


def test_sample_matches_the_generator_in_eval_mode(dcgan_run, tmp_path):
    from gan_tf_port.sample import load_generator, sample_images

    out = sample_gan(dcgan_run, 5, tmp_path / "s", seed=9, batch=4)
    want = sample_images(load_generator(dcgan_run / "checkpoint.pt"), 5, seed=9, batch=4)
    got = np.stack([ShardSet(out)[i].image[:, :, ::-1] for i in range(5)])  # stored BGR
    assert np.array_equal(got, want)


def test_wgan_preset_max_iters_then_resume(tiny_digits, tmp_path):
    run = tmp_path / "wgan"
    args = ["gan", "train", "--preset", "embedded-wgan-gp", "--data", str(tiny_digits[0]), "--out", str(run),
            "--epochs", "2", *TINY]
    args[args.index("--batch") + 1] = "8"
    res = _invoke(*args, "--max-iters", "3")
    assert res.exit_code == 0 and not (run / "done").exists()
    assert torch.load(run / "checkpoint.pt", weights_only=False)["iteration"] == 3
    res = CliRunner().invoke(cli, args)  # without --resume: refused, one line
    assert res.exit_code == 1 and "--resume" in res.output
    res = _invoke(*args, "--resume")
    assert res.exit_code == 0 and (run / "done").exists()
    assert torch.load(run / "checkpoint.pt", weights_only=False)["iteration"] == 2 * (240 // 40)


def test_cli_errors_are_one_line(tiny_digits, tmp_path):
    res = CliRunner().invoke(cli, ["gan", "train", "--arch", "dcgan", "--data", str(tiny_digits[0]),
                                   "--out", str(tmp_path / "r"), "--set", "bogus=1"])
    assert res.exit_code == 1 and "unknown GAN config key 'bogus'" in res.output
    res = CliRunner().invoke(cli, ["gan", "train", "--data", str(tiny_digits[0]), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--arch" in res.output
    res = CliRunner().invoke(cli, ["gan", "train", "--arch", "dcgan", "--data", str(tmp_path / "nope"),
                                   "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "nope" in res.output
    res = CliRunner().invoke(cli, ["gan", "sample", "--run", str(tmp_path), "-n", "3", "--out", str(tmp_path / "s")])
    assert res.exit_code == 1 and "not a GAN run directory" in res.output


def test_interrupted_training_is_reported_with_a_resume_hint(tiny_digits, tmp_path, monkeypatch):
    import gan_tf_port.train as gt

    def fake_train(cfg, images, out, **kw):
        return gt.TrainResult("interrupted", 4, 15, 15, out, out / "checkpoint.pt")
    monkeypatch.setattr(gan_run, "train", fake_train)
    cfg = load_gan_config("embedded-dcgan", [f"data={tiny_digits[0]}", f"out={tmp_path / 'r'}"])
    with pytest.raises(GanTrainingError, match="interrupted at iteration 4/15.*--resume"):
        train_gan(cfg)
    assert not (tmp_path / "r" / "done").exists()


# ---------------------------------------------------------------------------------- preprocessing
def test_preprocessing_resize_antialias_rgb_and_stretch():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = preprocess_gan_image(img, 32)
    assert out.shape == (3, 32, 32) and out.dtype == np.uint8
    area = cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA)
    assert np.array_equal(out, area[:, :, ::-1].transpose(2, 0, 1))  # BGR → RGB, CHW
    # INTER_AREA at 2× = the mean of each 2×2 block (antialiased), unlike nearest/linear sampling
    block = img.reshape(32, 2, 32, 2, 3).astype(np.float64).mean((1, 3))
    assert np.abs(area.astype(np.float64) - block).max() <= 0.5 + 1e-9
    small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    up = preprocess_gan_image(small, 32)
    bilinear = cv2.resize(small, (32, 32), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(up, bilinear[:, :, ::-1].transpose(2, 0, 1))
    same = preprocess_gan_image(small, 16)
    assert np.array_equal(same, small[:, :, ::-1].transpose(2, 0, 1))
    x = torch.tensor([[[[-0.5, 0.0], [0.25, 0.5]]], [[[0.1, 0.1], [0.1, 0.3]]]])
    y = minmax_stretch(x)
    torch.testing.assert_close(y, torch.tensor([[[[-1.0, 0.0], [0.5, 1.0]]], [[[-1.0, -1.0], [-1.0, 1.0]]]]))
    assert y.amin(dim=(1, 2, 3)).tolist() == [-1.0, -1.0] and y.amax(dim=(1, 2, 3)).tolist() == [1.0, 1.0]


def test_photo_shards_default_to_flip_and_area_downscale(tmp_path):
    rng = np.random.default_rng(1)
    with ShardWriter(tmp_path / "photos", dataset="folder", split="train", class_names=["a", "b"],
                     encoding="png") as w:
        for i in range(20):
            w.add(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), label=[1, 0], key=str(i))
    imgs = load_gan_images(tmp_path / "photos", 16)
    assert imgs.shape == (20, 3, 16, 16) and imgs.dtype == torch.uint8
    first = cv2.resize(ShardSet(tmp_path / "photos")[0].image, (16, 16), interpolation=cv2.INTER_AREA)
    assert np.array_equal(imgs[0].permute(1, 2, 0).numpy(), first[:, :, ::-1])
    cfg = load_gan_config("embedded-dcgan", [f"data={tmp_path / 'photos'}", f"out={tmp_path / 'run'}", "size=16",
                                             "width=4", "batch=8", "epochs=1", "progress=false", "sample_every=0"])
    train_gan(cfg)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["flip"] is True


def test_load_gan_config_presets_yaml_and_errors(tmp_path):
    cfg = load_gan_config("paper-wgan-gp")
    assert (cfg.arch, cfg.size, cfg.width, cfg.batch, cfg.epochs) == ("wgan-gp", 64, 64, 64, 1000)
    emb = load_gan_config("embedded-dcgan", ["arch=wgan-gp", "flip=true"])
    assert (emb.arch, emb.size, emb.width, emb.flip) == ("wgan-gp", 32, 32, True)
    p = tmp_path / "g.yaml"
    p.write_text("arch: dcgan\nsize: 48\nminmax_stretch: true\n")
    assert load_gan_config(p).size == 48 and load_gan_config(p).minmax_stretch
    for bad, msg in ((["size=8"], "size"), (["arch=biggan"], "arch"), (["epochs=many"], "epochs"),
                     (["nokey"], "key=value")):
        with pytest.raises(ConfigError, match=msg):
            load_gan_config("embedded-dcgan", bad)
    with pytest.raises(ConfigError, match="no such GAN config"):
        load_gan_config(tmp_path / "missing.yaml")


# -------------------------------------------------------------------------------------- benchmark
def test_bench_gan_quick_writes_json(tmp_path):
    out = tmp_path / "gan.json"
    res = _invoke("bench", "gan", "--quick", "--threads", "1", "--modes", "eager", "--out", str(out))
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    rows = data["results"]
    assert [(r["arch"], r["size"], r["mode"]) for r in rows] == [("dcgan", 32, "eager"), ("wgan-gp", 32, "eager")]
    for r in rows:
        assert r["iter_per_s"] > 0 and r["speedup_vs_eager"] == 1.0
        reads = 5 if r["arch"] == "wgan-gp" else 1
        assert r["real_images_per_s"] == pytest.approx(r["iter_per_s"] * 8 * reads, rel=0.01)
    assert data["machine"]["torch"] == torch.__version__


def test_bench_gan_records_compile_failures(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no C++ compiler\nsecond line")
    monkeypatch.setattr(torch, "compile", broken)
    out = tmp_path / "gan.json"
    res = _invoke("bench", "gan", "--quick", "--threads", "1", "--modes", "eager,compile", "--out", str(out))
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    failed = [r for r in rows if r["mode"] == "compile"]
    assert len(failed) == 2 and all(r["error"] == "RuntimeError: no C++ compiler" for r in failed)
    assert all("iter_per_s" in r for r in rows if r["mode"] == "eager")


def test_bench_gan_records_a_row_that_runs_too_long(monkeypatch):
    import time

    import replication.benchmarks.gan as bg

    monkeypatch.setattr(bg, "_run_row", lambda *a, **k: time.sleep(5))
    row = bg.bench_one("dcgan", 32, "compile", width=8, batch=8, iters=1, warmup=1, device=torch.device("cpu"),
                       time_limit=0.2)
    assert row["error"] == "RowTimeout: row exceeded 0.2 s" and "iter_per_s" not in row
