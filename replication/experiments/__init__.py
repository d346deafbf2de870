"""Experiments: table specs, the cached step runner and its steps (SPEC §1, §10).

* :mod:`replication.experiments.spec` — the YAML table spec as dataclasses, validated before anything runs.
* :mod:`replication.experiments.steps` — run directories named by a hash of their resolved config,
  with a ``done`` marker written last.
* :mod:`replication.experiments.runner` — the dependency chain of one table and its execution.
"""
from replication.experiments.spec import ExperimentSpec, load_spec

__all__ = ["ExperimentSpec", "load_spec"]
