"""Benchmark library behind ``spl bench`` (no command-line code here: see ``replication/commands/bench.py``).

One module per benchmark (``loader``, ``metrics``, ``kernels``, ``gan``, ``train``), each with a
config dataclass and a ``run_<name>(config)`` function returning a result record, and the shared
:mod:`~replication.benchmarks.harness` (timing, machine info, device-keyed result files).
"""
