"""kernels.weighted_soft_cross_entropy: loss and gradient of every available backend against the
float64 autograd reference (docs/labeling.md#loss, docs/kernels.md), gradcheck on the CPU backends, Caffe hand values,
weights, mask, and the softmax reading of Eq. (3).

Backends as in test_kernels_assign_labels.py: ``torch`` and ``numba`` compute in the logits' dtype
(float64 here, so they match the reference to ~1e-12); ``numba-cuda`` (simulator in CI, GPU with
the ``gpu`` marker) and ``cupy`` (``gpu``) compute in float32.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kernel_backends import BACKENDS

import kernels
from kernels.reference.soft_cross_entropy import soft_cross_entropy_reference

# single row, single class, WIDER/COCO/NUS-WIDE class counts, one above 128, and (9, 14): more
# rows than one numba-cuda block, so the simulator runs the grid-stride loop and the last-block sum
SHAPES = [(1, 1), (9, 14), (1, 80), (2, 81), (1, 130)]
FLOAT32_BACKENDS = {"numba-cuda", "cupy"}


def _tol(backend: str) -> dict:
    # float64 backends: summation order only. float32 backends: each term carries ~1e-7 relative
    # error (exp/log1p in float32) and the loss sums them in float64, so 1e-5 relative covers it;
    # gradients are O(1/N) values with ~1e-7 relative error.
    return dict(rtol=1e-5, atol=1e-6) if backend in FLOAT32_BACKENDS else dict(rtol=1e-10, atol=1e-12)


def _inputs(n: int, c: int, seed: int = 0, soft: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=torch.float64) * 3.0
    y = torch.rand(n, c, generator=g, dtype=torch.float64) if soft else \
        (torch.rand(n, c, generator=g) < 0.3).double()
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    m = (torch.rand(n, c, generator=g) > 0.25)
    return x, y, w, m


def _loss_and_grad(fn, x):
    x = x.detach().clone().requires_grad_()
    loss = fn(x)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


# every backend × shape, except (1, 80) in the slow simulator: (2, 81) has the same block layout
CASES = [pytest.param(*b.values, n, c, marks=b.marks, id=f"{b.id}-{n}x{c}")
         for b in BACKENDS for n, c in SHAPES if not (b.id == "numba-cuda-sim" and (n, c) == (1, 80))]


@pytest.mark.parametrize("backend,device,n,c", CASES)
@pytest.mark.parametrize("mode", kernels.MODES)
def test_loss_and_gradient_match_reference(backend, device, n, c, mode):
    x, y, w, m = _inputs(n, c)
    cases = [(None, None, "batch"), (w, None, "elements"), (w, m, "batch")]
    for weights, mask, normalize in cases:
        want_l, want_g = _loss_and_grad(lambda t: soft_cross_entropy_reference(
            t, y, weights, mask, mode=mode, normalize=normalize), x)
        d = torch.device(device)
        got_l, got_g = _loss_and_grad(lambda t: kernels.weighted_soft_cross_entropy(
            t, y.to(d), None if weights is None else weights.to(d),
            mask=None if mask is None else mask.to(d), mode=mode, normalize=normalize, backend=backend),
            x.to(d))
        assert kernels.last_backend() == backend
        assert got_l.dtype == torch.float64 and got_g.dtype == torch.float64
        torch.testing.assert_close(got_l.cpu(), want_l, **_tol(backend))
        torch.testing.assert_close(got_g.cpu(), want_g, **_tol(backend))


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("mode", kernels.MODES)
def test_gradcheck_float64(backend, mode):
    x, y, w, m = _inputs(4, 6, seed=3)
    m[0] = False   # a fully masked row
    for weights, mask in ((None, None), (w, m)):
        fn = lambda t: kernels.weighted_soft_cross_entropy(t, y, weights, mask=mask, mode=mode,  # noqa: E731
                                                           normalize="elements", backend=backend)
        assert torch.autograd.gradcheck(fn, (x.clone().requires_grad_(),), eps=1e-6, atol=1e-7)


def test_sigmoid_hand_values_caffe():
    # Caffe SigmoidCrossEntropyLoss: sum of BCE-with-logits over N×C, divided by N.
    x = torch.tensor([[0.0, 2.0], [-1.0, 40.0]], dtype=torch.float64)
    y = torch.tensor([[0.5, 1.0], [0.0, 0.25]], dtype=torch.float64)
    terms = [math.log(2.0), math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0)),
             40.0 * 0.75 + math.log1p(math.exp(-40.0))]
    for backend in ("torch", "numba"):
        loss = kernels.weighted_soft_cross_entropy(x, y, backend=backend)
        assert loss.item() == pytest.approx(sum(terms) / 2, rel=1e-12)
        loss_e = kernels.weighted_soft_cross_entropy(x, y, normalize="elements", backend=backend)
        assert loss_e.item() == pytest.approx(sum(terms) / 4, rel=1e-12)
        xr = x.clone().requires_grad_()
        kernels.weighted_soft_cross_entropy(xr, y, backend=backend).backward()
        torch.testing.assert_close(xr.grad, (torch.sigmoid(x) - y) / 2, rtol=1e-12, atol=1e-15)


def test_softmax_matches_torch_cross_entropy_with_probability_targets():
    # independent library check: F.cross_entropy with class-probability targets (rows sum to 1)
    x, y, w, _ = _inputs(7, 14, seed=5)
    q = y / y.sum(dim=1, keepdim=True)
    want = (F.cross_entropy(x, q, reduction="none") * w).sum() / 7
    for backend in ("torch", "numba"):
        got = kernels.weighted_soft_cross_entropy(x, y * 3.0, w, mode="softmax", backend=backend)  # unnormalised y
        assert got.item() == pytest.approx(want.item(), rel=1e-12)
    # `elements` is the batch mean of Eq. (3) with its 1/C: one-hot target → -log p_c / C
    one_hot = torch.zeros(1, 5, dtype=torch.float64)
    one_hot[0, 2] = 1.0
    xs = torch.tensor([[0.3, -1.0, 2.0, 0.0, 1.0]], dtype=torch.float64)
    got = kernels.weighted_soft_cross_entropy(xs, one_hot, mode="softmax", normalize="elements", backend="numba")
    assert got.item() == pytest.approx(-torch.log_softmax(xs, 1)[0, 2].item() / 5, rel=1e-12)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_softmax_rows_without_target_mass_contribute_nothing(backend):
    x, y, _, _ = _inputs(4, 9, seed=2)
    y[1] = 0.0
    xr = x.clone().requires_grad_()
    loss = kernels.weighted_soft_cross_entropy(xr, y, mode="softmax", backend=backend)
    loss.backward()
    assert torch.equal(xr.grad[1], torch.zeros(9, dtype=torch.float64))
    keep = [0, 2, 3]
    rest = kernels.weighted_soft_cross_entropy(x[keep], y[keep], mode="softmax", backend=backend)
    assert loss.item() == pytest.approx(rest.item() * 3 / 4, rel=1e-12)   # still divided by N = 4


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("mode", kernels.MODES)
def test_zero_weight_removes_a_sample(backend, device, mode):
    x, y, w, _ = _inputs(5, 14, seed=4)
    w[2] = 0.0
    y[2] = float("nan")        # never read: a zero-weight sample may be unlabeled
    d = torch.device(device)
    xr = x.to(d).requires_grad_()
    loss = kernels.weighted_soft_cross_entropy(xr, y.to(d), w.to(d), mode=mode, backend=backend)
    loss.backward()
    assert torch.equal(xr.grad[2].cpu(), torch.zeros(14, dtype=torch.float64))
    keep = [0, 1, 3, 4]
    rest = soft_cross_entropy_reference(x[keep], y[keep], w[keep], mode=mode)
    # the normaliser stays N = 5 (Caffe: batch size, not the sum of weights)
    assert loss.item() == pytest.approx(rest.item() * 4 / 5, rel=_tol(backend)["rtol"])


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_masked_elements_have_no_loss_and_no_gradient(backend, device):
    x, y, _, m = _inputs(3, 14, seed=6)
    y[~m] = float("nan")       # ignored WIDER attributes: never read
    d = torch.device(device)
    for mode in kernels.MODES:
        xr = x.to(d).requires_grad_()
        loss = kernels.weighted_soft_cross_entropy(xr, y.to(d), mask=m.to(d), mode=mode, backend=backend)
        loss.backward()
        assert torch.isfinite(loss).item()
        assert torch.equal(xr.grad.cpu()[~m], torch.zeros(int((~m).sum()), dtype=torch.float64))
        if mode == "sigmoid":   # masked BCE = BCE of the kept elements, normaliser N
            want = F.binary_cross_entropy_with_logits(x[m], y[m], reduction="sum") / 3
            assert loss.item() == pytest.approx(want.item(), rel=_tol(backend)["rtol"])


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_backward_scales_saved_gradient(backend):
    x, y, w, _ = _inputs(4, 5, seed=8)
    g1 = _loss_and_grad(lambda t: kernels.weighted_soft_cross_entropy(t, y, w, backend=backend), x)[1]
    g3 = _loss_and_grad(lambda t: -3.0 * kernels.weighted_soft_cross_entropy(t, y, w, backend=backend), x)[1]
    torch.testing.assert_close(g3, -3.0 * g1, rtol=1e-14, atol=0)


def test_dtypes_and_empty_batch():
    x, y, w, _ = _inputs(4, 14)
    for backend in ("torch", "numba"):
        x16 = x.half().requires_grad_()
        loss = kernels.weighted_soft_cross_entropy(x16, y.half(), w.half(), backend=backend)
        loss.backward()
        assert loss.dtype == torch.float16 and x16.grad.dtype == torch.float16
        want = soft_cross_entropy_reference(x.half().double(), y.half().double(), w.half().double())
        assert loss.item() == pytest.approx(want.item(), rel=2e-3)   # float16 output rounding
        x32 = x.float().requires_grad_()
        loss32 = kernels.weighted_soft_cross_entropy(x32, y.float(), backend=backend)
        assert loss32.dtype == torch.float32
        empty = torch.zeros(0, 14, requires_grad=True)
        loss0 = kernels.weighted_soft_cross_entropy(empty, torch.zeros(0, 14), backend=backend)
        loss0.backward()
        assert loss0.item() == 0.0 and empty.grad.shape == (0, 14)


def test_invalid_arguments():
    x, y, w, m = _inputs(3, 4)
    f = kernels.weighted_soft_cross_entropy
    with pytest.raises(ValueError, match="targets must have"):
        f(x, y[:, :3])
    with pytest.raises(ValueError, match="weights must have"):
        f(x, y, w[:2])
    with pytest.raises(ValueError, match="mask must have"):
        f(x, y, mask=m[:2])
    with pytest.raises(ValueError, match="mode"):
        f(x, y, mode="hinge")
    with pytest.raises(ValueError, match="normalize"):
        f(x, y, normalize="valid")
    with pytest.raises(ValueError, match="no gradient is computed for targets"):
        f(x, y.clone().requires_grad_())


def test_auto_picks_by_size():
    for mode in kernels.MODES:
        threshold = kernels.AUTO_NUMBA_MIN_ELEMENTS[f"soft_cross_entropy.{mode}"]
        kernels.weighted_soft_cross_entropy(torch.zeros(1, 3), torch.ones(1, 3), mode=mode)
        assert kernels.last_backend() == "torch"
        n = (threshold or 100_000) // 14 + 1
        kernels.weighted_soft_cross_entropy(torch.zeros(n, 14), torch.ones(n, 14), mode=mode)
        assert kernels.last_backend() == ("torch" if threshold is None else "numba")


def test_cuda_sources_compile_with_nvrtc():
    """The loss kernel compiles for sm_90 in both modes (NVRTC, no GPU needed)."""
    module = pytest.importorskip("kernels.cupy_cuda.module")
    try:
        mapping = module.nvrtc_compile("soft_cross_entropy", (0, 7, 10))  # WARP 1 and 32, ROWS 2 and 1
    except Exception as e:  # only a missing NVRTC library may skip; a compile error fails
        if type(e).__name__ == "CompileException":
            raise
        pytest.skip(f"NVRTC unavailable: {e}")
    assert {"sce_forward<0, 0>", "sce_forward<10, 1>"} <= set(mapping)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cupy", "numba-cuda"])
def test_gpu_forward_is_one_launch_and_deterministic(backend):
    from torch.profiler import ProfilerActivity, profile

    x, y, w, _ = _inputs(4096, 81)
    x, y, w = x.float().cuda(), y.float().cuda(), w.float().cuda()
    first = kernels.weighted_soft_cross_entropy(x, y, w, backend=backend)   # compiles
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        again = kernels.weighted_soft_cross_entropy(x, y, w, backend=backend)
        torch.cuda.synchronize()
    launches = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert len(launches) == 1, [e.name for e in launches]
    assert torch.equal(first, again)   # fixed-order last-block reduction
