"""`--enable_batching` against a real server: transparent to clients, TF Serving's errors (spec §6).

The batched server is compared with the session's unbatched `server` fixture serving the same
half_plus_two model: every response body must be byte-identical.
"""

from __future__ import annotations

import concurrent.futures
import json
import re

import httpx
import numpy as np
import pytest

from tests.integration.conftest import MODEL_NAME
from tests.support.server import launch, start_server

PARAMS = (
    "max_batch_size { value: 8 }\n"
    "batch_timeout_micros { value: 5000 }\n"
    "max_enqueued_batches { value: 1000 }\n"
    "num_batch_threads { value: 1 }\n"
    "allowed_batch_sizes: 2\nallowed_batch_sizes: 4\nallowed_batch_sizes: 8\n"
)


@pytest.fixture(scope="module")
def batched(tmp_path_factory, half_plus_two_base):
    workdir = tmp_path_factory.mktemp("batched")
    params = workdir / "batching.config"
    params.write_text(PARAMS)
    monitoring = workdir / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    with start_server(
        workdir,
        "--enable_batching",
        f"--batching_parameters_file={params}",
        f"--monitoring_config_file={monitoring}",
        model_name=MODEL_NAME,
        model_base_path=half_plus_two_base,
        rest=True,
    ) as running:
        yield running


def _bodies() -> list[bytes]:
    # Different sizes (1..3 rows) so merging and allowed_batch_sizes padding are exercised. One
    # shape only: like TF Serving, a batch whose tasks differ in non-batch shape fails without
    # pad_variable_length_inputs (tests/integration/test_batching_options.py covers that).
    bodies = []
    for i in range(48):
        rows = i % 3 + 1
        instances = [float(i) + r / 10 for r in range(rows)]
        bodies.append(json.dumps({"instances": instances}).encode())
    bodies.append(b'{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": 4.0}]}')
    return bodies


def _post_all(rest_url: str, bodies: list[bytes]) -> list[tuple[int, bytes]]:
    def post(body: bytes) -> tuple[int, bytes]:
        verb = "regress" if b"examples" in body else "predict"
        response = httpx.post(f"{rest_url}/v1/models/{MODEL_NAME}:{verb}", content=body, timeout=60)
        return response.status_code, response.content

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        return list(pool.map(post, bodies))


def _metric(page: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", page, re.M)
    assert match, f"{name} not on the page:\n{page[:2000]}"
    return float(match.group(1))


def test_concurrent_rest_requests_match_the_unbatched_server(batched, server):
    bodies = _bodies()
    got = _post_all(batched.rest_url, bodies)
    expected = _post_all(server.rest_url, bodies)
    assert all(status == 200 for status, _ in got), got[:3]
    assert got == expected
    page = httpx.get(f"{batched.rest_url}/monitoring/prometheus/metrics").text
    # Merging happened: fewer model runs than requests.
    assert _metric(page, ":tensorflow:serving:batching_session:wrapped_run_count") < len(bodies)
    assert _metric(
        page, ':tensorflow:serving:batching_session:queuing_latency_count{thread_pool_name="batch_threads"}'
    ) >= len(bodies)


def test_concurrent_grpc_requests_match_the_unbatched_server(batched, server):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    def predict(target: str, value: float) -> list[float]:
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = MODEL_NAME
            request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([value, value + 1], np.float32)))
            response = stub.Predict(request, timeout=60)
            assert response.model_spec.version.value == 123
            return list(response.outputs["y"].float_val)

    values = [float(v) for v in range(32)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        got = list(pool.map(lambda v: predict(batched.grpc_target, v), values))
        expected = list(pool.map(lambda v: predict(server.grpc_target, v), values))
    assert got == expected == [[0.5 * v + 2, 0.5 * (v + 1) + 2] for v in values]


def test_request_larger_than_max_batch_size(batched):
    body = json.dumps({"instances": [float(i) for i in range(9)]})
    response = httpx.post(f"{batched.rest_url}/v1/models/{MODEL_NAME}:predict", content=body, timeout=60)
    assert response.status_code == 400
    assert response.json() == {"error": "Task size 9 is larger than maximum input batch size 8"}


def test_scalar_input_cannot_be_batched(batched):
    body = json.dumps({"inputs": {"x": 3.0}})
    response = httpx.post(f"{batched.rest_url}/v1/models/{MODEL_NAME}:predict", content=body, timeout=60)
    assert response.status_code == 400
    assert response.json() == {"error": "Batching Run() input tensors must have at least one dimension"}


@pytest.mark.parametrize(
    "flags, text, message",
    [
        ((), "max_batch_size { value: 4 }",
         "server_options.batching_parameters_file is set without setting server_options.enable_batching to true."),
        (("--enable_batching",), "max_batch_size { value: 16 } allowed_batch_sizes: 4 allowed_batch_sizes: 8",
         "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 8; expected 16"),
    ],
)
def test_bad_batching_setup_stops_startup(tmp_path, half_plus_two_base, flags, text, message):
    params = tmp_path / "batching.config"
    params.write_text(text)
    running = launch(
        tmp_path, *flags, f"--batching_parameters_file={params}",
        f"--model_name={MODEL_NAME}", f"--model_base_path={half_plus_two_base}",
    )
    try:
        code = running.process.wait(timeout=120)
    finally:
        running.stop()
    assert code == 255
    assert "Failed to start server. Error: " in running.log_text() and message in running.log_text()


def test_concurrent_multi_inference_requests_are_batched_and_match_the_unbatched_server(batched, server):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import inference_pb2, prediction_service_pb2_grpc

    def multi_inference(target: str, value: float) -> list[float]:
        request = inference_pb2.MultiInferenceRequest()
        task = request.tasks.add()
        task.model_spec.name = MODEL_NAME
        task.model_spec.signature_name = "regress_x_to_y"
        task.method_name = "tensorflow/serving/regress"
        for x in (value, value + 0.5):
            example = tf.train.Example()
            example.features.feature["x"].float_list.value.append(x)
            request.input.example_list.examples.append(example)
        with grpc.insecure_channel(target) as channel:
            (result,) = prediction_service_pb2_grpc.PredictionServiceStub(channel).MultiInference(request, timeout=60).results
        assert result.model_spec.version.value == 123
        return [r.value for r in result.regression_result.regressions]

    def runs() -> float:
        page = httpx.get(f"{batched.rest_url}/monitoring/prometheus/metrics").text
        return _metric(page, ":tensorflow:serving:batching_session:wrapped_run_count")

    values = [float(v) for v in range(24)]
    before = runs()
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        got = list(pool.map(lambda v: multi_inference(batched.grpc_target, v), values))
        expected = list(pool.map(lambda v: multi_inference(server.grpc_target, v), values))
    assert got == expected == [[0.5 * v + 2, 0.5 * (v + 0.5) + 2] for v in values]
    assert runs() - before < len(values)  # requests shared model runs
