"""Real request logs for drift tests, and the in-memory drift computation they are checked against.

`write_request_logs` writes PredictionLogs with `tfstack serve`'s own writer (build_prediction_log,
RotatingRecordWriter: size rotation, TFRecord framing). `in_memory_report` is the computation
`tfstack monitor` used before it streamed (tfstack 9ea9b23, export/_monitor.py): every logged row
in memory, one numpy pass per feature. The streaming `DriftAccumulator` must give the same report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow_serving.config import logging_config_pb2

from tfstack import export
from tfstack.export._monitor import _bin_labels, _judge, jensen_shannon_distance, population_stability_index
from tfstack.export._prediction_logs import features_from_profile, log_range, logged_predictions, request_inputs
from tfstack.serving.server._request_log import LogLimits, RotatingRecordWriter, build_prediction_log

FEATURES = (export.FeatureSpec(name="x", dtype="float32", shape=(2,)), export.FeatureSpec(name="city", dtype="string"))
CITIES = np.array([b"paris", b"rome", b"oslo"], object)


def training_rows(n: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(5.0, 1.0, size=(n, 2)).astype(np.float32), "city": rng.choice(CITIES, size=n, p=[0.5, 0.3, 0.2])}


def profile() -> dict:
    return export.build_profile(
        FEATURES, training_rows(), task="classification", class_names=("no", "yes"), source="training split",
        labels=np.array([0, 1, 1, 0]), predictions=np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]]),
    )


def _example(x: np.ndarray, city: bytes | None) -> bytes:
    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=x.tolist()))}
    if city is not None:
        feature["city"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[city]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def log_entries(requests: int, *, seed: int = 0, version: int = 1, start: int = 0) -> list[tuple]:
    """Queued-request tuples as the server hands them to its writer: Predict batches of 1..3 rows
    (shifted values, NaN, unseen and empty cities among them), Classify requests of tf.Examples
    (some without `city`), and Predict requests missing an input (no rows, still a prediction)."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(start, start + requests):
        rows = int(rng.integers(1, 4))
        x = rng.normal(5.0 + (i % 7 == 0) * 3, 1.0, size=(rows, 2)).astype(np.float32)
        if i % 11 == 0:
            x[0, 1] = np.nan
        city = rng.choice(np.array([b"paris", b"rome", b"oslo", b"tokyo", b""], object), size=rows, p=[0.4, 0.2, 0.2, 0.1, 0.1])
        scores = rng.dirichlet([1, 1], size=rows).astype(np.float32)
        kind = i % 10
        if kind == 9:
            examples = [_example(x[r], None if r == 0 else bytes(city[r])) for r in range(rows)]
            result = [[("no", float(s[0])), ("yes", float(s[1]))] for s in scores]
            entries.append(("Classify", "m", version, ("classify", examples, b""), result, 1000 + i, f"req-{i}"))
            continue
        inputs = {"x": x} if kind == 8 else {"x": x, "city": city.astype(np.bytes_)}
        outputs = {"class_id": scores.argmax(-1).astype(np.int64), "probabilities": scores}
        entries.append(("Predict", "m", version, ("serving_default", inputs, ()), outputs, 1000 + i, f"req-{i}"))
    return entries


def write_request_logs(prefix: Path, entries: Sequence[tuple], *, max_file_bytes: int = 200_000,
                       writer: RotatingRecordWriter | None = None) -> RotatingRecordWriter:
    """Write `entries` as the server's request logger does; returns the (still open) writer."""
    sampling = logging_config_pb2.SamplingConfig(sampling_rate=1.0)
    writer = writer or RotatingRecordWriter(prefix, LogLimits(max_file_bytes=max_file_bytes, max_total_bytes=1 << 30))
    records = [build_prediction_log(entry, sampling, ("serve",)).SerializeToString() for entry in entries]
    for start in range(0, len(records), 100):
        writer.write_batch(records[start:start + 100])
    return writer


