"""The losses of carpedm20/DCGAN-tensorflow and LynnHo's WGAN-GP (``docs/gan.md``). Pure: no I/O.

DCGAN (carpedm20): ``d_loss = BCE(D(x), 1) + BCE(D(G(z)), 0)`` (a sum, not halved), non-saturating
``g_loss = BCE(D(G(z)), 1)``; BCE is ``tf.nn.sigmoid_cross_entropy_with_logits`` averaged over the batch.

WGAN-GP (LynnHo v1): ``wd = mean D(x) − mean D(G(z))``, ``d_loss = −wd + 10·gp``, ``g_loss = −mean D(G(z))``;
``gp = mean_i (‖∇_x̂ D(x̂_i)‖₂ − 1)²`` with ``x̂ = x + α(G(z) − x)``, α ~ U[0, 1) per sample, the norm
over C·H·W with no epsilon (two-sided penalty).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def bce_with_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    """``mean(sigmoid_cross_entropy_with_logits(logits, labels=target))`` with an exact 0/1 target."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(target)))


def dcgan_d_loss(real_logits: torch.Tensor,
                 fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """carpedm20 ``d_loss = d_loss_real + d_loss_fake``; returns (d_loss, d_loss_real, d_loss_fake)."""
    real = bce_with_logits(real_logits, 1.0)
    fake = bce_with_logits(fake_logits, 0.0)
    return real + fake, real, fake


def dcgan_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """carpedm20's non-saturating ``g_loss = BCE(D(G(z)), 1)``."""
    return bce_with_logits(fake_logits, 1.0)


def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """LynnHo's ``interpolate(a=real, b=fake)``: ``a + α(b − a)`` with α of shape B×1×…×1."""
    alpha = alpha.reshape(-1, *([1] * (real.ndim - 1))).to(real.dtype)
    return real + alpha * (fake - real)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor) -> torch.Tensor:
    """Two-sided GP: ``mean_i (‖∇_x̂ D(x̂)_i‖₂ − 1)²`` at ``x̂ = x + α(G(z) − x)``; differentiable in D's weights.

    ``∇_x̂`` is ``tf.gradients(pred, x̂)`` = the gradient of ``sum(pred)``; the norm runs over all
    non-batch dimensions and has no epsilon (``tf.sqrt(tf.reduce_sum(tf.square(g), axis=1..)``).
    """
    x_hat = interpolate(real.detach(), fake.detach(), alpha).requires_grad_(True)
    pred = critic(x_hat)
    (grad,) = torch.autograd.grad(pred.sum(), x_hat, create_graph=True)
    slopes = torch.sqrt(torch.sum(grad.square(), dim=tuple(range(1, grad.ndim))))
    return torch.mean((slopes - 1.0) ** 2)


def wgan_gp_d_loss(real_values: torch.Tensor, fake_values: torch.Tensor, gp: torch.Tensor,
                   gp_weight: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """LynnHo v1 ``d_loss = −wd + gp_weight·gp``; returns (d_loss, wd) with ``wd = mean D(x) − mean D(G(z))``."""
    wd = real_values.mean() - fake_values.mean()
    return -wd + gp_weight * gp, wd


def wgan_gp_g_loss(fake_values: torch.Tensor) -> torch.Tensor:
    """LynnHo v1 ``g_loss = −mean D(G(z))``."""
    return -fake_values.mean()
