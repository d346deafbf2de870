"""The CPU step's speed paths (docs/gan.md, "CPU step speed"): TF Adam's in-place update is bit-identical to the
out-of-place one it replaced, and ``spl bench gan`` counts FLOPs and compares them with an fp32 GEMM correctly.

* TF Adam: the previous ``TFAdam.step`` body (out-of-place ``torch._foreach_*`` temporaries) is kept here as
  the reference; several steps on random parameters and gradients of mixed shapes must give ``torch.equal``
  parameters and moments, and the scratch buffers must stay out of the state dict (checkpoints unchanged).
* FLOPs: :func:`replication.benchmarks.gan.count_flops` against hand counts for a tiny conv + linear model
  (forward, and forward + backward), and through ``torch.autograd.grad`` on a leaf (the gradient penalty).
* Ratio: :func:`~replication.benchmarks.gan.achieved_vs_gemm` by hand, and a quick ``spl bench gan`` row whose
  fields agree with each other.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from gan_tf_port.losses import gradient_penalty
from gan_tf_port.optim import TFAdam, tf_constants
from replication.benchmarks import gan as gan_bench
from replication.cli import cli as cli_main


def _reference_tf_adam_step(opt: TFAdam) -> None:
    """The update as it was before the in-place rewrite: fresh out-of-place temporaries per operation."""
    for group in opt.param_groups:
        b1, b2 = group["betas"]
        params, grads, ms, vs = [], [], [], []
        lr_t = 0.0
        for p in group["params"]:
            if p.grad is None:
                continue
            state = opt.state[p]
            if not state:
                state["step"] = 0
                state["beta1_power"] = float(np.float32(b1))
                state["beta2_power"] = float(np.float32(b2))
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            else:
                state["beta1_power"] = float(np.float32(state["beta1_power"]) * np.float32(b1))
                state["beta2_power"] = float(np.float32(state["beta2_power"]) * np.float32(b2))
            state["step"] += 1
            one = np.float32(1.0)
            lr_t = float(np.float32(group["lr"]) * np.sqrt(one - np.float32(state["beta2_power"]))
                         / (one - np.float32(state["beta1_power"])))
            params.append(p)
            grads.append(p.grad)
            ms.append(state["exp_avg"])
            vs.append(state["exp_avg_sq"])
        if not params:
            continue
        c1, c2, eps = tf_constants(b1, b2, group["eps"], params[0].dtype)  # TF's constants in the variable's dtype
        with torch.no_grad():
            dm = torch._foreach_sub(grads, ms)
            torch._foreach_mul_(dm, c1)
            torch._foreach_add_(ms, dm)
            dv = torch._foreach_mul(grads, grads)
            torch._foreach_sub_(dv, vs)
            torch._foreach_mul_(dv, c2)
            torch._foreach_add_(vs, dv)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_add_(denom, eps)
            upd = torch._foreach_mul(ms, lr_t)
            torch._foreach_div_(upd, denom)
            torch._foreach_sub_(params, upd)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_in_place_tf_adam_is_bit_identical_to_the_out_of_place_update(dtype):
    gen = torch.Generator().manual_seed(3)
    shapes = [(64, 32, 5, 5), (32,), (100, 512), (1,), (7, 3, 5, 5)]
    base = [torch.randn(s, generator=gen, dtype=dtype) * 0.02 for s in shapes]
    new = [nn.Parameter(t.clone()) for t in base]
    old = [nn.Parameter(t.clone()) for t in base]
    kw = dict(lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
    opt_new = TFAdam([{"params": new[:3]}, {"params": new[3:], "lr": 1e-3}], **kw)
    opt_old = TFAdam([{"params": old[:3]}, {"params": old[3:], "lr": 1e-3}], **kw)
    for t in range(6):
        for i, (a, b) in enumerate(zip(new, old)):
            if t == 2 and i == 1:  # a parameter without a gradient in one step is skipped by both
                a.grad = b.grad = None
                continue
            g = torch.randn(a.shape, generator=gen, dtype=dtype) * 10.0 ** (-t % 4 - 2)
            a.grad, b.grad = g.clone(), g.clone()
        opt_new.step()
        _reference_tf_adam_step(opt_old)
        for a, b in zip(new, old):
            assert torch.equal(a, b)
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(opt_new.state[a][key], opt_old.state[b][key])
            assert opt_new.state[a]["beta1_power"] == opt_old.state[b]["beta1_power"]
    sd = opt_new.state_dict()
    assert all(set(s) == {"step", "beta1_power", "beta2_power", "exp_avg", "exp_avg_sq"} for s in sd["state"].values())


def test_tf_adam_scratch_buffers_are_reused_across_steps():
    p = nn.Parameter(torch.randn(8, 4))
    opt = TFAdam([p])
    p.grad = torch.randn(8, 4)
    opt.step()
    first = [b.data_ptr() for b in opt._bufs[p]]
    opt.step()
    assert [b.data_ptr() for b in opt._bufs[p]] == first


class _Tiny(nn.Module):
    """conv 3→4, 3×3, stride 1, no padding on 6×6 (→ 4×4), then linear 64 → 5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


