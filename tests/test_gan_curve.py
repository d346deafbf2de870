"""Kept GAN checkpoints (``keep_every``, ``spl gan train --keep-every``) and ``spl gan curve`` (issue #12).

See docs/gan.md#quality-curves.
"""
from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch
import yaml
from test_gan_quality import CLS_TINY, GAN_TINY, _invoke, classifier_run  # noqa: F401  (a fixture)

import replication.gan.curve as gan_curve_mod
from gan_tf_port.sample import load_checkpoint
from gan_tf_port.train import KEPT_DIR, KEPT_INDEX, TrainConfig, read_kept_index, train
from replication.errors import ConfigError, ShardError
from replication.experiments.stepfns import gan_hash_config
from replication.gan.config import load_gan_config
from replication.gan.curve import CURVE, gan_curve, kept_checkpoints
from replication.gan.quality_step import gan_quality


# ------------------------------------------------------------------------------- keep_every (trainer)
def _images(n: int = 96, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _cfg(**kw) -> TrainConfig:
    """DCGAN 16×16 width 4, 96 images of batch 8: 12 iterations per epoch, 24 in all."""
    base = dict(arch="dcgan", size=16, width=4, batch_size=8, epochs=2, sample_every=0, checkpoint_every=5,
                log_every=3, progress=False, flip=True, plot_on_checkpoint=False)
    return TrainConfig(**{**base, **kw})


def _kept(out) -> dict[int, dict]:
    """{iteration: content} of the kept checkpoints, read with the safe (weights_only) loader."""
    return {int(p.stem.split("-")[1]): load_checkpoint(p) for p in sorted((out / KEPT_DIR).glob("iter-*.pt"))}


def _assert_same(a, b, path: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


def _without_config(ckpt: dict) -> dict:
    return {k: v for k, v in ckpt.items() if k != "config"}


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("keep") / "run"
    r = train(_cfg(keep_every=4), _images(), out)
    assert r.status == "done" and r.iteration == 24
    return out


def test_keep_every_writes_the_expected_iterations_and_a_monotone_index(kept_run):
    files = sorted(p.name for p in (kept_run / KEPT_DIR).iterdir())
    assert files == [KEPT_INDEX] + [f"iter-{i:07d}.pt" for i in (4, 8, 12, 16, 20, 24)]
    index = read_kept_index(kept_run)
    assert index == json.loads((kept_run / KEPT_DIR / KEPT_INDEX).read_text())
    assert index["keep_every"] == 4 and index["timed_from"] == 0
    assert [e["iteration"] for e in index["kept"]] == [4, 8, 12, 16, 20, 24]
    assert [e["file"] for e in index["kept"]] == files[1:]
    for key in ("cpu_s", "wall_s"):
        values = [e[key] for e in index["kept"]]
        assert values[0] > 0 and all(b > a for a, b in zip(values, values[1:])), (key, values)
    assert index["clock"]["iteration"] == 24 and index["clock"]["cpu_s"] >= index["kept"][-1]["cpu_s"]
    for it, ckpt in _kept(kept_run).items():  # the main checkpoint's format, read with weights_only=True
        assert ckpt["format"] == "gan_tf_port/1" and ckpt["iteration"] == it
    # the last kept checkpoint is the final state: the same content as checkpoint.pt
    _assert_same(_kept(kept_run)[24], load_checkpoint(kept_run / "checkpoint.pt"))


@pytest.mark.parametrize("stop", [8, 12])
def test_a_kept_checkpoint_equals_a_run_stopped_at_its_iteration(kept_run, tmp_path, stop):
    r = train(_cfg(max_iters=stop), _images(), tmp_path)  # keep_every off
    assert r.status == "stopped" and r.iteration == stop
    stopped = load_checkpoint(tmp_path / "checkpoint.pt")
    kept = _kept(kept_run)[stop]
    for name, w in stopped["G"].items():
        assert torch.equal(kept["G"][name], w), name
    _assert_same(_without_config(kept), _without_config(stopped))  # D, optimisers, RNGs, stream, history too
    assert not (tmp_path / KEPT_DIR).exists()  # off by default: nothing kept, no index


def test_keeping_does_not_change_training(kept_run, tmp_path):
    train(_cfg(), _images(), tmp_path)
    _assert_same(_without_config(load_checkpoint(kept_run / "checkpoint.pt")),
                 _without_config(load_checkpoint(tmp_path / "checkpoint.pt")))


class _Kill(Exception):
    pass


def test_resume_with_keep_every_is_bit_exact_and_continues_the_clock(kept_run, tmp_path):
    def killer(it, logs):
        if it == 14:
            raise _Kill()
    with pytest.raises(_Kill):  # main checkpoint at 10, kept 4, 8, 12
        train(_cfg(keep_every=4), _images(), tmp_path, callbacks=[killer])
    before = read_kept_index(tmp_path)
    assert before["clock"]["iteration"] == 10 and [e["iteration"] for e in before["kept"]] == [4, 8, 12]
    done = train(_cfg(keep_every=4), _images(), tmp_path, resume=True)
    assert done.status == "done"
    _assert_same(load_checkpoint(kept_run / "checkpoint.pt"), load_checkpoint(tmp_path / "checkpoint.pt"))
    want, got = _kept(kept_run), _kept(tmp_path)
    assert sorted(got) == sorted(want) == [4, 8, 12, 16, 20, 24]
    for it in want:
        _assert_same(want[it], got[it])
    after = read_kept_index(tmp_path)
    assert [e["iteration"] for e in after["kept"]] == [4, 8, 12, 16, 20, 24]  # 12 re-kept once, not twice
    assert after["kept"][:2] == before["kept"][:2]  # kept before the main checkpoint: times as recorded
    cpu = [e["cpu_s"] for e in after["kept"]]
    assert all(b > a for a, b in zip(cpu, cpu[1:]))
    # iteration 12 was re-trained from the checkpoint at 10: its time continues that sum, not a new one
    assert after["kept"][2]["cpu_s"] > before["clock"]["cpu_s"]
    assert after["kept"][2]["wall_s"] > before["clock"]["wall_s"]


def test_keep_every_off_leaves_the_run_hash_and_config_alone():
    cfg = load_gan_config("embedded-dcgan")
    assert cfg.keep_every is None
    hashed = gan_hash_config(cfg)
    assert "keep_every" not in hashed
    assert gan_hash_config(dataclasses.replace(cfg, keep_every=50)) == hashed  # runtime: never hashed
    with pytest.raises(ConfigError, match="keep_every"):
        load_gan_config("embedded-dcgan", ["keep_every=-1"])


# ------------------------------------------------------------------------------ spl gan curve (CLI)
@pytest.fixture(scope="module")
def gan_runs(tmp_path_factory, tiny_digits):
    """A tiny DCGAN (15 iterations, kept every 5) and a tiny WGAN-GP (2 iterations, then resumed keeping 3)."""
    root = tmp_path_factory.mktemp("curve")
    res = _invoke("gan", "train", "--arch", "dcgan", "--data", str(tiny_digits[0]), "--out", str(root / "dcgan"),
                  "--epochs", "1", "--keep-every", "5", *GAN_TINY)
    assert res.exit_code == 0, res.output
    # WGAN-GP: first 2 iterations without keeping (config.yaml as before), then resumed with --keep-every
    args = ["gan", "train", "--arch", "wgan-gp", "--data", str(tiny_digits[0]), "--out", str(root / "wgan"),
            "--epochs", "1", *GAN_TINY]
    res = _invoke(*args, "--max-iters", "2")
    assert res.exit_code == 0, res.output
    assert "keep_every" not in yaml.safe_load((root / "wgan" / "config.yaml").read_text())
    res = _invoke(*args, "--keep-every", "1", "--max-iters", "3", "--resume")
    assert res.exit_code == 0, res.output
    assert yaml.safe_load((root / "wgan" / "config.yaml").read_text())["keep_every"] == 1
    return root / "dcgan", root / "wgan"


def test_cli_curve_end_to_end(gan_runs, classifier_run, tmp_path, monkeypatch):  # noqa: F811
    dcgan, wgan = gan_runs
    assert [e["iteration"] for e in kept_checkpoints(dcgan)[1]] == [5, 10, 15]
    index, entries = kept_checkpoints(wgan)
    assert [e["iteration"] for e in entries] == [3] and index["timed_from"] == 2  # keeping began at the resume
    fig = tmp_path / "curves.png"
    res = _invoke("gan", "curve", "--run", str(dcgan), "--run", str(wgan), "--classifier", str(classifier_run),
                  "-n", "24", "--batch", "12", "--out", str(fig))
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == str(fig)
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 10_000

    curve = json.loads((dcgan / CURVE).read_text())
    assert curve["arch"] == "dcgan" and curve["n"] == 24
    rows = curve["rows"]
    assert [r["iteration"] for r in rows] == [5, 10, 15]
    idx = read_kept_index(dcgan)["kept"]
    assert [r["cpu_s"] for r in rows] == [e["cpu_s"] for e in idx]
    assert [r["wall_s"] for r in rows] == [e["wall_s"] for e in idx]
    assert len({r["fd"] for r in rows}) == 3  # three different generators
    for row in rows:  # each row is gan_quality on that kept checkpoint
        q = gan_quality(dcgan, classifier_run, n=24, batch=12, checkpoint=dcgan / KEPT_DIR / row["checkpoint"])
        assert q["iteration"] == row["iteration"]
        for key in ("fd", "kid", "kid_std"):
            assert row[key] == pytest.approx(q[key], rel=1e-9, abs=1e-12), key
        assert row["precision"] == q["precision"] and row["recall"] == q["recall"]
        assert row["labels"] == q["labels"]["generated"]
    assert [r["iteration"] for r in json.loads((wgan / CURVE).read_text())["rows"]] == [3]

    # a rerun reads the cached quality-iter-*.json files: no measuring at all
    calls = []
    monkeypatch.setattr(gan_curve_mod, "gan_quality", lambda *a, **k: calls.append(k) or pytest.fail("measured"))
    again = gan_curve([dcgan], classifier_run, n=24, batch=12, out=tmp_path / "again.pdf", progress=False)
    assert again[dcgan]["rows"] == rows and (tmp_path / "again.pdf").is_file()

    # another request (n), or a checkpoint newer than its measures, is measured again
    monkeypatch.setattr(gan_curve_mod, "gan_quality", lambda *a, **k: calls.append(k) or gan_quality(*a, **k))
    ckpt = dcgan / KEPT_DIR / rows[1]["checkpoint"]
    later = os.stat(dcgan / f"quality-{ckpt.stem}.json").st_mtime + 5
    os.utime(ckpt, (later, later))
    gan_curve([dcgan], classifier_run, n=24, batch=12, out=tmp_path / "c.png", progress=False)
    assert [c["checkpoint"] for c in calls] == [ckpt]
    calls.clear()
    gan_curve([dcgan], classifier_run, n=20, batch=12, out=tmp_path / "c.png", progress=False)
    assert len(calls) == 3


def test_curve_of_a_run_without_kept_checkpoints_names_the_index(tmp_path, classifier_run):  # noqa: F811
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ShardError, match="keep-every") as e:
        gan_curve([run], classifier_run, n=8)
    assert str(run / KEPT_DIR / KEPT_INDEX) in str(e.value)
