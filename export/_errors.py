"""The export package's error hierarchy: one root, `ExportError`, so callers can catch it all."""

from __future__ import annotations


class ExportError(Exception):
    """Root of every error raised by `export` (bad arguments raise TypeError/ValueError instead)."""


class RepositoryError(ExportError):
    """The model repository cannot be used: base path missing, a file, unwritable, or unreadable."""


class VersionExistsError(RepositoryError):
    """An explicit version was requested for publishing, but that version already exists."""


class VersionNotFoundError(RepositoryError):
    """The requested model or version is not in the repository."""


class CorruptVersionError(RepositoryError):
    """A numeric version directory exists but does not hold a usable SavedModel or manifest."""


class VerificationError(ExportError):
    """The freshly written SavedModel did not reload, lacks a signature, or predicts differently."""


class SchemaChangeError(RepositoryError):
    """A new version would break the existing model's clients (inputs or outputs changed); nothing was written."""


class LogsNotFoundError(ExportError, ValueError):
    """No request log file matches the given path, directory or filename prefix (yet: a server
    creates its first log file with the first logged request). A ValueError too, as before."""