def in_memory_report(logs: Sequence[export.LoggedRequest], profile: Mapping[str, Any], *, model_name: str, version: int,
                     thresholds: export.DriftThresholds = export.DriftThresholds()) -> dict[str, Any]:
    """The drift report as tfstack computed it with every logged row in memory (the reference)."""
    features = features_from_profile(profile)
    parts: dict[str, list[np.ndarray]] = {f.name: [] for f in features}
    for entry in logs:
        rows = request_inputs(entry, features)
        if rows is None:
            continue
        count = next(iter(rows.values())).shape[0]
        if any(array.shape[0] != count for array in rows.values()):
            continue
        for name, array in rows.items():
            parts[name].append(array)
    inputs = {f.name: np.concatenate(parts[f.name]) for f in features}
    report_features, alerts = [], []
    for feature_profile in profile["features"]:
        name = feature_profile["name"]
        if feature_profile.get("kind") == "string":
            drift = _string_drift(feature_profile, inputs[name])
        else:
            drift = _numeric_drift(feature_profile, inputs[name])
        reasons = _judge(name, drift, thresholds)
        alerts += [f"feature {name}: {r}" for r in reasons]
        report_features.append({"name": name, **drift, "drifted": bool(reasons), "reasons": reasons})
    predictions = _prediction_drift(logs, profile, thresholds)
    if predictions and predictions["drifted"]:
        alerts += [f"predictions: {r}" for r in predictions["reasons"]]
    return {
        "model_name": model_name, "version": version, "profile_source": profile.get("source"), "logs": log_range(logs),
        "rows": int(next(iter(inputs.values())).shape[0]), "thresholds": thresholds.to_json(), "features": report_features,
        "predictions": predictions, "skew": None, "alerts": alerts, "drifted": bool(alerts),
    }


def _numeric_drift(profile: Mapping[str, Any], values: np.ndarray) -> dict[str, Any]:
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    missing = ~np.isfinite(flat)
    present = flat[~missing]
    histogram = profile.get("histogram")
    result: dict[str, Any] = {
        "values": int(flat.size), "missing_rate": float(missing.mean()) if flat.size else 0.0,
        "training_missing_rate": (profile.get("missing", 0) / profile["count"]) if profile.get("count") else 0.0,
        "mean": float(present.mean()) if present.size else None, "training_mean": profile.get("mean"),
    }
    if not histogram or present.size == 0:
        return result | {"psi": 0.0, "js_distance": 0.0, "out_of_range_rate": 0.0, "bins": None}
    edges = np.asarray(histogram["edges"], dtype=np.float64)
    below, above = int((present < edges[0]).sum()), int((present > edges[-1]).sum())
    inside, _ = np.histogram(present[(present >= edges[0]) & (present <= edges[-1])], bins=edges)
    expected, actual = [0, *histogram["counts"], 0], [below, *inside.tolist(), above]
    return result | {
        "psi": population_stability_index(expected, actual), "js_distance": jensen_shannon_distance(expected, actual),
        "out_of_range_rate": (below + above) / present.size,
        "bins": {"labels": ["< min", *_bin_labels(edges), "> max"], "expected": expected, "actual": actual},
    }


def _string_drift(profile: Mapping[str, Any], values: np.ndarray) -> dict[str, Any]:
    flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in np.asarray(values, dtype=object).reshape(-1)]
    vocabulary: dict[str, int] = dict(profile.get("vocabulary") or {})
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
    expected, actual = [*vocabulary.values(), trained_unknown], [*counts.values(), unknown]
    return {
        "values": len(flat), "missing_rate": (len(flat) - len(present)) / len(flat) if flat else 0.0,
        "training_missing_rate": (profile.get("missing", 0) / profile["count"]) if profile.get("count") else 0.0,
        "unknown_rate": unknown / len(present) if present else 0.0,
        "psi": population_stability_index(expected, actual) if present else 0.0,
        "js_distance": jensen_shannon_distance(expected, actual) if present else 0.0,
        "bins": {"labels": [*vocabulary, "<unknown>"], "expected": expected, "actual": actual},
    }


def _prediction_drift(logs, profile, thresholds) -> dict[str, Any] | None:
    baseline = profile.get("predictions")
    served = logged_predictions(logs, task=profile.get("task", "classification"), class_names=profile.get("class_names") or ())
    if not baseline or served.size == 0:
        return None
    if baseline.get("kind") == "classes":
        expected = list(baseline["counts"])
        actual = np.bincount(served.astype(np.int64), minlength=len(expected))[: max(len(expected), 1)].tolist()
        labels = list(profile.get("class_names") or range(len(expected)))
        result = {"kind": "classes", "labels": [str(x) for x in labels], "expected": expected, "actual": actual}
    else:
        drift = _numeric_drift(baseline, served)
        result = {"kind": "values", **(drift.get("bins") or {}), "mean": drift["mean"], "training_mean": drift["training_mean"]}
        expected, actual = result.get("expected") or [1], result.get("actual") or [1]
    psi, js = population_stability_index(expected, actual), jensen_shannon_distance(expected, actual)
    reasons = [f"psi {psi:.3f} > {thresholds.prediction_psi:g}"] if psi > thresholds.prediction_psi else []
    return result | {"rows": int(served.size), "psi": psi, "js_distance": js, "drifted": bool(reasons), "reasons": reasons}


def assert_same_report(actual: Any, expected: Any, path: str = "report") -> None:
    """Equal JSON-able reports: same keys, lists and strings; floats to 1e-9 relative."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), f"{path}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            assert_same_report(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_report(a, e, f"{path}[{i}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert isinstance(actual, (int, float)) and math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12), \
            f"{path}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"
