"""The loop on real processes: serve digits with `logging_config`, monitor drift, replay, retrain.

TF Serving's OSS server refuses `logging_config` (no log collector; spec §4.1), so what is
checked against TF Serving here is the record format: every logged record parses as TF
Serving's own `tensorflow.serving.PredictionLog` (apis/prediction_log.proto) and replays as a
warmup record (spec §5), which is the format TF Serving's warmup reads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from tfstack import export
from tests.support.server import launch, logged_models_config, start_server

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _tfstack(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "160", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tfstack", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory):
    """Version 1 of digits (a small MLP, trained once) and its test split."""
    from tfstack.training import TrainConfig, train

    root = tmp_path_factory.mktemp("loop")
    result = train(TrainConfig(model="mlp", hidden=(32,), epochs=10, run_dir=str(root / "run")), progress=False)
    export.publish(result.export_spec(), root / "models")
    test = result.dataset.test
    return root, test.inputs["pixels"][:250].astype(np.float32), test.labels[:250]


def _predict_rest(client: httpx.Client, url: str, pixels: np.ndarray, request_id: str) -> None:
    response = client.post(f"{url}/v1/models/digits:predict", json={"instances": [{"pixels": pixels.tolist()}]},
                           headers={"X-Request-ID": request_id})
    assert response.status_code == 200, response.text
    assert response.headers["X-Request-ID"] == request_id


def _predict_grpc(stub, pixels: np.ndarray, request_id: str) -> str:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.inputs["pixels"].CopyFrom(tf.make_tensor_proto(pixels[None]))
    _, call = stub.Predict.with_call(request, metadata=(("x-request-id", request_id),), timeout=30)
    return dict(call.initial_metadata())["x-request-id"]


@pytest.fixture(scope="module")
def logged(digits):
    """One server, rate 1.0: 250 clean test images over REST, a reload that moves the logs, 250
    shifted ones (half inverted, half noised) over gRPC. Returns the two log prefixes."""
    root, pixels, _ = digits
    config = root / "models.config"
    clean, shifted = root / "logs" / "clean" / "digits", root / "logs" / "shifted" / "digits"
    config.write_text(logged_models_config({"digits": (root / "models" / "digits", clean)}))
    monitoring = root / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }\n')
    rng = np.random.default_rng(0)
    with start_server(root / "server", f"--model_config_file={config}", f"--monitoring_config_file={monitoring}") as server:
        with httpx.Client(timeout=30) as client:
            for i, image in enumerate(pixels):
                _predict_rest(client, server.rest_url, image, f"clean-{i}")
        reload = model_management_pb2.ReloadConfigRequest()
        from google.protobuf import text_format

        text_format.Parse(logged_models_config({"digits": (root / "models" / "digits", shifted)}), reload.config)
        channel = grpc.insecure_channel(server.grpc_target)
        model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(reload, timeout=60)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i, image in enumerate(pixels):
            moved = 16.0 - image if i % 2 == 0 else np.clip(image + rng.normal(0, 6, image.shape), 0, 16)
            assert _predict_grpc(stub, moved.astype(np.float32), f"shifted-{i}") == f"shifted-{i}"
        metrics = httpx.get(f"{server.rest_url}/metrics").text
        channel.close()
    return clean, shifted, metrics


def test_every_request_is_logged_as_tf_servings_prediction_log(logged):
    clean, shifted, metrics = logged
    for prefix, ids in ((clean, [f"clean-{i}" for i in range(250)]), (shifted, [f"shifted-{i}" for i in range(250)])):
        files = sorted(prefix.parent.glob("digits-*.tfrecord"))
        assert files, f"no log files under {prefix.parent}"
        # TensorFlow's own TFRecord reader and TF Serving's own PredictionLog message.
        logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset([str(f) for f in files])]
        assert [log.log_metadata.request_origin for log in logs] == ids
        first = logs[0]
        assert first.log_metadata.model_spec.name == "digits" and first.log_metadata.model_spec.version.value == 1
        assert first.predict_log.request.inputs["pixels"].tensor_shape.dim[0].size == 1
        assert set(first.predict_log.response.outputs) == {"probabilities", "class_id", "class_label"}
    assert ':tensorflow:serving:request_log_count{model_name="digits",status_code="OK"} 500' in metrics
    assert "request_log_dropped{" not in metrics  # nothing dropped (the counter appears on the first drop)


def test_monitor_flags_the_shifted_half_and_not_the_clean_half(digits, logged):
    from click.testing import CliRunner

    from tfstack.export.cli import monitor_command  # what `tfstack monitor` runs, in-process to skip a TF import

    root = digits[0]
    clean, shifted, _ = logged
    base = ["--model-name", "digits", "--base-path", str(root / "models")]
    ok = CliRunner().invoke(monitor_command, [str(clean), *base])
    assert ok.exit_code == 0, ok.output
    assert "OK: no threshold crossed." in ok.output
    report_path = root / "report.json"
    drifted = CliRunner().invoke(monitor_command, [str(shifted), *base, "--json", str(report_path), "--plots", str(root / "plots")])
    assert drifted.exit_code == 1, drifted.output
    report = json.loads(report_path.read_text())
    (pixels,) = report["features"]
    assert pixels["name"] == "pixels" and pixels["drifted"] and report["rows"] == 250
    assert report["predictions"]["drifted"]
    assert (root / "plots" / "drift-pixels.png").is_file()


def test_logs_replay_as_warmup_in_a_real_server_and_survive_its_kill_9(digits, logged, tmp_path: Path):
    root, pixels, _ = digits
    clean, _, _ = logged
    # `tfstack export --warmup-from`: the copied version's own 3 records, then 100 of the 250
    # logged requests, spread over the logs.
    export.export_model(root / "models" / "digits" / "1", tmp_path / "next", model_name="digits", warmup_from=[clean])
    prefix = tmp_path / "logs" / "digits"
    config = tmp_path / "models.config"
    config.write_text(logged_models_config({"digits": (tmp_path / "next" / "digits", prefix)}))
    server = launch(tmp_path, f"--model_config_file={config}")
    answered = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            i = 0
            while not stop.is_set():
                try:
                    response = client.post(f"{server.rest_url}/v1/models/digits:predict",
                                           json={"instances": [{"pixels": pixels[i % 250].tolist()}]})
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    answered.append(response.headers["X-Request-ID"])
                i += 1

    thread = threading.Thread(target=load)
    try:
        log = server.wait_for_log("Exporting HTTP/REST API at:", timeout=120)
        assert "Number of warmup records read: 103." in log
        thread.start()
        deadline = time.monotonic() + 60
        while len(answered) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(answered) >= 100
        os.kill(server.process.pid, signal.SIGKILL)  # mid-traffic: no shutdown, no final flush
        server.process.wait(30)
    finally:
        stop.set()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    if thread.ident is not None:
        thread.join(30)
    ids = [entry.request_id for entry in export.read_prediction_logs(prefix)]
    # Every flushed record is readable and they are the requests in the order they were answered;
    # only the last few, still queued at the kill, can be missing (and one logged request may not
    # have had its answer delivered).
    assert len(ids) >= 50 and ids[: len(answered)] == answered[: len(ids)]


def test_train_from_logs_links_the_new_version_to_the_logs_and_its_parent(digits, logged):
    root, _, labels = digits
    clean, _, _ = logged
    label_file = root / "labels.csv"
    label_file.write_text("request_id,label\n" + "".join(f"clean-{i},{labels[i]}\n" for i in range(100)))
    result = _tfstack("train", "--model", "mlp", "--hidden", "16", "--epochs", "2", "--base-path", str(root / "models"),
                      "--run-dir", str(root / "run2"), "--from-logs", str(clean), "--labels", str(label_file), "--quiet",
                      cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == str(root / "models" / "digits" / "2")
    manifest = json.loads((root / "models" / "digits" / "2" / "assets.extra" / "manifest.json").read_text())
    lineage = manifest["lineage"]
    assert manifest["parent_version"] == 1 and lineage["parent_version"] == 1
    assert lineage["logged_rows_added"] == 100
    assert lineage["logs"]["records"] == 100 and lineage["logs"]["first_request_id"] == "clean-0"
    assert lineage["logs"]["files"] == [str(p) for p in sorted(clean.parent.glob("digits-*.tfrecord"))]
    assert lineage["labels"]["fingerprint"] == export.file_fingerprint(label_file)
    parent = json.loads((root / "models" / "digits" / "1" / "assets.extra" / "manifest.json").read_text())
    assert manifest["dataset"]["n_train"] == parent["dataset"]["n_train"] + 100
