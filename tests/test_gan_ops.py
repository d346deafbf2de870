"""TF-semantics layers of gan_tf_port.ops/optim against references computed independently here.

CI has no TensorFlow, so each reference is written from TF's documented definition:
SAME conv = explicit zero padding (total//2 before, rest after) + an unpadded conv; SAME transposed
conv = the gradient of that SAME conv w.r.t. its input (what ``conv2d_transpose`` is), also checked
against a NumPy scatter loop; batch/layer norm = their formulas written out; TF Adam = its update rule
in NumPy float64. Tolerances: float32 convs summing ≤ 5·5·8 products agree to ~1e-6; 1e-5 is used.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gan_tf_port.ops import (
    Conv2dSame,
    ConvTranspose2dSame,
    TFBatchNorm1d,
    TFBatchNorm2d,
    TFLayerNorm,
    init_tf_,
    lrelu,
    same_pads,
    tf_normal_,
    tf_truncated_normal_,
    truncated_normal_std,
)
from gan_tf_port.optim import TFAdam, make_adam


def _np_same_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """Direct loop of TF's SAME conv definition (float64): out[i] = Σ x[i·s + a − pad_before] · w[a]."""
    n, cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    pt = max((oh - 1) * stride + k - h, 0) // 2
    pl = max((ow - 1) * stride + k - wd, 0) // 2
    out = np.zeros((n, cout, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for a in range(k):
                for c in range(k):
                    yi, yj = i * stride + a - pt, j * stride + c - pl
                    if 0 <= yi < h and 0 <= yj < wd:
                        out[:, :, i, j] += x[:, :, yi, yj] @ w[:, :, a, c].T
    return out + b[None, :, None, None]


def _np_same_deconv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, out_hw: int) -> np.ndarray:
    """NumPy scatter loop of TF conv2d_transpose SAME: each input pixel adds w·x at (i·s + a − pad_before)."""
    n, cin, h, wd = x.shape
    _, cout, k, _ = w.shape
    p = max((h - 1) * stride + k - out_hw, 0) // 2
    out = np.zeros((n, cout, out_hw, out_hw))
    for i in range(h):
        for j in range(wd):
            for a in range(k):
                for c in range(k):
                    oi, oj = i * stride + a - p, j * stride + c - p
                    if 0 <= oi < out_hw and 0 <= oj < out_hw:
                        out[:, :, oi, oj] += x[:, :, i, j] @ w[:, :, a, c]
    return out + b[None, :, None, None]


def test_same_pads_match_tf_rule():
    """5×5/2 on even sizes pads 1 before and 2 after (paper §2.2, §3.2; docs/gan.md); odd sizes pad symmetrically."""
    assert same_pads(64, 5, 2) == (1, 2)
    assert same_pads(32, 5, 2) == (1, 2)
    assert same_pads(4, 5, 2) == (1, 2)
    assert same_pads(7, 5, 2) == (2, 2)
    assert same_pads(5, 5, 2) == (2, 2)
    assert same_pads(8, 3, 1) == (1, 1)


@pytest.mark.parametrize("size", [8, 16, 7])
def test_conv_same_equals_explicit_pad_then_plain_conv(size):
    torch.manual_seed(0)
    conv = Conv2dSame(3, 4)
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, 3, size, size)
    got = conv(x)
    assert got.shape[-1] == math.ceil(size / 2)
    ref = _np_same_conv(x.double().numpy(), conv.weight.double().detach().numpy(),
                        conv.bias.double().detach().numpy(), 2)
    np.testing.assert_allclose(got.detach().numpy(), ref, atol=1e-5)
    if size % 2 == 0:
        # docs/gan.md (fidelity table): zero-pad (left 1, right 2, top 1, bottom 2) then Conv2d(padding=0).
        explicit = F.conv2d(F.pad(x, (1, 2, 1, 2)), conv.weight, conv.bias, stride=2)
        torch.testing.assert_close(got, explicit, rtol=0, atol=1e-6)
        # and PyTorch's symmetric padding=2 would not be the same function (one-pixel shift)
        sym = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=2)
        assert sym.shape == got.shape and not torch.allclose(sym, got, atol=1e-3)


