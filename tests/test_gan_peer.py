"""The peer PyTorch DCGAN (replication/gan/torch_dcgan.py) and the batch-statistics sampling diagnosis.

Checks against independent references: the first Adam step written by hand from gradients computed with
the pytorch/examples formulation (Sigmoid + BCELoss, real and fake backwards separately); shapes and
layer inventory of the example's 32×32 adaptation; seeded determinism; batch-statistics samples equal a
training-mode forward written out, and leave the generator's moving averages untouched.
"""
from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from torch import nn

from gan_tf_port.sample import iter_samples, sample_images
from replication.gan.torch_dcgan import PeerDiscriminator, PeerGenerator, build_peer, d_loss, g_loss, peer_iteration


def _batch(seed: int, b: int = 8) -> torch.Tensor:
    return torch.rand(b, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shapes_ranges_and_layers():
    g, d = PeerGenerator(width=8), PeerDiscriminator(width=8)
    z = g.sample_z(5, torch.Generator().manual_seed(0))
    x = g(z)
    assert z.shape == (5, 100) and x.shape == (5, 3, 32, 32)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (5,)
    convt = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    stride_1, stride_2 = ((4, 4), (1, 1), (0, 0)), ((4, 4), (2, 2), (1, 1))
    assert [(m.kernel_size, m.stride, m.padding) for m in convt] == [stride_1] + [stride_2] * 3
    assert [m.out_channels for m in convt] == [32, 16, 8, 3]
    assert all(m.bias is None for m in convt)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 2   # none after D's first conv
    assert [m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)] == [0.2] * 3


def test_first_step_equals_hand_adam_on_example_gradients():
    """One iteration = D step then G step on the same G(z); the first Adam step is θ − lr·g/(|g| + ε)."""
    gan = build_peer(8, seed=1)
    ref_g, ref_d = copy.deepcopy(gan.G), copy.deepcopy(gan.D)
    real, z = _batch(0), gan.G.sample_z(8, torch.Generator().manual_seed(5))
    peer_iteration(gan, real, z)

    # the example's formulation, written independently: Sigmoid + BCELoss, two backwards for D
    bce, sig = nn.BCELoss(), nn.Sigmoid()
    fake = ref_g(z)
    d0 = {n: p.detach().clone() for n, p in ref_d.named_parameters()}
    out_r = sig(ref_d(real).view(-1))
    bce(out_r, torch.ones_like(out_r)).backward()
    out_f = sig(ref_d(fake.detach()).view(-1))
    bce(out_f, torch.zeros_like(out_f)).backward()
    lr, eps = 2e-4, 1e-8
    with torch.no_grad():
        for n, p in ref_d.named_parameters():
            p.copy_(d0[n] - lr * p.grad / (p.grad.abs() + eps))
    for p in ref_d.parameters():
        p.grad = None
    g_grads = torch.autograd.grad(bce(sig(ref_d(fake).view(-1)), torch.ones(8)), list(ref_g.parameters()))
    expect_g = [p.detach() - lr * gr / (gr.abs() + eps) for p, gr in zip(ref_g.parameters(), g_grads)]
    for (n, p), (_, q) in zip(gan.D.named_parameters(), ref_d.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=n)
    for p, q in zip(gan.G.parameters(), expect_g):
        torch.testing.assert_close(p.detach(), q, rtol=1e-5, atol=1e-7)
    assert any(not torch.equal(p, q) for p, q in zip(gan.G.parameters(), ref_g.parameters()))


def test_one_step_lowers_the_losses_on_a_fixed_batch():
    gan = build_peer(8, seed=2)
    real, z = _batch(1), gan.G.sample_z(8, torch.Generator().manual_seed(6))
    with torch.no_grad():
        fake = gan.G(z)
        before_d = d_loss(gan.D(real), gan.D(fake)).item()
    gan.opt_d.zero_grad()
    d_loss(gan.D(real), gan.D(fake)).backward()
    gan.opt_d.step()
    with torch.no_grad():
        after_d = d_loss(gan.D(real), gan.D(fake)).item()
        before_g = g_loss(gan.D(gan.G(z))).item()
    assert after_d < before_d
    gan.opt_g.zero_grad()
    g_loss(gan.D(gan.G(z))).backward()
    gan.opt_g.step()
    with torch.no_grad():
        assert g_loss(gan.D(gan.G(z))).item() < before_g


def _train(seed: int) -> list[torch.Tensor]:
    gan = build_peer(8, seed=seed)
    noise = torch.Generator().manual_seed(seed + 1)
    for i in range(3):
        peer_iteration(gan, _batch(10 + i), gan.G.sample_z(8, noise))
    return [t.detach().clone() for t in list(gan.G.state_dict().values()) + list(gan.D.state_dict().values())]


