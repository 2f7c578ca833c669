"""Latency statistics for `tfstack bench`: percentiles and the summary of one measurement."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


# --------------------------------------------------------------------------------------------
# statistics


@dataclasses.dataclass(frozen=True, kw_only=True)
class LatencyStats:
    """Summary of one scenario. Latencies in milliseconds; NaN when nothing succeeded."""

    requests: int  # successful requests
    errors: int
    elapsed_s: float
    throughput_rps: float  # successful requests per second of the measured window
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default).

    Returns NaN for no samples.

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
        2.5
    """
    if not 0 <= q <= 100:
        raise ValueError(f"A percentile must be within [0, 100]. Received: q={q!r}")
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        return math.nan
    return float(np.percentile(values, q))


def summarize(latencies_s: Sequence[float] | np.ndarray, *, errors: int, elapsed_s: float) -> LatencyStats:
    """Percentiles and throughput of one scenario.

    Args:
        latencies_s: latency of every successful request, in seconds.
        errors: failed (or, open loop, dropped) requests.
        elapsed_s: the measured window: from the common start to the last answer.
    """
    if errors < 0:
        raise ValueError(f"`errors` must be >= 0. Received: errors={errors!r}")
    if not elapsed_s > 0:
        raise ValueError(f"`elapsed_s` must be > 0. Received: elapsed_s={elapsed_s!r}")
    ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    p50, p90, p95, p99 = (percentile(ms, q) for q in PERCENTILES)
    return LatencyStats(
        requests=int(ms.size),
        errors=int(errors),
        elapsed_s=float(elapsed_s),
        throughput_rps=ms.size / elapsed_s,
        mean_ms=float(ms.mean()) if ms.size else math.nan,
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=float(ms.max()) if ms.size else math.nan,
    )