@pytest.mark.parametrize("in_size,out_size", [(4, 8), (8, 16), (4, 7)])
def test_deconv_same_equals_gradient_of_same_conv(in_size, out_size):
    """conv2d_transpose(x, W, O, SAME) is d/du ⟨conv2d_SAME(u, W), x⟩ for u of size O (TF's definition)."""
    torch.manual_seed(1)
    deconv = ConvTranspose2dSame(5, 3)
    torch.nn.init.normal_(deconv.bias)
    x = torch.randn(2, 5, in_size, in_size, dtype=torch.float64)
    w = deconv.weight.detach().double()
    got = deconv.double()(x, (out_size, out_size)).detach()
    assert got.shape == (2, 3, out_size, out_size)
    # reference 1: vector-Jacobian product of the explicit-padding SAME conv (weight (5,3,k,k) = conv 3→5)
    u = torch.zeros(2, 3, out_size, out_size, dtype=torch.float64, requires_grad=True)
    pt, pb = same_pads(out_size, 5, 2)
    y = F.conv2d(F.pad(u, (pt, pb, pt, pb)), w, stride=2)
    (vjp,) = torch.autograd.grad(y, u, grad_outputs=x)
    torch.testing.assert_close(got, vjp + deconv.bias.detach()[None, :, None, None], rtol=0, atol=1e-10)
    # reference 2: NumPy scatter loop
    ref = _np_same_deconv(x.numpy(), w.numpy(), deconv.bias.detach().numpy(), 2, out_size)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-10)


def test_deconv_same_is_padding1_then_drop_last_row_and_column():
    """docs/gan.md's exact port for H → 2H: ConvTranspose2d(5, 2, padding=1), drop the last row and column."""
    torch.manual_seed(2)
    deconv = ConvTranspose2dSame(4, 2)
    x = torch.randn(1, 4, 4, 4)
    ref = F.conv_transpose2d(x, deconv.weight, deconv.bias, stride=2, padding=1)[..., :-1, :-1]
    torch.testing.assert_close(deconv(x), ref, rtol=0, atol=0)
    # output_padding=1 (the usual PyTorch way to get 2H) is a different function
    other = F.conv_transpose2d(x, deconv.weight, deconv.bias, stride=2, padding=2, output_padding=1)
    assert other.shape == ref.shape and not torch.allclose(other, ref, atol=1e-3)


def test_deconv_rejects_impossible_output_size():
    with pytest.raises(ValueError):
        ConvTranspose2dSame(2, 2)(torch.randn(1, 2, 4, 4), (12, 12))


def test_batch_norm_formula_momentum_and_eval_mode():
    """TF batch_norm(decay 0.9, eps 1e-5): train uses batch stats (biased var); moving = 0.9·moving + 0.1·batch."""
    torch.manual_seed(3)
    bn = TFBatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.0, 3.0]))
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64) * 3 + 1
    bn = bn.double()
    y = bn(x)
    xn = x.numpy()
    mean = xn.mean(axis=(0, 2, 3))
    var = xn.var(axis=(0, 2, 3))  # biased, for normalising
    ref = (xn - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    ref = ref * np.array([0.5, 2.0, -1.0])[None, :, None, None] + np.array([0.1, 0.0, 3.0])[None, :, None, None]
    # atol 1e-6: PyTorch's CPU kernel rounds 1/sqrt(var + eps) through float32 even for float64 inputs;
    # an eps of 1e-3 instead of 1e-5 would already move outputs by ~1e-4.
    np.testing.assert_allclose(y.detach().numpy(), ref, atol=1e-6)
    m = xn.size // 3
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, atol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var * m / (m - 1), atol=1e-12)
    bn.eval()
    x2 = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    ref2 = (x2.numpy() - bn.running_mean.numpy()[None, :, None, None]) / np.sqrt(
        bn.running_var.numpy()[None, :, None, None] + 1e-5)
    ref2 = ref2 * np.array([0.5, 2.0, -1.0])[None, :, None, None] + np.array([0.1, 0.0, 3.0])[None, :, None, None]
    np.testing.assert_allclose(bn(x2).detach().numpy(), ref2, atol=1e-6)
    assert TFBatchNorm1d(7).eps == 1e-5 and TFBatchNorm1d(7).momentum == 0.1


