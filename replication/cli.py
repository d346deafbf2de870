"""The ``spl`` command line: a thin click group; every command calls library functions.

Each sub-command lives in ``replication/commands/<name>.py`` and exposes a click object named
``command``; this module only assembles them. Errors derived from
:class:`replication.errors.ReplicationError` are printed on one line and exit with status 1.
"""
from __future__ import annotations

import importlib
import logging
import sys

import click

from replication.errors import ReplicationError

# Order is the order shown by ``spl --help``.
COMMAND_MODULES = ["data", "gan", "train", "predict", "label", "eval", "experiment", "tables", "study", "bench",
                   "weights"]


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ReplicationError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """SPL replication: data shards, GANs, labeling rules, classifier training, metrics and tables."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for _name in COMMAND_MODULES:
    cli.add_command(importlib.import_module(f"replication.commands.{_name}").command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="spl")


if __name__ == "__main__":
    main()
