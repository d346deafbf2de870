"""Map a timm pre-activation ResNet (``resnetv2_50``/``resnetv2_101``… with BatchNorm) into our layout.

Pure: a state dict in, a state dict and a report out (reading and writing files is
:func:`replication.models.pretrained.convert_weights`). See docs/decisions.md, "Pretrained weights".

timm's ``ResNetV2`` (``preact=True``, 7×7 stem, ``BatchNormAct2d`` = BN→ReLU, plain convs)::

    stem.conv → stem.pool → stages.s.blocks.b: x_pre = norm1(x); shortcut = downsample.conv(x_pre) or x;
    conv1(x_pre) → norm2 → conv2 (stride) → norm3 → conv3, + shortcut … → norm (BN→ReLU) → avg-pool → head.fc

Our fb.resnet.torch layout (:mod:`replication.models.preact_resnet`)::

    stem.0 (conv) → stem.1 (BN) → ReLU → max-pool → layer1.0 (no_preact, projection on its input) …
    → layer(s+1).b.preact_bn … → final_bn → ReLU → avg-pool → fc

The map, one to one except the stem:

* ``stem.conv`` → ``stem.0``; ``stages.0.blocks.0.norm1`` (the first unit's pre-activation, *after*
  timm's max-pool) → ``stem.1`` (our stem BN, *before* the max-pool). Max-pool commutes with a
  per-channel non-decreasing map, and in eval mode BN→ReLU is one where the BN scale
  γ/√(σ²+ε) ≥ 0, i.e. γ ≥ 0. The move is exact for those channels and approximate for channels with
  γ < 0: the report counts them (``stem_negative_scale``).
* every other block: ``norm1`` → ``preact_bn``, ``norm2`` → ``bn2``, ``norm3`` → ``bn3``,
  ``conv1/2/3`` → ``conv1/2/3``, ``downsample.conv`` → ``shortcut`` (both take the pre-activated
  input where a stage's first unit projects; our stage-1 first unit takes the stem's output, which
  now ends in the same BN→ReLU);
* ``norm`` → ``final_bn``; ``head.fc`` (a 1×1 conv) → ``fc`` (its weight flattened to C×F).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from replication.errors import ConfigError

BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
_TRACKED = "num_batches_tracked"
_BLOCK = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.")
#: Our model names by timm's units per stage (bottleneck ResNetV2s).
PREACT_NAMES = {(3, 4, 6, 3): "preact_resnet50", (3, 4, 23, 3): "preact_resnet101", (3, 8, 36, 3): "preact_resnet152"}
STEM_BN = "stages.0.blocks.0.norm1"


def is_resnetv2_state(state: Mapping[str, torch.Tensor]) -> bool:
    """True when ``state`` looks like a timm ResNetV2 (7×7 stem ``stem.conv``, ``stages.*.blocks.*``)."""
    return "stem.conv.weight" in state and any(k.startswith("stages.0.blocks.0.") for k in state)


def stage_depths(state: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Units per stage of a timm ResNetV2 state dict, e.g. ``(3, 4, 23, 3)``."""
    counts: dict[int, int] = {}
    for k in state:
        m = _BLOCK.match(k)
        if m:
            s, b = int(m.group(1)), int(m.group(2))
            counts[s] = max(counts.get(s, 0), b + 1)
    return tuple(counts[s] for s in sorted(counts))


def negative_scale_channels(weight: torch.Tensor) -> int:
    """Channels whose eval-mode BN scale γ/√(σ²+ε) is negative (the sign of γ, since √(σ²+ε) > 0)."""
    return int((weight < 0).sum())


def convert_resnetv2_state_dict(
    timm_state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Map timm ResNetV2 weights into our fb.resnet.torch layout (:class:`~.preact_resnet.PreActResNet`).

    Returns ``(our_state, report)``; the report holds ``model`` (our registry name, when the
    depths match one), ``depths``, ``num_classes``, ``stem_channels`` and ``stem_negative_scale``
    (stem channels where the moved BN is not exact; see the module docstring). Raises
    :class:`ConfigError` for anything else: a deep stem, GroupNorm (BiT) weights, basic units,
    or keys left over.
    """
    state = {k: v for k, v in timm_state.items()}
    if not is_resnetv2_state(state):
        deep = " (a deep-stem 'd' variant is not supported)" if "stem.conv1.weight" in state else ""
        raise ConfigError(f"not a timm ResNetV2 state dict with a 7×7 stem{deep}")
    if f"{STEM_BN}.running_var" not in state:
        raise ConfigError("not a BatchNorm ResNetV2 (GroupNorm + weight-standardised BiT weights cannot be converted)")
    if "stages.0.blocks.0.conv3.weight" not in state:
        raise ConfigError("not a bottleneck ResNetV2 (basic-unit ResNetV2s are not supported)")
    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}

    def take(src: str) -> torch.Tensor:
        if src not in state:
            raise ConfigError(f"timm ResNetV2 state dict lacks {src!r}")
        used.add(src)
        return state[src]

    def bn(dst: str, src: str) -> None:
        for p in BN_PARAMS:
            out[f"{dst}.{p}"] = take(f"{src}.{p}")
        tracked = f"{src}.{_TRACKED}"
        if tracked in state:
            out[f"{dst}.{_TRACKED}"] = take(tracked)
        else:  # some published files omit the counter; eval does not use it
            out[f"{dst}.{_TRACKED}"] = torch.tensor(0, dtype=torch.long)

    out["stem.0.weight"] = take("stem.conv.weight")
    bn("stem.1", STEM_BN)
    depths = stage_depths(state)
    for s, count in enumerate(depths):
        for b in range(count):
            src, dst = f"stages.{s}.blocks.{b}", f"layer{s + 1}.{b}"
            if (s, b) != (0, 0):
                bn(f"{dst}.preact_bn", f"{src}.norm1")
            for i in (1, 2, 3):
                out[f"{dst}.conv{i}.weight"] = take(f"{src}.conv{i}.weight")
            bn(f"{dst}.bn2", f"{src}.norm2")
            bn(f"{dst}.bn3", f"{src}.norm3")
            if f"{src}.downsample.conv.weight" in state:
                out[f"{dst}.shortcut.weight"] = take(f"{src}.downsample.conv.weight")
    bn("final_bn", "norm")
    fc_w = take("head.fc.weight")
    out["fc.weight"] = fc_w.reshape(fc_w.shape[0], -1)
    out["fc.bias"] = take("head.fc.bias")
    left = sorted(set(state) - used)
    if left:
        raise ConfigError(f"timm ResNetV2 state dict has keys with no place in our layout: {', '.join(left[:8])}")
    stem_w = state[f"{STEM_BN}.weight"]
    report: dict[str, object] = {
        "model": PREACT_NAMES.get(depths),
        "depths": list(depths),
        "num_classes": int(fc_w.shape[0]),
        "stem_channels": int(stem_w.numel()),
        "stem_negative_scale": negative_scale_channels(stem_w),
    }
    return out, report
