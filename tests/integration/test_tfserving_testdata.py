"""TF Serving's own test models, served by `tfstack serve` and checked against TF Serving's own tests.

The models and configs are upstream's `tensorflow_serving/servables/tensorflow/testdata`
(tests/support/tfserving_testdata.py finds them). Expected values come from upstream's
`model_servers/tensorflow_model_server_test.py` (TensorflowModelServerTest; "upstream test X"
below), `servables/tensorflow/predict_impl_test.cc` (the counter model) and
`model_servers/http_rest_api_handler_test.cc` (metadata JSON). Three servers:

- `good`: good_model_config.txt with its placeholders replaced (half_plus_two, half_plus_three),
  started with batching_config.txt and monitoring_config.txt, as upstream's RunServer passes them;
- `others`: every other SavedModel in the testdata, unbatched (the counter's signatures have no
  inputs, which TF's batching session refuses), later given bad_half_plus_two by a reload;
- `tflite`: both TF Lite models with --prefer_tflite_model.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import httpx
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.support.server import launch, start_server
from tests.support.tfserving_testdata import tfserving_testdata

pytestmark = pytest.mark.slow

TIMEOUT = 30
VERSION = 123


@pytest.fixture(scope="module")
def testdata() -> Path:
    return tfserving_testdata()


def _config_text(entries: list[tuple[str, Path, str]]) -> str:
    lines = ["model_config_list {"]
    for name, base, extra in entries:
        lines.append(f"  config {{ name: '{name}' base_path: '{base}' model_platform: 'tensorflow' {extra} }}")
    lines.append("}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def good(tmp_path_factory, testdata: Path):
    # Upstream test testGoodModelConfig: __BuildModelConfigFile replaces the two placeholders.
    workdir = tmp_path_factory.mktemp("good")
    config = (testdata / "good_model_config.txt").read_text()
    config = config.replace("${TEST_HALF_PLUS_TWO_DIR}", str(testdata / "saved_model_half_plus_two_cpu"))
    config = config.replace("${TEST_HALF_PLUS_THREE_DIR}", str(testdata / "saved_model_half_plus_three"))
    (workdir / "models.config").write_text(config)
    with start_server(
        workdir,
        f"--model_config_file={workdir / 'models.config'}",
        "--enable_batching",
        f"--batching_parameters_file={testdata / 'batching_config.txt'}",
        f"--monitoring_config_file={testdata / 'monitoring_config.txt'}",
        model_name=None, rest=True,
    ) as server:
        yield server


OTHER_MODELS = [
    ("half_plus_two_tf2", "saved_model_half_plus_two_tf2_cpu", ""),
    ("counter", "saved_model_counter", ""),
    ("saved_model_half_plus_two_2_versions", "saved_model_half_plus_two_2_versions", "model_version_policy { all {} }"),
    ("with_config", "saved_model_half_plus_two_cpu_with_saved_model_config", ""),
    ("with_empty_config", "saved_model_half_plus_two_cpu_with_empty_saved_model_config", ""),
    ("mlmd", "saved_model_half_plus_two_mlmd", ""),
]


@pytest.fixture(scope="module")
def others(tmp_path_factory, testdata: Path):
    workdir = tmp_path_factory.mktemp("others")
    entries = [(name, testdata / folder, extra) for name, folder, extra in OTHER_MODELS]
    (workdir / "models.config").write_text(_config_text(entries))
    with start_server(
        workdir, f"--model_config_file={workdir / 'models.config'}",
        "--max_num_load_retries=1", "--load_retry_interval_micros=100000",
        model_name=None, rest=True,
    ) as server:
        server.entries = entries  # for the reload test
        yield server


@pytest.fixture(scope="module")
def tflite(tmp_path_factory, testdata: Path):
    workdir = tmp_path_factory.mktemp("tflite")
    entries = [("tflite", testdata / "saved_model_half_plus_two_tflite", ""),
               ("tflite_sigdef", testdata / "saved_model_half_plus_two_tflite_with_sigdef", "")]
    (workdir / "models.config").write_text(_config_text(entries))
    with start_server(
        workdir, f"--model_config_file={workdir / 'models.config'}", "--prefer_tflite_model=true",
        model_name=None, rest=True,
    ) as server:
        yield server


def _stub(server):
    channel = grpc.insecure_channel(server.grpc_target)
    return prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)


def _example(**features: float) -> tf.train.Example:
    example = tf.train.Example()
    for key, value in features.items():
        example.features.feature[key].float_list.value.append(value)
    return example


def _verify_predict(stub, model_name: str, expected: float, *, version: int = VERSION, specify_output: bool = True,
                    signature_name: str = "serving_default") -> None:
    # Upstream tensorflow_model_server_test_base.py VerifyPredictRequest, as written there.
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs["x"].dtype = tf.float32.as_datatype_enum
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    result = stub.Predict(request, TIMEOUT)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == tf.float32.as_datatype_enum
    assert list(result.outputs["y"].float_val) == [expected]
    assert (result.model_spec.name, result.model_spec.signature_name, result.model_spec.version.value) == (
        model_name, signature_name, version)


def _classify(stub, model_name: str, signature_name: str = "classify_x_to_y"):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.input.example_list.examples.append(_example(x=2.0))
    return stub.Classify(request, TIMEOUT)


def _regress(stub, model_name: str, signature_name: str = "regress_x_to_y"):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.input.example_list.examples.append(_example(x=2.0))
    return stub.Regress(request, TIMEOUT)


def _multi_inference(stub, model_name: str):
    # Upstream test _TestMultiInference: regress_x_to_y and classify_x_to_y on x = 2.0.
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")):
        task = request.tasks.add()
        task.model_spec.name = model_name
        task.model_spec.signature_name = signature
        task.method_name = f"tensorflow/serving/{method}"
    request.input.example_list.examples.append(_example(x=2.0))
    return stub.MultiInference(request, TIMEOUT)


def _metadata(stub, model_name: str, version: int | None = None):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model_name
    if version is not None:
        request.model_spec.version.value = version
    request.metadata_field.append("signature_def")
    return stub.GetModelMetadata(request, TIMEOUT)


def _expected_signature_map(path: Path):
    expected = json.loads(path.read_text())
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    json_format.ParseDict(expected["metadata"]["signature_def"], signature_map)
    return expected, signature_map


def _assert_metadata_matches(stub, rest_url: str, model_name: str, reference: Path, version: int | None = None) -> None:
    """GetModelMetadata over gRPC and REST equals upstream's JSON (bytes of the SignatureDefMap; the JSON object)."""
    expected, expected_map = _expected_signature_map(reference)
    response = _metadata(stub, model_name, version)
    assert list(response.metadata) == ["signature_def"]
    assert response.metadata["signature_def"].type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    served = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(served)
    assert served.SerializeToString(deterministic=True) == expected_map.SerializeToString(deterministic=True)
    url = f"{rest_url}/v1/models/{model_name}" + (f"/versions/{version}" if version is not None else "") + "/metadata"
    got = httpx.get(url, timeout=TIMEOUT).json()
    # Upstream compares the JSON objects (SortedObject / CompareJson); the served name is ours.
    expected["model_spec"]["name"] = model_name
    assert got == expected


