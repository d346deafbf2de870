"""GAN losses, iteration structure, data stream, exact resume, failure handling and sampling (docs/gan.md)."""
from __future__ import annotations

import json
import math
import os
import signal

import cv2
import numpy as np
import pytest
import torch

from gan_tf_port import build
from gan_tf_port.data import BatchStream
from gan_tf_port.losses import dcgan_d_loss, dcgan_g_loss, gradient_penalty, wgan_gp_d_loss, wgan_gp_g_loss
from gan_tf_port.optim import make_adam
from gan_tf_port.sample import load_generator, sample_images
from gan_tf_port.steps import Noise, dcgan_iteration, wgan_gp_iteration
from gan_tf_port.train import CheckpointError, GanTrainer, NonFiniteLossError, TrainConfig, train


# ------------------------------------------------------------------------------------------ losses
def test_dcgan_losses_by_hand():
    real = torch.tensor([[0.5], [-1.0]])
    fake = torch.tensor([[2.0], [0.0]])
    d_loss, d_real, d_fake = dcgan_d_loss(real, fake)
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731  softplus
    want_real = (sp(-0.5) + sp(1.0)) / 2  # −log σ(x)
    want_fake = (sp(2.0) + sp(0.0)) / 2  # −log(1 − σ(x))
    assert d_real.item() == pytest.approx(want_real, rel=1e-6)
    assert d_fake.item() == pytest.approx(want_fake, rel=1e-6)
    assert d_loss.item() == pytest.approx(want_real + want_fake, rel=1e-6)  # a sum, not halved
    assert dcgan_g_loss(fake).item() == pytest.approx((sp(-2.0) + sp(0.0)) / 2, rel=1e-6)  # non-saturating


def test_gradient_penalty_linear_critic_by_hand():
    """D(x) = ⟨w, x⟩ + b has ∇D = w everywhere: gp = (‖w‖ − 1)² for any α; dgp/dw = 2(‖w‖ − 1) w/‖w‖."""
    w = torch.zeros(2, 3, 3, dtype=torch.float64)
    w[0, 0, 0], w[1, 2, 1] = 2.0, math.sqrt(5.0)  # ‖w‖ = 3
    w.requires_grad_(True)
    critic = lambda x: (x * w).sum(dim=(1, 2, 3)).unsqueeze(1) + 0.7  # noqa: E731
    real = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    fake = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    gp = gradient_penalty(critic, real, fake, torch.tensor([0.0, 0.25, 0.5, 0.99], dtype=torch.float64))
    assert gp.item() == pytest.approx(4.0, abs=1e-12)
    (grad,) = torch.autograd.grad(gp, w)
    torch.testing.assert_close(grad, 2 * (3.0 - 1.0) * w.detach() / 3.0)


def test_gradient_penalty_quadratic_critic_by_hand():
    """D(x) = ½‖x‖² has ∇D(x̂) = x̂ = x + α(G(z) − x): gp = mean_i (‖x̂_i‖ − 1)², two-sided, no epsilon."""
    real = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 0.0]]], [[[3.0, 4.0]]]], dtype=torch.float64)  # B×1×1×2
    fake = torch.tensor([[[[0.0, 1.0]]], [[[0.0, 0.5]]], [[[3.0, 4.0]]]], dtype=torch.float64)
    alpha = torch.tensor([0.5, 1.0, 0.3], dtype=torch.float64)
    critic = lambda x: 0.5 * (x ** 2).sum(dim=(1, 2, 3)).unsqueeze(1)  # noqa: E731
    gp = gradient_penalty(critic, real, fake, alpha)
    norms = [math.sqrt(0.5 ** 2 + 0.5 ** 2), 0.5, 5.0]  # x̂ = (.5,.5), (0,.5), (3,4)
    assert gp.item() == pytest.approx(sum((n - 1) ** 2 for n in norms) / 3, abs=1e-12)
    d_loss, wd = wgan_gp_d_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.5, -0.5]), torch.tensor(0.25))
    assert wd.item() == pytest.approx(2.0) and d_loss.item() == pytest.approx(-2.0 + 10 * 0.25)
    assert wgan_gp_g_loss(torch.tensor([[0.5], [-0.5], [3.0]])).item() == pytest.approx(-1.0)


