"""The training package's error hierarchy: one root, a few precise children."""

from __future__ import annotations


class TrainingError(Exception):
    """Root of every error raised by `training` on purpose."""


class ConfigError(TrainingError, ValueError):
    """A `TrainConfig` field has a bad value (also a ValueError: it is a bad argument)."""


class DatasetError(TrainingError):
    """A dataset cannot be loaded or split: unknown name, missing file or column, bad values."""


class ModelError(TrainingError):
    """The requested model does not fit the data (e.g. a CNN on a table)."""
