"""Traffic for a canary rollout, on top of ServingClient / AsyncServingClient (TF Serving leaves
this to clients: tensorflow/serving#788).

- `CanarySplit` / `AsyncCanarySplit`: send a weighted share of predictions to the `canary`
  label and the rest to `stable`, sticky by a hash of a request key (the same user always sees
  the same version); without a key each request is drawn at random.
- Shadow mode: mirror a fraction of the stable requests to the canary in the background,
  compare its outputs with stable's and count disagreements; callers only ever get stable's
  answer and stable's latency.
- `TrafficStats`: per-label request, error and latency counters (a sliding window of recent
  latencies for p50/p99), which `tfstack rollout watch` reads to roll a bad canary back.

    from tfstack.client import ServingClient
    from tfstack.client._traffic import CanarySplit

    with ServingClient.grpc("localhost:8500") as c:
        split = CanarySplit(c, "iris", canary_weight=0.1, shadow_fraction=0.05)
        split.predict({"features": [[5.1, 3.5, 1.4, 0.2]]}, key=user_id)
        split.stats.snapshot()    # {"stable": LabelStats(...), "canary": LabelStats(...)}
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import hashlib
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfstack.client._errors import ServingError, VersionLabelNotFoundError

# The version labels a rollout assigns (`tfstack rollout`) and a CanarySplit sends to by default.
STABLE = "stable"
CANARY = "canary"
_WINDOW = 5000


@dataclasses.dataclass(frozen=True, kw_only=True)
class LabelStats:
    """Requests, errors and latency percentiles (milliseconds; None without requests) of one label."""

    requests: int
    errors: int
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShadowReport:
    """Shadow comparisons so far: how many pairs were compared, disagreed, or failed on the canary."""

    compared: int
    disagreed: int
    errors: int
    examples: tuple[str, ...] = ()  # a few descriptions of disagreements

    @property
    def disagreement_rate(self) -> float:
        return self.disagreed / self.compared if self.compared else 0.0


class TrafficStats:
    """Thread-safe per-label counters: totals plus a sliding window of the latest latencies.

    `snapshot()` returns totals and window percentiles; `snapshot(reset=True)` also starts a
    new window (what a watcher wants: one judgement per interval).
    """

    def __init__(self, window: int = _WINDOW) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an int >= 1. Received: window={window!r}")
        self._lock = threading.Lock()
        self._window = window
        self._requests: dict[str, int] = collections.Counter()
        self._errors: dict[str, int] = collections.Counter()
        self._latencies: dict[str, collections.deque[float]] = {}

    def record(self, label: str, seconds: float, *, ok: bool) -> None:
        """Count one request to `label` that took `seconds` (errors count toward latency too)."""
        with self._lock:
            self._requests[label] += 1
            if not ok:
                self._errors[label] += 1
            self._latencies.setdefault(label, collections.deque(maxlen=self._window)).append(seconds)

    def snapshot(self, *, reset: bool = False) -> dict[str, LabelStats]:
        """label -> LabelStats; with `reset`, counters start from zero afterwards."""
        with self._lock:
            result = {}
            for label, count in self._requests.items():
                window = np.fromiter(self._latencies.get(label, ()), dtype=np.float64)
                p50, p99 = (np.percentile(window, [50, 99]) * 1000.0).tolist() if window.size else (None, None)
                result[label] = LabelStats(requests=count, errors=self._errors[label], p50_ms=p50, p99_ms=p99)
            if reset:
                self._requests.clear()
                self._errors.clear()
                self._latencies.clear()
            return result


def bucket(key: str | bytes | int) -> float:
    """A stable number in [0, 1) for `key` (same key, same bucket, in every process)."""
    if isinstance(key, int) and not isinstance(key, bool):
        key = str(key)
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, bytes):
        raise TypeError(f"key must be a str, bytes or int. Received: key={type(key).__name__}")
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def outputs_disagree(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], *, tolerance: float) -> str | None:
    """Why two output dicts differ (names, shapes, values beyond `tolerance`), or None."""
    if set(a) != set(b):
        return f"outputs {sorted(a)} vs {sorted(b)}"
    for name in sorted(a):
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.shape != y.shape:
            return f"{name}: shape {list(x.shape)} vs {list(y.shape)}"
        if x.dtype.kind in "fc" and y.dtype.kind in "fc":
            if not np.allclose(x, y, atol=tolerance, rtol=tolerance, equal_nan=True):
                return f"{name}: max abs difference {float(np.max(np.abs(x - y))):.3g}"
        elif not np.array_equal(x, y):
            return f"{name}: values differ"
    return None


class _SplitBase:
    """The routing decisions and bookkeeping shared by the blocking and asyncio splits."""

    def __init__(
        self,
        client: Any,
        model_name: str,
        *,
        canary_weight: float = 0.1,
        shadow_fraction: float = 0.0,
        tolerance: float = 1e-4,
        stable_label: str = STABLE,
        canary_label: str = CANARY,
        stats: TrafficStats | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise ValueError(f"model_name must be a non-empty str. Received: model_name={model_name!r}")
        for name, value in (("canary_weight", canary_weight), ("shadow_fraction", shadow_fraction)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1]. Received: {name}={value!r}")
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
            raise ValueError(f"tolerance must be a number >= 0. Received: tolerance={tolerance!r}")
        if stable_label == canary_label:
            raise ValueError(f"stable_label and canary_label must differ. Received: both {stable_label!r}")
        self.client = client
        self.model_name = model_name
        self.canary_weight = float(canary_weight)
        self.shadow_fraction = float(shadow_fraction)
        self.tolerance = float(tolerance)
        self.stable_label = stable_label
        self.canary_label = canary_label
        self.stats = stats or TrafficStats()
        self._random = random.Random(seed)
        self._shadow_lock = threading.Lock()
        self._shadow = {"compared": 0, "disagreed": 0, "errors": 0}
        self._examples: collections.deque[str] = collections.deque(maxlen=5)

    def choose(self, key: str | bytes | int | None = None) -> str:
        """The label a request with `key` goes to (sticky per key; random without one)."""
        point = self._random.random() if key is None else bucket(key)
        return self.canary_label if point < self.canary_weight else self.stable_label

    def _shadowed(self, label: str) -> bool:
        return label == self.stable_label and self.shadow_fraction > 0 and self._random.random() < self.shadow_fraction

    def _record_shadow(self, primary: Mapping[str, np.ndarray], shadow: Mapping[str, np.ndarray] | None, error: Exception | None) -> None:
        with self._shadow_lock:
            if error is not None:
                self._shadow["errors"] += 1
                self._examples.append(f"canary failed: {error}")
                return
            self._shadow["compared"] += 1
            assert shadow is not None
            why = outputs_disagree(primary, shadow, tolerance=self.tolerance)
            if why is not None:
                self._shadow["disagreed"] += 1
                self._examples.append(why)

    def shadow_report(self) -> ShadowReport:
        """Shadow comparisons so far."""
        with self._shadow_lock:
            return ShadowReport(**self._shadow, examples=tuple(self._examples))


class CanarySplit(_SplitBase):
    """Weighted, sticky stable/canary routing (plus shadowing) over a blocking `ServingClient`.

    Args:
        client: a ServingClient (REST or gRPC).
        model_name: the model both labels belong to.
        canary_weight: share of requests routed to the canary label (0.1 = 10%).
        shadow_fraction: share of stable requests mirrored to the canary and compared.
        tolerance: absolute/relative tolerance of the shadow comparison.
        stats: counters to record into (share one TrafficStats between splits to aggregate).
        seed: seed for the draws made without a key (tests).
    If the canary label does not exist (no canary yet), the request goes to stable instead.
    """

    def __init__(self, client: Any, model_name: str, **options: Any) -> None:
        super().__init__(client, model_name, **options)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def predict(self, inputs: Any, *, key: str | bytes | int | None = None, **kwargs: Any) -> dict[str, np.ndarray]:
        """`client.predict(model_name, inputs, version_label=<chosen>, **kwargs)`, counted per label."""
        label = self.choose(key)
        outputs = self._call(label, inputs, kwargs)
        if self._shadowed(label):
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="tfstack-shadow")
            self._pool.submit(self._shadow_call, outputs, inputs, kwargs)
        return outputs

    def _call(self, label: str, inputs: Any, kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        try:
            outputs = self.client.predict(self.model_name, inputs, version_label=label, **kwargs)
        except VersionLabelNotFoundError:
            if label == self.stable_label:
                self.stats.record(label, time.perf_counter() - started, ok=False)
                raise
            return self._call(self.stable_label, inputs, kwargs)
        except ServingError:
            self.stats.record(label, time.perf_counter() - started, ok=False)
            raise
        self.stats.record(label, time.perf_counter() - started, ok=True)
        return outputs

    def _shadow_call(self, primary: dict[str, np.ndarray], inputs: Any, kwargs: dict[str, Any]) -> None:
        try:
            shadow = self.client.predict(self.model_name, inputs, version_label=self.canary_label, **kwargs)
        except ServingError as exc:
            self._record_shadow(primary, None, exc)
        else:
            self._record_shadow(primary, shadow, None)

    def close(self) -> None:
        """Wait for pending shadow requests (the client stays open)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class AsyncCanarySplit(_SplitBase):
    """The asyncio twin of CanarySplit over an `AsyncServingClient`; shadow requests run as tasks."""

    def __init__(self, client: Any, model_name: str, **options: Any) -> None:
        super().__init__(client, model_name, **options)
        self._tasks: set[asyncio.Task] = set()

    async def predict(self, inputs: Any, *, key: str | bytes | int | None = None, **kwargs: Any) -> dict[str, np.ndarray]:
        """`await client.predict(model_name, inputs, version_label=<chosen>, **kwargs)`, counted per label."""
        label = self.choose(key)
        outputs = await self._call(label, inputs, kwargs)
        if self._shadowed(label):
            task = asyncio.get_running_loop().create_task(self._shadow_call(outputs, inputs, kwargs))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return outputs

    async def _call(self, label: str, inputs: Any, kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        try:
            outputs = await self.client.predict(self.model_name, inputs, version_label=label, **kwargs)
        except VersionLabelNotFoundError:
            if label == self.stable_label:
                self.stats.record(label, time.perf_counter() - started, ok=False)
                raise
            return await self._call(self.stable_label, inputs, kwargs)
        except ServingError:
            self.stats.record(label, time.perf_counter() - started, ok=False)
            raise
        self.stats.record(label, time.perf_counter() - started, ok=True)
        return outputs

    async def _shadow_call(self, primary: dict[str, np.ndarray], inputs: Any, kwargs: dict[str, Any]) -> None:
        try:
            shadow = await self.client.predict(self.model_name, inputs, version_label=self.canary_label, **kwargs)
        except ServingError as exc:
            self._record_shadow(primary, None, exc)
        else:
            self._record_shadow(primary, shadow, None)

    async def aclose(self) -> None:
        """Wait for pending shadow requests (the client stays open)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
