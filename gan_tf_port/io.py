"""Atomic file writes for the GAN trainer (``gan_tf_port`` never imports ``replication``, ``docs/gan.md``).

Each writer writes a temporary file in the target's folder, fsyncs it and renames it into place,
so an interrupted write never leaves a half-written checkpoint, image or JSON file. Files get the
user's umask (mode ``0o666 & ~umask``), as files opened directly would.

A failed write (disk full, I/O error) removes the temporary file and raises an :class:`OSError` whose
``filename`` is the target path, not the temporary name. Checkpoints are serialised in memory and
written with plain writes, so PyTorch's zip writer never meets a full disk (it turns ``ENOSPC`` into
an unhelpful ``RuntimeError``). :func:`_commit` (fsync, rename) ends every write.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
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


def _commit(tmp: str, path: Path) -> None:
    """Flush ``tmp`` to the disk and rename it to ``path``."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then atomically rename the temporary file to ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, _file_mode())
        write(tmp)
        _commit(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError):  # name the target, not the temporary file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
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
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def damaged_zip_member(path: str | os.PathLike) -> str | None:
    """The first member of the zip file ``path`` (a ``torch.save`` file) whose CRC-32 does not match its
    bytes, else None (also when it is no zip at all: the loader's own error then names it). ``torch.load``
    does not check the CRCs, so a flipped bit inside a tensor would otherwise load silently."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, OSError):
        return None  # not a zip (a truncated one, a legacy torch file): the loader's own error names it
