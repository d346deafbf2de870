"""One writer per output: an exclusive lock beside each output folder or file (docs/decisions.md).

``with output_lock(path):`` holds ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the lock file
``<parent>/.<name>.lock`` for as long as the block runs. The lock file records the holder's PID and
host, so a second writer is refused at once with a one-line :class:`LockError` naming the holder.
The kernel drops a ``flock`` when its process dies, so a lock left by a killed process is stale by
construction: the next writer simply takes it. The lock file is removed on release; a writer that
opened it just before checks after locking that the path still names the file it locked (and tries
again otherwise), so removing it never lets two writers in.

The lock lives *beside* the output rather than inside it, so an output folder that is rebuilt in a
sibling temporary folder and swapped into place stays locked throughout. Locks are re-entrant
within one process (a step that locks its folder may be called by a runner that already holds it).
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from replication.errors import ReplicationError

_held: dict[str, int] = {}  # lock path -> nesting depth in this process
_guard = threading.Lock()


class LockError(ReplicationError):
    """Another process is writing the same output."""


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``<parent>/.<name>.lock`` (``target`` made absolute first)."""
    target = Path(os.path.abspath(target))
    return target.parent / f".{target.name}.lock"


def _holder(path: Path, wait_s: float = 1.0) -> str:
    """The holder's stamp. The holder writes it just after locking, so an empty file is read again
    for up to ``wait_s`` (a loaded machine can delay that write; the refusal should name the holder)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            text = path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return "another process"
        if text or time.monotonic() > deadline:
            return text or "another process"
        time.sleep(0.02)


def _acquire(path: Path, target: Path) -> int:
    """Open, lock and stamp ``path``; returns the open descriptor. :class:`LockError` when held elsewhere."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise LockError(f"{target}: cannot create the lock file {path} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockError(f"{target}: in use by {_holder(path)} (lock file {path}); "
                                "wait for it to finish or use another output") from None
            raise LockError(f"{target}: cannot lock {path} ({e.strerror})") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed it between our open and our lock: try again
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        return fd


@contextmanager
def output_lock(target: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of output ``target`` (a folder or a file) for the ``with`` block.

    The parent folder is created if needed. Raises :class:`LockError` (one line, naming the holder)
    when another process holds it. Yields the lock file's path.
    """
    target = Path(os.path.abspath(target))
    path = lock_path(target)
    key = str(path)
    with _guard:
        if key in _held:
            _held[key] += 1
            fd = None
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise LockError(f"{target}: cannot create its folder {path.parent} ({e.strerror})") from None
            fd = _acquire(path, target)
            _held[key] = 1
    try:
        yield path
    finally:
        with _guard:
            _held[key] -= 1
            if _held[key] == 0:
                del _held[key]
                if fd is not None:
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass
                    os.close(fd)


def is_locked(target: str | os.PathLike) -> bool:
    """Whether some process (this one included) holds the lock of ``target`` now."""
    path = lock_path(target)
    if str(path) in _held:
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


__all__ = ["LockError", "lock_path", "is_locked", "output_lock"]
