"""Pre-activation ResNets in the fb.resnet.torch ``preresnet`` layout that SRN used.

See paper §2.4; docs/classifier.md#decisions.

Layout (fact, ``models/preresnet.lua``):

* stem: conv 7×7/2 (64, no bias) → BN → ReLU → max-pool 3×3/2 (padding 1);
* units (basic for depths 18/34, bottleneck for 50/101/152): the residual branch is
  BN→ReLU→conv … with no activation after the sum. The first unit of each stage
  (``both_preact``) applies BN→ReLU *before* the split, so its projection shortcut (1×1 conv,
  stride s, no BN) takes the pre-activated input; the very first unit of the network
  (``no_preact``) skips that pre-activation because the stem already ends in BN→ReLU; the other
  units pre-activate inside the residual branch only and keep an identity shortcut;
* the stride sits on the 3×3 conv (bottleneck) / the first 3×3 conv (basic);
* head: BN → ReLU → global average pool → FC(C). No conv biases.

Learnable parameters of ``preact_resnet101``: 42,656,400 (C = 80), 42,658,449 (C = 81),
42,521,166 (C = 14), 44,541,480 (C = 1000) — checked by ``tests/test_models.py``.

``preact_resnet_small`` (decision, embedded preset only — a documented deviation): the same
builder with basic units, one unit per stage, widths 16/32/64/128 and a stem adapted to 28×28
digit crops (conv 3×3 stride 1, no max-pool).

Initialisation follows fb.resnet.torch: conv weights N(0, √(2/(k·k·C_out))), BN weight 1 and
bias 0, FC bias 0 (FC weight: PyTorch's default uniform init).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

#: Unit types of fb.resnet.torch: pre-activation before the split, none at all, or in the branch.
BOTH_PREACT, NO_PREACT, BRANCH_PREACT = "both_preact", "no_preact", "branch_preact"


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


class _PreActUnit(nn.Module):
    """Common forward of a pre-activation unit: optional shared pre-activation, branch + shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, kind: str) -> None:
        super().__init__()
        if kind not in (BOTH_PREACT, NO_PREACT, BRANCH_PREACT):
            raise ValueError(f"unknown unit kind {kind!r}")
        out_planes = planes * self.expansion
        self.kind = kind
        # Pre-activation: before the split (both_preact) or as the branch's first layers (branch_preact).
        if kind != NO_PREACT:
            self.preact_bn = nn.BatchNorm2d(in_planes)
        # fb.resnet.torch shortcut type 'B': a 1×1 projection only where the shape changes.
        if in_planes != out_planes or stride != 1:
            if kind == BRANCH_PREACT:
                raise ValueError("a projection shortcut needs a both_preact or no_preact unit")
            self.shortcut: nn.Module = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
        else:
            self.shortcut = nn.Identity()

    def branch(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == BOTH_PREACT:
            x = torch.relu(self.preact_bn(x))
            return self.branch(x) + self.shortcut(x)
        if self.kind == BRANCH_PREACT:
            return self.branch(torch.relu(self.preact_bn(x))) + self.shortcut(x)
        return self.branch(x) + self.shortcut(x)


class PreActBasicBlock(_PreActUnit):
    """Basic unit: [BN→ReLU→] conv3×3(stride) → BN→ReLU → conv3×3, plus the shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, kind: str = BRANCH_PREACT) -> None:
        super().__init__(in_planes, planes, stride, kind)
        self.conv1 = _conv(in_planes, planes, 3, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.bn2(self.conv1(x))))


class PreActBottleneck(_PreActUnit):
    """Bottleneck unit: [BN→ReLU→] 1×1 → BN→ReLU→3×3(stride) → BN→ReLU→1×1(4n), plus the shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, kind: str = BRANCH_PREACT) -> None:
        super().__init__(in_planes, planes, stride, kind)
        self.conv1 = _conv(in_planes, planes, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * 4, 1)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(torch.relu(self.bn2(self.conv1(x))))
        return self.conv3(torch.relu(self.bn3(x)))


class PreActResNet(nn.Module):
    """Pre-activation ResNet (fb.resnet.torch ``preresnet``) with a C-way linear classifier ``fc``."""

    def __init__(
        self,
        block: type[_PreActUnit],
        layers: Sequence[int],
        num_classes: int,
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        small_stem: bool = False,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError("a pre-activation ResNet has four stages: give four unit counts and four widths")
        self.num_classes = num_classes
        stem_width = widths[0]
        if small_stem:
            self.stem = nn.Sequential(_conv(in_chans, stem_width, 3), nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(stem_width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        in_planes = stem_width
        stages = []
        for s, (count, width) in enumerate(zip(layers, widths)):
            stride = 1 if s == 0 else 2
            units = []
            for u in range(count):
                kind = (NO_PREACT if s == 0 else BOTH_PREACT) if u == 0 else BRANCH_PREACT
                units.append(block(in_planes, width, stride if u == 0 else 1, kind))
                in_planes = width * block.expansion
            stages.append(nn.Sequential(*units))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.final_bn = nn.BatchNorm2d(in_planes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_planes
        self.fc = nn.Linear(in_planes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.fc.bias)

    def get_classifier(self) -> nn.Module:
        """The final linear layer (the "new FC" of fine-tuning)."""
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N × num_features) after the final BN→ReLU and global average pool."""
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.relu(self.final_bn(x))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N × C) for a batch of images (N × 3 × H × W)."""
        return self.fc(self.forward_features(x))


_DEPTHS: dict[int, tuple[type[_PreActUnit], tuple[int, ...]]] = {
    18: (PreActBasicBlock, (2, 2, 2, 2)),
    34: (PreActBasicBlock, (3, 4, 6, 3)),
    50: (PreActBottleneck, (3, 4, 6, 3)),
    101: (PreActBottleneck, (3, 4, 23, 3)),
    152: (PreActBottleneck, (3, 8, 36, 3)),
}


def preact_resnet(depth: int, num_classes: int, **kwargs) -> PreActResNet:
    """Build the pre-activation ResNet of ``depth`` ∈ {18, 34, 50, 101, 152} with C = ``num_classes``."""
    if depth not in _DEPTHS:
        raise ValueError(f"unsupported depth {depth}; expected one of {sorted(_DEPTHS)}")
    block, layers = _DEPTHS[depth]
    return PreActResNet(block, layers, num_classes, **kwargs)


def preact_resnet_small(num_classes: int, **kwargs) -> PreActResNet:
    """Narrow variant for 28×28 digits (embedded preset): basic units [1,1,1,1], widths 16/32/64/128,
    stem conv 3×3 stride 1 without max-pool (deviation from the paper's network, documented)."""
    kwargs.setdefault("widths", (16, 32, 64, 128))
    kwargs.setdefault("small_stem", True)
    return PreActResNet(PreActBasicBlock, (1, 1, 1, 1), num_classes, **kwargs)
