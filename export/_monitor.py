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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfstack.export._prediction_logs import LoggedRequest, features_from_profile, log_range, logged_inputs, logged_predictions

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


def numeric_drift(profile: Mapping[str, Any], values: np.ndarray) -> dict[str, Any]:
    """Drift of one numeric feature's logged values against its profile (bins: below, profile bins, above)."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    missing = ~np.isfinite(flat)
    present = flat[~missing]
    histogram = profile.get("histogram")
    result: dict[str, Any] = {
        "values": int(flat.size),
        "missing_rate": float(missing.mean()) if flat.size else 0.0,
        "training_missing_rate": (profile.get("missing", 0) / profile["count"]) if profile.get("count") else 0.0,
        "mean": float(present.mean()) if present.size else None,
        "training_mean": profile.get("mean"),
    }
    if not histogram or present.size == 0:
        return result | {"psi": 0.0, "js_distance": 0.0, "out_of_range_rate": 0.0, "bins": None}
    edges = np.asarray(histogram["edges"], dtype=np.float64)
    below, above = int((present < edges[0]).sum()), int((present > edges[-1]).sum())
    inside, _ = np.histogram(present[(present >= edges[0]) & (present <= edges[-1])], bins=edges)
    expected = [0, *histogram["counts"], 0]
    actual = [below, *inside.tolist(), above]
    return result | {
        "psi": population_stability_index(expected, actual),
        "js_distance": jensen_shannon_distance(expected, actual),
        "out_of_range_rate": (below + above) / present.size,
        "bins": {"labels": ["< min", *_bin_labels(edges), "> max"], "expected": expected, "actual": actual},
    }


def string_drift(profile: Mapping[str, Any], values: np.ndarray) -> dict[str, Any]:
    """Drift of one string feature: its vocabulary's frequencies plus an "unknown" bin."""
    flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in np.asarray(values, dtype=object).reshape(-1)]
    vocabulary: dict[str, int] = dict(profile.get("vocabulary") or {})
    missing = sum(1 for v in flat if v == "")
    present = [v for v in flat if v != ""]
    counts = {k: 0 for k in vocabulary}
    unknown = 0
    for value in present:
        if value in counts:
            counts[value] += 1
        else:
            unknown += 1
    trained = sum(vocabulary.values())
    trained_unknown = profile.get("unknown_rate", 0.0) * trained / max(1e-9, 1 - profile.get("unknown_rate", 0.0))
    expected = [*vocabulary.values(), trained_unknown]
    actual = [*counts.values(), unknown]
    return {
        "values": len(flat),
        "missing_rate": missing / len(flat) if flat else 0.0,
        "training_missing_rate": (profile.get("missing", 0) / profile["count"]) if profile.get("count") else 0.0,
        "unknown_rate": unknown / len(present) if present else 0.0,
        "psi": population_stability_index(expected, actual) if present else 0.0,
        "js_distance": jensen_shannon_distance(expected, actual) if present else 0.0,
        "bins": {"labels": [*vocabulary, "<unknown>"], "expected": expected, "actual": actual},
    }


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


def drift_report(
    logs: Sequence[LoggedRequest],
    profile: Mapping[str, Any],
    *,
    model_name: str,
    version: int,
    thresholds: DriftThresholds = DriftThresholds(),
    skew: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The drift report (JSON-able) of `logs` against `profile`; `report["drifted"]` is the verdict.

    Raises:
        ValueError: the logs hold no rows with the profile's features.
    """
    features = features_from_profile(profile)
    inputs, _ = logged_inputs(logs, features)
    rows = next(iter(inputs.values())).shape[0] if inputs else 0
    if rows == 0:
        raise ValueError(
            f"The logs hold no request with the inputs {[f.name for f in features]} of {model_name} version {version} "
            f"({len(logs)} records read)."
        )
    report_features = []
    alerts = []
    for feature_profile in profile["features"]:
        name = feature_profile["name"]
        if feature_profile.get("kind") == "string":
            drift = string_drift(feature_profile, inputs[name])
        else:
            drift = numeric_drift(feature_profile, inputs[name])
        reasons = _judge(name, drift, thresholds)
        alerts += [f"feature {name}: {r}" for r in reasons]
        report_features.append({"name": name, **drift, "drifted": bool(reasons), "reasons": reasons})

    predictions = _prediction_drift(logs, profile, thresholds)
    if predictions and predictions["drifted"]:
        alerts += [f"predictions: {r}" for r in predictions["reasons"]]
    if skew is not None and skew.get("rate") is not None and skew["rate"] > thresholds.skew_rate:
        alerts.append(f"skew against version {skew['other_version']}: {skew['rate']:.3f} of rows differ > {thresholds.skew_rate:g}")
    return {
        "model_name": model_name,
        "version": version,
        "profile_source": profile.get("source"),
        "logs": log_range(logs),
        "rows": int(rows),
        "thresholds": thresholds.to_json(),
        "features": report_features,
        "predictions": predictions,
        "skew": dict(skew) if skew is not None else None,
        "alerts": alerts,
        "drifted": bool(alerts),
    }


def _prediction_drift(logs: Sequence[LoggedRequest], profile: Mapping[str, Any], thresholds: DriftThresholds) -> dict[str, Any] | None:
    baseline = profile.get("predictions")
    task = profile.get("task", "classification")
    if not baseline:
        return None
    served = logged_predictions(logs, task=task, class_names=profile.get("class_names") or ())
    if served.size == 0:
        return None
    if baseline.get("kind") == "classes":
        expected = list(baseline["counts"])
        actual = np.bincount(served.astype(np.int64), minlength=len(expected))[: max(len(expected), 1)].tolist()
        if len(actual) < len(expected):
            actual += [0] * (len(expected) - len(actual))
        labels = list(profile.get("class_names") or range(len(expected)))
        result = {"kind": "classes", "labels": [str(x) for x in labels], "expected": expected, "actual": actual}
    else:
        drift = numeric_drift(baseline, served)
        result = {"kind": "values", **(drift.get("bins") or {}), "mean": drift["mean"], "training_mean": drift["training_mean"]}
        expected, actual = result.get("expected") or [1], result.get("actual") or [1]
    psi = population_stability_index(expected, actual)
    js = jensen_shannon_distance(expected, actual)
    reasons = [f"psi {psi:.3f} > {thresholds.prediction_psi:g}"] if psi > thresholds.prediction_psi else []
    return result | {"rows": int(served.size), "psi": psi, "js_distance": js, "drifted": bool(reasons), "reasons": reasons}


# ---------------------------------------------------------------------------- skew between versions


def version_skew(
    logs: Sequence[LoggedRequest], profile: Mapping[str, Any], version_dir: Path, other_dir: Path, *, other_version: int,
    tolerance: float = 1e-3,
) -> dict[str, Any]:
    """Run the logged inputs through two versions' `serving_default`; the share of rows answered differently.

    Classification compares predicted classes; regression compares values (relative tolerance).
    """
    features = features_from_profile(profile)
    inputs, _ = logged_inputs(logs, features)
    first = _run_version(version_dir, inputs)
    second = _run_version(other_dir, inputs)
    task = profile.get("task", "classification")
    if task == "classification":
        a, b = _classes(first), _classes(second)
        differs = a != b
    else:
        a, b = _values(first), _values(second)
        differs = np.abs(a - b) > tolerance * (1 + np.abs(a))
    rows = int(differs.size)
    return {"other_version": other_version, "rows": rows, "differing_rows": int(differs.sum()),
            "rate": float(differs.mean()) if rows else 0.0}


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
