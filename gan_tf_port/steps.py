"""One training iteration of each GAN, as carpedm20/DCGAN-tensorflow and LynnHo's WGAN-GP order it. No I/O.

* DCGAN (carpedm20 ``train``): one real batch and one z; **one D step** on ``d_loss`` (real and fake
  through D in separate forward passes, so each gets its own batch-norm statistics), then **two G
  steps with the same z** ("run g_optim twice to make sure that d_loss does not go to zero").
* WGAN-GP (LynnHo v1): **n_critic = 5 critic steps**, each with a fresh real batch, fresh z and fresh
  α, then one G step with fresh z.

G's forward in a D step runs in training mode without autograd (TF updates only D's variables
there, but G's batch-norm moving averages are updated, as ``updates_collections=None`` does in TF).
During G steps D's parameters are frozen, so only G's gradients are computed. ``sync`` (if given)
is called on a module after each backward and before its optimiser step — the data-parallel
gradient all-reduce (:mod:`gan_tf_port.dist`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from gan_tf_port.losses import dcgan_d_loss, dcgan_g_loss, gradient_penalty, wgan_gp_d_loss, wgan_gp_g_loss

Batch = Callable[[], torch.Tensor]


class Noise:
    """The trainer's own noise: z and α drawn from a seeded CPU generator, then moved to ``device``.

    Drawing on the CPU makes a run's random stream independent of the device and lets a checkpoint
    store it exactly (``state``).
    """

    def __init__(self, generator_module: nn.Module, seed: int, device: torch.device | str = "cpu") -> None:
        self._g = generator_module
        self.gen = torch.Generator().manual_seed(int(seed))
        self.device = torch.device(device)

    def z(self, n: int) -> torch.Tensor:
        """n noise vectors from the generator's prior (U(−1, 1) for DCGAN, N(0, 1) for WGAN-GP)."""
        return self._g.sample_z(n, self.gen).to(self.device, non_blocking=True)

    def alpha(self, n: int) -> torch.Tensor:
        """n interpolation weights α ~ U[0, 1)."""
        return torch.rand(n, generator=self.gen).to(self.device, non_blocking=True)

    def state(self) -> torch.Tensor:
        """The generator's RNG state (for checkpoints)."""
        return self.gen.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Restore a state saved by :meth:`state`."""
        self.gen.set_state(state)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients from being computed for ``module``'s parameters."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _step(loss: torch.Tensor, module: nn.Module, opt: torch.optim.Optimizer,
          sync: Callable[[nn.Module], None] | None) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if sync is not None:
        sync(module)
    opt.step()


def _d_step_batch(next_real: Batch, noise: Noise, g_fwd: Callable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What both repositories feed a D step: a real batch, fresh z of the same size, and G(z) computed
    in training mode without autograd. Returns (real, z, fake)."""
    real = next_real()
    z = noise.z(real.shape[0])
    with torch.no_grad():
        fake = g_fwd(z)
    return real, z, fake


def dcgan_iteration(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                    next_real: Batch, noise: Noise, *, g_steps: int = 2,
                    g_fwd: Callable | None = None, d_fwd: Callable | None = None,
                    sync: Callable[[nn.Module], None] | None = None) -> dict[str, torch.Tensor]:
    """carpedm20's iteration: 1 D step, then ``g_steps`` (2) G steps with the same z. Returns detached losses.

    ``g_fwd``/``d_fwd`` are optional compiled forwards of G and D (sharing their parameters).
    """
    g_fwd = G if g_fwd is None else g_fwd
    d_fwd = D if d_fwd is None else d_fwd
    real, z, fake = _d_step_batch(next_real, noise, g_fwd)
    d_real = d_fwd(real)
    d_fake = d_fwd(fake)
    d_loss, d_loss_real, d_loss_fake = dcgan_d_loss(d_real, d_fake)
    _step(d_loss, D, opt_d, sync)
    g_loss = d_loss.new_zeros(())
    with frozen(D):
        for _ in range(g_steps):
            g_loss = dcgan_g_loss(d_fwd(g_fwd(z)))
            _step(g_loss, G, opt_g, sync)
    return {
        "d_loss": d_loss.detach(), "d_loss_real": d_loss_real.detach(), "d_loss_fake": d_loss_fake.detach(),
        "g_loss": g_loss.detach(),
        "d_real": torch.sigmoid(d_real.detach()).mean(), "d_fake": torch.sigmoid(d_fake.detach()).mean(),
    }


def wgan_gp_iteration(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                      next_real: Batch, noise: Noise, *, n_critic: int = 5, gp_weight: float = 10.0,
                      g_fwd: Callable | None = None, d_fwd: Callable | None = None,
                      sync: Callable[[nn.Module], None] | None = None) -> dict[str, torch.Tensor]:
    """LynnHo v1's iteration: ``n_critic`` critic steps (fresh real batch, z, α each), then 1 G step.

    The gradient penalty always runs the eager critic ``D`` (double backward); ``d_fwd`` (e.g. a
    compiled critic) serves the plain forward passes. Returns the last critic step's detached
    d_loss, Wasserstein estimate ``wd`` and ``gp``, and the G step's ``g_loss``.
    """
    g_fwd = G if g_fwd is None else g_fwd
    d_fwd = D if d_fwd is None else d_fwd
    for _ in range(n_critic):
        real, _, fake = _d_step_batch(next_real, noise, g_fwd)
        r = d_fwd(real)
        f = d_fwd(fake)
        gp = gradient_penalty(D, real, fake, noise.alpha(real.shape[0]))
        d_loss, wd = wgan_gp_d_loss(r, f, gp, gp_weight)
        _step(d_loss, D, opt_d, sync)
    z = noise.z(real.shape[0])
    with frozen(D):
        g_loss = wgan_gp_g_loss(d_fwd(g_fwd(z)))
        _step(g_loss, G, opt_g, sync)
    return {"d_loss": d_loss.detach(), "wd": wd.detach(), "gp": gp.detach(), "g_loss": g_loss.detach()}
