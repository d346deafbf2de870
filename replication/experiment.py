"""Experiments (``spl experiment run``): the public API; the code lives in :mod:`replication.experiments`.

* :func:`load_spec` — read and validate ``tables/specs/*.yaml`` (unknown rows, datasets, metric
  keys and YAML keys raise :class:`~replication.errors.ConfigError` before anything runs);
* :func:`plan_experiment` — the dependency chain of cached steps (shards → GANs → samples →
  baseline → scores → label files → one training per row and seed → metrics → galleries);
* :func:`run_experiment` — run every step not yet done under ``runs/<dataset>/<step>-<hash>/``.
"""
from __future__ import annotations

from replication.experiments.runner import ExperimentResult, Plan, plan_experiment, run_experiment
from replication.experiments.spec import ExperimentSpec, load_spec, spec_from_dict
from replication.experiments.steps import Step, StepRecord, execute

__all__ = [
    "ExperimentSpec", "ExperimentResult", "Plan", "Step", "StepRecord",
    "load_spec", "spec_from_dict", "plan_experiment", "run_experiment", "execute",
]
