"""Rollout's errors: every one is a `RolloutError` (itself a `tfstack.serving.ServerError`).

- `GateError`: a candidate failed a gate (signature, quality, infra); nothing was changed.
- `ConfigLockError`: another rollout step holds the config lock.
- `ReplicaError`: one or more replicas of a fleet failed a phase.

A failed reload, a version that does not load or an unreadable state file is a plain
`RolloutError` whose message says what was received and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

# The root stays in the serving package's error module, beside ServerError, so one
# `except ServerError` catches the server's and rollout's errors alike.
from tfstack.serving._errors import RolloutError

if TYPE_CHECKING:
    from tfstack.serving.rollout._gates import GateResult

class GateError(RolloutError):
    """A candidate failed a gate; the message lists every failed check. Nothing was changed."""

    def __init__(self, message: str, results: Sequence[GateResult] = ()) -> None:
        super().__init__(message)
        self.results = tuple(results)


class ConfigLockError(RolloutError):
    """Another rollout step holds the config lock."""


class ReplicaError(RolloutError):
    """One or more replicas of a fleet failed a phase; `replicas` names them."""

    def __init__(self, message: str, replicas: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.replicas = tuple(replicas)
