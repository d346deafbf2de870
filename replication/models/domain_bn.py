"""Batch normalisation that tells real from generated images (issue #13, 3b).

See docs/classifier.md#batch-norm-and-generated-images and docs/decisions.md.

A training batch mixes real and generated images. A plain BatchNorm layer normalises all of them with
the statistics of the whole batch and folds them all into its running averages, which the test images
are then normalised with. :class:`DomainBatchNorm2d` is a drop-in ``nn.BatchNorm2d`` that, while training,
reads which rows of the batch are real from a :class:`RowSplit` that the training loop sets around the
forward pass (:func:`domain_rows`), and does one of two things:

* ``real-stats``: the statistics come from the real rows only. The real rows go through the layer
  exactly as a plain BatchNorm fed the real rows alone (same output, same running-average update,
  same ``num_batches_tracked``); the generated rows are normalised with the real rows' batch mean and
  (biased) variance, in float32 at least, with the same affine parameters. Gradients flow from the generated
  rows' outputs into the real rows through those statistics. A batch with no real row normalises every
  row with the running statistics and updates nothing.
* ``separate`` (domain-specific BN, as DSBN and Yu et al. 2023): a second ``nn.BatchNorm2d``, the child
  ``bn_generated`` (own affine parameters, own running statistics), normalises the generated rows; the
  real rows go through the layer's own parameters exactly as a plain BatchNorm fed the real rows alone.
  The copy starts as a copy of the layer (pretrained statistics included).

Either way, in eval mode (and in train mode outside :func:`domain_rows`, or for a batch without generated
rows) the layer *is* a plain ``nn.BatchNorm2d``: evaluation and prediction use the real statistics only.
The layer's own parameters and buffers keep the plain names (``weight``, ``bias``, ``running_mean``, …);
what is extra — the ``bn_generated.*`` child, or the ``generated_mean`` / ``generated_var`` buffers that
``real-stats`` keeps for the diagnostic — is dropped by :func:`plain_state_dict`, so a trained model saves
into the plain model's keys.

Diagnostic (:func:`generated_shift`): for every layer, the mean over channels of
``|μ_gen − μ_real| / √(σ²_real + ε)`` from the running averages — how far, in units of the real
standard deviation, the generated images' activations sit from the real ones'. ``real-stats`` tracks
the generated rows' running mean and variance for it (never used to normalise); ``separate`` reads
``bn_generated``'s.

Only plain ``nn.BatchNorm2d`` layers are converted; a model with another kind of batch norm (timm's
``BatchNormAct2d``, ``SyncBatchNorm``, 1-d/3-d BN) is refused by :func:`convert_domain_bn` instead of
being converted in part.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SHARED, REAL_STATS, SEPARATE = "shared", "real-stats", "separate"
#: Values of the ``bn_generated`` train-config key; ``shared`` (plain BatchNorm) is the default.
BN_GENERATED_MODES = (SHARED, REAL_STATS, SEPARATE)


@dataclass(frozen=True)
class RowSplit:
    """Which rows of a batch are real: their indices and the generated rows' indices, with the counts.

    Built once per training step from the batch's ``is_real`` flags (best from the CPU copy the
    DataLoader yields: the counts are then known without a device synchronisation).
    """

    real_idx: torch.Tensor
    gen_idx: torch.Tensor
    n_real: int
    n_gen: int

    @classmethod
    def from_mask(cls, is_real: torch.Tensor, device: torch.device | str | None = None) -> RowSplit:
        mask = torch.as_tensor(is_real).reshape(-1).to("cpu", torch.bool)
        real = torch.nonzero(mask).reshape(-1)
        gen = torch.nonzero(~mask).reshape(-1)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return cls(real.to(dev, non_blocking=True), gen.to(dev, non_blocking=True), int(real.numel()),
                   int(gen.numel()))


class DomainBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics follow ``mode`` (``real-stats`` or ``separate``); see above."""

    def __init__(self, num_features: int, mode: str, eps: float = 1e-5, momentum: float | None = 0.1,
                 device=None, dtype=None) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=True, track_running_stats=True,
                         device=device, dtype=dtype)
        if mode not in (REAL_STATS, SEPARATE):
            raise ValueError(f"DomainBatchNorm2d mode must be {REAL_STATS} or {SEPARATE}, got {mode!r}")
        self.mode = mode
        self.split: RowSplit | None = None
        if mode == SEPARATE:
            self.bn_generated = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, device=device, dtype=dtype)
        else:
            self.register_buffer("generated_mean", torch.zeros(num_features, device=device, dtype=dtype))
            self.register_buffer("generated_var", torch.ones(num_features, device=device, dtype=dtype))

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, mode: str) -> DomainBatchNorm2d:
        """A layer with ``bn``'s parameters and statistics; the generated copy (or tracker) starts equal to them."""
        if not (bn.affine and bn.track_running_stats):
            raise ValueError("bn_generated needs BatchNorm2d layers with affine parameters and running statistics")
        new = cls(bn.num_features, mode, eps=bn.eps, momentum=bn.momentum, device=bn.weight.device,
                  dtype=bn.weight.dtype)
        new.load_state_dict(bn.state_dict(), strict=False)
        if mode == SEPARATE:
            new.bn_generated.load_state_dict(bn.state_dict())
        else:
            new.generated_mean.copy_(bn.running_mean)
            new.generated_var.copy_(bn.running_var)
        new.train(bn.training)
        return new

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = self.split
        if not self.training or split is None or split.n_gen == 0:
            return super().forward(x)
        if split.n_gen + split.n_real != x.shape[0]:
            raise ValueError(f"DomainBatchNorm2d: the row split covers {split.n_real + split.n_gen} rows, "
                             f"the batch has {x.shape[0]}")
        dev = x.device
        gen_idx = split.gen_idx.to(dev, non_blocking=True)
        if self.mode == SEPARATE:
            if split.n_real == 0:
                return self.bn_generated(x)
            real_idx = split.real_idx.to(dev, non_blocking=True)
            y_real = super().forward(x.index_select(0, real_idx))
            y_gen = self.bn_generated(x.index_select(0, gen_idx))
            return _merge(x, real_idx, y_real, gen_idx, y_gen)
        # real-stats
        if split.n_real == 0:   # no real row: the running statistics for every row, no update
            self._track_generated(x)
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        real_idx = split.real_idx.to(dev, non_blocking=True)
        x_real, x_gen = x.index_select(0, real_idx), x.index_select(0, gen_idx)
        y_real = super().forward(x_real)              # exactly a plain BN on the real rows (and its update)
        acc = torch.promote_types(x.dtype, torch.float32)   # float32 under bf16/fp16 autocast
        xr = x_real.to(acc)
        mean = xr.mean(dim=(0, 2, 3))
        var = xr.var(dim=(0, 2, 3), unbiased=False)
        scale = self.weight.to(acc) * torch.rsqrt(var + self.eps)
        shift = self.bias.to(acc) - mean * scale
        y_gen = x_gen.to(acc) * scale[None, :, None, None] + shift[None, :, None, None]
        self._track_generated(x_gen)
        return _merge(x, real_idx, y_real, gen_idx, y_gen.to(y_real.dtype))

    @torch.no_grad()
    def _track_generated(self, x_gen: torch.Tensor) -> None:
        """``real-stats`` only: the generated rows' running mean and unbiased variance (diagnostic, never used)."""
        n = x_gen.numel() // x_gen.shape[1]
        if n < 2:
            return
        xg = x_gen.to(torch.promote_types(x_gen.dtype, torch.float32))
        # the running-average weight of ``_BatchNorm.forward`` (momentum None: a cumulative average)
        f = 1.0 / max(int(self.num_batches_tracked), 1) if self.momentum is None else self.momentum
        mean = xg.mean(dim=(0, 2, 3))
        var = xg.var(dim=(0, 2, 3), unbiased=True)
        self.generated_mean.mul_(1 - f).add_(mean.to(self.generated_mean.dtype), alpha=f)
        self.generated_var.mul_(1 - f).add_(var.to(self.generated_var.dtype), alpha=f)

    def generated_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(running mean, running variance) of the generated images' activations at this layer."""
        if self.mode == SEPARATE:
            return self.bn_generated.running_mean, self.bn_generated.running_var
        return self.generated_mean, self.generated_var

    def extra_state_keys(self) -> tuple[str, ...]:
        """Keys of this layer's state dict (relative) that a plain ``nn.BatchNorm2d`` does not have."""
        if self.mode == SEPARATE:
            return tuple(f"bn_generated.{k}" for k in self.bn_generated.state_dict())
        return ("generated_mean", "generated_var")


