"""Layers that reproduce TensorFlow 1 semantics exactly in PyTorch (``docs/gan.md``, "Fidelity").

* :class:`Conv2dSame` — ``tf.nn.conv2d(padding='SAME')``: TF pads ``total = max((ceil(H/s) − 1)·s + k − H, 0)``
  with ``total // 2`` before and the rest after. For 5×5 stride 2 on an even size that is 1 before and
  2 after; PyTorch's symmetric ``padding=2`` gives the same shape but shifts the output by one pixel.
* :class:`ConvTranspose2dSame` — ``tf.nn.conv2d_transpose(padding='SAME')`` with an explicit output size O,
  i.e. the gradient of a SAME conv O → H. With ``p = total // 2`` it is ``conv_transpose2d(padding=p)``
  cut to its first O rows/columns; for 5×5/2 and O = 2H that is ``padding=1`` then dropping the last
  row and column.
* :class:`TFBatchNorm2d`, :class:`TFBatchNorm1d` — ``tf.contrib.layers.batch_norm(decay=0.9, epsilon=1e-5,
  scale=True)``: PyTorch momentum 0.1 (``moving = 0.9·moving + 0.1·batch``), eps 1e-5, batch statistics in
  training mode, moving averages in inference mode. Decision (documented): the moving variance takes the
  unbiased batch variance, as PyTorch does and as TF's fused batch-norm kernel does (TF 1.x's non-fused
  path, the default in early 1.x, keeps a biased one; docs/gan.md, "TF-version caveats"); it only
  matters for eval-mode sampling.
* :class:`TFLayerNorm` — ``tf.contrib.layers.layer_norm`` on NHWC (``begin_norm_axis=1``,
  ``begin_params_axis=-1``): statistics over H, W, C per sample, one scale and shift per channel,
  ``variance_epsilon=1e-12``. That is ``GroupNorm(1, C, eps=1e-12)`` — not ``LayerNorm([C, H, W])``
  (which has per-element parameters) and not InstanceNorm (per-channel statistics).
* :func:`lrelu` — ``tf.maximum(x, 0.2·x)`` = leaky ReLU with slope 0.2.
* Initialisers — ``tf.truncated_normal_initializer(stddev=σ)`` re-draws values outside ±2σ (absolute
  bounds, not ±2): :func:`tf_truncated_normal_`; ``tf.random_normal_initializer(stddev=σ)``:
  :func:`tf_normal_`; biases ``zeros``; normalisation scale 1 and shift 0. :func:`init_tf_` applies them
  as both repositories do: conv truncated normal 0.02, transposed conv and linear normal 0.02.

Pure: no I/O.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LEAK = 0.2
INIT_STDDEV = 0.02


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) along one axis for an input of ``size``.

    ``out = ceil(size / stride)``, ``total = max((out − 1)·stride + kernel − size, 0)``,
    ``before = total // 2`` (TF puts the odd pixel after).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_out_size(size: int, stride: int = 2) -> int:
    """Output size of a TF 'SAME' conv: ``ceil(size / stride)`` (carpedm20's ``conv_out_size_same``)."""
    return -(-size // stride)


class Conv2dSame(nn.Conv2d):
    """``tf.nn.conv2d(..., padding='SAME')`` (+ bias): explicit asymmetric zero padding, then a plain conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad (top/bottom, left/right) as TF 'SAME' would for this input size, then convolve."""
        ph = same_pads(x.shape[-2], self.kernel_size[0], self.stride[0])
        pw = same_pads(x.shape[-1], self.kernel_size[1], self.stride[1])
        if ph != (0, 0) or pw != (0, 0):
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        return F.conv2d(x, self.weight, self.bias, self.stride)


class ConvTranspose2dSame(nn.ConvTranspose2d):
    """``tf.nn.conv2d_transpose(..., output_shape=O, padding='SAME')`` (+ bias).

    The weight has PyTorch's transposed-conv layout (in, out, k, k); the input size must be
    ``ceil(O / stride)`` as TF requires. Default O = ``stride`` × input size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)

    def forward(  # type: ignore[override]
            self, x: torch.Tensor, output_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Transposed conv with padding ``total // 2`` of the matching SAME conv, cut to ``output_size``."""
        sh, sw = self.stride
        oh, ow = output_size if output_size is not None else (x.shape[-2] * sh, x.shape[-1] * sw)
        if same_out_size(oh, sh) != x.shape[-2] or same_out_size(ow, sw) != x.shape[-1]:
            raise ValueError(f"conv2d_transpose SAME: input {tuple(x.shape[-2:])} cannot give output {(oh, ow)}")
        ph = same_pads(oh, self.kernel_size[0], sh)[0]
        pw = same_pads(ow, self.kernel_size[1], sw)[0]
        y = F.conv_transpose2d(x, self.weight, self.bias, self.stride, padding=(ph, pw))
        return y[..., :oh, :ow]


class TFBatchNorm2d(nn.BatchNorm2d):
    """``contrib.layers.batch_norm(decay=0.9, epsilon=1e-5, scale=True)`` on NCHW feature maps."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, eps=1e-5, momentum=0.1)


class TFBatchNorm1d(nn.BatchNorm1d):
    """``contrib.layers.batch_norm(decay=0.9, epsilon=1e-5, scale=True)`` on B×F features."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, eps=1e-5, momentum=0.1)


class TFLayerNorm(nn.GroupNorm):
    """TF1 ``layer_norm`` of an NHWC map: mean/variance over (H, W, C) per sample, per-channel γ, β, eps 1e-12."""

    def __init__(self, num_channels: int) -> None:
        super().__init__(1, num_channels, eps=1e-12)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """``tf.maximum(x, 0.2·x)`` (both repositories' leaky ReLU)."""
    return F.leaky_relu(x, LEAK)


def flatten_nhwc(x: torch.Tensor) -> torch.Tensor:
    """Flatten an NCHW map in TF's NHWC order (so a TF dense kernel can be loaded row for row)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def unflatten_nhwc(x: torch.Tensor, h: int, w: int, c: int) -> torch.Tensor:
    """Inverse of :func:`flatten_nhwc`: ``tf.reshape(x, [-1, h, w, c])`` returned as NCHW."""
    return x.reshape(x.shape[0], h, w, c).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def tf_truncated_normal_(tensor: torch.Tensor, stddev: float = INIT_STDDEV) -> torch.Tensor:
    """``tf.truncated_normal_initializer(stddev)``: N(0, σ²) re-drawn outside [−2σ, 2σ] (absolute bounds)."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=stddev, a=-2.0 * stddev, b=2.0 * stddev)


@torch.no_grad()
def tf_normal_(tensor: torch.Tensor, stddev: float = INIT_STDDEV) -> torch.Tensor:
    """``tf.random_normal_initializer(stddev)``: N(0, σ²)."""
    return nn.init.normal_(tensor, mean=0.0, std=stddev)


def truncated_normal_std(stddev: float = INIT_STDDEV) -> float:
    """Standard deviation of N(0, σ²) truncated to ±2σ: σ·sqrt(1 − 2·2·φ(2) / (Φ(2) − Φ(−2)))."""
    phi2 = math.exp(-2.0) / math.sqrt(2.0 * math.pi)
    mass = math.erf(2.0 / math.sqrt(2.0))
    return stddev * math.sqrt(1.0 - 4.0 * phi2 / mass)


@torch.no_grad()
def init_tf_(module: nn.Module, stddev: float = INIT_STDDEV) -> nn.Module:
    """Initialise every layer of ``module`` as carpedm20 and LynnHo do (see the module docstring)."""
    for m in module.modules():
        if isinstance(m, ConvTranspose2dSame):
            tf_normal_(m.weight, stddev)
        elif isinstance(m, Conv2dSame):
            tf_truncated_normal_(m.weight, stddev)
        elif isinstance(m, nn.Linear):
            tf_normal_(m.weight, stddev)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            continue
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return module
