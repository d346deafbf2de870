"""Atomic file writes (write to a temporary name in the same folder, fsync, rename into place) and the
rules for output folders: never one that is, holds or lies inside an input, never the working folder.

Files keep the user's umask: ``mkstemp`` creates its file with mode 0600, so it is set to
``0o666 & ~umask`` before the rename, as ``open()`` would have.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from replication.errors import ReplicationError

_UMASK: int | None = None


class OutputPathError(ReplicationError):
    """An output path that may not be written (it is, holds or lies inside an input, or is the cwd)."""


def file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open()`` gives a new file (the umask is read once per process)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _within(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def check_output_path(out: str | os.PathLike, *inputs: tuple[str, str | os.PathLike | None],
                      may_lie_inside: bool = False) -> Path:
    """Refuse an output ``out`` that is the working folder (or holds it), or that equals, holds or (unless
    ``may_lie_inside``) lies inside one of the ``(what, path)`` ``inputs``; a symlink ``out`` is refused
    too. Returns ``out``."""
    out = Path(out)
    if out.is_symlink():
        raise OutputPathError(f"{out}: --out is a symbolic link; give the real folder")
    real = Path(os.path.realpath(out))
    if _within(Path(os.path.realpath(os.getcwd())), real):
        raise OutputPathError(f"{out}: --out is the working folder or holds it; give a new folder")
    for what, path in inputs:
        if path is None:
            continue
        other = Path(os.path.realpath(path))
        if _within(other, real):
            raise OutputPathError(f"{out}: --out must not be or hold {what} {path}")
        if not may_lie_inside and _within(real, other):
            raise OutputPathError(f"{out}: --out must lie outside {what} {path}")
    return out


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then atomically rename ``tmp_path`` to ``path``.

    The temporary file lives beside ``path`` (same filesystem, so ``os.replace`` is atomic);
    it is removed if ``write`` raises, so an interrupted write never leaves ``path`` half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, file_mode())
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, _w)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON to ``path``."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """Atomically ``torch.save`` ``obj`` to ``path`` (checkpoints)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
