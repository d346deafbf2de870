"""DCGAN of carpedm20/DCGAN-tensorflow (``model.py``, unconditional branch), ported layer for layer (``docs/gan.md``).

Generator (``gf_dim`` = width w, output size S, ``s_k = ceil(S / 2^k)`` as carpedm20's ``conv_out_size_same``)::

    z (B×100, U(−1, 1)) → linear (bias) → reshape NHWC [s16, s16, 8w] → BN → ReLU
    → deconv 5×5/2 SAME (bias) to s8 × s8 × 4w → BN → ReLU → … 2w … w
    → deconv 5×5/2 SAME (bias) to S × S × channels → tanh

Discriminator (``df_dim`` = w)::

    image → conv 5×5/2 SAME (bias) 64 → lrelu
          → conv 128 → BN → lrelu → conv 256 → BN → lrelu → conv 512 → BN → lrelu
          → flatten (NHWC order) → linear (bias) → 1 logit

At 64×64 RGB with w = 64: G has 5,135,363 parameters, D 4,316,545. Pure: no I/O.
"""
from __future__ import annotations

import torch
from torch import nn

from gan_tf_port.ops import (
    Conv2dSame,
    ConvTranspose2dSame,
    TFBatchNorm2d,
    flatten_nhwc,
    init_tf_,
    lrelu,
    same_out_size,
    unflatten_nhwc,
)


def spatial_sizes(size: int, n: int = 4) -> list[int]:
    """``[S, ceil(S/2), ceil(S/4), …]`` (n halvings), carpedm20's ``conv_out_size_same`` chain."""
    if size < 2 ** n:
        raise ValueError(f"image size {size} is too small for {n} stride-2 layers (need >= {2 ** n})")
    sizes = [size]
    for _ in range(n):
        sizes.append(same_out_size(sizes[-1], 2))
    return sizes


class DCGANGenerator(nn.Module):
    """carpedm20 ``generator``: z ~ U(−1, 1)^z_dim → image in [−1, 1], B×channels×size×size."""

    z_dist = "uniform"

    def __init__(self, size: int = 64, width: int = 64, channels: int = 3, z_dim: int = 100) -> None:
        super().__init__()
        self.size, self.width, self.channels, self.z_dim = size, width, channels, z_dim
        self.sizes = spatial_sizes(size)
        s16 = self.sizes[4]
        self.fc = nn.Linear(z_dim, s16 * s16 * width * 8)
        self.bn0 = TFBatchNorm2d(width * 8)
        chans = [width * 8, width * 4, width * 2, width]
        self.deconvs = nn.ModuleList(ConvTranspose2dSame(chans[i], chans[i + 1]) for i in range(3))
        self.bns = nn.ModuleList(TFBatchNorm2d(c) for c in chans[1:])
        self.out = ConvTranspose2dSame(width, channels)
        init_tf_(self)

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``np.random.uniform(-1, 1, [n, z_dim])`` (float32, on the CPU)."""
        return torch.rand(n, self.z_dim, generator=generator) * 2.0 - 1.0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map B×z_dim noise to B×channels×size×size images in [−1, 1]."""
        s = self.sizes
        h = unflatten_nhwc(self.fc(z), s[4], s[4], self.width * 8)
        h = torch.relu(self.bn0(h))
        for i, (deconv, bn) in enumerate(zip(self.deconvs, self.bns)):
            o = s[3 - i]
            h = torch.relu(bn(deconv(h, (o, o))))
        return torch.tanh(self.out(h, (s[0], s[0])))


class DCGANDiscriminator(nn.Module):
    """carpedm20 ``discriminator``: image → one logit (B×1)."""

    def __init__(self, size: int = 64, width: int = 64, channels: int = 3) -> None:
        super().__init__()
        self.size, self.width, self.channels = size, width, channels
        s16 = spatial_sizes(size)[4]
        chans = [channels, width, width * 2, width * 4, width * 8]
        self.convs = nn.ModuleList(Conv2dSame(chans[i], chans[i + 1]) for i in range(4))
        self.bns = nn.ModuleList(TFBatchNorm2d(c) for c in chans[2:])
        self.fc = nn.Linear(s16 * s16 * width * 8, 1)
        init_tf_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits D(x) before the sigmoid, B×1."""
        h = lrelu(self.convs[0](x))
        for conv, bn in zip(self.convs[1:], self.bns):
            h = lrelu(bn(conv(h)))
        return self.fc(flatten_nhwc(h))