# ------------------------------------------------------------------------------ iteration structure
def _instrument(arch):
    torch.manual_seed(0)
    g, d = build(arch, size=16, width=4)
    opt_g, opt_d = make_adam(g.parameters()), make_adam(d.parameters())
    order: list[str] = []
    snap: dict = {}
    for name, opt, mod in (("g", opt_g, g), ("d", opt_d, d)):
        orig = opt.step

        def step(*a, _orig=orig, _name=name, _mod=mod, **k):
            order.append(_name)
            out = _orig(*a, **k)
            snap[_name] = [p.detach().clone() for p in _mod.parameters()]
            return out
        opt.step = step
    g_inputs, d_inputs = [], []
    g.register_forward_pre_hook(lambda m, a: g_inputs.append(a[0].detach().clone()))
    d.register_forward_pre_hook(lambda m, a: d_inputs.append(a[0].shape[0]))
    reals: list[torch.Tensor] = []

    def next_real():
        reals.append(torch.rand(8, 3, 16, 16) * 2 - 1)
        return reals[-1]
    return g, d, opt_g, opt_d, order, snap, g_inputs, d_inputs, reals, next_real


def test_dcgan_iteration_is_one_d_step_then_two_g_steps_with_the_same_z():
    g, d, opt_g, opt_d, order, snap, g_in, d_in, reals, next_real = _instrument("dcgan")
    logs = dcgan_iteration(g, d, opt_g, opt_d, next_real, Noise(g, 1))
    assert order == ["d", "g", "g"]
    assert len(reals) == 1
    assert len(g_in) == 3 and all(torch.equal(z, g_in[0]) for z in g_in)  # same z for D step and both G steps
    assert d_in == [8, 8, 8, 8]  # real and fake in separate passes (own BN statistics), then one per G step
    for p, q in zip(d.parameters(), snap["d"]):  # G steps leave D untouched
        assert torch.equal(p, q)
    assert logs["d_loss"].item() == pytest.approx((logs["d_loss_real"] + logs["d_loss_fake"]).item())


def test_wgan_gp_iteration_is_five_critic_steps_then_one_g_step_with_fresh_data():
    g, d, opt_g, opt_d, order, snap, g_in, d_in, reals, next_real = _instrument("wgan-gp")
    wgan_gp_iteration(g, d, opt_g, opt_d, next_real, Noise(g, 2))
    assert order == ["d"] * 5 + ["g"]
    assert len(reals) == 5 and len({r.sum().item() for r in reals}) == 5  # a fresh real batch per critic step
    assert len(g_in) == 6 and len({z.sum().item() for z in g_in}) == 6  # fresh z each time
    assert d_in == [8, 8, 8] * 5 + [8]  # real, fake, interpolates (GP) per critic step; fake in the G step
    for p, q in zip(d.parameters(), snap["d"]):
        assert torch.equal(p, q)


# ------------------------------------------------------------------------------------- data stream
def test_batch_stream_epochs_permutation_drop_last_and_state():
    imgs = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous() / 10
    s = BatchStream(imgs, 3, seed=5)
    assert s.batches_per_epoch == 3  # the partial 4th batch is dropped
    seen = [next(s)[:, 0, 0, 0] for _ in range(3)]
    ids = torch.cat(seen).mul(10).round().long().tolist()
    assert len(set(ids)) == 9
    epoch1 = torch.cat([next(s)[:, 0, 0, 0] for _ in range(3)])
    assert s.epoch == 1 and not torch.equal(torch.cat(seen), epoch1)  # reshuffled each epoch
    state = s.state_dict()
    ahead = [next(s) for _ in range(4)]
    s2 = BatchStream(imgs, 3, seed=5)
    s2.load_state_dict(state)
    for a in ahead:
        torch.testing.assert_close(next(s2), a, rtol=0, atol=0)


def test_batch_stream_uint8_scaling_flip_dataset_and_ranks():
    gen = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (12, 3, 4, 5), dtype=torch.uint8, generator=gen)
    x = next(BatchStream(imgs, 12, seed=1))
    s = BatchStream(imgs, 12, seed=1, flip=True)
    xf = next(s)
    idx = s.batch_indices(0)
    ref = imgs[torch.from_numpy(idx)].float() / 127.5 - 1
    torch.testing.assert_close(x, ref, rtol=0, atol=0)
    flipped = [not torch.equal(xf[i], ref[i]) for i in range(12)]
    for i in range(12):
        assert torch.equal(xf[i], ref[i].flip(-1) if flipped[i] else ref[i])
    assert 0 < sum(flipped) < 12

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, i):
            return imgs[i]
    s3 = BatchStream(DS(), 12, seed=1, flip=True)
    torch.testing.assert_close(next(s3), xf, rtol=0, atol=0)
    r0 = BatchStream(imgs, 3, seed=2, rank=0, world_size=2)
    r1 = BatchStream(imgs, 3, seed=2, rank=1, world_size=2)
    whole = BatchStream(imgs, 6, seed=2)
    assert r0.batches_per_epoch == 2
    torch.testing.assert_close(torch.cat([next(r0), next(r1)]), next(whole), rtol=0, atol=0)


