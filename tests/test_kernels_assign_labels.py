"""kernels.assign_labels: every available backend against the float64 torch reference.

See docs/labeling.md#label-rules, docs/kernels.md.

Backends: ``torch`` and ``numba`` on CPU tensors; ``numba-cuda`` under the CUDA simulator
(tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1 without a GPU; tiny shapes, the simulator runs
every thread in Python); ``numba-cuda`` and ``cupy`` on CUDA tensors carry the ``gpu`` marker.
Also here: the NVRTC compile check of the CUDA C (no GPU needed) and the benchmark/CLI smoke test.
"""
from __future__ import annotations

import math

import pytest
import torch
from kernel_backends import BACKENDS

import kernels
from kernels.backends import BackendUnavailableError
from kernels.reference import assign_labels as ref

# Shapes: single row, single class, WIDER (14), COCO (80), NUS-WIDE (81), one above 128, and an
# odd one with more rows than a numba-cuda block holds. Kept tiny for the simulator.
SHAPES = [(1, 1), (1, 14), (5, 14), (2, 80), (1, 81), (1, 130), (17, 7)]


def _scores(n: int, c: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * 4.0


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("n,c", SHAPES)
def test_spl_matches_float64_reference(backend, device, n, c):
    s = _scores(n, c)
    for spl_input, temperature in (("probs", 1.0), ("logits", 0.5)):
        want, _ = ref.spl(s, spl_input == "probs", 1.0 / temperature)
        got = kernels.assign_labels(s.to(device), "spl", spl_input=spl_input, temperature=temperature,
                                    backend=backend)
        assert kernels.last_backend() == backend
        assert got.dtype == torch.float32 and got.device.type == device and got.shape == (n, c)
        # float32 output (ulp 6e-8 at 1) computed in float32 on the GPU backends: v/T carries a
        # relative error ~1e-7 of |v/T| <= 20 into the exponent, i.e. ~2e-6 relative in y.
        torch.testing.assert_close(got.cpu().double(), want, rtol=5e-6, atol=1e-7)
        torch.testing.assert_close(got.sum(dim=1).cpu(), torch.ones(n), rtol=0, atol=2e-6)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("n,c", SHAPES)
def test_pseudo_matches_reference_with_ties(backend, device, n, c):
    # integer scores create many exact ties: every backend must break them towards the lower index
    s = torch.randint(-2, 3, (n, c), generator=torch.Generator().manual_seed(1)).double()
    k = min(3, c)
    want, _ = ref.top_k(s, k)
    got = kernels.assign_labels(s.to(device), "pseudo", k=k, backend=backend).cpu()
    assert torch.equal(got, want.float())
    assert torch.equal(got.sum(dim=1), torch.full((n,), float(k)))


def test_pseudo_hand_example_and_rank_by_logits():
    s = torch.tensor([[0.1, 3.0, -1.0, 3.0, 2.0],
                      [30.0, 20.0, 0.0, -5.0, 25.0]])   # sigmoid(20..30) == 1.0 in float32
    want = torch.tensor([[0.0, 1, 0, 1, 1], [1, 1, 0, 0, 1]])
    for backend in ("torch", "numba"):
        assert torch.equal(kernels.assign_labels(s, "pseudo", backend=backend), want)
        assert torch.equal(kernels.assign_labels(s, "pseudo", k=1, backend=backend)[0],
                           torch.tensor([0.0, 1, 0, 0, 0]))


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("n,c", [(1, 1), (5, 14), (2, 81), (1, 130)])
def test_random_is_reproducible_and_backend_independent(backend, device, n, c):
    s = _scores(n, c).to(device)
    k = min(3, c)

    def draw(seed, name):
        g = torch.Generator(device=device).manual_seed(seed)
        return kernels.assign_labels(s, "random", k=k, generator=g, backend=name).cpu()

    got = draw(7, backend)
    assert torch.equal(got.sum(dim=1), torch.full((n,), float(k)))
    assert set(got.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(got, draw(7, "torch"))           # same generator state → same labels
    if backend in ("torch", "numba"):
        assert torch.equal(got, draw(7, backend))


def test_random_is_uniform_over_classes():
    n, c, k = 6000, 10, 3
    s = torch.zeros(n, c)
    y = kernels.assign_labels(s, "random", k=k, generator=torch.Generator().manual_seed(0), backend="numba")
    counts = y.sum(dim=0)
    expected = n * k / c
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 30.0, chi2   # chi-square with 9 dof: P(chi2 > 30) ~ 4e-4 for a uniform draw
    # ... and independent of the scores: a different seed gives different rows
    y2 = kernels.assign_labels(s, "random", k=k, generator=torch.Generator().manual_seed(1), backend="numba")
    assert not torch.equal(y, y2)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_smooth_is_one_over_c(backend, device):
    for n, c in ((1, 1), (4, 14), (2, 81)):
        y = kernels.assign_labels(_scores(n, c).to(device), "smooth", backend=backend).cpu()
        assert torch.equal(y, torch.full((n, c), 1.0 / c, dtype=torch.float32))


def test_spl_over_probabilities_is_nearly_uniform():
    # docs/labeling.md#label-rules: over sigmoid outputs in [0, 1], the softmax ratio max/min is at most e.
    y = kernels.assign_labels(_scores(50, 80) * 10, "spl", backend="numba")
    ratio = y.max(dim=1).values / y.min(dim=1).values
    assert float(ratio.max()) <= math.e + 1e-5
    assert float(ratio.max()) > 2.0   # confident scores do reach close to the bound


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("rule", kernels.RULES)
def test_non_finite_scores_are_rejected(backend, device, rule):
    s = _scores(4, 14)
    s[1, 3] = float("nan")
    s[3, 0] = float("inf")
    s[3, 5] = float("-inf")
    with pytest.raises(ValueError, match=r"2 of 4 rows"):
        kernels.assign_labels(s.to(device), rule, backend=backend)


def test_float64_float16_and_empty_inputs():
    s = _scores(6, 14)
    for dtype in (torch.float64, torch.float16):
        for backend in ("torch", "numba"):
            y = kernels.assign_labels(s.to(dtype), "spl", backend=backend)
            assert y.dtype == torch.float32
            torch.testing.assert_close(y.double(), ref.spl(s.to(dtype).double(), True, 1.0)[0],
                                       rtol=1e-5, atol=1e-7)
    for backend in ("torch", "numba"):
        for rule in kernels.RULES:
            assert kernels.assign_labels(torch.zeros(0, 5), rule, backend=backend).shape == (0, 5)


def test_invalid_arguments():
    s = _scores(3, 5)
    with pytest.raises(ValueError, match="unknown rule"):
        kernels.assign_labels(s, "soft")
    with pytest.raises(ValueError, match="k must be"):
        kernels.assign_labels(s, "pseudo", k=6)
    with pytest.raises(ValueError, match="k must be"):
        kernels.assign_labels(s, "random", k=0)
    with pytest.raises(ValueError, match="temperature"):
        kernels.assign_labels(s, "spl", temperature=0.0)
    with pytest.raises(ValueError, match="spl_input"):
        kernels.assign_labels(s, "spl", spl_input="softmax")
    with pytest.raises(ValueError, match="2-D"):
        kernels.assign_labels(s[0], "spl")
    with pytest.raises(ValueError, match="unknown backend"):
        kernels.assign_labels(s, "spl", backend="triton")


def test_auto_picks_by_size_and_named_backends_never_fall_back():
    for rule in kernels.RULES:
        threshold = kernels.AUTO_NUMBA_MIN_ELEMENTS[f"assign_labels.{rule}"]
        kernels.assign_labels(torch.zeros(1, 3), rule, k=1)
        assert kernels.last_backend() == "torch"
        big = torch.zeros((threshold or 100_000) // 14 + 1, 14)
        kernels.assign_labels(big, rule)
        assert kernels.last_backend() == ("torch" if threshold is None else "numba")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="cupy"):
            kernels.assign_labels(torch.zeros(2, 14), "spl", backend="cupy")
    assert "torch" in kernels.available_backends("cpu")


def test_cuda_sources_compile_with_nvrtc():
    """The CUDA C compiles for sm_90 at every padded class count (NVRTC, no GPU needed)."""
    module = pytest.importorskip("kernels.cupy_cuda.module")
    try:
        mapping = module.nvrtc_compile("assign_labels", (0, 4, 7, 10))  # every template branch
    except Exception as e:  # only a missing NVRTC library may skip; a compile error fails
        if type(e).__name__ == "CompileException":
            raise
        pytest.skip(f"NVRTC unavailable: {e}")
    assert {"spl_rows<0>", "spl_rows<10>", "top_k_rows<7>", "fill_value"} <= set(mapping)


def test_row_config_mirrors_persistent_softmax():
    from kernels.cupy_cuda.module import RowConfig

    # (C, padded, lanes per row, elements per lane, rows per warp, rows per 128-thread block)
    for c, padded, warp, iters, rows, rpb in [(1, 1, 1, 1, 2, 256), (14, 16, 16, 1, 2, 16),
                                               (80, 128, 32, 4, 2, 8), (81, 128, 32, 4, 2, 8),
                                               (130, 256, 32, 8, 1, 4), (1000, 1024, 32, 32, 1, 4)]:
        cfg = RowConfig.for_classes(c)
        assert (cfg.padded, cfg.warp, cfg.iters, cfg.rows, cfg.rows_per_block) == (padded, warp, iters, rows, rpb)
        assert cfg.warp * cfg.warps_per_block == 128


def test_bench_kernels_cli_writes_and_deduplicates_csv(tmp_path):
    from click.testing import CliRunner

    from replication.benchmarks.kernels import read_rows as read_csv
    from replication.benchmarks.kernels import write_rows as write_csv
    from replication.commands.bench import kernels_command as command

    out = tmp_path / "kernels.csv"
    args = ["--quick", "--out", str(out), "--device", "cpu", "--providers", "torch-eager,numba,auto",
            "--ops", "assign_labels"]
    res = CliRunner().invoke(command, args)
    assert res.exit_code == 0, res.output
    rows = read_csv(out)
    # 3 rules x (1 step N + bulk) x 2 C x 3 providers, one cpu_wall row each
    assert len(rows) == 3 * 2 * 2 * 3
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["resolved_backend"] for r in rows if r["backend"] == "auto"} <= {"torch", "numba"}
    assert all(float(r["p20"]) <= float(r["p50"]) <= float(r["p80"]) for r in rows)
    merged = write_csv(out, [dict(r, p50="1.0") for r in rows[:2]])  # same keys again: replaced
    assert len(merged) == len(rows) == len(read_csv(out))
    assert [r["p50"] for r in merged[-2:]] == ["1.0", "1.0"]
    res = CliRunner().invoke(command, args[:-2] + ["--ops", "nope"])
    assert res.exit_code != 0 and "unknown op" in str(res.exception)


def test_vectorisable_exp32_accuracy():
    np = pytest.importorskip("numpy")
    from numba import njit

    from kernels.numba_cpu.fastexp import exp32

    @njit(cache=False)
    def apply(x, out):
        for i in range(x.size):
            out[i] = exp32(x[i])

    x = np.linspace(-87.0, 88.0, 200_001).astype(np.float32)
    out = np.empty_like(x)
    apply(x, out)
    rel = np.abs(out.astype(np.float64) - np.exp(x.astype(np.float64))) / np.exp(x.astype(np.float64))
    assert rel.max() < 5e-7                        # a few float32 ulp (ulp = 1.2e-7 relative)
    edge = np.array([-1e4, 0.0, 1e4], dtype=np.float32)
    apply(edge, out[:3])
    assert 0.0 < out[0] < 1e-37 and out[1] == 1.0 and 1e38 < out[2] < np.inf   # clamped range