def test_determinism_with_a_seed():
    a, b, c = _train(4), _train(4), _train(5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_batch_stats_sampling_is_a_training_mode_forward_and_leaves_the_generator_alone():
    g = PeerGenerator(width=8)
    with torch.no_grad():  # moving averages far from any batch's statistics
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.fill_(3.0)
                m.running_var.fill_(9.0)
    before = copy.deepcopy(g.state_dict())
    got = sample_images(g, 10, seed=7, batch=5, batch_stats=True)
    # by hand: the same z, each batch of 5 normalised with its own statistics
    gen = torch.Generator().manual_seed(7)
    manual = copy.deepcopy(g).train()
    with torch.no_grad():
        xs = [manual(g.sample_z(5, gen)) for _ in range(2)]
    expect = np.concatenate([np.clip(np.round((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5), 0, 255) for x in xs])
    assert np.abs(got.astype(int) - expect.astype(int)).max() <= 1
    assert all(torch.equal(v, before[k]) for k, v in g.state_dict().items())
    eval_mode = sample_images(g, 10, seed=7, batch=5)
    assert not np.array_equal(eval_mode, got)
    assert np.array_equal(next(iter_samples(g, 5, seed=7, batch=5, batch_stats=True)), got[:5])


def test_peer_run_from_the_cli_trains_samples_and_is_measured_like_the_ports(tiny_digits, tmp_path):
    """`spl gan train --preset demo-torch-dcgan` writes a run directory that sample_gan reads; the
    samples equal the saved generator's eval-mode samples, and continuing a finished run is refused in one line."""
    from click.testing import CliRunner

    from replication.cli import cli
    from replication.data.shards import ShardSet
    from replication.gan.config import load_gan_config
    from replication.gan.run import load_run_generator, sample_gan
    from replication.gan.torch_dcgan import load_peer_generator

    cfg = load_gan_config("demo-torch-dcgan")
    assert (cfg.arch, cfg.size, cfg.width, cfg.batch, cfg.epochs) == ("torch-dcgan", 32, 32, 16, 125)
    run = tmp_path / "peer"
    args = ["gan", "train", "--preset", "demo-torch-dcgan", "--data", str(tiny_digits[0]), "--out", str(run),
            "--epochs", "1", "--width", "4", "--threads", "1", "--set", "progress=false"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    n = len(ShardSet(tiny_digits[0]))
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] == n // 16 and ckpt["model"]["arch"] == "torch-dcgan"
    assert (run / "done").exists() and (run / "samples" / "final.png").exists()
    g = load_run_generator(run / "checkpoint.pt")
    assert isinstance(g, PeerGenerator) and not g.training
    out = sample_gan(run, 5, tmp_path / "s", seed=3, batch=4)
    got = np.stack([ShardSet(out)[i].image[:, :, ::-1] for i in range(5)])  # stored BGR
    assert np.array_equal(got, sample_images(load_peer_generator(run / "checkpoint.pt"), 5, seed=3, batch=4))
    res = CliRunner().invoke(cli, [*args, "--epochs", "2", "--resume"])
    assert res.exit_code == 1 and "cannot be continued with more epochs" in res.output
    assert (run / "done").exists()  # the refused resume left the finished run as it was
    # killed between checkpoint.pt and done: a resume (the runner's retry) finishes from it, to the same bytes
    first = (run / "checkpoint.pt").read_bytes()
    (run / "done").unlink()
    res = CliRunner().invoke(cli, [*args, "--resume"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (run / "done").exists()
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == ckpt["iteration"]
    assert _same_tensors(torch.load(run / "checkpoint.pt", weights_only=True), torch.load(io.BytesIO(first),
                                                                                          weights_only=True))


def test_peer_run_writes_through_io_utils_and_refuses_a_bit_flipped_checkpoint(tiny_digits, tmp_path, monkeypatch):
    """#21's rules on the peer's path: a full disk at its checkpoint gives one line naming checkpoint.pt and
    leaves no checkpoint and no ``done``; one flipped bit inside G's weights (which ``torch.load`` alone
    would load silently) is refused by ``spl gan sample`` in one line naming the file and its CRC."""
    import errno
    import zipfile

    from click.testing import CliRunner

    import replication.io_utils as io_utils
    from replication.cli import cli

    run = tmp_path / "peer"
    args = ["gan", "train", "--preset", "demo-torch-dcgan", "--data", str(tiny_digits[0]), "--out", str(run),
            "--epochs", "1", "--width", "4", "--threads", "1", "--set", "progress=false"]
    commit = io_utils._commit

    def full_at_checkpoint(tmp: str, path):
        if path.name == "checkpoint.pt":
            raise OSError(errno.ENOSPC, "No space left on device")
        commit(tmp, path)

    with monkeypatch.context() as m:
        m.setattr(io_utils, "_commit", full_at_checkpoint)
        res = CliRunner().invoke(cli, args)
    lines = res.output.strip().splitlines()
    assert res.exit_code != 0 and len(lines) == 1 and "checkpoint.pt" in lines[0] and "space" in lines[0], res.output
    assert not (run / "checkpoint.pt").exists() and not (run / "done").exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".checkpoint.pt.")]  # no temporary file left

    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    ckpt = run / "checkpoint.pt"
    with zipfile.ZipFile(ckpt) as z:  # the largest member: a weight tensor's bytes
        info = max(z.infolist(), key=lambda i: i.file_size)
    data = bytearray(ckpt.read_bytes())
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    data[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x01
    ckpt.write_bytes(bytes(data))
    assert torch.load(ckpt, weights_only=True)["iteration"] > 0  # torch.load alone does not notice
    res = CliRunner().invoke(cli, ["gan", "sample", "--run", str(run), "-n", "4", "--out", str(tmp_path / "s")])
    lines = res.output.strip().splitlines()
    assert res.exit_code != 0 and len(lines) == 1 and str(ckpt) in lines[0] and "CRC" in lines[0], res.output
    assert not (tmp_path / "s").exists()


def _same_tensors(a, b) -> bool:
    """Whether two nested checkpoint dicts hold equal values (tensors compared exactly)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def test_killed_peer_run_resumes_from_its_partial_checkpoint_to_the_same_bytes(tmp_path, monkeypatch):
    """A run checkpointing every 3 iterations, killed during iteration 8 (after the checkpoint at 6), resumes
    from iteration 6 (only 2 more iterations run, counted) and ends with the same checkpoint bytes and
    sample grid as an uninterrupted run; the partial checkpoint holds the optimizers, stream and noise."""
    import replication.gan.torch_dcgan as peer

    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    kw = {"width": 4, "batch": 8, "epochs": 2, "seed": 3, "checkpoint_every": 3}   # 2 × 5 = 10 iterations
    assert peer.train_peer_run(images, tmp_path / "whole", **kw) == 10
    real_iteration, calls = peer.peer_iteration, []

    def killed_at_8(gan, real, z):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt   # stands in for SIGKILL: nothing after iteration 7 is written
        return real_iteration(gan, real, z)

    monkeypatch.setattr(peer, "peer_iteration", killed_at_8)
    (tmp_path / "killed").mkdir()
    with pytest.raises(KeyboardInterrupt):
        peer.train_peer_run(images, tmp_path / "killed", **kw)
    partial = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert partial["iteration"] == 6 and not partial["finished"]
    assert {"opt_g", "opt_d", "stream", "noise"} <= set(partial) and partial["stream"] == {"epoch": 1, "pos": 1}
    calls.clear()
    monkeypatch.setattr(peer, "peer_iteration", lambda gan, real, z: (calls.append(1), real_iteration(gan, real, z)))
    assert peer.train_peer_run(images, tmp_path / "killed", resume=True, **kw) == 10
    assert len(calls) == 4
    for name in ("checkpoint.pt", "samples/final.png"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    assert whole["finished"] and "opt_g" not in whole   # the final checkpoint keeps its layout


def test_peer_resume_refuses_another_models_checkpoint(tmp_path):
    from replication.gan.torch_dcgan import train_peer_run

    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    train_peer_run(images, tmp_path, width=4, batch=8, epochs=3, checkpoint_every=2)
    with pytest.raises(ValueError, match=r"checkpoint\.pt: a checkpoint of another model"):
        train_peer_run(images, tmp_path, width=8, batch=8, epochs=3, resume=True)


def test_diagnosis_port_honours_g_steps():
    """``python -m replication.gan.diagnosis --kind port --g-steps 1`` trains carpedm20's DCGAN with one G step
    per D step: after two iterations its G equals a run of the port trainer configured with g_steps = 1 and
    differs from the default two steps."""
    import tempfile

    from gan_tf_port.train import GanTrainer, TrainConfig
    from replication.gan.diagnosis import train_port

    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    one, it1, _ = train_port(images, arch="dcgan", batch=8, width=4, cap_s=1e9, max_iters=2, g_steps=1)
    two, it2, _ = train_port(images, arch="dcgan", batch=8, width=4, cap_s=1e9, max_iters=2)
    assert it1 == it2 == 2
    cfg = TrainConfig(arch="dcgan", size=32, width=4, batch_size=8, epochs=10**6, seed=0, sample_every=0,
                      checkpoint_every=10**9, progress=False, device="cpu", g_steps=1)
    with tempfile.TemporaryDirectory() as tmp:
        ref = GanTrainer(cfg, images, tmp)
        ref.one_iteration()
        ref.one_iteration()
    assert _same_tensors(one.state_dict(), ref.G.state_dict())
    assert not _same_tensors(one.state_dict(), two.state_dict())
