"""WGAN-GP of LynnHo/DCGAN-LSGAN-WGAN-WGAN-GP-Tensorflow, tag v1 (``models_64x64.py``), ported (``docs/gan.md``).

Generator (``dim`` = width w; ``s_k = ceil(S / 2^k)``, 4 at S = 64; v1 has only the 64×64 model,
other sizes follow the same ceil-halving chain as the DCGAN port — decision)::

    z (B×100, N(0, 1)) → linear without bias to s16·s16·8w → BN (over the flat features) → ReLU
    → reshape NHWC → deconv 5×5/2 SAME without bias to 4w → BN → ReLU → … 2w … w
    → deconv 5×5/2 SAME (bias) to channels → tanh

Critic::

    image → conv 5×5/2 SAME (bias) w → lrelu
          → conv without bias 2w → layer norm → lrelu → … 4w … 8w
          → flatten (NHWC order) → linear (bias) → 1

The layer norm is ``slim.layer_norm`` on NHWC = ``GroupNorm(1, C, eps=1e-12)`` (see :mod:`gan_tf_port.ops`).
At 64×64 RGB with w = 64: G has 5,142,083 parameters, the critic 4,315,649. Pure: no I/O.
"""
from __future__ import annotations

import torch
from torch import nn

from gan_tf_port.dcgan import spatial_sizes
from gan_tf_port.ops import (
    Conv2dSame,
    ConvTranspose2dSame,
    TFBatchNorm1d,
    TFBatchNorm2d,
    TFLayerNorm,
    flatten_nhwc,
    init_tf_,
    lrelu,
    unflatten_nhwc,
)


class WGANGPGenerator(nn.Module):
    """LynnHo v1 ``generator``: z ~ N(0, 1)^z_dim → image in [−1, 1], B×channels×size×size."""

    z_dist = "normal"

    def __init__(self, size: int = 64, width: int = 64, channels: int = 3, z_dim: int = 100) -> None:
        super().__init__()
        self.size, self.width, self.channels, self.z_dim = size, width, channels, z_dim
        self.sizes = spatial_sizes(size)
        s16 = self.sizes[4]
        self.fc = nn.Linear(z_dim, s16 * s16 * width * 8, bias=False)
        self.bn0 = TFBatchNorm1d(s16 * s16 * width * 8)
        chans = [width * 8, width * 4, width * 2, width]
        self.deconvs = nn.ModuleList(ConvTranspose2dSame(chans[i], chans[i + 1], bias=False) for i in range(3))
        self.bns = nn.ModuleList(TFBatchNorm2d(c) for c in chans[1:])
        self.out = ConvTranspose2dSame(width, channels, bias=True)
        init_tf_(self)

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``np.random.normal(size=[n, z_dim])`` (float32, on the CPU)."""
        return torch.randn(n, self.z_dim, generator=generator)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map B×z_dim noise to B×channels×size×size images in [−1, 1]."""
        s = self.sizes
        h = torch.relu(self.bn0(self.fc(z)))
        h = unflatten_nhwc(h, s[4], s[4], self.width * 8)
        for i, (deconv, bn) in enumerate(zip(self.deconvs, self.bns)):
            o = s[3 - i]
            h = torch.relu(bn(deconv(h, (o, o))))
        return torch.tanh(self.out(h, (s[0], s[0])))


class WGANGPCritic(nn.Module):
    """LynnHo v1 ``discriminator_wgan_gp``: image → critic value (B×1)."""

    def __init__(self, size: int = 64, width: int = 64, channels: int = 3) -> None:
        super().__init__()
        self.size, self.width, self.channels = size, width, channels
        s16 = spatial_sizes(size)[4]
        chans = [channels, width, width * 2, width * 4, width * 8]
        self.convs = nn.ModuleList(Conv2dSame(chans[i], chans[i + 1], bias=(i == 0)) for i in range(4))
        self.lns = nn.ModuleList(TFLayerNorm(c) for c in chans[2:])
        self.fc = nn.Linear(s16 * s16 * width * 8, 1)
        init_tf_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Critic values D(x), B×1."""
        h = lrelu(self.convs[0](x))
        for conv, ln in zip(self.convs[1:], self.lns):
            h = lrelu(ln(conv(h)))
        return self.fc(flatten_nhwc(h))
