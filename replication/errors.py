"""Exception types whose messages are one line naming the file and the problem."""
from __future__ import annotations


class ReplicationError(Exception):
    """Base class: a user-facing error; the CLI prints its message on one line and exits 1."""


class ShardError(ReplicationError):
    """A shard set, manifest or label file is missing, malformed or inconsistent."""


class DataSourceError(ReplicationError):
    """A raw dataset (annotation file, image list, image) is missing or malformed."""


class BadImageError(DataSourceError):
    """An image file could not be read or decoded."""


class ConfigError(ReplicationError):
    """A YAML config or experiment spec has unknown keys or invalid values."""


class StorageError(ReplicationError, OSError):
    """A file could not be written or read back (disk full, I/O error, read-only folder): the message names the
    file and the operating system's reason, e.g. ``runs/x/model.pt: cannot write: no space left on device``.

    It is an :class:`OSError` too (``errno`` is kept), so code that cleans up after an ``OSError`` still does."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


def os_reason(e: OSError) -> str:
    """The operating system's reason for ``e`` in lower case (``no space left on device``), else its text."""
    reason = e.strerror or str(e) or type(e).__name__
    return reason[:1].lower() + reason[1:]
