"""PyTorch ports of the two TensorFlow GANs the SPL paper used, usable on their own (see ``docs/gan.md``).

* DCGAN — carpedm20/DCGAN-tensorflow (:mod:`gan_tf_port.dcgan`)
* WGAN-GP — LynnHo/DCGAN-LSGAN-WGAN-WGAN-GP-Tensorflow, tag v1 (:mod:`gan_tf_port.wgan_gp`)

TF semantics (SAME padding, batch/layer norm, initialisers, Adam) live in :mod:`gan_tf_port.ops` and
:mod:`gan_tf_port.optim`; training in :mod:`gan_tf_port.train`; sampling in :mod:`gan_tf_port.sample`.
This package never imports ``replication`` (a design rule, ``docs/gan.md``): it trains on any tensor or
map-style dataset of images in [−1, 1].
"""
from __future__ import annotations

from torch import nn

from gan_tf_port.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_tf_port.wgan_gp import WGANGPCritic, WGANGPGenerator

ARCHS = ("dcgan", "wgan-gp")


def build(arch: str, *, size: int = 64, width: int = 64, channels: int = 3,
          z_dim: int = 100) -> tuple[nn.Module, nn.Module]:
    """Build ``(generator, discriminator)`` of ``arch`` ('dcgan' or 'wgan-gp'), TF-initialised.

    The generator maps B×z_dim noise to B×channels×size×size images in [−1, 1] (and has
    ``sample_z(n, generator)`` drawing the repository's noise); the discriminator/critic maps
    images to B×1 logits. ``width`` is ``gf_dim = df_dim``; ``size`` ≥ 16.
    """
    if arch == "dcgan":
        return (DCGANGenerator(size, width, channels, z_dim), DCGANDiscriminator(size, width, channels))
    if arch == "wgan-gp":
        return (WGANGPGenerator(size, width, channels, z_dim), WGANGPCritic(size, width, channels))
    raise ValueError(f"unknown GAN architecture {arch!r}; expected one of {ARCHS}")


__all__ = ["ARCHS", "build", "DCGANGenerator", "DCGANDiscriminator", "WGANGPGenerator", "WGANGPCritic"]