def test_layer_norm_is_tf1_layer_norm_over_hwc_with_per_channel_affine():
    torch.manual_seed(4)
    ln = TFLayerNorm(4).double()
    gamma = torch.tensor([1.5, -0.5, 2.0, 0.25], dtype=torch.float64)
    beta = torch.tensor([0.0, 1.0, -2.0, 0.5], dtype=torch.float64)
    with torch.no_grad():
        ln.weight.copy_(gamma)
        ln.bias.copy_(beta)
    x = torch.randn(3, 4, 6, 5, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1, 2.0]).double().view(1, 4, 1, 1)
    xn = x.numpy()
    mean = xn.mean(axis=(1, 2, 3), keepdims=True)
    var = xn.var(axis=(1, 2, 3), keepdims=True)
    ref = (xn - mean) / np.sqrt(var + 1e-12) * gamma.numpy()[None, :, None, None] + beta.numpy()[None, :, None, None]
    np.testing.assert_allclose(ln(x).detach().numpy(), ref, atol=1e-10)
    assert ln.eps == 1e-12
    assert sum(p.numel() for p in ln.parameters()) == 2 * 4  # per-channel γ, β (not per element)
    # InstanceNorm (per-channel statistics) would be a different function
    inst = F.instance_norm(x) * gamma.view(1, 4, 1, 1) + beta.view(1, 4, 1, 1)
    assert not torch.allclose(inst, ln(x), atol=1e-3)


def test_lrelu_is_max_x_02x():
    x = torch.linspace(-3, 3, 61)
    torch.testing.assert_close(lrelu(x), torch.maximum(x, 0.2 * x))


def test_truncated_normal_bounds_and_std():
    torch.manual_seed(5)
    w = torch.empty(400_000)
    tf_truncated_normal_(w, 0.02)
    assert w.abs().max().item() <= 0.04 + 1e-9  # absolute bounds ±2σ
    assert w.abs().max().item() > 0.039
    # std of N(0, σ²) truncated at ±2σ ≈ 0.8796 σ (closed form in the test: 1 − 2·2φ(2)/(Φ(2)−Φ(−2)))
    phi2 = math.exp(-2) / math.sqrt(2 * math.pi)
    expected = 0.02 * math.sqrt(1 - 4 * phi2 / (2 * 0.5 * (1 + math.erf(2 / math.sqrt(2))) - 1))
    assert abs(truncated_normal_std(0.02) - expected) < 1e-12
    assert abs(w.std().item() - expected) / expected < 0.01
    assert abs(w.mean().item()) < 1e-4
    n = torch.empty(400_000)
    tf_normal_(n, 0.02)
    assert abs(n.std().item() - 0.02) / 0.02 < 0.01
    assert (n.abs() > 0.04).float().mean().item() > 0.04  # a plain normal has ~4.6% beyond 2σ


def test_init_tf_assigns_each_initialiser_to_its_layer():
    torch.manual_seed(6)
    m = torch.nn.Sequential(Conv2dSame(8, 64), ConvTranspose2dSame(64, 32), torch.nn.Linear(256, 64),
                            TFBatchNorm2d(32), TFLayerNorm(32))
    for p in m.parameters():
        torch.nn.init.constant_(p, 7.0)
    init_tf_(m)
    conv, deconv, lin, bn, ln = m
    assert conv.weight.abs().max() <= 0.04 and conv.bias.abs().max() == 0
    assert deconv.weight.abs().max() > 0.04 and deconv.bias.abs().max() == 0
    assert lin.weight.abs().max() > 0.04 and lin.bias.abs().max() == 0
    assert abs(deconv.weight.std().item() - 0.02) < 0.002 and abs(lin.weight.std().item() - 0.02) < 0.002
    for norm in (bn, ln):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