# ---------------------------------------------------------------------- good_model_config.txt


def test_good_model_config_predicts_with_and_without_output_filter(good):
    # Upstream test testGoodModelConfig.
    stub, _ = _stub(good)
    for specify_output in (True, False):
        _verify_predict(stub, "half_plus_two", 3.0, specify_output=specify_output)
        _verify_predict(stub, "half_plus_three", 4.0, specify_output=specify_output)


def test_classify_regress_and_multi_inference_on_the_tf1_model(good):
    # Upstream tests testClassify, testRegress, testMultiInference (TF1 model: one tf_example:0 input).
    stub, _ = _stub(good)
    result = _classify(stub, "half_plus_two")
    assert [[c.score for c in row.classes] for row in result.result.classifications] == [[3.0]]
    assert (result.model_spec.signature_name, result.model_spec.version.value) == ("classify_x_to_y", VERSION)
    result = _regress(stub, "half_plus_two")
    assert [r.value for r in result.result.regressions] == [3.0]
    assert (result.model_spec.signature_name, result.model_spec.version.value) == ("regress_x_to_y", VERSION)
    regression, classification = _multi_inference(stub, "half_plus_two").results
    assert regression.regression_result.regressions[0].value == 3.0
    assert classification.classification_result.classifications[0].classes[0].score == 3.0
    for result, signature in ((regression, "regress_x_to_y"), (classification, "classify_x_to_y")):
        assert (result.model_spec.name, result.model_spec.signature_name, result.model_spec.version.value) == (
            "half_plus_two", signature, VERSION)
    # half_plus_three's regress signature is keyed by the method name itself (spec §10).
    assert [r.value for r in _regress(stub, "half_plus_three", "tensorflow/serving/regress").result.regressions] == [4.0]


