"""Inference with a classifier: scoring a shard set and the ``preds.npz`` format.

* :mod:`~replication.inference.predictions` — scoring (shared with the training loop's test
  evaluation) and the one writer and reader of ``preds.npz``;
* :mod:`~replication.inference.predict` — ``spl predict``: score a shard set with a finished run.

``predictions`` sits below ``training`` and ``predict`` above it (docs/architecture.md); nothing is re-exported here.
"""
