"""Watching a canary: compare its errors and latency with stable's, window after window.

`Rollout.watch` takes a `MetricsSource` (per-label request statistics for the latest window:
application traffic, or `ProbeMetrics`, which sends sample requests itself) and asks
`judge_canary` after each window whether the canary is worse than stable beyond the
`WatchThresholds`; the first window that is rolls the canary back (`WatchResult`).

With a `DriftCheck` it also asks whether the inputs the canary received (the server's request
logs, `logging_config`) still look like the data its version was trained on, with the
thresholds and measures of `tfstack monitor` (`tfstack.export.DriftAccumulator`), reading only the
records logged since its previous window.
"""

from __future__ import annotations

import dataclasses
import time
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tfstack.serving.rollout._control import ROLLOUT_REQUEST_ID
from tfstack.serving.rollout._errors import RolloutError
from tfstack.serving.rollout._state import CANARY, STABLE, ModelState

if TYPE_CHECKING:
    from tfstack.client import LabelStats
    from tfstack.export import DriftThresholds


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


class DriftCheck:
    """Do the inputs the canary received still look like its version's training data?

    Each call reads what was appended to the request logs (`logs`: the model's logging_config
    filename_prefix, a directory or .tfrecord files) since the previous call, counts the
    requests the canary version answered since `since` (leaving out rollout's own: request id
    `ROLLOUT_REQUEST_ID`, the probes and the infra gate) into running drift statistics and, once
    they hold `min_rows` rows, compares them with the version's `assets.extra/data_profile.json`
    under `thresholds`, exactly as `tfstack monitor` does. Memory is bounded by the profile and a
    window costs only the records logged during it; a new canary version (or a new `since`)
    starts over. Reading the logs imports TensorFlow (TFRecord files of PredictionLog).

    Example:
        >>> drift = DriftCheck("/var/log/tfstack/iris", export.read_drift_thresholds("drift.json"))
        >>> rollout.watch("iris", ProbeMetrics(client, "iris", sample), drift=drift)
    """

    def __init__(
        self,
        logs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        thresholds: DriftThresholds | None = None,
        *,
        min_rows: int = 100,
    ) -> None:
        from tfstack import export

        targets = [logs] if isinstance(logs, (str, os.PathLike)) else list(logs)
        if not targets or not all(isinstance(t, (str, os.PathLike)) and str(t) for t in targets):
            raise ValueError(f"logs must be a path or a non-empty list of paths. Received: logs={logs!r}")
        if thresholds is not None and not isinstance(thresholds, export.DriftThresholds):
            raise TypeError(f"thresholds must be an export.DriftThresholds. Received: thresholds={type(thresholds).__name__}")
        if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
            raise ValueError(f"min_rows must be an int >= 1. Received: min_rows={min_rows!r}")
        self.logs = [str(t) for t in targets]
        self.thresholds = thresholds or export.DriftThresholds()
        self.min_rows = min_rows
        self.last_report: dict[str, Any] | None = None  # the latest drift report (JSON-able), for callers
        # What is being watched -> the log reader (per-file offsets) and the running statistics.
        self._watched: tuple[str, int, str, float | None] | None = None
        self._tail: Any = None  # export.PredictionLogTail
        self._drift: Any = None  # export.DriftAccumulator

    def __repr__(self) -> str:
        return f"DriftCheck({self.logs!r}, min_rows={self.min_rows})"

    def __call__(self, model_name: str, version: int, version_dir: Path, *, since: float | None = None) -> str | None:
        """Why the canary's logged inputs count as drifted (one line naming the feature and the
        measure), or None: not drifted, or fewer than `min_rows` rows logged yet.

        Raises:
            RolloutError: the version has no data profile, or the logs are damaged or hold no
                request with the profile's inputs.
        """
        from tfstack import export

        watched = (model_name, version, str(version_dir), since)
        if watched != self._watched:
            profile = export.read_profile(version_dir)
            if profile is None:
                raise RolloutError(
                    f"Version {version} of {model_name!r} has no data profile ({version_dir}/assets.extra/data_profile.json) "
                    "to compare its logged requests with; publish it with `tfstack train` or `tfstack export --sample`."
                )
            self._tail = export.PredictionLogTail(self.logs, model_name=model_name)
            self._drift = export.DriftAccumulator(profile)
            self._watched = watched
        try:
            for record in self._tail.read():
                if record.version == version and record.request_id != ROLLOUT_REQUEST_ID and (
                    since is None or record.timestamp >= since
                ):
                    self._drift.add(record)
        except export.LogsNotFoundError:
            return None  # the server creates its first log file with the first logged request
        except ValueError as exc:
            raise RolloutError(f"Cannot read the request logs {self.logs}: {exc}") from exc
        if not self._drift.records:
            return None
        try:
            report = self._drift.report(model_name=model_name, version=version, thresholds=self.thresholds)
        except ValueError as exc:
            raise RolloutError(str(exc)) from exc
        self.last_report = report
        if report["rows"] < self.min_rows or not report["drifted"]:
            return None
        alerts = report["alerts"]
        more = f" (and {len(alerts) - 1} more)" if len(alerts) > 1 else ""
        return (
            f"canary inputs drifted from version {version}'s data profile: {alerts[0]}{more}, "
            f"over {report['rows']} logged rows"
        )
