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
