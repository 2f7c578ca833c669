"""`tfstack monitor`: do logged requests still look like the data a version was trained on?

Compares the inputs in request logs (PredictionLog TFRecords, `tfstack.export._prediction_logs`) with a
version's data profile (`tfstack.export._profile`), feature by feature, on the profile's own bins:

- PSI (population stability index) and the Jensen-Shannon distance (base 2, so 0..1) of the
  binned distributions; values outside the training range count in two extra edge bins
  (numeric features), values outside the stored vocabulary in one "unknown" bin (strings);
- out-of-range rate, unknown-category rate and missing rate (NaN / empty string), the latter
  compared with the training split's own missing rate;
- prediction drift: the served class distribution (or the regression output's bins) against
  the model's own predictions on the test split;
- training-serving skew, when asked: the same logged inputs run through two versions, and the
  share of rows whose answer differs.

It lives in `export` because it needs only what export owns (profiles, versions, PredictionLog
files) and must be usable by both training and serving (`tfstack rollout` gates), which the
import direction training -> export <- serving allows.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfstack.export._prediction_logs import LogCoverage, LoggedRequest, features_from_profile, request_inputs, request_predictions
from tfstack.export._spec import FeatureSpec

# Bins with no count on one side are smoothed to this share, so PSI stays finite.
_EPSILON = 1e-4


@dataclasses.dataclass(frozen=True, kw_only=True)
class DriftThresholds:
    """When a feature, the predictions or the skew count as drifted (crossing = strictly above).

    Defaults follow common practice: PSI above 0.2 is a significant shift; a Jensen-Shannon
    distance above 0.2; more than 5% out-of-range, unknown or (newly) missing values.
    """

    psi: float = 0.2
    js_distance: float = 0.2
    out_of_range_rate: float = 0.05
    unknown_rate: float = 0.05
    missing_rate: float = 0.05
    prediction_psi: float = 0.2
    skew_rate: float = 0.01
    # Per-feature overrides: {"pixels": {"psi": 0.3}}.
    features: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for field in _LIMITS:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"threshold {field} must be a number >= 0. Received: {field}={value!r}")
        for name, overrides in self.features.items():
            if not isinstance(overrides, Mapping):
                raise ValueError(f"features.{name} must map threshold names to numbers. Received: {overrides!r}")
            unknown = sorted(set(overrides) - set(_FEATURE_LIMITS))
            if unknown:
                raise ValueError(
                    f"features.{name} has unknown thresholds {unknown}; expected some of {list(_FEATURE_LIMITS)}"
                )
            for key, value in overrides.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                    raise ValueError(f"features.{name}.{key} must be a number >= 0. Received: {value!r}")

    def for_feature(self, name: str, key: str) -> float:
        return float(self.features.get(name, {}).get(key, getattr(self, key)))

    def to_json(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in _LIMITS} | {"features": {k: dict(v) for k, v in self.features.items()}}


_LIMITS = ("psi", "js_distance", "out_of_range_rate", "unknown_rate", "missing_rate", "prediction_psi", "skew_rate")
_FEATURE_LIMITS = ("psi", "js_distance", "out_of_range_rate", "unknown_rate", "missing_rate")


def read_drift_thresholds(path: str | os.PathLike[str]) -> DriftThresholds:
    """The drift thresholds in a JSON file (`tfstack monitor --thresholds`), e.g. `{"psi": 0.25, "features": {"pixels": {"psi": 0.3}}}`.

    Raises:
        ValueError: unreadable JSON, unknown keys or bad values (the message names them).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot read thresholds from {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of thresholds. Received: {type(data).__name__}")
    unknown = sorted(set(data) - set(_LIMITS) - {"features"})
    if unknown:
        raise ValueError(f"{path} has unknown thresholds {unknown}; expected some of {[*_LIMITS, 'features']}")
    return DriftThresholds(**data)


# ---------------------------------------------------------------------------- distances


def population_stability_index(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins of the two (normalised, smoothed) distributions."""
    e, a = _shares(expected), _shares(actual)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon_distance(expected: Sequence[float], actual: Sequence[float]) -> float:
    """The Jensen-Shannon distance (base 2: 0 same, 1 disjoint) of two binned distributions."""
    from scipy.spatial.distance import jensenshannon

    e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if e.sum() <= 0 or a.sum() <= 0:
        return 0.0
    return float(jensenshannon(e / e.sum(), a / a.sum(), base=2))


def _shares(counts: Sequence[float]) -> np.ndarray:
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    shares = values / total if total > 0 else np.full(values.shape, 1.0 / max(1, values.size))
    return np.clip(shares, _EPSILON, None)


# ---------------------------------------------------------------------------- per feature


class _NumericCounts:
    """One numeric feature's logged values, counted against its profile's bins as they arrive:
    memory is the profile's bins, whatever the number of values."""

    def __init__(self, profile: Mapping[str, Any]) -> None:
        self.profile = profile
        histogram = profile.get("histogram")
        self.edges = np.asarray(histogram["edges"], dtype=np.float64) if histogram else None
        self.inside = np.zeros(max(0, len(self.edges) - 1), dtype=np.int64) if self.edges is not None else None
        self.values = self.missing = self.present = self.below = self.above = 0
        self.total = 0.0

    def add(self, values: np.ndarray) -> _NumericCounts:
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        present = flat[np.isfinite(flat)]
        self.values += int(flat.size)
        self.missing += int(flat.size - present.size)
        self.present += int(present.size)
        self.total += float(present.sum())
        if self.edges is not None and self.inside is not None and present.size:
            edges = self.edges
            self.below += int((present < edges[0]).sum())
            self.above += int((present > edges[-1]).sum())
            inside, _ = np.histogram(present[(present >= edges[0]) & (present <= edges[-1])], bins=edges)
            self.inside += inside
        return self

    def result(self) -> dict[str, Any]:
        profile = self.profile
        result: dict[str, Any] = {
            "values": self.values,
            "missing_rate": self.missing / self.values if self.values else 0.0,
            "training_missing_rate": (profile.get("missing", 0) / profile["count"]) if profile.get("count") else 0.0,
            "mean": self.total / self.present if self.present else None,
            "training_mean": profile.get("mean"),
        }
        if self.edges is None or self.inside is None or self.present == 0:
            return result | {"psi": 0.0, "js_distance": 0.0, "out_of_range_rate": 0.0, "bins": None}
        expected = [0, *profile["histogram"]["counts"], 0]
        actual = [self.below, *self.inside.tolist(), self.above]
        return result | {
            "psi": population_stability_index(expected, actual),
            "js_distance": jensen_shannon_distance(expected, actual),
            "out_of_range_rate": (self.below + self.above) / self.present,
            "bins": {"labels": ["< min", *_bin_labels(self.edges), "> max"], "expected": expected, "actual": actual},
        }


class _StringCounts:
    """One string feature's logged values, counted per vocabulary entry plus "unknown" as they arrive."""

    def __init__(self, profile: Mapping[str, Any]) -> None:
        self.profile = profile
        self.vocabulary: dict[str, int] = dict(profile.get("vocabulary") or {})
        self.counts = {k: 0 for k in self.vocabulary}
        self.values = self.missing = self.unknown = 0

    def add(self, values: np.ndarray) -> _StringCounts:
        counts = self.counts
        for value in np.asarray(values, dtype=object).reshape(-1):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            self.values += 1
            if text == "":
                self.missing += 1
            elif text in counts:
                counts[text] += 1
            else:
                self.unknown += 1
        return self

    def result(self) -> dict[str, Any]:
        profile = self.profile
        present = self.values - self.missing
        trained = sum(self.vocabulary.values())
        trained_unknown = profile.get("unknown_rate", 0.0) * trained / max(1e-9, 1 - profile.get("unknown_rate", 0.0))
        expected = [*self.vocabulary.values(), trained_unknown]
        actual = [*self.counts.values(), self.unknown]
        return {
            "values": self.values,
            "missing_rate": self.missing / self.values if self.values else 0.0,
            "training_missing_rate": (profile.get("missing", 0) / profile["count"]) if profile.get("count") else 0.0,
            "unknown_rate": self.unknown / present if present else 0.0,
            "psi": population_stability_index(expected, actual) if present else 0.0,
            "js_distance": jensen_shannon_distance(expected, actual) if present else 0.0,
            "bins": {"labels": [*self.vocabulary, "<unknown>"], "expected": expected, "actual": actual},
        }


def numeric_drift(profile: Mapping[str, Any], values: np.ndarray) -> dict[str, Any]:
    """Drift of one numeric feature's logged values against its profile (bins: below, profile bins, above)."""
    return _NumericCounts(profile).add(values).result()


def string_drift(profile: Mapping[str, Any], values: np.ndarray) -> dict[str, Any]:
    """Drift of one string feature: its vocabulary's frequencies plus an "unknown" bin."""
    return _StringCounts(profile).add(values).result()


def _bin_labels(edges: np.ndarray) -> list[str]:
    return [f"{edges[i]:.3g}..{edges[i + 1]:.3g}" for i in range(len(edges) - 1)]


def _judge(name: str, drift: dict[str, Any], thresholds: DriftThresholds) -> list[str]:
    reasons = []
    for key in ("psi", "js_distance", "out_of_range_rate", "unknown_rate"):
        value = drift.get(key)
        limit = thresholds.for_feature(name, key)
        if value is not None and value > limit:
            reasons.append(f"{key} {value:.3f} > {limit:g}")
    limit = thresholds.for_feature(name, "missing_rate")
    increase = drift["missing_rate"] - drift["training_missing_rate"]
    if increase > limit:
        reasons.append(f"missing_rate {drift['missing_rate']:.3f} (training {drift['training_missing_rate']:.3f}) > +{limit:g}")
    return reasons


# ---------------------------------------------------------------------------- the report


# Rows kept for the training-serving skew check (`--skew-version`): a uniform sample of the logged
# rows (reservoir sampling, fixed seed), so two SavedModels run on at most this many rows and
# memory stays bounded however large the logs are.
SKEW_SAMPLE_ROWS = 10_000
# Rows gathered before they are counted in one numpy pass (per-record numpy calls are slow).
_BUFFER_ROWS = 4096


class _PredictionCounts:
    """The served outputs, counted as they arrive: class counts, or the regression output's bins."""

    def __init__(self, profile: Mapping[str, Any]) -> None:
        self.baseline = profile.get("predictions")
        self.task = profile.get("task", "classification")
        self.class_index = {name: i for i, name in enumerate(profile.get("class_names") or ())}
        self.class_names = list(profile.get("class_names") or ())
        self.by_class = np.zeros(0, dtype=np.int64)
        self.values = _NumericCounts(self.baseline) if self.baseline and self.baseline.get("kind") != "classes" else None
        self.rows = 0
        self.pending: list[Any] = []

    def add(self, entry: LoggedRequest) -> None:
        if self.baseline:
            self.pending.extend(request_predictions(entry, task=self.task, class_index=self.class_index))

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        if self.task == "classification":
            pending = [v for v in pending if v >= 0]
        self.rows += len(pending)
        if not pending:
            return
        if self.values is not None:
            self.values.add(np.asarray(pending, dtype=np.float64))
            return
        counts = np.bincount(np.asarray(pending, dtype=np.int64))
        if counts.size > self.by_class.size:
            counts[: self.by_class.size] += self.by_class
            self.by_class = counts
        else:
            self.by_class[: counts.size] += counts

    def result(self, thresholds: DriftThresholds) -> dict[str, Any] | None:
        self.flush()
        baseline = self.baseline
        if not baseline or self.rows == 0:
            return None
        expected: list[Any]
        actual: list[Any]
        result: dict[str, Any]
        if self.values is None:
            expected = list(baseline["counts"])
            actual = [int(self.by_class[i]) if i < self.by_class.size else 0 for i in range(max(len(expected), 1))]
            labels: list[Any] = self.class_names or list(range(len(expected)))
            result = {"kind": "classes", "labels": [str(x) for x in labels], "expected": expected, "actual": actual}
        else:
            drift = self.values.result()
            result = {"kind": "values", **(drift.get("bins") or {}), "mean": drift["mean"], "training_mean": drift["training_mean"]}
            expected, actual = list(result.get("expected") or [1]), list(result.get("actual") or [1])
        psi = population_stability_index(expected, actual)
        js = jensen_shannon_distance(expected, actual)
        reasons = [f"psi {psi:.3f} > {thresholds.prediction_psi:g}"] if psi > thresholds.prediction_psi else []
        return result | {"rows": self.rows, "psi": psi, "js_distance": js, "drifted": bool(reasons), "reasons": reasons}


class _RowSample:
    """A uniform sample of at most `limit` input rows out of a stream (reservoir sampling, seeded)."""

    def __init__(self, features: Sequence[FeatureSpec], limit: int, seed: int = 0) -> None:
        self.features = features
        self.limit = limit
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._chunks: dict[str, list[np.ndarray]] = {f.name: [] for f in features}
        self._filled = 0
        self._full: dict[str, np.ndarray] | None = None

    def add(self, arrays: Mapping[str, np.ndarray], count: int) -> None:
        start, self.seen = self.seen, self.seen + count
        take = min(count, max(0, self.limit - self._filled))
        if take:
            for name, array in arrays.items():
                self._chunks[name].append(array[:take].copy())
            self._filled += take
        if take == count:
            return
        full = self._consolidate()
        positions = np.arange(start + take, start + count)
        # Row number g (0-based) replaces a random slot with probability limit / (g + 1).
        slots = self._rng.integers(0, positions + 1)
        for i, slot in zip((positions - start)[slots < self.limit].tolist(), slots[slots < self.limit].tolist()):
            for name, array in arrays.items():
                full[name][slot] = array[i]

    def _consolidate(self) -> dict[str, np.ndarray]:
        if self._full is None:
            self._full = {name: np.concatenate(chunks) for name, chunks in self._chunks.items()}
            self._chunks = {}
        return self._full

    def rows(self) -> dict[str, np.ndarray]:
        if self._full is not None:
            return self._full
        return {
            f.name: np.concatenate(self._chunks[f.name]) if self._chunks[f.name] else np.zeros((0, *f.shape), f.numpy_dtype)
            for f in self.features
        }


class DriftAccumulator:
    """Drift statistics of logged requests against a data profile, accumulated one record at a
    time: per-feature bin counts, out-of-range, unknown and missing counts, served class counts
    (or the regression output's bins), and optionally a bounded sample of rows for the skew check.
    Memory is bounded by the profile (and `skew_sample_rows`), not by the logs.

    `report()` gives the same report, numbers included, as `drift_report` on the same records.

    Example:
        >>> drift = DriftAccumulator(export.read_profile(version_dir))
        >>> for entry in export.iter_prediction_logs("/var/log/tfstack/digits", model_name="digits"):
        ...     drift.add(entry)
        >>> drift.report(model_name="digits", version=1)["drifted"]
        False
    """

    def __init__(self, profile: Mapping[str, Any], *, skew_sample_rows: int = 0) -> None:
        if isinstance(skew_sample_rows, bool) or not isinstance(skew_sample_rows, int) or skew_sample_rows < 0:
            raise ValueError(f"skew_sample_rows must be an int >= 0. Received: skew_sample_rows={skew_sample_rows!r}")
        self.profile = profile
        self.features = features_from_profile(profile)
        self._counts: dict[str, _NumericCounts | _StringCounts] = {
            f["name"]: _StringCounts(f) if f.get("kind") == "string" else _NumericCounts(f) for f in profile["features"]
        }
        self._predictions = _PredictionCounts(profile)
        self.coverage = LogCoverage()
        self.rows = 0
        self._pending: dict[str, list[np.ndarray]] = {f.name: [] for f in self.features}
        self._pending_rows = 0
        self.skew_sample_rows = skew_sample_rows
        self._sample = _RowSample(self.features, skew_sample_rows) if skew_sample_rows else None

    @property
    def records(self) -> int:
        """Logged requests added so far."""
        return self.coverage.records

    def add(self, entry: LoggedRequest) -> None:
        """Count one logged request (its input rows and its served outputs)."""
        self.coverage.add(entry)
        rows = request_inputs(entry, self.features)
        if rows:
            count = next(iter(rows.values())).shape[0]
            if all(array.shape[0] == count for array in rows.values()):
                for name, array in rows.items():
                    self._pending[name].append(array)
                self._pending_rows += count
                self.rows += count
        self._predictions.add(entry)
        if self._pending_rows >= _BUFFER_ROWS or len(self._predictions.pending) >= _BUFFER_ROWS:
            self._flush()

    def _flush(self) -> None:
        self._predictions.flush()
        if not self._pending_rows:
            return
        arrays = {name: np.concatenate(chunks) for name, chunks in self._pending.items()}
        for name, array in arrays.items():
            self._counts[name].add(array)
        if self._sample is not None:
            self._sample.add(arrays, self._pending_rows)
        self._pending = {f.name: [] for f in self.features}
        self._pending_rows = 0

    def skew_sample(self) -> dict[str, np.ndarray]:
        """The sampled input rows (at most `skew_sample_rows`) for `version_skew`."""
        self._flush()
        if self._sample is None:
            return {f.name: np.zeros((0, *f.shape), f.numpy_dtype) for f in self.features}
        return self._sample.rows()

    def report(
        self,
        *,
        model_name: str,
        version: int,
        thresholds: DriftThresholds = DriftThresholds(),
        skew: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The drift report (JSON-able) of the records added so far; `report["drifted"]` is the verdict.

        Raises:
            ValueError: no row with the profile's features was added.
        """
        self._flush()
        if self.rows == 0:
            raise ValueError(
                f"The logs hold no request with the inputs {[f.name for f in self.features]} of {model_name} "
                f"version {version} ({self.records} records read)."
            )
        report_features = []
        alerts = []
        for feature_profile in self.profile["features"]:
            name = feature_profile["name"]
            drift = self._counts[name].result()
            reasons = _judge(name, drift, thresholds)
            alerts += [f"feature {name}: {r}" for r in reasons]
            report_features.append({"name": name, **drift, "drifted": bool(reasons), "reasons": reasons})

        predictions = self._predictions.result(thresholds)
        if predictions and predictions["drifted"]:
            alerts += [f"predictions: {r}" for r in predictions["reasons"]]
        if skew is not None and skew.get("rate") is not None and skew["rate"] > thresholds.skew_rate:
            alerts.append(f"skew against version {skew['other_version']}: {skew['rate']:.3f} of rows differ > {thresholds.skew_rate:g}")
        return {
            "model_name": model_name,
            "version": version,
            "profile_source": self.profile.get("source"),
            "logs": self.coverage.to_json(),
            "rows": int(self.rows),
            "thresholds": thresholds.to_json(),
            "features": report_features,
            "predictions": predictions,
            "skew": dict(skew) if skew is not None else None,
            "alerts": alerts,
            "drifted": bool(alerts),
        }


def drift_report(
    logs: Iterable[LoggedRequest],
    profile: Mapping[str, Any],
    *,
    model_name: str,
    version: int,
    thresholds: DriftThresholds = DriftThresholds(),
    skew: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The drift report (JSON-able) of `logs` against `profile`; `report["drifted"]` is the verdict.

    `logs` is read once, record by record (a list, or `iter_prediction_logs(...)` for logs of
    any size: memory stays bounded by the profile).

    Raises:
        ValueError: the logs hold no rows with the profile's features.
    """
    accumulator = DriftAccumulator(profile)
    for entry in logs:
        accumulator.add(entry)
    return accumulator.report(model_name=model_name, version=version, thresholds=thresholds, skew=skew)


# ---------------------------------------------------------------------------- skew between versions


def version_skew(
    inputs: Mapping[str, np.ndarray], profile: Mapping[str, Any], version_dir: Path, other_dir: Path, *, other_version: int,
    logged_rows: int | None = None, sample_limit: int | None = None, tolerance: float = 1e-3,
) -> dict[str, Any]:
    """Run input rows (`DriftAccumulator.skew_sample()`: at most `sample_limit` of the `logged_rows`
    logged) through two versions' `serving_default`; the share of rows answered differently.

    Classification compares predicted classes; regression compares values (relative tolerance).
    """
    rows = next(iter(inputs.values())).shape[0] if inputs else 0
    result: dict[str, Any] = {"other_version": other_version, "rows": rows, "differing_rows": 0, "rate": 0.0,
                              "logged_rows": rows if logged_rows is None else logged_rows, "sample_limit": sample_limit}
    if rows == 0:
        return result
    first = _run_version(version_dir, inputs)
    second = _run_version(other_dir, inputs)
    task = profile.get("task", "classification")
    if task == "classification":
        a, b = _classes(first), _classes(second)
        differs = a != b
    else:
        a, b = _values(first), _values(second)
        differs = np.abs(a - b) > tolerance * (1 + np.abs(a))
    return result | {"rows": int(differs.size), "differing_rows": int(differs.sum()), "rate": float(differs.mean())}


def _run_version(path: Path, inputs: Mapping[str, np.ndarray], batch: int = 256) -> dict[str, np.ndarray]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    rows = next(iter(inputs.values())).shape[0]
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, rows, batch):
        feeds = {k: tf.constant(_feedable(v[start:start + batch])) for k, v in inputs.items()}
        for name, value in signature(**feeds).items():
            parts.setdefault(name, []).append(value.numpy())
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def _feedable(array: np.ndarray) -> np.ndarray:
    return array.astype(np.bytes_) if array.dtype == object else array


def _classes(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    if "class_id" in outputs:
        return outputs["class_id"].reshape(-1)
    return next(iter(outputs.values())).argmax(-1).reshape(-1)


def _values(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    value = outputs.get("prediction", next(iter(outputs.values())))
    return np.asarray(value, dtype=np.float64).reshape(value.shape[0], -1)[:, 0]


# ---------------------------------------------------------------------------- outputs


def plot_feature_drift(feature: Mapping[str, Any], path: Path) -> bool:
    """A PNG of the training vs logged shares per bin of one feature (False: nothing to draw)."""
    bins = feature.get("bins")
    if not bins:
        return False
    from tfstack.export._plots import _pyplot

    plt = _pyplot()
    labels = bins["labels"]
    expected, actual = np.asarray(bins["expected"], float), np.asarray(bins["actual"], float)
    expected, actual = expected / max(expected.sum(), 1e-12), actual / max(actual.sum(), 1e-12)
    positions = np.arange(len(labels))
    figure, axes = plt.subplots(figsize=(max(6, 0.6 * len(labels)), 4))
    try:
        axes.bar(positions - 0.2, expected, width=0.4, label="training profile")
        axes.bar(positions + 0.2, actual, width=0.4, label="logged requests")
        axes.set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)
        axes.set_ylabel("share of values")
        psi, js = feature.get("psi", 0.0), feature.get("js_distance", 0.0)
        axes.set_title(f"{feature['name']}: PSI {psi:.3f}, JS distance {js:.3f}")
        axes.legend()
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
    return True


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.3f}"
    return str(value)
