"""Atomic file writes for the GAN trainer (``gan_tf_port`` never imports ``replication``, ``docs/gan.md``).

Each writer writes a temporary file in the target's folder, fsyncs it and renames it into place,
so an interrupted write never leaves a half-written checkpoint, image or JSON file. Files get the
user's umask (mode ``0o666 & ~umask``), as files opened directly would.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

_UMASK: list[int] = []


def _file_mode() -> int:
    """``0o666 & ~umask``, the mode ``open()`` gives a new file (``mkstemp`` would leave 0600)."""
    if not _UMASK:
        _UMASK.append(os.umask(0o022))
        os.umask(_UMASK[0])
    return 0o666 & ~_UMASK[0]


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then atomically rename the temporary file to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, _file_mode())
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    atomic_write(path, _w)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """Atomically ``torch.save`` ``obj`` (checkpoints)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
