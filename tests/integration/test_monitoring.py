"""`--monitoring_config_file` against a real server: the Prometheus page on the REST port (spec §7)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.integration.conftest import MODEL_NAME
from tests.support.server import launch, start_server

METRICS_PATH = "/custom/metrics"


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, half_plus_two_base):
    workdir = tmp_path_factory.mktemp("monitored")
    config = workdir / "monitoring.config"
    config.write_text(f'prometheus_config {{\n  enable: true,\n  path: "{METRICS_PATH}"\n}}\n')
    with start_server(
        workdir, f"--monitoring_config_file={config}", model_name=MODEL_NAME, model_base_path=half_plus_two_base, rest=True
    ) as running:
        yield running


def _grpc_predict(target: str, model_name: str) -> str:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([2.0], np.float32)))
        try:
            stub.Predict(request, timeout=60)
        except grpc.RpcError as exc:
            return exc.code().name
        return "OK"


def test_requests_are_counted_by_model_and_status(monitored):
    rest = monitored.rest_url
    for _ in range(3):
        assert httpx.post(f"{rest}/v1/models/{MODEL_NAME}:predict", content=b'{"instances": [1.0]}').status_code == 200
    assert httpx.post(f"{rest}/v1/models/missing:predict", content=b'{"instances": [1.0]}').status_code == 404
    assert httpx.get(f"{rest}/v1/models/{MODEL_NAME}").status_code == 200
    assert _grpc_predict(monitored.grpc_target, MODEL_NAME) == "OK"
    assert _grpc_predict(monitored.grpc_target, "missing") == "NOT_FOUND"

    response = httpx.get(f"{rest}{METRICS_PATH}")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/plain"
    page = response.text
    assert "# TYPE :tensorflow:serving:request_count counter" in page and "# HELP" not in page
    lines = page.splitlines()
    # 3 REST predicts + 1 REST status GET + 1 gRPC predict succeeded; 2 requests for "missing" did not.
    assert f':tensorflow:serving:request_count{{model_name="{MODEL_NAME}",status="OK"}} 5' in lines
    assert ':tensorflow:serving:request_count{model_name="missing",status="NOT_FOUND"} 2' in lines
    assert f':tensorflow:serving:request_latency_count{{model_name="{MODEL_NAME}",API="predict",entrypoint="REST"}} 3' in lines
    assert f':tensorflow:serving:request_latency_count{{model_name="{MODEL_NAME}",API="",entrypoint="REST"}} 1' in lines
    assert f':tensorflow:serving:request_latency_count{{model_name="{MODEL_NAME}",API="Predict",entrypoint="GRPC"}} 1' in lines
    assert f':tensorflow:serving:runtime_latency_count{{model_name="{MODEL_NAME}",API="Predict",runtime="TF1"}} 4' in lines
    assert (
        f':tensorflow:serving:request_count_by_version{{model_name="{MODEL_NAME}",version="123",status="OK"}} 4' in lines
    )
    load = [line for line in lines if line.startswith(":tensorflow:cc:saved_model:load_attempt_count{")]
    assert load and load[0].endswith('/00000123",status="success"} 1')


def test_query_string_is_rejected_with_text_plain_400(monitored):
    response = httpx.get(f"{monitored.rest_url}{METRICS_PATH}?x")
    assert response.status_code == 400 and response.headers["Content-Type"] == "text/plain"
    assert response.text == f"Unexpected path: {METRICS_PATH}?x. Should be {METRICS_PATH}"


def test_default_path_is_not_served_when_another_is_configured(monitored):
    assert httpx.get(f"{monitored.rest_url}/monitoring/prometheus/metrics").status_code == 404


def test_no_page_without_a_monitoring_config(server):
    assert httpx.get(f"{server.rest_url}/monitoring/prometheus/metrics").status_code == 404


def test_unparsable_monitoring_config_stops_startup(tmp_path, half_plus_two_base):
    config = tmp_path / "monitoring.config"
    config.write_text("improperly formatted file")
    running = launch(
        tmp_path, f"--monitoring_config_file={config}", f"--model_name={MODEL_NAME}",
        f"--model_base_path={half_plus_two_base}", rest=True,
    )
    try:
        code = running.process.wait(timeout=120)
    finally:
        running.stop()
    assert code == 255
    assert f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{config}'" in running.log_text()
