"""Sample-quality measures of a GAN in a classifier's feature space (issue #12; docs/gan.md#sample-quality).

Pure functions on arrays and tensors; reading the runs and writing ``quality.json`` happens one layer
up, in :mod:`replication.gan.quality_step`.

* **Fréchet distance** (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to
  a local Nash equilibrium"): ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½) between Gaussians fitted to two
  feature sets, in float64. Tr((Σ₁Σ₂)^½) is the sum of the square roots of the eigenvalues of the
  symmetric PSD matrix Σ₁^½ Σ₂ Σ₁^½ (the same eigenvalues as Σ₁Σ₂), so only ``eigh`` is needed.
* **KID** (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimator of MMD² with the
  cubic polynomial kernel k(x, y) = (x·y / d + 1)³, averaged over random subsets (100 subsets of
  1,000 by default, as in their code and torchmetrics).
* **Precision and recall** (Kynkäänniemi et al. 2019, "Improved precision and recall metric for
  assessing generative models"): the real manifold is the union of the balls around each real feature
  vector with the radius of its k-th nearest real neighbour (k = 3); precision is the fraction of
  generated samples inside it, recall the fraction of real samples inside the generated manifold.
* **Label statistics** of the samples under the baseline classifier, with the project's SPL label
  (:func:`kernels.ops.assign_labels.assign_labels`, rule ``spl``, docs/labeling.md).
* **Features**: the input of the classifier's final linear layer (``model.get_classifier()``),
  captured with a forward pre-hook while the whole model runs, so logits and features come from one
  forward pass.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from kernels.ops.assign_labels import assign_labels

#: Defaults of Bińkowski et al.'s KID code (and torchmetrics): 100 subsets of 1,000 samples.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
#: k of the k-nearest-neighbour manifolds (Kynkäänniemi et al. 2019).
PR_K = 3
TOP_K = 3


# ------------------------------------------------------------------------------------ Fréchet
def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative rounding eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein²) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂), in float64.

    ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr (Σ₁Σ₂)^½, with Tr (Σ₁Σ₂)^½ = Σ √λᵢ(Σ₁^½ Σ₂ Σ₁^½).
    """
    mu1, mu2 = np.asarray(mu1, np.float64).ravel(), np.asarray(mu2, np.float64).ravel()
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"frechet_distance: shapes do not agree: mu {mu1.shape}/{mu2.shape}, "
                         f"sigma {s1.shape}/{s2.shape}")
    r1 = _sqrt_psd(s1)
    cross = r1 @ s2 @ r1
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((cross + cross.T) / 2.0), 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof = 1) of an n×d feature set, in float64."""
    x = _as_features(features, "features")
    if len(x) < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {len(x)}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance_features(real: np.ndarray, fake: np.ndarray) -> float:
    """:func:`frechet_distance` between Gaussians fitted to two feature sets (n×d, m×d)."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