def test_tf_adam_matches_tf_update_rule_in_numpy():
    """θ −= lr·sqrt(1−β2^t)/(1−β1^t) · m / (sqrt(v) + ε), ε on the uncorrected sqrt(v)."""
    torch.manual_seed(7)
    p = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    opt = TFAdam([p], lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
    theta = p.detach().numpy().copy()
    m = np.zeros(5)
    v = np.zeros(5)
    for t in range(1, 5):
        g = np.random.default_rng(t).normal(size=5) * 10.0 ** (-t)
        p.grad = torch.from_numpy(g.copy())
        opt.step()
        m = 0.5 * m + 0.5 * g
        v = 0.999 * v + 0.001 * g * g
        theta = theta - 2e-4 * math.sqrt(1 - 0.999 ** t) / (1 - 0.5 ** t) * m / (np.sqrt(v) + 1e-8)
        np.testing.assert_allclose(p.detach().numpy(), theta, rtol=1e-6, atol=1e-12)


def _tf_apply_adam_float32(theta, m, v, g, b1p, b2p, lr, b1, b2, eps):
    """NumPy emulation of TF's ``ApplyAdamNonCuda`` kernel for T = float32 (training_ops.cc), written
    independently of ``TFAdam``: every constant is cast to T first and every operation rounds to T."""
    f = np.float32
    one = f(1)
    alpha = f(f(f(lr) * f(np.sqrt(f(one - f(b2p))))) / f(one - f(b1p)))
    m = f(m + f(f(g - m) * f(one - f(b1))))
    v = f(v + f(f(f(g * g) - v) * f(one - f(b2))))
    theta = f(theta - f(f(m * alpha) / f(np.sqrt(v) + f(eps))))
    return theta, m, v


def test_tf_adam_is_tf_kernel_bit_for_bit_in_float32():
    """TF computes 1 − β2 in float32 (0.00099998713 for β2 = 0.999, not 0.0010000000475), and 1 − β1,
    ε and the β powers likewise; the port's update equals an emulation of TF's kernel bit for bit."""
    assert np.float32(1) - np.float32(0.999) == np.float32(0.00099998713)
    assert float(np.float32(1) - np.float32(0.999)) != float(np.float32(1.0 - 0.999))  # the two constants differ
    rng = np.random.default_rng(3)
    shape = (257,)
    for b1 in (0.5, 0.9):
        p = torch.nn.Parameter(torch.from_numpy(rng.normal(size=shape).astype(np.float32)))
        opt = TFAdam([p], lr=2e-4, betas=(b1, 0.999), eps=1e-8)
        theta = p.detach().numpy().copy()
        m = np.zeros(shape, np.float32)
        v = np.zeros(shape, np.float32)
        b1p, b2p = np.float32(b1), np.float32(0.999)
        for _ in range(8):
            g = (rng.normal(size=shape) * 10.0 ** rng.uniform(-6, 0, size=shape)).astype(np.float32)
            p.grad = torch.from_numpy(g.copy())
            opt.step()
            theta, m, v = _tf_apply_adam_float32(theta, m, v, g, b1p, b2p, 2e-4, b1, 0.999, 1e-8)
            b1p, b2p = np.float32(b1p * np.float32(b1)), np.float32(b2p * np.float32(0.999))
            np.testing.assert_array_equal(opt.state[p]["exp_avg_sq"].numpy(), v)
            np.testing.assert_array_equal(opt.state[p]["exp_avg"].numpy(), m)
            np.testing.assert_array_equal(p.detach().numpy(), theta)


def test_tf_adam_float64_constant_would_differ():
    """The check above has teeth: v updated with the float64 1 − β2 differs from TF's in float32."""
    g = np.full(4, 3.0, np.float32)
    tf_v = np.float32(np.float32(g * g) * (np.float32(1) - np.float32(0.999)))
    f64_v = np.float32(np.float32(g * g) * np.float32(1.0 - 0.999))
    assert not np.array_equal(tf_v, f64_v)


def test_tf_adam_differs_from_torch_adam_where_epsilon_matters():
    """With tiny gradients the two ε placements give different first steps (TF's ε damps more)."""
    grads = torch.full((3,), 1e-9)
    moved = {}
    for kind in ("tf", "torch"):
        p = torch.nn.Parameter(torch.zeros(3))
        opt = make_adam([p], kind=kind)
        p.grad = grads.clone()
        opt.step()
        moved[kind] = p.detach().abs().max().item()
    # first step: TF lr·g·sqrt(1−β2)/((1−β1)(|g|+ε)) vs torch lr·g/((1−β1)(|g|/sqrt(1−β2)+ε))
    g, lr = 1e-9, 2e-4
    tf_step = lr * math.sqrt(0.001) / 0.5 * (0.5 * g) / (math.sqrt(0.001) * g + 1e-8)
    torch_step = lr / 0.5 * (0.5 * g) / (g + 1e-8)
    assert moved["tf"] == pytest.approx(tf_step, rel=1e-3)
    assert moved["torch"] == pytest.approx(torch_step, rel=1e-3)
    assert moved["torch"] > 2 * moved["tf"]
