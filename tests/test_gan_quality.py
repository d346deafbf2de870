"""GAN sample-quality measures (replication.gan.quality), ``spl gan quality`` and ``spl gan sample --checkpoint``.

See issue #12; docs/gan.md#sample-quality.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gan_tf_port.sample import load_generator, sample_images
from replication.cli import cli
from replication.data.shards import ShardSet
from replication.data.transforms import CaffeTestTransform
from replication.gan.quality import (
    classifier_features,
    frechet_distance,
    frechet_distance_features,
    kernel_inception_distance,
    knn_radii,
    label_statistics,
    mmd2_unbiased,
    precision_recall,
)
from replication.gan.quality_step import gan_quality
from replication.models import build_model
from replication.train import load_train_config, train

GAN_TINY = ["--size", "16", "--width", "4", "--batch", "16", "--threads", "1", "--set", "sample_every=0",
            "--set", "log_every=5", "--set", "progress=false"]
CLS_TINY = ["batch_size=32", "epochs=1", "milestones=[1]", "data.num_workers=0", "kernel_backend=torch",
            "progress=false", "eval_every_epochs=0", "log_every=2", "device=cpu"]


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# ------------------------------------------------------------------------------------ Fréchet
def _diag_fd(mu1, var1, mu2, var2) -> float:
    """Closed form for diagonal covariances: ‖μ₁−μ₂‖² + Σ (σ₁ + σ₂ − 2√(σ₁σ₂))."""
    return float(((mu1 - mu2) ** 2).sum() + (var1 + var2 - 2 * np.sqrt(var1 * var2)).sum())


def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    want = _diag_fd(mu1, var1, mu2, var2)  # 1 + 6.25 + (4 + 1 + 0) = 12.25
    assert want == pytest.approx(12.25)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(want, rel=1e-12)


def test_frechet_distance_with_full_covariances_is_rotation_invariant():
    # The same rotation of both Gaussians leaves the distance unchanged, so non-diagonal covariances
    # must give the diagonal closed form (this exercises the matrix square root off the diagonal).
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    var1, var2 = rng.uniform(0.1, 3, 4), rng.uniform(0.1, 3, 4)
    got = frechet_distance(q @ mu1, q @ np.diag(var1) @ q.T, q @ mu2, q @ np.diag(var2) @ q.T)
    assert got == pytest.approx(_diag_fd(mu1, var1, mu2, var2), rel=1e-9)
    # and two Gaussians that differ only in the mean: ‖μ₁ − μ₂‖²
    s = q @ np.diag(var1) @ q.T
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(float(((mu1 - mu2) ** 2).sum()), abs=1e-9)


def test_frechet_distance_of_feature_sets():
    x = np.random.default_rng(1).normal(size=(200, 5))
    shift = np.array([1.0, -2.0, 0.0, 0.5, 3.0])
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance_features(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-9)
    # scaling by 2: covariance ×4, Tr(Σ + 4Σ − 2·2Σ) = Tr Σ
    assert frechet_distance_features(x, 2 * x) == pytest.approx(
        float(((x.mean(0)) ** 2).sum() + np.trace(np.cov(x, rowvar=False))), rel=1e-9)


# ----------------------------------------------------------------------------------------- KID
def _kernel(a, b) -> float:
    return (float(np.dot(a, b)) / len(a) + 1.0) ** 3


def _mmd2_by_hand(x, y) -> float:
    m, n = len(x), len(y)
    kxx = sum(_kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(_kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(_kernel(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_mmd2_unbiased_matches_the_double_loop():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]])
    y = np.array([[0.5, 0.5], [2.0, -1.0], [0.0, 0.0], [1.0, 3.0]])
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_by_hand(x, y), rel=1e-12)
    # one value by hand: x = {(1,0), (0,2)}, y = {(0,0), (1,1)}, d = 2. Within-set terms:
    # k(x1,x2) = (0/2+1)³ = 1 and k(y1,y2) = (0/2+1)³ = 1. Cross terms: k(x1,y1) = 1, k(x1,y2) = (1/2+1)³ = 3.375,
    # k(x2,y1) = 1, k(x2,y2) = (2/2+1)³ = 8, mean 3.34375. MMD²_u = 1 + 1 − 2·3.34375 = −4.6875.
    x2, y2 = np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[0.0, 0.0], [1.0, 1.0]])
    assert mmd2_unbiased(x2, y2) == pytest.approx(-4.6875, rel=1e-12)


def test_kid_averages_the_unbiased_estimator_over_subsets():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(3, 4)), rng.normal(loc=0.5, size=(3, 4))
    # subsets of the whole sets (size 3 of 3) are permutations: every estimate is the full MMD²
    mean, std, size = kernel_inception_distance(x, y, subsets=5, subset_size=10)
    assert size == 3 and mean == pytest.approx(_mmd2_by_hand(x, y), rel=1e-12) and std == pytest.approx(0, abs=1e-12)
    # proper subsets: the mean of the per-subset double loops, with the same seeded choice
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(9, 4))
    r = np.random.default_rng(7)
    vals = [_mmd2_by_hand(x[r.choice(8, 4, replace=False)], y[r.choice(9, 4, replace=False)]) for _ in range(6)]
    mean, std, size = kernel_inception_distance(x, y, subsets=6, subset_size=4, seed=7)
    assert size == 4 and mean == pytest.approx(np.mean(vals), rel=1e-12) and std == pytest.approx(np.std(vals))


def test_kid_subset_sums_over_whole_kernel_matrices_equal_the_per_subset_loop():
    # _kid_values has two exact paths (one kernel per subset, or the whole kernel matrices reduced per
    # subset); both must give the double loop's value for every subset.
    from replication.gan.quality import _kid_values

    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(12, 3)), rng.normal(loc=0.3, size=(10, 3))
    picks = [(rng.choice(12, 5, replace=False), rng.choice(10, 5, replace=False)) for _ in range(4)]
    want = [_mmd2_by_hand(x[i], y[j]) for i, j in picks]
    np.testing.assert_allclose(_kid_values(x, y, picks, full=True), want, rtol=1e-12)
    np.testing.assert_allclose(_kid_values(x, y, picks, full=False), want, rtol=1e-12)


# ---------------------------------------------------------------------------- precision/recall
def test_precision_recall_identical_and_disjoint_sets():
    x = np.random.default_rng(3).normal(size=(50, 6))
    assert precision_recall(x, x.copy(), k=3) == (1.0, 1.0)
    assert precision_recall(x, x + 1000.0, k=3) == (0.0, 0.0)


def test_precision_recall_hand_checked_partial_case():
    # 1-D points (a zero second coordinate). k = 1:
    # real radii: 0,1,2,3 → 1; 10 → 7.   fake radii: 0.5, 1.5 → 1; 100, 101 → 1.
    # precision: 0.5 and 1.5 lie within 1 of a real point; 100 and 101 are 90+ from 10 (> 7) → 2/4.
    # recall: 0, 1, 2 lie within 1 of 0.5 or 1.5; 3 is 1.5 from 1.5 and 10 is 8.5 from it → 3/5.
    real = np.array([[0.0, 0], [1, 0], [2, 0], [3, 0], [10, 0]])
    fake = np.array([[0.5, 0], [1.5, 0], [100, 0], [101, 0]])
    np.testing.assert_allclose(np.sqrt(knn_radii(real, 1)), [1, 1, 1, 1, 7])
    assert precision_recall(real, fake, k=1) == pytest.approx((0.5, 0.6))
    # k = 3: real radii 3, 2, 2, 3, 9 (10's third neighbour is 1); fake radii 100.5, 99.5, 99.5, 100.5.
    # precision: 0.5, 1.5 in; 100 is 90 from 10 (> 9): out; 101 out → 1/2. recall: every real point lies
    # within 100.5 of 0.5 → 1.
    np.testing.assert_allclose(np.sqrt(knn_radii(real, 3)), [3, 2, 2, 3, 9])
    np.testing.assert_allclose(np.sqrt(knn_radii(fake, 3)), [100.5, 99.5, 99.5, 100.5])
    assert precision_recall(real, fake, k=3) == pytest.approx((0.5, 1.0))


def test_precision_recall_matches_a_brute_force_definition():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(40, 3)), rng.normal(loc=0.7, scale=1.3, size=(30, 3))

    def coverage(q, r, k):
        d = np.linalg.norm(r[:, None] - r[None], axis=2)
        radius = np.sort(d, axis=1)[:, k]  # index 0 is the point itself
        return np.mean([any(np.linalg.norm(qi - rj) <= radius[j] for j, rj in enumerate(r)) for qi in q])

    p, r = precision_recall(real, fake, k=3)
    assert p == pytest.approx(coverage(fake, real, 3)) and r == pytest.approx(coverage(real, fake, 3))
    assert 0 < p < 1 and 0 < r < 1  # a partial case, not a trivial one


# -------------------------------------------------------------------------------------- labels
def test_label_statistics_by_hand():
    logits = np.array([[3.0, -1.0, 0.0, -2.0],    # max σ(3); any > 0.5; top-3 {0, 2, 1}
                       [-3.0, -1.0, -2.0, -4.0],  # max σ(−1); none > 0.5; top-3 {1, 2, 0}: same set
                       [0.0, 0.0, 0.0, 5.0]],     # ties → lower index: top-3 {3, 0, 1}
                      dtype=np.float32)
    sig = 1 / (1 + np.exp(-logits.astype(np.float64)))
    spl = np.exp(sig) / np.exp(sig).sum(axis=1, keepdims=True)  # SPL: softmax over the confidences
    ent = -(spl * np.log(spl)).sum(axis=1)
    s = label_statistics(logits)
    assert s["num_samples"] == 3
    assert s["mean_max_confidence"] == pytest.approx((sig[0, 0] + sig[1, 1] + sig[2, 3]) / 3)
    assert s["frac_any_above_half"] == pytest.approx(2 / 3)
    assert s["spl_entropy_mean"] == pytest.approx(ent.mean(), rel=1e-6)
    assert s["spl_entropy_std"] == pytest.approx(ent.std(), rel=1e-5)
    assert s["spl_entropy_max"] == pytest.approx(math.log(4))
    assert s["distinct_top3"] == 2 and s["top3_largest_share"] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------ features
def test_features_are_the_input_of_the_final_linear_layer():
    torch.manual_seed(0)
    model = build_model("preact_resnet_small", 10)
    for m in model.modules():  # non-trivial BN statistics, so eval mode matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.train()
    transform = CaffeTestTransform(28, 32)
    rng = np.random.default_rng(5)
    batches = [rng.integers(0, 256, size=(b, 32, 32, 3), dtype=np.uint8) for b in (3, 2)]
    feats, logits = classifier_features(model, iter(batches), transform)
    assert model.training  # restored
    assert feats.shape == (5, model.num_features) and logits.shape == (5, 10)
    x = torch.stack([transform(np.ascontiguousarray(img[:, :, ::-1])) for b in batches for img in b])
    model.eval()
    with torch.no_grad():  # the layers up to the FC, run by hand
        h = model.stem(x)
        h = model.layer4(model.layer3(model.layer2(model.layer1(h))))
        want = torch.flatten(model.pool(torch.relu(model.final_bn(h))), 1)
        np.testing.assert_allclose(feats, want.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(logits, model.fc(want).numpy(), rtol=1e-5, atol=1e-5)
    # the images are fed as BGR: feeding the RGB arrays unflipped would give other features
    x_rgb = torch.stack([transform(img) for b in batches for img in b])
    with torch.no_grad():
        assert not np.allclose(feats, model.forward_features(x_rgb).numpy(), atol=1e-4)


# ----------------------------------------------------------------------------- end to end (CLI)
@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, tiny_digits):
    """A tiny DCGAN (16×16, width 4) trained for one epoch on the tiny digits set."""
    run = tmp_path_factory.mktemp("gan") / "dcgan"
    res = _invoke("gan", "train", "--arch", "dcgan", "--data", str(tiny_digits[0]), "--out", str(run),
                  "--epochs", "1", *GAN_TINY)
    assert res.exit_code == 0, res.output
    return run


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory, tiny_digits):
    """A tiny embedded classifier (1 epoch) on the tiny digits set."""
    out = tmp_path_factory.mktemp("cls")
    train_path, test_path = tiny_digits
    train(load_train_config("embedded", [f"data.train={train_path}", f"data.test={test_path}", *CLS_TINY]), out)
    return out


def test_cli_quality_end_to_end(gan_run, classifier_run, tiny_digits, tmp_path):
    res = _invoke("gan", "quality", "--run", str(gan_run), "--classifier", str(classifier_run), "-n", "48",
                  "--batch", "20")
    assert res.exit_code == 0, res.output
    q = json.loads((gan_run / "quality.json").read_text())
    assert res.output.strip().splitlines()[-1] == str(gan_run / "quality.json")
    assert q["n_generated"] == 48 and q["n_real"] == 48 and q["feature_dim"] == 128 and q["iteration"] == 15
    assert q["fd"] > 0 and 0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1 and q["kid_subset_size"] == 48
    gen = q["labels"]["generated"]
    assert gen["num_samples"] == 48 and 1 <= gen["distinct_top3"] <= 48

    # The generated label statistics equal those of the same samples scored by `spl predict`
    # (same noise seed and batch → same images; PNG shards are lossless).
    shards = tmp_path / "gen"
    assert _invoke("gan", "sample", "--run", str(gan_run), "-n", "48", "--batch", "20", "--out",
                   str(shards)).exit_code == 0
    assert _invoke("predict", "--run", str(classifier_run), "--data", str(shards), "--out",
                   str(tmp_path / "p.npz")).exit_code == 0
    with np.load(tmp_path / "p.npz") as z:
        want = label_statistics(z["logits"])
    for key, value in want.items():
        assert gen[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key

    assert q["labels"]["real"]["num_samples"] == 48
    assert q["real_data"] == str(ShardSet(tiny_digits[0]).path)

    # Same request again: same numbers (seeded samples and choice of real images).
    again = gan_quality(gan_run, classifier_run, n=48, batch=20)
    assert again["fd"] == pytest.approx(q["fd"], rel=1e-9) and again["precision"] == q["precision"]


def test_quality_errors_are_one_line_naming_the_file(gan_run, classifier_run, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["gan", "quality", "--run", str(gan_run), "--classifier", str(tmp_path), "-n", "8"])
    assert res.exit_code == 1 and str(tmp_path / "model.pt") in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = runner.invoke(cli, ["gan", "quality", "--run", str(tmp_path), "--classifier", str(classifier_run), "-n", "8"])
    assert res.exit_code == 1 and "not a GAN run directory" in res.output and str(tmp_path) in res.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    res = runner.invoke(cli, ["gan", "quality", "--run", str(gan_run), "--classifier", str(classifier_run),
                              "--checkpoint", str(bad)])
    assert res.exit_code == 1 and str(bad) in res.output and len(res.output.strip().splitlines()) == 1
    assert not (gan_run / "quality-bad.json").exists()


def test_quality_and_sample_from_another_checkpoint(gan_run, classifier_run, tmp_path):
    # another checkpoint of the run: the same file with perturbed generator weights
    ckpt = torch.load(gan_run / "checkpoint.pt", weights_only=True)
    ckpt["G"] = {k: v + 0.05 if v.is_floating_point() else v for k, v in ckpt["G"].items()}
    ckpt["iteration"] = 7
    other = tmp_path / "iter-7.pt"
    torch.save(ckpt, other)

    res = _invoke("gan", "sample", "--run", str(gan_run), "--checkpoint", str(other), "-n", "6", "--batch", "4",
                  "--seed", "2", "--out", str(tmp_path / "s"))
    assert res.exit_code == 0, res.output
    got = ShardSet(tmp_path / "s")
    want = sample_images(load_generator(other), 6, seed=2, batch=4)
    default = sample_images(load_generator(gan_run / "checkpoint.pt"), 6, seed=2, batch=4)
    assert not np.array_equal(want, default)
    for i in range(6):
        assert np.array_equal(got[i].image[:, :, ::-1], want[i])
    assert got.manifest["extra"]["gan_iteration"] == 7 and got.manifest["extra"]["checkpoint"] == str(other.resolve())

    q = gan_quality(gan_run, classifier_run, n=12, checkpoint=other)
    assert q["iteration"] == 7 and (gan_run / "quality-iter-7.json").is_file()

    # a checkpoint of another architecture/width is refused, naming the file
    ckpt["model"] = {**ckpt["model"], "width": 8}
    foreign = tmp_path / "foreign.pt"
    torch.save(ckpt, foreign)
    res = CliRunner().invoke(cli, ["gan", "sample", "--run", str(gan_run), "--checkpoint", str(foreign), "-n", "2",
                                   "--out", str(tmp_path / "f")])
    assert res.exit_code == 1 and str(foreign) in res.output and "width" in res.output
