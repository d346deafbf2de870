"""Optional timm backbones (``model: timm/<name>``, extra ``[timm]``), built with random weights.

Decision (docs/classifier.md#recipe): users with timm weights cached can fine-tune e.g. ``timm/resnetv2_101``
(a pre-activation ResNet-101) or ``timm/resnet101``; pass the weights with ``pretrained: PATH``
(our strict loader) or ``pretrained: timm:<name>`` (a checkpoint already in the local Hugging Face /
torch hub cache), never downloaded here: :func:`cached_weights_file` sets ``HF_HUB_OFFLINE=1`` and only
looks on disk.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from replication.errors import ConfigError

#: File names timm looks for in a Hugging Face model repository, in its order of preference.
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def timm_available() -> bool:
    """True when the optional ``timm`` package can be imported."""
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def build_timm_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=C)``; ConfigError without timm."""
    try:
        import timm  # optional extra: loaded only for timm/<name> models
    except ImportError:
        raise ConfigError(f"model timm/{name}: timm is not installed (pip install 'spl-replication[timm]')") from None
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    except RuntimeError as e:  # timm raises RuntimeError for unknown model names
        raise ConfigError(f"model timm/{name}: {e}") from None


def _import_timm(what: str) -> Any:
    try:
        import timm  # optional extra: loaded only for timm/<name> models and timm:<name> weights
    except ImportError:
        raise ConfigError(f"{what}: timm is not installed (pip install 'spl-replication[timm]')") from None
    return timm


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def torch_hub_checkpoints() -> Path:
    """torch.hub's checkpoint folder (older timm weights with a URL): ``$TORCH_HOME/hub/checkpoints``."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def pretrained_cfg(name: str) -> Any:
    """timm's pretrained config of ``name`` (``arch.tag``; a bare arch: timm's default tag); ConfigError if unknown."""
    timm = _import_timm(f"timm:{name}")
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ConfigError(f"timm:{name}: timm knows no pretrained weights of that name")
    return cfg


def cached_weights_file(name: str) -> Path:
    """The local file of timm's pretrained weights ``name``, from the HF hub or torch.hub cache; no network.

    A one-line :class:`ConfigError` names the cache folder(s) it looked in when the weights are not there.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"  # set before huggingface_hub is imported: nothing may download
    cfg = pretrained_cfg(name)
    looked: list[str] = []
    repo = getattr(cfg, "hf_hub_id", None)
    if repo:
        cache = hf_cache_dir()
        looked.append(str(cache / f"models--{repo.replace('/', '--')}"))
        try:
            from huggingface_hub import try_to_load_from_cache  # optional: comes with timm
        except ImportError:
            raise ConfigError(f"timm:{name}: huggingface_hub is not installed") from None
        files = [cfg.hf_hub_filename] if getattr(cfg, "hf_hub_filename", None) else list(HF_WEIGHT_FILES)
        for filename in files:
            try:
                found = try_to_load_from_cache(repo, filename, cache_dir=cache)
            except Exception:  # a corrupt cache entry reads as "not cached"
                found = None
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    url = getattr(cfg, "url", None)
    if url:
        path = torch_hub_checkpoints() / url.rsplit("/", 1)[-1]
        looked.append(str(path))
        if path.is_file():
            return path
    raise ConfigError(f"timm:{name}: pretrained weights are not in the local cache (looked in "
                      f"{' and '.join(looked) or 'nothing: no download source known'}); fetch them once where "
                      f"there is network (timm.create_model({name!r}, pretrained=True)) or pass timm:/path/to/file")


def mean_std(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input mean and std (RGB, 0–1) that timm's pretrained weights ``name`` expect."""
    cfg = pretrained_cfg(name)
    return tuple(cfg.mean), tuple(cfg.std)
