"""Classifier training (``spl train``): config loading and the training entry point.

Public API (the experiment runner codes against it):

* :class:`TrainConfig` and :func:`load_train_config` (preset name, YAML path or dict, plus
  ``key=value`` overrides) — :mod:`replication.training.config`;
* :func:`train` — :mod:`replication.training.loop`.
"""
from __future__ import annotations

from replication.training.config import DataConfig, TrainConfig, config_to_yaml, list_presets, load_train_config
from replication.training.loop import TrainingError, TrainingInterrupted, train

__all__ = [
    "DataConfig",
    "TrainConfig",
    "TrainingError",
    "TrainingInterrupted",
    "config_to_yaml",
    "list_presets",
    "load_train_config",
    "train",
]
