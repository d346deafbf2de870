"""``spl bench …``: microbenchmarks writing results under ``benchmarks/results/``.

Each benchmark lives in ``replication/benchmarks/<name>.py`` and exposes a click command named
``command``.
"""
from __future__ import annotations

import importlib

import click

BENCHMARKS = ["loader", "metrics", "kernels", "gan", "train"]


@click.group(name="bench")
def command() -> None:
    """Benchmarks (speed is measured, never asserted): results go to benchmarks/results/."""


for _name in BENCHMARKS:
    command.add_command(importlib.import_module(f"replication.benchmarks.{_name}").command)
