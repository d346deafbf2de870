"""Atomic file writes (write to a temporary name in the same folder, fsync, rename into place) and the
rules for output folders: never one that is, holds or lies inside an input, never the working folder.

Storage faults (README "Guarantees", docs/decisions.md): a write that fails — disk full (``ENOSPC``), an
I/O error, a read-only folder — removes its temporary file and raises :class:`StorageError`, one line
naming the *final* path and the operating system's reason; the previous file at that path is untouched.
Checkpoints and HDF5 files are serialised in memory first and written with plain ``os.write``, so
neither PyTorch's zip writer nor the HDF5 library ever sees the full disk (PyTorch turned ``ENOSPC``
into ``RuntimeError: unexpected pos``; HDF5 left a half-closed file that crashed at interpreter exit).
Every atomic write ends in :func:`_commit` (fsync, rename), the one place fault-injection tests patch.

Files keep the user's umask: ``mkstemp`` creates its file with mode 0600, so it is set to
``0o666 & ~umask`` before the rename, as ``open()`` would have.
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

import h5py
import torch

from replication.errors import ReplicationError, StorageError, os_reason

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


def check_writable(path: str | os.PathLike, what: str = "--out") -> Path:
    """Refuse, before any work starts, an output ``path`` whose folder cannot be written (read-only
    file system, no permission): :class:`StorageError` naming it. The nearest existing folder at or
    above ``path`` is probed by creating and removing a temporary file (``os.access`` says yes to root
    even on a read-only mount). A path under a regular file is left to the command's own checks."""
    path = Path(path)
    probe_dir = path if path.is_dir() else path.parent
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return path
    try:
        fd, tmp = tempfile.mkstemp(prefix=".spl-write-probe-", dir=probe_dir)
    except OSError as e:
        where = "" if probe_dir == path else f" (its folder {probe_dir})"
        raise StorageError(f"{path}: {what} cannot be written{where}: {os_reason(e)}", e.errno) from None
    os.close(fd)
    os.unlink(tmp)
    return path


def _commit(tmp: str, path: Path) -> None:
    """Flush ``tmp`` to the disk and rename it to ``path`` (the last stage of every atomic write)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then atomically rename ``tmp_path`` to ``path``.

    The temporary file lives beside ``path`` (same filesystem, so ``os.replace`` is atomic);
    it is removed if ``write`` raises, so an interrupted write never leaves ``path`` half-written.
    An :class:`OSError` (disk full, I/O error, read-only folder) becomes a :class:`StorageError`
    naming ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, file_mode())
        write(tmp)
        _commit(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError) and not isinstance(e, ReplicationError):
            raise StorageError(f"{path}: cannot write: {os_reason(e)}", e.errno) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``path`` (plain ``os.write`` calls: disk full is an ``OSError``)."""
    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    atomic_write(path, _w)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON to ``path``."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def torch_bytes(obj: Any) -> bytes:
    """``torch.save(obj)`` into memory (its zip writer never touches the disk)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """Atomically ``torch.save`` ``obj`` to ``path`` (checkpoints), serialised in memory first."""
    atomic_write_bytes(path, torch_bytes(obj))


def hdf5_bytes(fill: Callable[[h5py.File], None]) -> bytes:
    """An HDF5 file built in memory: ``fill(f)`` creates its datasets and attributes; returns its bytes."""
    buf = io.BytesIO()
    f = h5py.File(buf, "w")
    try:
        fill(f)
    finally:
        f.close()
    return buf.getvalue()


def atomic_write_hdf5(path: str | os.PathLike, fill: Callable[[h5py.File], None]) -> None:
    """Atomically write the HDF5 file that ``fill(f)`` builds (in memory, so HDF5 never sees a full disk)."""
    atomic_write_bytes(path, hdf5_bytes(fill))


def damaged_zip_member(path: str | os.PathLike) -> str | None:
    """The first member of zip file ``path`` (``torch.save`` and ``np.savez`` files are zips) whose CRC-32 does
    not match its bytes, else None (also for
    no zip at all: the loader's own error then names it). ``torch.load`` skips the CRCs, so a
    flipped bit inside a tensor would load silently without this check (one extra read of the file)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, OSError):
        return None  # not a zip (a truncated one, a legacy torch file): the loader's own error names it