def _merge(x: torch.Tensor, real_idx: torch.Tensor, y_real: torch.Tensor, gen_idx: torch.Tensor,
           y_gen: torch.Tensor) -> torch.Tensor:
    """The rows of ``y_real`` and ``y_gen`` back at their places in the batch (``x``'s memory format kept)."""
    out = torch.empty_like(x, dtype=y_real.dtype)
    return out.index_copy(0, real_idx, y_real).index_copy(0, gen_idx, y_gen.to(y_real.dtype))


def domain_layers(model: nn.Module) -> Iterator[tuple[str, DomainBatchNorm2d]]:
    """``(name, layer)`` of every :class:`DomainBatchNorm2d` of ``model``."""
    for name, m in model.named_modules():
        if isinstance(m, DomainBatchNorm2d):
            yield name, m


def convert_domain_bn(model: nn.Module, mode: str) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` of ``model`` (in place) by a :class:`DomainBatchNorm2d` of ``mode``.

    ``shared`` leaves the model untouched. Raises ``ValueError`` when ``model`` has batch-norm layers of
    another kind (they would stay shared) or none at all.
    """
    if mode == SHARED:
        return model
    if mode not in BN_GENERATED_MODES:
        raise ValueError(f"bn_generated must be one of {', '.join(BN_GENERATED_MODES)}, got {mode!r}")
    others = [f"{name} ({type(m).__name__})" for name, m in model.named_modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and type(m) is not nn.BatchNorm2d]
    if others:
        raise ValueError(f"bn_generated: {mode} converts plain BatchNorm2d layers only; this model also has "
                         f"{', '.join(others[:4])}{' …' if len(others) > 4 else ''}")
    targets = [(name, m) for name, m in model.named_modules() if type(m) is nn.BatchNorm2d]
    if not targets:
        raise ValueError(f"bn_generated: {mode} needs a model with BatchNorm2d layers; this one has none")
    for name, bn in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, DomainBatchNorm2d.from_batchnorm(bn, mode))
    return model


@contextmanager
def domain_rows(model: nn.Module, split: RowSplit | None) -> Iterator[None]:
    """Within the block, every :class:`DomainBatchNorm2d` of ``model`` knows which rows are real."""
    layers = [m for _, m in domain_layers(model)]
    for m in layers:
        m.split = split
    try:
        yield
    finally:
        for m in layers:
            m.split = None


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without the generated copies: the keys of the same model with plain BatchNorm."""
    state = model.state_dict()
    for name, layer in domain_layers(model):
        prefix = f"{name}." if name else ""
        for key in layer.extra_state_keys():
            state.pop(prefix + key, None)
    return state


def generated_shift(model: nn.Module) -> dict[str, float]:
    """Per converted layer: mean over channels of ``|μ_gen − μ_real| / √(σ²_real + ε)`` (running averages)."""
    out = {}
    for name, layer in domain_layers(model):
        mean_g, _ = layer.generated_statistics()
        real_std = torch.sqrt(layer.running_var.double() + layer.eps)
        value = ((mean_g.double() - layer.running_mean.double()).abs() / real_std).mean().item()
        out[name] = value if math.isfinite(value) else float("nan")
    return out

