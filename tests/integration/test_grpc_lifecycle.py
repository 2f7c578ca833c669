"""Server lifecycle over gRPC against real subprocesses: flags, discovery, config reload, startup failure, shutdown."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from tests.support.models import build_half_plus
from tests.support.server import launch, start_server

AVAILABLE, END = get_model_status_pb2.ModelVersionStatus.AVAILABLE, get_model_status_pb2.ModelVersionStatus.END


def _stubs(target: str):
    channel = grpc.insecure_channel(target)
    return prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)


def _predict(stub, name: str, x: float = 2.0, **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if "label" in spec:
        request.model_spec.version_label = spec["label"]
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([x], dtype=tf.float32))
    return stub.Predict(request, timeout=30)


def _status(stub, name: str) -> dict[int, tuple[int, int, str]]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    rows = stub.GetModelStatus(request, timeout=30).model_version_status
    return {r.version: (r.state, r.status.error_code, r.status.error_message) for r in rows}


def _poll(predicate, *, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except grpc.RpcError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)


def _publish(source: Path, base: Path, version: str) -> Path:
    # Copy next to the repository, then rename in: the poller never sees a half-written version.
    staging = base.parent / f".staging-{base.name}-{version}"
    shutil.copytree(source, staging)
    base.mkdir(parents=True, exist_ok=True)
    target = base / version
    os.rename(staging, target)
    return target


def test_running_server_discovers_versions_warns_on_flags_and_drains_on_sigterm(tmp_path: Path, half_plus_two_base: Path):
    base = tmp_path / "models" / "m"
    _publish(half_plus_two_base / "00000123", base, "123")
    with start_server(
        tmp_path, "--definitely_not_a_flag=1", "--xla_cpu_compilation_enabled", model_name="m", model_base_path=base
    ) as server:
        log = server.log_text()
        assert "unknown argument: --definitely_not_a_flag=1" in log
        assert "--xla_cpu_compilation_enabled is accepted but not implemented" in log
        predictions, models = _stubs(server.grpc_target)
        assert _predict(predictions, "m").model_spec.version.value == 123

        _publish(half_plus_two_base / "00000123", base, "124")
        _poll(lambda: _status(models, "m") == {124: (AVAILABLE, 0, ""), 123: (END, 0, "")}, what="124 replaces 123")
        assert _predict(predictions, "m").model_spec.version.value == 124
        server.wait_for_log("Successfully loaded servable version {name: m version: 124}")
        server.wait_for_log("Done unloading servable version {name: m version: 123}")

        shutil.rmtree(base / "124")  # the removed version unloads and 123 comes back
        _poll(lambda: _status(models, "m").get(123, (0,))[0] == AVAILABLE, what="123 reloaded")

        # Requests already accepted when SIGTERM arrives still get their answers.
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "m"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0] * 200_000, dtype=tf.float32))
        futures = [predictions.Predict.future(request, timeout=60) for _ in range(8)]
        rest_connections = []
        if server.rest_url:
            body = json.dumps({"instances": [1.0] * 20_000})
            for _ in range(4):  # each request is fully sent before SIGTERM
                connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
                connection.request("POST", "/v1/models/m:predict", body=body, headers={"Content-Type": "application/json"})
                rest_connections.append(connection)
        futures[0].result()
        assert server.stop() == 0
        for future in futures:
            assert list(future.result().outputs["y"].float_val[:1]) == [2.5]
        for connection in rest_connections:
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read())["predictions"][0] == 2.5
        assert "Server stopped." in server.log_text()


def test_config_file_several_models_reload_and_failures(tmp_path: Path, half_plus_two_base: Path):
    models_root = tmp_path / "models"
    _publish(half_plus_two_base / "00000123", models_root / "two", "1")
    build_half_plus(models_root / "three" / "1", b=3.0)
    config_file = tmp_path / "models.config"
    config_file.write_text(
        "model_config_list {\n"
        f"  config {{ name: 'two' base_path: '{models_root / 'two'}' model_platform: 'tensorflow' }}\n"
        f"  config {{ name: 'three' base_path: '{models_root / 'three'}' model_platform: 'tensorflow' }}\n"
        "}\n"
    )
    with start_server(tmp_path, f"--model_config_file={config_file}", "--max_num_load_retries=0", model_base_path=None) as server:
        predictions, models = _stubs(server.grpc_target)
        assert _predict(predictions, "two").outputs["y"].float_val[0] == 3.0
        assert _predict(predictions, "three").outputs["y"].float_val[0] == 4.0

        def reload(*entries: tuple[str, Path, dict[str, int]]):
            request = model_management_pb2.ReloadConfigRequest()
            for name, base, labels in entries:
                entry = request.config.model_config_list.config.add(name=name, base_path=str(base), model_platform="tensorflow")
                for label, version in labels.items():
                    entry.version_labels[label] = version
            return models.HandleReloadConfigRequest(request, timeout=60)

        # Replace semantics: "two" is left out, so it is unloaded; "three" gets a label.
        response = reload(("three", models_root / "three", {"stable": 1}))
        assert response.status.error_code == 0
        assert _predict(predictions, "three", label="stable").model_spec.version.value == 1
        _poll(lambda: _status(models, "two") == {1: (END, 0, "")}, what="two unloaded")
        with pytest.raises(grpc.RpcError) as info:
            _predict(predictions, "two")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND

        with pytest.raises(grpc.RpcError) as info:  # a label on a version that is not loaded
            reload(("three", models_root / "three", {"stable": 1, "canary": 2}))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "Request to assign label to version 2 of model three" in info.value.details()

        (models_root / "broken" / "7").mkdir(parents=True)
        with pytest.raises(grpc.RpcError) as info:
            reload(("three", models_root / "three", {}), ("broken", models_root / "broken", {}))
        assert info.value.code() == grpc.StatusCode.UNKNOWN
        assert info.value.details().startswith("1 model(s) did not become available: {{name: broken version: 7} due to error: ")
        state, code, message = _status(models, "broken")[7]
        # session_bundle/oss/session_bundle_util.cc LoadSessionBundleOrSavedModelBundle's text.
        assert state == END and code == grpc.StatusCode.NOT_FOUND.value[0]
        assert "Specified file path does not appear to contain a SavedModel bundle" in message
        assert _predict(predictions, "three").model_spec.version.value == 1


def test_startup_failures_exit_255_with_tf_serving_messages(tmp_path: Path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tfstack", "serve", *args],
            capture_output=True, text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )

    malformed = run("--port=abc", "--model_base_path=/x")
    assert malformed.returncode == 255 and "Received: --port=abc" in malformed.stderr

    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("TensorFlow ModelServer: ")

    nothing = run("--port=0")
    assert nothing.returncode == 255 and "At least one of server_options.grpc_port" in nothing.stdout

    bad_config = tmp_path / "bad.config"
    bad_config.write_text("improperly formatted file")
    parsed = run(f"--model_config_file={bad_config}")
    assert parsed.returncode == 255
    assert f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{bad_config}'" in parsed.stdout

    (tmp_path / "broken" / "1").mkdir(parents=True)
    server = launch(tmp_path, f"--model_base_path={tmp_path / 'broken'}", "--max_num_load_retries=0", rest=False)
    assert server.process.wait(120) == 255
    assert "Failed to start server. Error: UNKNOWN: 1 servable(s) did not become available: " \
           "{{name: default version: 1} due to error: NOT_FOUND: " in server.log_text()


def test_no_port_opens_until_the_first_version_exists(tmp_path: Path, half_plus_two_base: Path):
    import socket

    base = tmp_path / "models" / "late"
    base.mkdir(parents=True)
    server = launch(tmp_path, "--model_name=late", f"--model_base_path={base}", rest=False)
    try:
        server.wait_for_log("No versions of servable late found under base path")
        with socket.socket() as probe:  # TF Serving opens no port while a model has no version
            assert probe.connect_ex(("127.0.0.1", server.grpc_port)) != 0
        _publish(half_plus_two_base / "00000123", base, "3")
        server.wait_for_log("Running gRPC ModelServer at")
        predictions, _ = _stubs(server.grpc_target)
        assert _predict(predictions, "late").model_spec.version.value == 3
    finally:
        assert server.stop() == 0