# ---------------------------------------------------------------------------------- training runs
def _images(n: int = 96, size: int = 16) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)


def _cfg(arch: str, **kw) -> TrainConfig:
    base = dict(arch=arch, size=16, width=4, batch_size=8, epochs=2 if arch == "dcgan" else 6, sample_every=0,
                checkpoint_every=5, log_every=3, progress=False, flip=True, plot_on_checkpoint=False)
    base.update(kw)
    return TrainConfig(**base)


def _state(out) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=False)


def _assert_same_run(a: dict, b: dict) -> None:
    assert a["iteration"] == b["iteration"]
    for key in ("G", "D"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
    for key in ("opt_g", "opt_d"):
        for pid, st in a[key]["state"].items():
            for k, v in st.items():
                other = b[key]["state"][pid][k]
                assert torch.equal(v, other) if isinstance(v, torch.Tensor) else v == other
    assert a["history"] == b["history"]
    assert a["stream"] == b["stream"]


class _Kill(Exception):
    pass


@pytest.fixture(scope="module")
def full_runs(tmp_path_factory):
    """Uninterrupted reference runs, one per architecture (trained once per module)."""
    cache: dict = {}

    def get(arch: str) -> dict:
        if arch not in cache:
            out = tmp_path_factory.mktemp(f"full-{arch}")
            r = train(_cfg(arch), _images(), out)
            assert r.status == "done" and r.iteration == r.total_iters
            cache[arch] = _state(out)
        return cache[arch]
    return get


@pytest.mark.parametrize("arch", ["dcgan", "wgan-gp"])
@pytest.mark.parametrize("how", ["exception", "sigterm", "max_iters"])
def test_resume_after_a_kill_is_bit_identical(tmp_path, full_runs, arch, how):
    imgs = _images()
    out = tmp_path / "cut"
    kill_at = 8 if arch == "dcgan" else 7

    def killer(it, logs):
        if it == kill_at:
            if how == "exception":
                raise _Kill()
            os.kill(os.getpid(), signal.SIGTERM)
    if how == "exception":
        with pytest.raises(_Kill):
            train(_cfg(arch), imgs, out, callbacks=[killer])
        assert _state(out)["iteration"] == 5  # the last periodic checkpoint survives
    elif how == "sigterm":
        r = train(_cfg(arch), imgs, out, callbacks=[killer])
        assert r.status == "interrupted" and _state(out)["iteration"] == kill_at
    else:
        r = train(_cfg(arch, max_iters=kill_at), imgs, out)
        assert r.status == "stopped" and _state(out)["iteration"] == kill_at
    with pytest.raises(CheckpointError):  # a checkpoint is never overwritten without --resume
        train(_cfg(arch), imgs, out)
    done = train(_cfg(arch), imgs, out, resume=True)
    assert done.status == "done"
    _assert_same_run(full_runs(arch), _state(out))


def test_resume_refuses_other_settings(tmp_path):
    train(_cfg("dcgan", max_iters=2), _images(), tmp_path)
    with pytest.raises(CheckpointError, match="width"):
        train(_cfg("dcgan", width=8), _images(), tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="num_images"):
        train(_cfg("dcgan"), _images(n=80), tmp_path, resume=True)


def _assert_same_tree(a, b, path: str = "") -> None:
    """Nested dicts/lists/tuples of tensors, arrays and plain values are equal (same keys in the same order)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            _assert_same_tree(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tree(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


@pytest.mark.parametrize("arch", ["dcgan", "wgan-gp"])
def test_trainer_save_restore_round_trip(tmp_path, arch):
    """GanTrainer.save() then restore() in a fresh trainer gives the same state, and both continue identically."""
    cfg = _cfg(arch, log_every=2)
    a = GanTrainer(cfg, _images(), tmp_path)
    for _ in range(3):  # leaves a partial log window (1 iteration) in the checkpoint
        a.one_iteration()
        if a.iteration % cfg.log_every == 0:
            a._flush_window()
    a.save()
    assert a.last_ckpt == 3 and a.window_count == 1
    b = GanTrainer(cfg, _images(), tmp_path)
    assert b.iteration == 0
    b.restore()
    assert b.iteration == 3 and b.window_count == 1
    _assert_same_tree(a.state(), b.state())
    _assert_same_tree(_state(tmp_path), b.state())
    la, lb = a.one_iteration(), b.one_iteration()
    _assert_same_tree(la, lb)
    _assert_same_tree(a.state(), b.state())


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def poison(x):
        calls["n"] += 1
        return x * float("nan") if calls["n"] > 13 else x  # iteration 14 sees NaN pixels
    with pytest.raises(NonFiniteLossError, match="iteration 10"):
        train(_cfg("dcgan"), _images(), tmp_path, transform=poison)
    ckpt = _state(tmp_path)
    assert ckpt["iteration"] == 10
    assert all(torch.isfinite(v).all() for v in ckpt["G"].values() if v.is_floating_point())
    assert all(math.isfinite(v) for v in ckpt["history"]["d_loss"])


@pytest.mark.parametrize("arch,cells", [("dcgan", 8), ("wgan-gp", 10)])
def test_artifacts_grids_curves_history(tmp_path, arch, cells):
    r = train(_cfg(arch, sample_every=4), _images(), tmp_path)
    final = cv2.imread(str(tmp_path / "samples" / "final.png"))
    assert final.shape == (16 * cells, 16 * cells, 3)
    assert (tmp_path / "samples" / "iter_0000004.png").exists()
    assert cv2.imread(str(tmp_path / "loss_curves.png")) is not None
    hist = json.loads((tmp_path / "history.json").read_text())
    assert hist["iteration"][-1] == r.total_iters and len(hist["g_loss"]) == len(hist["iteration"])
    meta = json.loads((tmp_path / "train_config.json").read_text())
    per = 8 * (5 if arch == "wgan-gp" else 1)
    assert meta["iters_per_epoch"] == 96 // per and meta["total_iters"] == r.total_iters


def test_epoch_definitions():
    from gan_tf_port.train import iters_per_epoch

    assert iters_per_epoch("dcgan", 5000, 64) == 78
    assert iters_per_epoch("wgan-gp", 5000, 64, n_critic=5) == 15
    assert iters_per_epoch("wgan-gp", 5000, 64, n_critic=5, world_size=2) == 7


# ---------------------------------------------------------------------------------------- sampling
def test_sampling_is_seeded_eval_mode_and_restores_mode(tmp_path):
    train(_cfg("wgan-gp", epochs=1), _images(), tmp_path)
    g = load_generator(tmp_path / "checkpoint.pt")
    g.train()
    a = sample_images(g, 10, seed=3, batch=4)
    b = sample_images(g, 10, seed=3, batch=4)
    c = sample_images(g, 10, seed=4, batch=4)
    assert a.shape == (10, 16, 16, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert g.training  # mode restored
    gen = torch.Generator().manual_seed(3)
    g.eval()
    with torch.no_grad():
        first = g(g.sample_z(4, gen))
    want = ((first + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(a[:4], want)  # eval-mode BN (moving averages)


# ------------------------------------------------------------------------------ learning on digits
def _sliced_w1(a: torch.Tensor, b: torch.Tensor, n_dir: int = 256, seed: int = 0) -> float:
    """Sliced Wasserstein-1 between two equal-size samples of feature vectors (rows)."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(a.shape[1], n_dir, generator=g, dtype=torch.float64)
    theta /= theta.norm(dim=0, keepdim=True)
    pa, pb = (a.double() @ theta).sort(0).values, (b.double() @ theta).sort(0).values
    return (pa - pb).abs().mean().item()


def _separability(gen: torch.nn.Module, real: torch.Tensor) -> float:
    """How well the best 1-Lipschitz critic of a random 1-D projection separates real from fresh fakes.

    Images (in [−1, 1]) are average-pooled to 8×8 RGB; for 256 random unit directions θ the best
    1-Lipschitz critic f(θᵀx) separates the two samples by exactly the 1-D Wasserstein-1 distance
    (Kantorovich–Rubinstein), and we average over θ (sliced W1). 0 means indistinguishable; real
    train vs real test images of the tiny digits set score ≈ 0.04, an untrained generator ≈ 0.6.
    """
    gen.eval()
    with torch.no_grad():
        fake = gen(gen.sample_z(len(real), torch.Generator().manual_seed(1)))
    pool = lambda x: torch.nn.functional.avg_pool2d(x, x.shape[-1] // 8).reshape(len(x), -1)  # noqa: E731
    return _sliced_w1(pool(real), pool(fake))


@pytest.mark.slow
@pytest.mark.parametrize("arch,iters", [("dcgan", 150), ("wgan-gp", 120)])
def test_short_training_on_tiny_digits_lowers_separability(tmp_path, tiny_digits, arch, iters):
    """A few hundred steps (width 8, batch 16) make fakes much harder to separate from held-out real images.

    Why this measure and not D's own accuracy: D starts at chance and its accuracy tracks the game,
    not sample quality, and a flexible fresh classifier still separates early samples perfectly.
    The sliced W1 over projections is the separation achieved by a fixed family of optimal critics,
    measured on held-out (test-split) images and fresh eval-mode samples; we require it to fall to
    at most 65% of its value for the untrained generator (observed with seed 0: 0.64 → 0.31 after 150
    DCGAN iterations, 0.64 → 0.37 after 100 WGAN-GP iterations and 0.10 after 300).
    """
    from replication.gan import load_gan_images

    train_path, test_path = tiny_digits
    imgs = load_gan_images(train_path, 32)
    real_test = load_gan_images(test_path, 32).float() / 127.5 - 1
    cfg = TrainConfig(arch=arch, size=32, width=8, batch_size=16, epochs=10_000, max_iters=iters, sample_every=0,
                      checkpoint_every=0, log_every=10, progress=False, seed=0)
    torch.manual_seed(cfg.seed)
    g0, _ = build(arch, size=32, width=8)
    before = _separability(g0, real_test)
    r = train(cfg, imgs, tmp_path)
    assert r.iteration == iters
    after = _separability(load_generator(tmp_path / "checkpoint.pt"), real_test)
    assert before > 0.3
    assert after < 0.65 * before, (before, after)


_DDP_SCRIPT = '''
import os, pathlib, sys, torch, torch.distributed as dist
torch.set_num_threads(1)
from gan_tf_port.train import TrainConfig, train
imgs = torch.randint(0, 256, (96, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
cfg = TrainConfig(arch=sys.argv[2], size=16, width=4, batch_size=8, epochs=1, sample_every=0, checkpoint_every=0,
                  log_every=2, progress=False)
r = train(cfg, imgs, sys.argv[1])
# the trainer joined the process group, so it left it: nothing distributed may remain at exit
vec = torch.cat([p.detach().reshape(-1) for p in [*r.generator.parameters(), *r.discriminator.parameters()]])
rank = int(os.environ["RANK"])
torch.save(vec, sys.argv[1] + f".rank{rank}.pt")
# One file per rank: the ranks' stdout streams interleave under torchrun.
pathlib.Path(sys.argv[1] + f".rank{rank}").write_text(
    " ".join(map(str, ("RESULT", rank, r.status, r.iteration, dist.is_initialized()))))
'''


@pytest.mark.slow
def test_torchrun_two_ranks_keep_identical_weights(tmp_path):
    """torchrun (gloo on CPU): 2 ranks, per-rank batches, averaged gradients → identical weights everywhere."""
    import socket
    import subprocess
    import sys

    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port), str(script),
                           str(tmp_path / "run"), "dcgan"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[:3000] + "\n...\n" + proc.stderr[-2000:]
    lines = [(tmp_path / f"run.rank{r}").read_text().split() for r in (0, 1)]
    assert lines == [["RESULT", "0", "done", "6", "False"], ["RESULT", "1", "done", "6", "False"]]  # 96 // (8·2)
    weights = [torch.load(tmp_path / f"run.rank{r}.pt") for r in (0, 1)]
    assert torch.equal(weights[0], weights[1])  # averaged gradients: the ranks never drift apart
    ckpt = _state(tmp_path / "run")
    assert ckpt["world_size"] == 2 and len(ckpt["noise"]) == 2 and not torch.equal(ckpt["noise"][0], ckpt["noise"][1])