def test_count_flops_matches_a_hand_count_for_conv_and_linear():
    torch.manual_seed(0)
    model, x = _Tiny(), torch.randn(2, 3, 6, 6)
    conv = 2 * 2 * 4 * 4 * 4 * 3 * 3 * 3   # 2 · B · Cout · Hout · Wout · Cin · k · k (bias not counted)
    fc = 2 * 2 * 64 * 5                    # 2 · B · in · out
    assert gan_bench.count_flops(lambda: model(x)) == conv + fc
    # backward: the fc's input and weight gradients (2 matmuls of the same size), the conv's weight
    # gradient only (x does not require grad), each the size of the forward
    assert gan_bench.count_flops(lambda: model(x).sum().backward()) == conv + fc + 2 * fc + conv
    x.requires_grad_(True)
    assert gan_bench.count_flops(lambda: model(x).sum().backward()) == 3 * (conv + fc)


def test_count_flops_works_through_autograd_grad_on_a_leaf():
    """The gradient penalty differentiates w.r.t. a leaf x̂ (FlopCounterMode's module tracker breaks there)."""
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(64, 1))
    real, fake = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 6, 6)
    flops = gan_bench.count_flops(lambda: gradient_penalty(critic, real, fake, torch.rand(2)).backward())
    conv, fc = 2 * 2 * 4 * 4 * 4 * 3 * 3 * 3, 2 * 2 * 64 * 1
    assert flops > 3 * (conv + fc)  # forward, the input gradient, and the backward through both


def test_achieved_vs_gemm_by_hand():
    out = gan_bench.achieved_vs_gemm(flops=6e9, seconds=0.1, gemm=200.0)
    assert out == {"gflops": 60.0, "gemm_gflops": 200.0, "gemm_ratio": 0.3}


def test_gemm_gflops_is_positive_and_finite():
    g = gan_bench.gemm_gflops("cpu", n=128, reps=2)
    assert 0 < g < float("inf")


def test_bench_gan_quick_reports_a_consistent_ratio(tmp_path):
    out = tmp_path / "gan.json"
    res = CliRunner().invoke(cli_main, ["bench", "gan", "--quick", "--threads", "1", "--modes", "eager",
                                        "--profile", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "% of fp32 GEMM" in res.output
    data = json.loads(out.read_text())
    assert data["conditions"]["gemm_n"] == 256 and data["conditions"]["profile_iters"] == 1
    for r in data["results"]:
        assert "error" not in r, r
        want = gan_bench.count_flops(_quick_step(r["arch"]))
        assert r["gflop_per_iter"] == pytest.approx(want / 1e9, abs=1e-4)
        assert r["gflops"] == pytest.approx(r["gflop_per_iter"] / r["iter_s"]["median"], rel=0.01)
        assert r["gemm_ratio"] == pytest.approx(r["gflops"] / r["gemm_gflops"], rel=0.01)
        # the op profile: shares of the self time add up to 1; the convolutions' backward is among the top ops
        ops = {op["op"]: op for op in r["profile"]}
        assert sum(op["share"] for op in r["profile"]) == pytest.approx(1.0, abs=0.01)
        assert "aten::convolution_backward" in ops and f"{ops['aten::convolution_backward']['op']}" in res.output


def _quick_step(arch: str):
    step = gan_bench._build_step(arch, 32, "eager", width=8, batch=8, device=torch.device("cpu"))
    step()
    return step


def test_bench_gan_presets_make_the_cases():
    cfg = gan_bench.GanConfig(presets=("embedded-dcgan", "embedded-wgan-gp"), modes=("eager",))
    assert cfg.cases() == [("dcgan", 32, 32, 16), ("wgan-gp", 32, 32, 16)]
    assert gan_bench.GanConfig(sizes=(32,), width=8, batch=4, modes=("eager",)).cases() == \
        [("dcgan", 32, 8, 4), ("wgan-gp", 32, 8, 4)]


def test_bench_gan_measures_the_peer_dcgan_of_the_demo():
    """The demo's generator (preset demo-torch-dcgan) is a bench case: its row counts the FLOPs of one
    peer_iteration built independently here, and a compiled mode is a recorded error, not a silent skip."""
    from replication.gan.torch_dcgan import build_peer, peer_iteration

    cfg = gan_bench.GanConfig(presets=("demo-torch-dcgan", "embedded-wgan-gp"), modes=("eager",))
    assert cfg.cases() == [("torch-dcgan", 32, 32, 16), ("wgan-gp", 32, 32, 16)]
    cpu = torch.device("cpu")
    row = gan_bench.bench_one("torch-dcgan", 32, "eager", width=4, batch=4, iters=2, warmup=1, device=cpu, gemm_n=64)
    assert "error" not in row, row
    gan = build_peer(4, seed=5)
    real, z = torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, 100, 1, 1)
    peer_iteration(gan, real, z)
    want = gan_bench.count_flops(lambda: peer_iteration(gan, real, z))
    assert want > 0 and row["gflop_per_iter"] == round(want / 1e9, 4)
    bad = gan_bench.bench_one("torch-dcgan", 32, "compile", width=4, batch=4, iters=1, warmup=1, device=cpu)
    assert "eager only" in bad["error"]