def test_rest_apis_answer_as_upstream_expects(good):
    rest = good.rest_url
    # Upstream tests testPredictREST, testPredictColumnarREST, testClassifyREST, testRegressREST.
    post = lambda verb, body: httpx.post(f"{rest}/v1/models/half_plus_two:{verb}", json=body, timeout=TIMEOUT).json()  # noqa: E731
    assert post("predict", {"instances": [2.0, 3.0, 4.0]}) == {"predictions": [3.0, 3.5, 4.0]}
    assert post("predict", {"inputs": [2.0, 3.0, 4.0]}) == {"outputs": [3.0, 3.5, 4.0]}
    assert post("classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}) == {"results": [[["", 3.0]]]}
    assert post("regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}) == {"results": [3.0]}
    three = httpx.post(f"{rest}/v1/models/half_plus_three:predict", json={"instances": [2.0]}, timeout=TIMEOUT).json()
    assert three == {"predictions": [4.0]}
    # Upstream test testGetStatusREST.
    assert httpx.get(f"{rest}/v1/models/half_plus_two", timeout=TIMEOUT).json() == {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def test_status_and_metadata(good, testdata: Path):
    # Upstream tests testGetModelStatus, testGetModelMetadata, testGetModelMetadataREST
    # (half_plus_two_model_metadata.json describes saved_model_half_plus_two_cpu).
    stub, models = _stub(good)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two"
    (status,) = models.GetModelStatus(request, TIMEOUT).model_version_status
    assert (status.version, status.status.error_code) == (VERSION, 0)
    response = _metadata(stub, "half_plus_two")
    assert (response.model_spec.name, response.model_spec.version.value) == ("half_plus_two", VERSION)
    _assert_metadata_matches(stub, good.rest_url, "half_plus_two", testdata / "half_plus_two_model_metadata.json")


def test_batching_and_monitoring_configs_are_in_force(good):
    stub, _ = _stub(good)
    _verify_predict(stub, "half_plus_two", 3.0)
    # Upstream test testPrometheusEndpoint: the page monitoring_config.txt names has metric types.
    page = httpx.get(f"{good.rest_url}/monitoring/prometheus/metrics", timeout=TIMEOUT).text
    assert "# TYPE" in page
    # batching_config.txt names no thread pool, so TF's default name applies; requests went
    # through the batching session (its counters exist only once a batch ran).
    assert ':tensorflow:serving:batching_session:queuing_latency_count{thread_pool_name="batch_threads"}' in page
    runs = [line for line in page.splitlines() if line.startswith(":tensorflow:serving:batching_session:wrapped_run_count")]
    assert runs and float(runs[0].split()[-1]) >= 1


# ---------------------------------------------------------------------- every other SavedModel


def test_tf2_model_serves_every_api(others, testdata: Path):
    # Upstream tests testClassifyTf2, testRegressTf2, testMultiInferenceTf2 on
    # saved_model_half_plus_two_tf2_cpu, whose signatures each have their own input placeholder.
    stub, _ = _stub(others)
    _verify_predict(stub, "half_plus_two_tf2", 3.0)
    assert [[c.score for c in row.classes] for row in _classify(stub, "half_plus_two_tf2").result.classifications] == [[3.0]]
    assert [r.value for r in _regress(stub, "half_plus_two_tf2").result.regressions] == [3.0]
    regression, classification = _multi_inference(stub, "half_plus_two_tf2").results
    assert regression.regression_result.regressions[0].value == 3.0
    assert classification.classification_result.classifications[0].classes[0].score == 3.0
    # GetModelMetadata copies the MetaGraph's SignatureDefs (get_model_metadata_impl.cc), so the
    # served map is saved_model.pb's, byte for byte.
    from tfstack.serving.server._servable import read_meta_graph

    served = get_model_metadata_pb2.SignatureDefMap()
    _metadata(stub, "half_plus_two_tf2").metadata["signature_def"].Unpack(served)
    on_disk = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in read_meta_graph(testdata / "saved_model_half_plus_two_tf2_cpu" / "00000123", ["serve"]).signature_def.items():
        on_disk.signature_def[key].CopyFrom(signature)
    assert served.SerializeToString(deterministic=True) == on_disk.SerializeToString(deterministic=True)
    # saved_model_half_plus_two_tf2_2_versions_metadata.json has this model's signatures, but no
    # upstream test reads it any more and it predates SignatureDef `defaults` (this export
    # declares x's default, upstream commit 65b13b76 added only some `"defaults": {}`), so its
    # entries are compared without that field: the REST rendering of every TensorInfo matches.
    expected, _ = _expected_signature_map(testdata / "saved_model_half_plus_two_tf2_2_versions_metadata.json")
    expected_signatures = expected["metadata"]["signature_def"]["signature_def"]
    rest = httpx.get(f"{others.rest_url}/v1/models/half_plus_two_tf2/metadata", timeout=TIMEOUT).json()
    got = rest["metadata"]["signature_def"]["signature_def"]
    assert set(got) == set(expected_signatures)
    for key, signature in expected_signatures.items():
        for field in ("inputs", "outputs", "method_name"):
            assert got[key][field] == signature[field], (key, field)
    assert got["serving_default"]["defaults"]["x"]["float_val"] == [0.0]
    # With that default, a Predict may leave x out (predict_util.cc, saved_model::GetInputValues).
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two_tf2"
    assert list(stub.Predict(request, TIMEOUT).outputs["y"].float_val) == [2.0]


def test_counter_state_lives_in_the_session(others):
    # predict_impl_test.cc PredictionWithCustomizedSignatures: get 0, incr 1, reset 0, incr 1,
    # incr_counter_by(3) 4; then get reads the state the previous calls left.
    stub, _ = _stub(others)

    def call(signature: str, **inputs: float) -> float:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "counter"
        request.model_spec.signature_name = signature
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(value, dtype=tf.float32))
        response = stub.Predict(request, TIMEOUT)
        output = response.outputs["output"]
        assert output.dtype == tf.float32.as_datatype_enum and not output.tensor_shape.dim  # a scalar, as upstream
        return output.float_val[0]

    assert call("reset_counter") == 0.0  # the test order below must not depend on earlier tests
    assert call("get_counter") == 0.0
    assert call("incr_counter") == 1.0
    assert call("reset_counter") == 0.0
    assert call("incr_counter") == 1.0
    assert call("incr_counter_by", delta=3.0) == 4.0
    assert call("get_counter") == 4.0
    # The REST front end reaches the same Session state (a signature without inputs cannot be
    # called over REST: json_tensor.cc's "Failed to get input map for signature", as here).
    url = f"{others.rest_url}/v1/models/counter:predict"
    rest = httpx.post(url, json={"signature_name": "incr_counter_by", "inputs": {"delta": 1.0}}, timeout=TIMEOUT)
    assert rest.json() == {"outputs": 5.0}
    assert call("get_counter") == 5.0
    refused = httpx.post(url, json={"signature_name": "get_counter", "inputs": {}}, timeout=TIMEOUT)
    assert (refused.status_code, refused.json()) == (400, {"error": "Failed to get input map for signature: get_counter"})


def test_both_versions_of_2_versions_serve(others, testdata: Path):
    stub, _ = _stub(others)
    name = "saved_model_half_plus_two_2_versions"
    for version in (123, 124):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.model_spec.version.value = version
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([2.0], dtype=tf.float32))
        response = stub.Predict(request, TIMEOUT)
        assert list(response.outputs["y"].float_val) == [3.0] and response.model_spec.version.value == version
    _verify_predict(stub, name, 3.0, version=124)  # latest
    # http_rest_api_handler_test.cc GetModelMetadata: this JSON, for version 123 of this model name.
    _assert_metadata_matches(stub, others.rest_url, name, testdata / "saved_model_half_plus_two_2_versions_metadata.json",
                             version=123)


@pytest.mark.parametrize("model_name", ["with_config", "with_empty_config", "mlmd"])
def test_variants_of_the_tf1_model_serve(others, model_name):
    # saved_model_config.pb's session overrides (grappler options) and assets.extra/mlmd_uuid
    # do not change what the model computes.
    stub, _ = _stub(others)
    _verify_predict(stub, model_name, 3.0)
    assert [r.value for r in _regress(stub, model_name).result.regressions] == [3.0]


def test_bad_model_fails_to_load_while_the_others_keep_serving(others, testdata: Path):
    # bad_half_plus_two is a pre-SavedModel SessionBundle export: TF Serving refuses it with
    # UNIMPLEMENTED (session_bundle/oss/session_bundle_util.cc), retries the load
    # (--max_num_load_retries), and the reload reports it (server_core.cc WaitUntilModelsAvailable).
    stub, models = _stub(others)
    config = model_management_pb2.ReloadConfigRequest()
    for name, base, extra in [*others.entries, ("bad", testdata / "bad_half_plus_two", "")]:
        entry = config.config.model_config_list.config.add(name=name, base_path=str(base), model_platform="tensorflow")
        if extra:
            entry.model_version_policy.all.SetInParent()
    with pytest.raises(grpc.RpcError) as info:
        models.HandleReloadConfigRequest(config, TIMEOUT)
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert info.value.details() == (
        "1 model(s) did not become available: {{name: bad version: 123} due to error: "
        "UNIMPLEMENTED: Session Bundle is deprecated and removed.}, }"
    )
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "bad"
    (status,) = models.GetModelStatus(request, TIMEOUT).model_version_status
    assert status.state == get_model_status_pb2.ModelVersionStatus.END
    assert (status.status.error_code, status.status.error_message) == (
        grpc.StatusCode.UNIMPLEMENTED.value[0], "Session Bundle is deprecated and removed.")
    assert "Retrying load on servable version {name: bad version: 123} retry: 1" in others.log_text()
    _verify_predict(stub, "half_plus_two_tf2", 3.0)
    _verify_predict(stub, "saved_model_half_plus_two_2_versions", 3.0, version=124)


def test_a_bad_model_alone_stops_startup_with_a_clear_error(tmp_path: Path, testdata: Path):
    # TF Serving does not open its ports until the initial models load; a failure ends main with -1.
    server = launch(tmp_path, "--model_name=bad", f"--model_base_path={testdata / 'bad_half_plus_two'}",
                    "--max_num_load_retries=0", rest=False)
    try:
        code = server.process.wait(120)
    finally:
        server.stop()
    assert code == 255
    assert ("Failed to start server. Error: UNKNOWN: 1 servable(s) did not become available: "
            "{{name: bad version: 123} due to error: UNIMPLEMENTED: Session Bundle is deprecated and removed.}, }"
            ) in server.log_text()


# ---------------------------------------------------------------------- TF Lite


def test_tflite_models_predict(tflite):
    # Upstream tests testPredictOnTfLite and testPredictWithSignatureDefOnTfLite.
    stub, _ = _stub(tflite)
    for model_name in ("tflite", "tflite_sigdef"):
        _verify_predict(stub, model_name, 3.0, specify_output=False)
        rest = httpx.post(f"{tflite.rest_url}/v1/models/{model_name}:predict", json={"instances": [[2.0], [4.0]]},
                          timeout=TIMEOUT)
        assert rest.json() == {"predictions": [[3.0], [4.0]]}


def test_tflite_signatures_are_those_tf_serving_derives(tflite):
    # tflite_session.cc: without a SignatureDef in the model, one serving_default signature
    # keyed by the tensor names (":0" dropped); with one, its aliases, pointing at TF Lite tensors.
    stub, _ = _stub(tflite)
    generated = get_model_metadata_pb2.SignatureDefMap()
    _metadata(stub, "tflite").metadata["signature_def"].Unpack(generated)
    (name,) = generated.signature_def
    signature = generated.signature_def[name]
    assert name == "serving_default" and signature.method_name == "tensorflow/serving/predict"
    assert (signature.inputs["x"].name, signature.outputs["y"].name) == ("x", "y")
    assert [d.size for d in signature.inputs["x"].tensor_shape.dim] == [1, 1]
    stored = get_model_metadata_pb2.SignatureDefMap()
    _metadata(stub, "tflite_sigdef").metadata["signature_def"].Unpack(stored)
    sig = stored.signature_def["serving_default"]
    assert (sig.inputs["x"].name, sig.outputs["y"].name) == ("tflite_input", "y")
