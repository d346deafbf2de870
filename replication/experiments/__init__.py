"""Experiments: table specs, the cached step runner and its steps.

* :mod:`replication.experiments.spec` — the YAML table spec as dataclasses, validated before anything runs.
* :mod:`replication.experiments.steps` — run directories named by a hash of their resolved config,
  with a ``done`` marker written last.
* :mod:`replication.experiments.stepfns` — the function behind each step (the only caller of the
  data, GAN, classifier, labeling and metrics libraries).
* :mod:`replication.experiments.runner` — the dependency chain of one table and its execution.

Users import the public API from :mod:`replication.experiment`; code inside the package imports
these modules directly. This ``__init__`` re-exports nothing.
"""