# ------------------------------------------------------------------------------------------ KID
def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x·y / d + 1)³ for every pair of rows (n×m, float64)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    k = x @ y.T
    k /= x.shape[1]
    k += 1.0
    return k * k * k  # ** 3 would go through pow(), several times slower


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² between the samples ``x`` (m×d) and ``y`` (n×d) with :func:`polynomial_kernel`.

    Σ_{i≠j} k(xᵢ, xⱼ) / (m(m−1)) + Σ_{i≠j} k(yᵢ, yⱼ) / (n(n−1)) − 2 Σ_{i,j} k(xᵢ, yⱼ) / (mn).
    """
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"unbiased MMD² needs at least 2 samples per set, got {m} and {n}")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.sum() / (m * n))


def _subset_block_sums(a: np.ndarray, b: np.ndarray, sel_a: np.ndarray, sel_b: np.ndarray,
                       max_elems: int = 1 << 22) -> np.ndarray:
    """Σ_{i∈A_s, j∈B_s} k(aᵢ, bⱼ) for every subset s, the subsets given as 0/1 rows of ``sel_a``/``sel_b``.

    The kernel matrix is computed once, a block of rows at a time (≤ ``max_elems`` entries), and
    reduced against the indicator rows: Σ_s = sel_a[s] · K · sel_b[s]ᵀ.
    """
    out = np.zeros(len(sel_a))
    rows = max(1, max_elems // len(b))
    for s in range(0, len(a), rows):
        kb = polynomial_kernel(a[s:s + rows], b) @ sel_b.T  # rows × subsets
        out += np.einsum("si,is->s", sel_a[:, s:s + rows], kb)
    return out


def _kid_values(real: np.ndarray, fake: np.ndarray, picks: list[tuple[np.ndarray, np.ndarray]],
                full: bool | None = None) -> np.ndarray:
    """:func:`mmd2_unbiased` of every subset pair in ``picks``.

    Two exact ways: one kernel evaluation per subset (cost ∝ subsets·m²·d), or each kernel matrix over
    the whole sets once, reduced per subset (∝ n²·(d + subsets)); ``full=None`` takes the cheaper one.
    """
    m = len(picks[0][0])
    nr, nf, d, n_sub = len(real), len(fake), real.shape[1], len(picks)
    if full is None:
        full = (nr * nr + nf * nf + nr * nf) * (d + n_sub) < 3 * n_sub * m * m * d
    if not full:
        return np.array([mmd2_unbiased(real[i], fake[j]) for i, j in picks])
    sel_r, sel_f = np.zeros((n_sub, nr)), np.zeros((n_sub, nf))
    for s, (i, j) in enumerate(picks):
        sel_r[s, i], sel_f[s, j] = 1.0, 1.0
    diag_r = ((real * real).sum(1) / d + 1.0) ** 3  # k(x, x), left out of the within-set sums
    diag_f = ((fake * fake).sum(1) / d + 1.0) ** 3
    krr = _subset_block_sums(real, real, sel_r, sel_r) - sel_r @ diag_r
    kff = _subset_block_sums(fake, fake, sel_f, sel_f) - sel_f @ diag_f
    krf = _subset_block_sums(real, fake, sel_r, sel_f)
    return (krr + kff) / (m * (m - 1)) - 2.0 * krf / (m * m)


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, *, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float, int]:
    """KID: :func:`mmd2_unbiased` averaged over ``subsets`` random subsets; returns (mean, std, subset size).

    Each subset draws ``min(subset_size, len(real), len(fake))`` rows of each set without replacement
    (NumPy generator seeded with ``seed``: real rows, then fake rows, subset after subset); std is over
    the subsets (ddof = 0).
    """
    real, fake = _as_features(real, "real"), _as_features(fake, "fake")
    size = min(subset_size, len(real), len(fake))
    if subsets < 1 or size < 2:
        raise ValueError(f"KID needs subsets >= 1 and at least 2 samples per set, got {subsets} subsets of {size}")
    rng = np.random.default_rng(seed)
    picks = [(rng.choice(len(real), size, replace=False), rng.choice(len(fake), size, replace=False))
             for _ in range(subsets)]
    vals = _kid_values(real, fake, picks)
    return float(vals.mean()), float(vals.std()), size


# ---------------------------------------------------------------------------- precision/recall
def _as_features(x: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if a.ndim != 2 or not np.isfinite(a).all():
        raise ValueError(f"{what}: need a finite 2-D feature array (n×d), got shape {a.shape}")
    return a


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of ``a`` and ``b`` (float64, clipped at 0)."""
    return ((a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * a @ b.T).clamp_min_(0.0)


def knn_radii(x: np.ndarray, k: int = PR_K, *, chunk: int = 1024) -> np.ndarray:
    """Squared distance from each row of ``x`` to its k-th nearest other row (the point itself excluded)."""
    t = torch.from_numpy(_as_features(x, "features"))
    if not 1 <= k < len(t):
        raise ValueError(f"k = {k}: need 1 <= k < the number of points ({len(t)})")
    out = []
    for s in range(0, len(t), chunk):
        d = _sq_dists(t[s:s + chunk], t)
        d[torch.arange(len(d)), torch.arange(s, s + len(d))] = 0.0  # itself: the 0-th neighbour
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out).numpy()


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = PR_K, *, chunk: int = 1024) -> tuple[float, float]:
    """(precision, recall) of Kynkäänniemi et al. 2019 with k-NN manifolds.

    A point q lies inside the k-NN manifold of a set R when ‖q − r‖ ≤ radius_k(r) for some r ∈ R, where
    radius_k(r) is the distance from r to its k-th nearest other point of R. precision: the fraction of
    ``fake`` rows inside the real manifold; recall: the fraction of ``real`` rows inside the fake
    manifold. Both come from one pass over the real×fake distances (in chunks of ``chunk`` real rows).
    """
    real_r = torch.from_numpy(knn_radii(real, k, chunk=chunk))
    fake_r = torch.from_numpy(knn_radii(fake, k, chunk=chunk))
    r, f = torch.from_numpy(_as_features(real, "real")), torch.from_numpy(_as_features(fake, "fake"))
    fake_inside = torch.zeros(len(f), dtype=torch.bool)
    real_inside = []
    for s in range(0, len(r), chunk):
        d = _sq_dists(r[s:s + chunk], f)  # rows: real points, columns: fakes
        fake_inside |= (d <= real_r[s:s + chunk, None]).any(dim=0)
        real_inside.append((d <= fake_r[None, :]).any(dim=1))
    return float(fake_inside.double().mean()), float(torch.cat(real_inside).double().mean())


