"""Whether this process draws progress bars: the ``SPL_PROGRESS`` environment variable (``0``: none).

Several processes drawing tqdm bars on one terminal overwrite each other's lines. So the worker processes
of ``--jobs N`` turn their steps' bars off (the runner's own bar lists the running steps), and
``--no-progress`` of ``spl experiment run`` / ``spl study run`` turns every bar off for the command, its
workers included (they inherit the environment). Where bars are allowed, each step's own ``progress``
setting still decides.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

#: The environment variable; ``0`` turns every bar of this process (and of processes it starts) off.
ENV = "SPL_PROGRESS"


def bars_allowed() -> bool:
    """False when ``SPL_PROGRESS=0``."""
    return os.environ.get(ENV, "1") != "0"


def progress_on(progress: bool) -> bool:
    """A bar's on/off: its own ``progress`` setting, unless bars are off in this process."""
    return bool(progress) and bars_allowed()


def turn_bars_off() -> None:
    """Off for this process and every process it starts from now on (a ``--jobs`` worker's initializer)."""
    os.environ[ENV] = "0"


@contextmanager
def bars_off(off: bool = True) -> Iterator[None]:
    """Bars off (when ``off``) for the duration of the block, for this process and what it starts; then restored."""
    before = os.environ.get(ENV)
    if off:
        turn_bars_off()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


__all__ = ["ENV", "bars_allowed", "progress_on", "turn_bars_off", "bars_off"]
