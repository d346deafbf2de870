"""Classifier training internals: config, sampler, checkpoints, distributed helpers and the loop.

The public entry points are re-exported by :mod:`replication.train`.
"""
