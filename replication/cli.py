"""The ``spl`` command line: a thin click group; every command calls library functions.

Each sub-command lives in ``replication/commands/<name>.py`` and exposes a click object named
``command``; this module only assembles them. Errors derived from
:class:`replication.errors.ReplicationError` are printed on one line and exit with status 1, and so
is any other :class:`OSError` (disk full, I/O error, permission): the file it names and the
operating system's reason, never a traceback.

Before any work starts, every ``--out`` (and the ``--runs`` of the commands that write runs) is
checked for being writable (:func:`replication.io_utils.check_writable`): a read-only folder gets one
line at once instead of a failure after minutes of work.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from replication.errors import ReplicationError, os_reason
from replication.io_utils import check_writable

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
        except OSError as e:  # disk full, I/O error, permission: the file and the reason, one line
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"error: {where}{os_reason(e)}", err=True)
            sys.exit(1)


#: Commands whose ``--runs`` folder they write into (the others only read it).
WRITES_RUNS = {"run"}


def _writable_option(param: click.Parameter, what: str) -> None:
    """Make ``param`` refuse an unwritable path while the command line is parsed (before any work)."""
    inner = param.callback

    def callback(ctx: click.Context, p: click.Parameter, value):
        if inner is not None:
            value = inner(ctx, p, value)
        if value is not None and not str(value).startswith("-") and not os.path.islink(value):
            check_writable(value, what)
        return value

    param.callback = callback


def guard_outputs(group: click.Group) -> None:
    """Attach the writability check to every ``--out`` (and ``--runs`` of a writing command) below ``group``."""
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            guard_outputs(cmd)
            continue
        for param in cmd.params:
            opts = getattr(param, "opts", [])
            if "--out" in opts:
                _writable_option(param, "--out")
            elif "--runs" in opts and name in WRITES_RUNS:
                _writable_option(param, "--runs")


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """SPL replication: data shards, GANs, labeling rules, classifier training, metrics and tables."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for _name in COMMAND_MODULES:
    cli.add_command(importlib.import_module(f"replication.commands.{_name}").command)
guard_outputs(cli)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="spl")


if __name__ == "__main__":
    main()
