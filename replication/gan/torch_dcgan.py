"""A standard PyTorch DCGAN, the peer of the faithful TF port (issue #19 item 2; docs/gan.md, "Collapse diagnosis").

Not a TF port (so not in ``gan_tf_port/``): the design of ``pytorch/examples/dcgan`` (Radford et al.
2016), adapted to 32×32 canvases by dropping its first 64×64 stage:

* G: z ∈ R^100 ~ N(0, 1) → ConvT 4×4 stride 1 (z → 4w, 4×4) → BN → ReLU → ConvT 4×4/2 (4w → 2w, 8×8)
  → BN → ReLU → ConvT 4×4/2 (2w → w, 16×16) → BN → ReLU → ConvT 4×4/2 (w → 3, 32×32) → tanh;
  no biases (as the example).
* D: conv 4×4/2 (3 → w) → LeakyReLU(0.2) → conv 4×4/2 (w → 2w) → BN → LeakyReLU(0.2) → conv 4×4/2
  (2w → 4w) → BN → LeakyReLU(0.2) → conv 4×4 stride 1 (4w → 1) = one logit; no biases.
* Init: conv weights N(0, 0.02); BN γ ~ N(1, 0.02), β = 0 (the example's ``weights_init``).
* One iteration: one D step on BCE(D(x), 1) + BCE(D(G(z)), 0) (fake detached), then **one** G step
  on the non-saturating BCE(D(G(z)), 1) with the same G(z); ``torch.optim.Adam(lr 2e-4, β = (0.5, 0.999))``.
  The example's Sigmoid + BCELoss is written as BCE with logits (the same function, stabler).

The generator has the port's sampling interface (``sample_z``, ``size``, ``channels``), so
:func:`gan_tf_port.sample.iter_samples` draws from it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gan_tf_port.data import BatchStream
from gan_tf_port.grid import save_grid
from gan_tf_port.sample import load_checkpoint
from replication.io_utils import atomic_torch_save
from replication.vocabulary import PEER_DCGAN

Z_DIM = 100
SIZE = 32


class PeerGenerator(nn.Module):
    """G of the pytorch/examples DCGAN for 32×32 RGB images, width ``w`` (the example's ngf)."""

    def __init__(self, width: int = 64, z_dim: int = Z_DIM, channels: int = 3) -> None:
        super().__init__()
        self.size, self.channels, self.z_dim, self.width = SIZE, channels, z_dim, width
        w = width
        self.net = nn.Sequential(
            nn.ConvTranspose2d(z_dim, 4 * w, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(True),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(True),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True),
            nn.ConvTranspose2d(w, channels, 4, 2, 1, bias=False), nn.Tanh())

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n noise vectors z ~ N(0, 1) (CPU)."""
        return torch.randn(n, self.z_dim, generator=generator)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """B×100 noise → B×3×32×32 images in [−1, 1]."""
        return self.net(z.view(z.shape[0], self.z_dim, 1, 1))


class PeerDiscriminator(nn.Module):
    """D of the pytorch/examples DCGAN for 32×32 images, width ``w`` (the example's ndf); returns logits (B,)."""

    def __init__(self, width: int = 64, channels: int = 3) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * w, 1, 4, 1, 0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×32×32 → B logits."""
        return self.net(x).view(-1)


def init_weights(module: nn.Module) -> None:
    """The example's ``weights_init``: conv weights N(0, 0.02), BN γ ~ N(1, 0.02), β = 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@dataclass
class PeerDCGAN:
    """G, D and their Adam optimisers, built from one seed."""

    G: PeerGenerator
    D: PeerDiscriminator
    opt_g: torch.optim.Adam
    opt_d: torch.optim.Adam


def build_peer(width: int = 64, *, seed: int = 0, lr: float = 2e-4, beta1: float = 0.5) -> PeerDCGAN:
    """The peer DCGAN with weights drawn from ``torch.manual_seed(seed)`` (G first, then D)."""
    torch.manual_seed(int(seed))
    g, d = PeerGenerator(width), PeerDiscriminator(width)
    init_weights(g)
    init_weights(d)
    return PeerDCGAN(g, d, torch.optim.Adam(g.parameters(), lr=lr, betas=(beta1, 0.999)),
                     torch.optim.Adam(d.parameters(), lr=lr, betas=(beta1, 0.999)))


def d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """BCE(D(x), 1) + BCE(D(G(z)), 0), each a batch mean."""
    return (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))


def g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss BCE(D(G(z)), 1)."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


def peer_iteration(gan: PeerDCGAN, real: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
    """One iteration of the example: one D step, then one G step on the same G(z). Returns both losses."""
    fake = gan.G(z)
    gan.opt_d.zero_grad(set_to_none=True)
    loss_d = d_loss(gan.D(real), gan.D(fake.detach()))
    loss_d.backward()
    gan.opt_d.step()
    gan.opt_g.zero_grad(set_to_none=True)
    loss_g = g_loss(gan.D(fake))
    loss_g.backward()
    gan.opt_g.step()
    return {"d_loss": float(loss_d.detach()), "g_loss": float(loss_g.detach())}


#: The layout of the peer's checkpoints (a partial one adds the optimizers, the data stream and the noise).
CHECKPOINT_FORMAT = "replication/torch-dcgan/1"


def _save_checkpoint(gan: PeerDCGAN, spec: dict, iteration: int, path: Path, *, stream: BatchStream | None = None,
                     noise: torch.Generator | None = None) -> None:
    """Write the run's ``checkpoint.pt``: the final one (no ``stream``) holds the model only, as always; a partial
    one (``finished`` False) also the optimizers, the data stream's position and the noise generator's state,
    everything an exact resume needs (tensors and plain values only, so ``weights_only`` loads it)."""
    ckpt = {"format": CHECKPOINT_FORMAT, "model": spec, "G": gan.G.state_dict(), "D": gan.D.state_dict(),
            "iteration": iteration, "finished": stream is None}
    if stream is not None and noise is not None:
        ckpt.update(opt_g=gan.opt_g.state_dict(), opt_d=gan.opt_d.state_dict(), stream=stream.state_dict(),
                    noise=noise.get_state())
    atomic_torch_save(ckpt, path)


def _restore(gan: PeerDCGAN, stream: BatchStream, noise: torch.Generator, path: Path, spec: dict,
             total: int) -> int:
    """Load checkpoint ``path`` into the run's state; the iteration it holds (``total`` when finished).

    A checkpoint of another model, or one past ``total``, is refused in one line naming the file."""
    ckpt = load_checkpoint(path)
    if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("model") != spec:
        raise ValueError(f"{path}: a checkpoint of another model ({ckpt.get('model')}), not {spec}; "
                         "train into an empty folder")
    it = int(ckpt["iteration"])
    if it > total:
        raise ValueError(f"{path}: holds iteration {it}, past this run's {total}")
    gan.G.load_state_dict(ckpt["G"])
    gan.D.load_state_dict(ckpt["D"])
    if ckpt.get("finished"):
        return total
    gan.opt_g.load_state_dict(ckpt["opt_g"])
    gan.opt_d.load_state_dict(ckpt["opt_d"])
    stream.load_state_dict(ckpt["stream"])
    noise.set_state(ckpt["noise"])
    return it


def train_peer_run(images: torch.Tensor, out: str | os.PathLike, *, width: int, batch: int, epochs: int,
                   seed: int = 0, flip: bool = False, checkpoint_every: int = 0, resume: bool = False) -> int:
    """Train the peer for ``epochs`` × (N // batch) iterations on ``images`` (uint8 N×3×32×32) into ``out``.

    Writes ``checkpoint.pt`` (the port's checkpoint layout where samplers read it: ``model`` spec,
    ``G``, ``D``, ``iteration``; tensors and plain values only) and ``samples/final.png`` (64 fixed-z
    samples, eval-mode BN). Returns the number of iterations. Every ``checkpoint_every`` iterations (0:
    never) a partial ``checkpoint.pt`` is written; with ``resume`` the run continues from it, to the same
    bytes as an uninterrupted run (a killed experiment step loses at most ``checkpoint_every`` iterations).
    """
    out = Path(out)
    gan = build_peer(width, seed=seed)
    stream = BatchStream(images, batch, seed=seed, flip=flip)
    noise = torch.Generator().manual_seed(seed + 1)
    fixed_z = gan.G.sample_z(64, torch.Generator().manual_seed(seed))
    total = epochs * (len(images) // batch)
    spec = {"arch": PEER_DCGAN, "size": SIZE, "width": width, "channels": gan.G.channels, "z_dim": gan.G.z_dim}
    path = out / "checkpoint.pt"
    start = _restore(gan, stream, noise, path, spec, total) if resume and path.is_file() else 0
    for it in range(start + 1, total + 1):
        peer_iteration(gan, next(stream), gan.G.sample_z(batch, noise))
        if checkpoint_every > 0 and it % checkpoint_every == 0 and it < total:
            _save_checkpoint(gan, spec, it, path, stream=stream, noise=noise)
    _save_checkpoint(gan, spec, total, path)
    gan.G.eval()
    with torch.no_grad():
        save_grid(gan.G(fixed_z), out / "samples" / "final.png")
    return total


def peer_generator_from_checkpoint(ckpt: dict, path: str | os.PathLike,
                                   device: str | torch.device = "cpu") -> PeerGenerator:
    """The peer generator held by ``ckpt`` (the contents of checkpoint ``path``, named in errors), in eval mode."""
    spec = ckpt["model"]
    if spec.get("arch") != PEER_DCGAN or spec.get("size") != SIZE:
        raise ValueError(f"{path}: not a {PEER_DCGAN} checkpoint of size {SIZE} (model {spec})")
    g = PeerGenerator(int(spec["width"]), int(spec["z_dim"]), int(spec["channels"]))
    g.load_state_dict(ckpt["G"])
    return g.to(device).eval()


def load_peer_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> PeerGenerator:
    """The peer generator of checkpoint ``path``, in eval mode.

    Read with :func:`gan_tf_port.sample.load_checkpoint`: the zip CRCs are checked before ``torch.load``
    (a flipped bit is refused, naming the file) and the file is loaded with ``weights_only=True``.
    """
    return peer_generator_from_checkpoint(load_checkpoint(path), path, device)


__all__ = ["PeerDCGAN", "PeerDiscriminator", "PeerGenerator", "build_peer", "d_loss", "g_loss", "init_weights",
           "load_peer_generator", "peer_generator_from_checkpoint", "peer_iteration", "train_peer_run"]