# ---------------------------------------------------------------------------------- labels
def label_statistics(logits: np.ndarray | torch.Tensor, top: int = TOP_K) -> dict[str, float | int]:
    """Statistics of the classifier's scores (M×C logits) on a sample set; collapse shows here.

    * ``mean_max_confidence``: mean over samples of max_c sigmoid(logit_c);
    * ``frac_any_above_half``: fraction of samples with some sigmoid confidence > 0.5;
    * ``spl_entropy_mean``/``spl_entropy_std``: entropy (nats) of the SPL label softmax(sigmoid(logits))
      (the project's ``spl`` rule with its defaults), and its std over samples (ddof = 0);
      ``spl_entropy_max`` = log C, the entropy of the uniform label;
    * ``distinct_top3``: number of distinct sets of the ``top`` highest-scoring classes (ties to the
      lower class index, as the ``pseudo`` rule); ``top3_largest_share``: the share of the commonest set.
    """
    t = torch.as_tensor(logits).detach().cpu().float()
    if t.dim() != 2 or len(t) == 0 or not torch.isfinite(t).all():
        raise ValueError(f"label_statistics: need finite M×C logits with M >= 1, got shape {tuple(t.shape)}")
    probs = torch.sigmoid(t.double())
    spl = assign_labels(t, "spl", backend="torch").double()  # the reference backend: no JIT warm-up
    entropy = -(spl * torch.log(spl)).sum(dim=1)
    order = np.argsort(-t.numpy(), axis=1, kind="stable")[:, :min(top, t.shape[1])]
    _, counts = np.unique(np.sort(order, axis=1), axis=0, return_counts=True)
    return {
        "num_samples": int(len(t)),
        "mean_max_confidence": float(probs.max(dim=1).values.mean()),
        "frac_any_above_half": float((probs > 0.5).any(dim=1).double().mean()),
        "spl_entropy_mean": float(entropy.mean()),
        "spl_entropy_std": float(entropy.std(unbiased=False)),
        "spl_entropy_max": float(np.log(t.shape[1])),
        "distinct_top3": int(len(counts)),
        "top3_largest_share": float(counts.max() / len(t)),
    }


# -------------------------------------------------------------------------------- features
@torch.no_grad()
def classifier_features(model: nn.Module, batches: Iterable[np.ndarray],
                        transform: Callable[[np.ndarray], torch.Tensor], *,
                        device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features and logits of ``model`` (eval mode) on RGB uint8 image batches (b×H×W×3).

    Each image is flipped to BGR (the order the shard sets store and the transforms expect) and passed
    through ``transform`` (the classifier's test transform); the features are the input of
    ``model.get_classifier()`` (after global pooling), captured by a forward pre-hook on it during the
    ordinary forward pass. Returns float32 arrays (N×D features, N×C logits).
    """
    fc = model.get_classifier()
    seen: list[torch.Tensor] = []
    handle = fc.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    logits: list[torch.Tensor] = []
    try:
        for batch in batches:
            x = torch.stack([transform(np.ascontiguousarray(img[:, :, ::-1])) for img in batch]).to(device)
            logits.append(model(x).float().cpu())
    finally:
        handle.remove()
        model.train(was_training)
    if len(seen) != len(logits):
        raise RuntimeError("classifier_features: the final linear layer did not run once per batch")
    if not logits:
        raise ValueError("classifier_features: no images")
    feats = torch.cat(seen)
    return feats.reshape(len(feats), -1).numpy(), torch.cat(logits).numpy()


__all__ = [
    "KID_SUBSETS", "KID_SUBSET_SIZE", "PR_K", "classifier_features", "frechet_distance", "frechet_distance_features",
    "gaussian_stats", "kernel_inception_distance", "knn_radii", "label_statistics",
    "mmd2_unbiased", "polynomial_kernel", "precision_recall",
]
