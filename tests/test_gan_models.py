"""DCGAN and WGAN-GP ports: parameter counts, shapes, output ranges, layout and initialisation.

Parameter counts: paper §2.2, §3.2; docs/gan.md.
"""
from __future__ import annotations

import pytest
import torch

import gan_tf_port
from gan_tf_port import build
from gan_tf_port.ops import Conv2dSame, ConvTranspose2dSame, TFLayerNorm


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("arch,g_params,d_params", [
    ("dcgan", 5_135_363, 4_316_545),
    ("wgan-gp", 5_142_083, 4_315_649),
])
def test_parameter_counts_at_64x64_rgb(arch, g_params, d_params):
    g, d = build(arch, size=64, width=64, channels=3, z_dim=100)
    assert _count(g) == g_params
    assert _count(d) == d_params


@pytest.mark.parametrize("arch", gan_tf_port.ARCHS)
@pytest.mark.parametrize("size", [32, 64, 48, 20])
def test_shapes_and_ranges(arch, size):
    torch.manual_seed(0)
    g, d = build(arch, size=size, width=8)
    z = g.sample_z(5)
    assert z.shape == (5, 100)
    x = g(z)
    assert x.shape == (5, 3, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert x.std() > 0.01  # not a constant image
    out = d(x)
    assert out.shape == (5, 1)
    g.eval()
    torch.testing.assert_close(g(z), g(z))  # eval-mode BN is deterministic


def test_tanh_saturates_to_exactly_the_unit_range():
    g, _ = build("dcgan", size=32, width=4)
    with torch.no_grad():
        g.out.bias.fill_(100.0)
    assert torch.all(g(g.sample_z(2)) == 1.0)


def test_noise_priors():
    gen = torch.Generator().manual_seed(0)
    zu = build("dcgan", size=32, width=4)[0].sample_z(20_000, gen)
    zn = build("wgan-gp", size=32, width=4)[0].sample_z(20_000, gen)
    assert zu.min() >= -1 and zu.max() < 1 and abs(zu.std().item() - (1 / 3) ** 0.5) < 0.01  # U(−1, 1)
    assert abs(zn.mean().item()) < 0.01 and abs(zn.std().item() - 1) < 0.01 and zn.abs().max() > 3  # N(0, 1)


@pytest.mark.parametrize("arch", gan_tf_port.ARCHS)
def test_first_feature_map_is_the_linear_output_in_nhwc_order(arch):
    """tf.reshape(linear(z), [-1, s, s, 8w]): feature f sits at (h, w, c) = divmod order of NHWC."""
    torch.manual_seed(1)
    g, _ = build(arch, size=32, width=4)
    seen = {}
    target = g.bn0 if arch == "dcgan" else g.deconvs[0]
    target.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    z = g.sample_z(3)
    g(z)
    flat = g.fc(z)
    if arch == "wgan-gp":  # BN1d + ReLU on the flat features, then reshape
        flat = torch.relu(g.bn0(flat))
    expected = flat.reshape(3, 2, 2, 32).permute(0, 3, 1, 2)
    torch.testing.assert_close(seen["x"], expected)


@pytest.mark.parametrize("arch", gan_tf_port.ARCHS)
def test_layer_inventory_and_initialisers(arch):
    torch.manual_seed(2)
    g, d = build(arch, size=64, width=64)
    convs = [m for m in d.modules() if isinstance(m, Conv2dSame)]
    deconvs = [m for m in g.modules() if isinstance(m, ConvTranspose2dSame)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512]
    assert [c.out_channels for c in deconvs] == [256, 128, 64, 3]
    for c in convs:
        assert c.weight.abs().max() <= 0.04  # truncated normal 0.02
    for c in deconvs:
        assert c.weight.abs().max() > 0.04 and abs(c.weight.std().item() - 0.02) < 0.002  # normal 0.02
    assert abs(g.fc.weight.std().item() - 0.02) < 0.002 and abs(d.fc.weight.std().item() - 0.02) < 0.002
    if arch == "dcgan":
        assert all(c.bias is not None for c in convs + deconvs)
        assert g.fc.bias is not None
        assert not any(isinstance(m, TFLayerNorm) for m in d.modules())
    else:
        assert convs[0].bias is not None and all(c.bias is None for c in convs[1:])
        assert all(c.bias is None for c in deconvs[:3]) and deconvs[3].bias is not None
        assert g.fc.bias is None and isinstance(g.bn0, torch.nn.BatchNorm1d) and g.bn0.num_features == 8192
        assert [m.num_channels for m in d.modules() if isinstance(m, TFLayerNorm)] == [128, 256, 512]
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in d.modules())


@pytest.mark.parametrize("arch", gan_tf_port.ARCHS)
def test_every_parameter_gets_a_gradient(arch):
    torch.manual_seed(3)
    g, d = build(arch, size=32, width=4)
    d(g(g.sample_z(4))).sum().backward()
    for name, p in list(g.named_parameters()) + list(d.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_build_rejects_unknown_arch_and_tiny_size():
    with pytest.raises(ValueError, match="unknown GAN"):
        build("biggan")
    with pytest.raises(ValueError, match="too small"):
        build("dcgan", size=8)
