"""Data profiles (assets.extra/data_profile.json) and the drift checks `tfstack monitor` runs on them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from tensorflow_serving.apis import prediction_log_pb2

from tfstack import export
from tfstack.export.cli import monitor_command
from tfstack.export._monitor import (
    DriftThresholds,
    drift_report,
    jensen_shannon_distance,
    numeric_drift,
    population_stability_index,
    read_drift_thresholds,
    string_drift,
)
from tfstack.export._prediction_logs import LoggedRequest, logged_predictions, warmup_records

FEATURES = (export.FeatureSpec(name="x", dtype="float32", shape=(2,)), export.FeatureSpec(name="city", dtype="string"))


def _training_rows(n: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(5.0, 1.0, size=(n, 2)).astype(np.float32),
        "city": rng.choice(np.array([b"paris", b"rome", b"oslo"], object), size=n, p=[0.5, 0.3, 0.2]),
    }


def _profile() -> dict:
    return export.build_profile(
        FEATURES, _training_rows(), task="classification", class_names=("no", "yes"), source="training split",
        labels=np.array([0, 1, 1, 0]), predictions=np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]]),
    )


def _logs(rows: dict[str, np.ndarray], classes: np.ndarray, *, version: int = 1) -> list[LoggedRequest]:
    logs = []
    for i in range(next(iter(rows.values())).shape[0]):
        log = prediction_log_pb2.PredictionLog()
        log.log_metadata.model_spec.name = "m"
        log.log_metadata.model_spec.version.value = version
        log.log_metadata.timestamp_secs = 1000 + i
        log.log_metadata.request_origin = f"req-{i}"
        request = log.predict_log.request
        request.model_spec.name = "m"
        request.model_spec.version.value = version
        for name, array in rows.items():
            value = array[i:i + 1]
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value.astype(np.bytes_) if value.dtype == object else value))
        log.predict_log.response.outputs["class_id"].CopyFrom(tf.make_tensor_proto(np.array([classes[i]], np.int64)))
        logs.append(LoggedRequest(log=log, path=Path("/logs/m-1.tfrecord"), index=i))
    return logs


def test_profile_has_schema_statistics_bins_and_outcomes():
    profile = _profile()
    x, city = profile["features"]
    assert (x["name"], x["dtype"], x["shape"], x["kind"], x["count"], x["missing"]) == ("x", "float32", [2], "numeric", 4000, 0)
    assert x["mean"] == pytest.approx(5.0, abs=0.1) and x["std"] == pytest.approx(1.0, abs=0.1)
    assert x["min"] < x["quantiles"]["0.01"] < x["quantiles"]["0.5"] < x["quantiles"]["0.99"] < x["max"]
    assert len(x["histogram"]["edges"]) == 11 and sum(x["histogram"]["counts"]) == 4000
    assert len(x["element_mean"]) == 2
    assert city["kind"] == "string" and city["distinct"] == 3 and city["top_k"][0][0] == "paris"
    assert sum(city["vocabulary"].values()) == 2000 and city["unknown_rate"] == 0.0
    assert profile["labels"] == {"kind": "classes", "count": 4, "counts": [2, 2]}
    assert profile["predictions"]["counts"] == [2, 2]
    json.dumps(profile, allow_nan=False)  # the file is strict JSON


def test_profile_of_a_constant_feature_with_missing_values():
    stats = export.build_profile(
        (export.FeatureSpec(name="c", dtype="float32"),), {"c": np.array([3.0, 3.0, np.nan], np.float32)},
        task="regression", source="t",
    )["features"][0]
    assert (stats["count"], stats["missing"], stats["min"], stats["max"]) == (3, 1, 3.0, 3.0)
    assert stats["histogram"] == {"edges": [2.5, 3.5], "counts": [2]}


def test_psi_and_js_distance_are_zero_for_the_same_distribution_and_grow_with_a_shift():
    assert population_stability_index([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon_distance([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-7)
    assert jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    small = population_stability_index([50, 50], [45, 55])
    large = population_stability_index([50, 50], [10, 90])
    assert 0 < small < 0.1 < 0.2 < large


def test_numeric_values_outside_the_training_range_land_in_edge_bins():
    feature = _profile()["features"][0]
    drift = numeric_drift(feature, np.array([feature["min"] - 1, feature["max"] + 1, 5.0, np.nan]))
    assert drift["out_of_range_rate"] == pytest.approx(2 / 3) and drift["missing_rate"] == 0.25
    assert drift["bins"]["actual"][0] == 1 and drift["bins"]["actual"][-1] == 1 and drift["bins"]["expected"][0] == 0


def test_unknown_categories_are_counted():
    city = _profile()["features"][1]
    drift = string_drift(city, np.array([b"paris", b"tokyo", b"tokyo", b""], object))
    assert drift["unknown_rate"] == pytest.approx(2 / 3) and drift["missing_rate"] == 0.25
    assert drift["bins"]["labels"][-1] == "<unknown>"


def test_monitor_flags_a_shift_and_passes_the_same_distribution():
    profile = _profile()
    clean = drift_report(_logs(_training_rows(300, seed=1), np.array([0, 1] * 150)), profile, model_name="m", version=1)
    assert not clean["drifted"] and clean["alerts"] == [] and clean["rows"] == 300
    assert all(f["psi"] < 0.05 for f in clean["features"])
    shifted_rows = _training_rows(300, seed=2)
    shifted_rows["x"] = shifted_rows["x"] + 3.0
    shifted_rows["city"] = np.array([b"tokyo"] * 300, object)
    shifted = drift_report(_logs(shifted_rows, np.array([1] * 300)), profile, model_name="m", version=1)
    assert shifted["drifted"]
    by_name = {f["name"]: f for f in shifted["features"]}
    assert by_name["x"]["drifted"] and by_name["x"]["out_of_range_rate"] > 0.3
    assert by_name["city"]["unknown_rate"] == 1.0
    assert shifted["predictions"]["drifted"] and shifted["predictions"]["actual"] == [0, 300]
    assert any(a.startswith("feature x: psi") for a in shifted["alerts"])
    assert shifted["logs"]["records"] == 300 and shifted["logs"]["first_request_id"] == "req-0"


def test_per_feature_thresholds_override_the_defaults():
    profile = _profile()
    rows = _training_rows(300, seed=2)
    rows["x"] = rows["x"] + 0.6
    strict = drift_report(_logs(rows, np.array([0, 1] * 150)), profile, model_name="m", version=1)
    lenient = drift_report(_logs(rows, np.array([0, 1] * 150)), profile, model_name="m", version=1,
                      thresholds=DriftThresholds(features={"x": {"psi": 10, "js_distance": 1, "out_of_range_rate": 1}}))
    assert strict["drifted"] and not lenient["drifted"]


def test_thresholds_file_errors_name_the_problem(tmp_path: Path):
    path = tmp_path / "t.json"
    path.write_text('{"psi": 0.3, "features": {"x": {"psi": 0.5}}}')
    assert read_drift_thresholds(path).for_feature("x", "psi") == 0.5
    for text, message in [
        ('{"psy": 1}', r"unknown thresholds \['psy'\]"),
        ('{"psi": -1}', r"threshold psi must be a number >= 0. Received: psi=-1"),
        ('{"features": {"x": {"mean": 1}}}', r"features.x has unknown thresholds \['mean'\]"),
        ("[1]", "must hold a JSON object of thresholds. Received: list"),
        ("{", "Cannot read thresholds from"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_drift_thresholds(path)


def test_logged_predictions_and_warmup_records_from_logs():
    logs = _logs(_training_rows(5), np.array([1, 0, 1, 1, 0]), version=3)
    assert logged_predictions(logs, task="classification").tolist() == [1, 0, 1, 1, 0]
    records = warmup_records(logs, model_name="next", limit=2)
    assert len(records) == 2 and records[0].predict_log.request.model_spec.name == "next"
    assert not records[0].predict_log.request.model_spec.HasField("version")
    assert not records[0].predict_log.HasField("response")
    with pytest.raises(ValueError, match=r"limit must be in 1..1000"):
        warmup_records(logs, model_name="next", limit=1001)


def test_monitor_cli_exit_codes_json_and_plots(tmp_path: Path, monkeypatch):
    # A repository with one version that has only the assets monitor reads (the profile).
    version = tmp_path / "models" / "m" / "1"
    (version / "assets.extra").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    (version / "assets.extra" / "data_profile.json").write_text(json.dumps(_profile()))
    (version / "assets.extra" / "manifest.json").write_text('{"model_name": "m", "version": 1}')

    def write_logs(path: Path, logs: list[LoggedRequest]) -> None:
        with tf.io.TFRecordWriter(str(path)) as writer:
            for entry in logs:
                writer.write(entry.log.SerializeToString())

    clean, shifted = tmp_path / "clean.tfrecord", tmp_path / "shifted.tfrecord"
    write_logs(clean, _logs(_training_rows(200, seed=3), np.array([0, 1] * 100)))
    rows = _training_rows(200, seed=4)
    rows["x"] = 10 - rows["x"] * 2
    write_logs(shifted, _logs(rows, np.array([0, 1] * 100)))
    runner = CliRunner()
    base = ["--model-name", "m", "--base-path", str(tmp_path / "models")]
    ok = runner.invoke(monitor_command, [str(clean), *base])
    assert ok.exit_code == 0, ok.output
    assert "OK: no threshold crossed." in ok.output
    drifted = runner.invoke(monitor_command, [str(shifted), *base, "--json", str(tmp_path / "r.json"),
                                              "--plots", str(tmp_path / "plots")])
    assert drifted.exit_code == 1, drifted.output
    assert "DRIFT: feature x: psi" in drifted.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["drifted"] and report["version"] == 1 and report["logs"]["records"] == 200
    assert (tmp_path / "plots" / "drift-x.png").stat().st_size > 1000
    bad = runner.invoke(monitor_command, [str(tmp_path / "nothing-here"), *base])
    assert bad.exit_code == 2 and "no log files found" in bad.output
    other = runner.invoke(monitor_command, [str(clean), "--model-name", "other", "--base-path", str(tmp_path / "models")])
    assert other.exit_code == 1 and "The logs hold no request for model 'other'." in other.output
    # The test records were logged at timestamp 1000..1199 (1970): none in the last day.
    recent = runner.invoke(monitor_command, [str(shifted), *base, "--window", "1d"])
    assert recent.exit_code == 1 and "no request for model 'm' in the last 86400 seconds" in recent.output
    everything = runner.invoke(monitor_command, [str(shifted), *base, "--window", "100000d"])
    assert everything.exit_code == 1 and "DRIFT: feature x" in everything.output
    bad = runner.invoke(monitor_command, [str(shifted), *base, "--window", "soon"])
    assert bad.exit_code == 2 and "expected a duration like 30m, 6h or 7d. Received: 'soon'" in bad.output


def test_metrics_port_serves_gauges_and_refreshes_them(tmp_path: Path):
    import threading

    import httpx

    from tfstack.export.cli import _serve_monitor_metrics
    from tests.support.server import free_port

    profile = _profile()
    clean = drift_report(_logs(_training_rows(100, seed=1), np.array([0, 1] * 50)), profile, model_name="m", version=1)
    rows = _training_rows(100, seed=2)
    rows["x"] = rows["x"] + 3.0
    shifted = drift_report(_logs(rows, np.array([1] * 100)), profile, model_name="m", version=1)
    checks = iter([shifted])
    port, stop, result = free_port(), threading.Event(), {}

    def check():
        return next(checks, shifted)

    thread = threading.Thread(target=lambda: result.update(last=_serve_monitor_metrics(port, 0.05, clean, check, stop)))
    thread.start()
    try:
        deadline, page = time.monotonic() + 30, ""
        # The first page shows the clean report; a later check (the logs grew) flips the gauge.
        while 'tfstack_monitor_drifted{feature="x",model_name="m",version="1"} 1.0' not in page:
            assert time.monotonic() < deadline, page
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                time.sleep(0.05)
    finally:
        stop.set()
        thread.join(30)
    # prometheus_client writes label names sorted.
    assert 'tfstack_monitor_rows{model_name="m",version="1"} 100.0' in page
    assert 'tfstack_monitor_psi{feature="x",model_name="m",version="1"}' in page
    assert 'tfstack_monitor_unknown_rate{feature="city",model_name="m",version="1"} 0.0' in page
    assert "tfstack_monitor_prediction_psi{" in page
    assert result["last"]["drifted"]
