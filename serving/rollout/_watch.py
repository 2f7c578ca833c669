"""Watching a canary: compare its errors and latency with stable's, window after window.

`Rollout.watch` takes a `MetricsSource` (per-label request statistics for the latest window:
application traffic, or `ProbeMetrics`, which sends sample requests itself) and asks
`judge_canary` after each window whether the canary is worse than stable beyond the
`WatchThresholds`; the first window that is rolls the canary back (`WatchResult`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from tfstack.serving.rollout._state import CANARY, STABLE, ModelState

if TYPE_CHECKING:
    from tfstack.client import LabelStats


@dataclasses.dataclass(frozen=True, kw_only=True)
class WatchThresholds:
    """When `watch` rolls a canary back.

    Attributes:
        max_error_rate_increase: canary error rate minus stable's, above which it rolls back (0.01 = 1 point).
        max_p99_ratio: canary p99 over stable p99 above which it rolls back...
        min_p99_increase_ms: ...and only if the p99 difference is also above this (noise floor).
        min_requests: canary requests needed in a window before judging it.
    """

    max_error_rate_increase: float = 0.01
    max_p99_ratio: float = 1.5
    min_p99_increase_ms: float = 5.0
    min_requests: int = 20

    def __post_init__(self) -> None:
        for name in ("max_error_rate_increase", "max_p99_ratio", "min_p99_increase_ms", "min_requests"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0. Received: {name}={value!r}")


class MetricsSource(Protocol):
    """Per-label request statistics for the latest window (e.g. `tfstack.client.TrafficStats`)."""

    def snapshot(self) -> Mapping[str, LabelStats]: ...


def judge_canary(stable: Any, canary: Any, thresholds: WatchThresholds) -> str | None:
    """Why the canary is worse than stable beyond the thresholds, or None if it is not (or too few requests)."""
    if canary is None or canary.requests < thresholds.min_requests:
        return None
    stable_errors = stable.error_rate if stable is not None and stable.requests else 0.0
    if canary.error_rate - stable_errors > thresholds.max_error_rate_increase:
        return (
            f"canary error rate {canary.error_rate:.2%} ({canary.errors}/{canary.requests}) exceeds stable's "
            f"{stable_errors:.2%} by more than {thresholds.max_error_rate_increase:.2%}"
        )
    if stable is not None and stable.requests and stable.p99_ms is not None and canary.p99_ms is not None:
        if (
            canary.p99_ms > stable.p99_ms * thresholds.max_p99_ratio
            and canary.p99_ms - stable.p99_ms > thresholds.min_p99_increase_ms
        ):
            return (
                f"canary p99 latency {canary.p99_ms:.1f} ms exceeds stable's {stable.p99_ms:.1f} ms "
                f"by more than x{thresholds.max_p99_ratio:g}"
            )
    return None


class ProbeMetrics:
    """A MetricsSource that measures by itself: each `snapshot()` sends `requests` sample
    predictions to each label through `client` (or through each of several clients, one per
    replica of a fleet) and returns that window's TrafficStats, summed over them.

    Useful when no application traffic reports per-label statistics; the probe sees errors
    and latency as any client would.
    """

    def __init__(self, client: Any, model_name: str, inputs: Mapping[str, Any], *, requests: int = 20,
                 signature_name: str = "serving_default") -> None:
        from tfstack.client import TrafficStats

        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
            raise ValueError(f"requests must be an int >= 1. Received: requests={requests!r}")
        # A fleet passes one client per replica: every replica is probed, the counts added up.
        self.clients = tuple(client) if isinstance(client, (list, tuple)) else (client,)
        if not self.clients:
            raise ValueError("client must be a ServingClient or a non-empty sequence of them. Received: []")
        self.client = self.clients[0]
        self.model_name = model_name
        self.inputs = dict(inputs)
        self.requests = requests
        self.signature_name = signature_name
        self.stats = TrafficStats()

    def snapshot(self) -> Mapping[str, LabelStats]:
        from tfstack.client import ServingError

        for _ in range(self.requests):
            for client, label in ((c, label) for c in self.clients for label in (STABLE, CANARY)):
                started = time.perf_counter()
                try:
                    client.predict(self.model_name, self.inputs, version_label=label, signature_name=self.signature_name)
                except ServingError:
                    self.stats.record(label, time.perf_counter() - started, ok=False)
                else:
                    self.stats.record(label, time.perf_counter() - started, ok=True)
        return self.stats.snapshot(reset=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WatchResult:
    """What `watch` saw: how many windows it judged and whether (and why) it rolled back."""

    checks: int
    rolled_back: bool
    reason: str | None = None
    state: ModelState | None = None
