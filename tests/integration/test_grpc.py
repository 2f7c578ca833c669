"""gRPC conformance against a real server, through the official tensorflow-serving-api stubs (spec §3, §10)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
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

from tests.integration.conftest import MODEL_NAME, VERSION


@pytest.fixture(scope="module")
def predictions(grpc_channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)


@pytest.fixture(scope="module")
def models(grpc_channel):
    return model_service_pb2_grpc.ModelServiceStub(grpc_channel)


def _predict_request(x=(2.0,), *, name=MODEL_NAME, signature="", dtype=tf.float32, alias="x"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if signature:
        request.model_spec.signature_name = signature
    request.inputs[alias].CopyFrom(tf.make_tensor_proto(list(x), dtype=dtype))
    return request


def _example(**features):
    example = tf.train.Example()
    for key, value in features.items():
        if isinstance(value, int):
            example.features.feature[key].int64_list.value.append(value)
        else:
            example.features.feature[key].float_list.value.append(value)
    return example


def _expect_error(call, request, code: grpc.StatusCode, text: str):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    assert info.value.code() == code, info.value.details()
    assert text in info.value.details()
    return info.value.details()


def test_predict_half_plus_two(predictions):
    for output_filter in ([], ["y"]):
        request = _predict_request()
        request.output_filter.extend(output_filter)
        response = predictions.Predict(request, timeout=30)
        y = response.outputs["y"]
        assert y.dtype == tf.float32.as_datatype_enum and list(y.float_val) == [3.0]  # typed field, TF Serving's default
        assert not y.tensor_content
        assert response.model_spec.name == MODEL_NAME
        assert response.model_spec.signature_name == "serving_default"
        assert response.model_spec.version.value == VERSION


def test_predict_by_version_and_batch(predictions):
    request = _predict_request([1.0, 2.0, 5.0])
    request.model_spec.version.value = VERSION
    response = predictions.Predict(request, timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [2.5, 3.0, 4.5])


def test_classify_regress_and_multi_inference(predictions):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.append(_example(x=2.0))
    response = predictions.Classify(request, timeout=30)
    (classes,) = response.result.classifications
    assert [(c.label, c.score) for c in classes.classes] == [("", 3.0)]
    assert (response.model_spec.signature_name, response.model_spec.version.value) == ("classify_x_to_y", VERSION)

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.extend([_example(x=2.0), _example(x=80.0)])
    response = predictions.Regress(request, timeout=30)
    assert [r.value for r in response.result.regressions] == [3.0, 42.0]

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "regress_x2_to_y3"
    request.input.example_list_with_context.context.CopyFrom(_example(x2=4.0))
    request.input.example_list_with_context.examples.append(_example(x=1.0))
    assert [r.value for r in predictions.Regress(request, timeout=30).result.regressions] == [5.0]

    request = inference_pb2.MultiInferenceRequest()
    task = request.tasks.add()
    task.model_spec.name = MODEL_NAME
    task.model_spec.signature_name = "regress_x_to_y"
    task.method_name = "tensorflow/serving/regress"
    request.input.example_list.examples.append(_example(x=2.0))
    (result,) = predictions.MultiInference(request, timeout=30).results
    assert result.regression_result.regressions[0].value == 3.0
    assert (result.model_spec.name, result.model_spec.version.value) == (MODEL_NAME, VERSION)


def test_multi_inference_across_tf2_signatures_feeds_each_input(predictions):
    # TF2 exports give every signature its own input placeholder. TF Serving 2.x collects the
    # set of input tensor names and feeds the same serialized examples to each
    # (servables/tensorflow/multi_inference.cc TensorFlowMultiInferenceRunner::Infer); its
    # model_servers/tensorflow_model_server_test.py testMultiInferenceTf2 expects 3.0 from both.
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")):
        task = request.tasks.add()
        task.model_spec.name = MODEL_NAME
        task.model_spec.signature_name = signature
        task.method_name = f"tensorflow/serving/{method}"
    request.input.example_list.examples.append(_example(x=2.0))
    regression, classification = predictions.MultiInference(request, timeout=30).results
    assert [r.value for r in regression.regression_result.regressions] == [3.0]
    assert [c.score for c in classification.classification_result.classifications[0].classes] == [3.0]
    assert [r.model_spec.signature_name for r in (regression, classification)] == ["regress_x_to_y", "classify_x_to_y"]


def test_model_metadata(predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL_NAME
    request.metadata_field.append("signature_def")
    response = predictions.GetModelMetadata(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL_NAME, VERSION)
    assert response.model_spec.signature_name == ""
    assert list(response.metadata) == ["signature_def"]
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    x = signature_map.signature_def["serving_default"].inputs["x"]
    assert x.dtype == tf.float32.as_datatype_enum and x.name == "serving_default_x:0"
    assert "classify_x_to_y" in signature_map.signature_def and "__saved_model_init_op" in signature_map.signature_def


def test_model_status(models):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL_NAME
    (status,) = models.GetModelStatus(request, timeout=30).model_version_status
    assert status.version == VERSION
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0 and status.status.error_message == ""
    request.model_spec.version_label = "whatever"  # ignored by TF Serving (spec §1.4 quirk)
    assert len(models.GetModelStatus(request, timeout=30).model_version_status) == 1


def test_health_service(grpc_channel):
    stub = health_pb2_grpc.HealthStub(grpc_channel)
    for service in ("", "ModelService", "PredictionService"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


# ----------------------------------------------------------------- error catalogue (spec §3.4)

INVALID, NOT_FOUND, FAILED = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION


def _with_spec(**changes):
    request = _predict_request()
    for key, value in changes.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    return request


@pytest.mark.parametrize(
    ("request_factory", "code", "text"),
    [
        (lambda: _with_spec(name="intentionally_missing_model"), NOT_FOUND,
         "Servable not found for request: Latest(intentionally_missing_model)"),
        (lambda: _with_spec(version=7), NOT_FOUND, f"Servable not found for request: Specific({MODEL_NAME}, 7)"),
        (lambda: _with_spec(version_label="nope"), INVALID, "Unrecognized servable version label: nope"),
        (lambda: _with_spec(name=""), INVALID, "ModelSpec has no name specified."),
        (lambda: predict_pb2.PredictRequest(), INVALID, "Missing ModelSpec"),
        (lambda: _with_spec(signature_name="nope"), FAILED, 'Serving signature key "nope" not found.'),
        (lambda: _predict_request(alias="z"), INVALID,
         "Signature input alias: x(feed name: serving_default_x:0) not found in request"),
        (lambda: _predict_request(["a"], dtype=tf.string), INVALID, "Expects arg[0] to be float but string is provided"),
    ],
)
def test_predict_errors(predictions, request_factory, code, text):
    _expect_error(predictions.Predict, request_factory(), code, text)


def test_predict_input_count_and_output_filter_errors(predictions):
    request = _predict_request()
    request.inputs["extra"].CopyFrom(tf.make_tensor_proto([1.0]))
    _expect_error(predictions.Predict, request, INVALID,
                  "input size does not match signature: 2!=1 len({extra,x}) != len({x}). Sent extra: {extra}. Missing but required: {}.")
    request = _predict_request()
    request.output_filter.append("nope")
    _expect_error(predictions.Predict, request, INVALID,
                  "output tensor alias not found in signature: nope Outputs expected to be in the set {y}.")
    request = _predict_request()
    request.output_filter.extend(["y", "y"])
    _expect_error(predictions.Predict, request, INVALID, "duplicate output tensor alias: y")


def test_classify_regress_errors(predictions):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "nope"
    request.input.example_list.examples.append(_example(x=2.0))
    _expect_error(predictions.Classify, request, INVALID, "No signature was found with the name: nope")

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL_NAME  # serving_default has input x, not inputs
    request.input.example_list.examples.append(_example(x=2.0))
    _expect_error(predictions.Regress, request, INVALID, "No regression inputs found in SignatureDef: ")

    request.model_spec.signature_name = "regress_x_to_y"
    del request.input.example_list.examples[:]
    _expect_error(predictions.Regress, request, INVALID, "Input is empty.")

    request.input.example_list.examples.append(_example(x=2))  # int64 feature, model parses float
    _expect_error(predictions.Regress, request, INVALID, "Key: x")


def test_metadata_errors(predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL_NAME
    _expect_error(predictions.GetModelMetadata, request, INVALID,
                  "GetModelMetadataRequest must specify at least one metadata_field")
    request.metadata_field.append("signature_defs")
    _expect_error(predictions.GetModelMetadata, request, INVALID, "Metadata field signature_defs is not supported")
    _expect_error(predictions.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"]),
                  INVALID, "Missing ModelSpec")


def test_status_errors(models):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    _expect_error(models.GetModelStatus, request, NOT_FOUND, "Could not find any versions of model nope")
    request.model_spec.name = MODEL_NAME
    request.model_spec.version.value = 9
    _expect_error(models.GetModelStatus, request, NOT_FOUND, f"Could not find version 9 of model {MODEL_NAME}")


def test_multi_inference_errors(predictions):
    request = inference_pb2.MultiInferenceRequest()
    request.input.example_list.examples.append(_example(x=2.0))
    task = request.tasks.add()
    task.model_spec.name = MODEL_NAME
    task.model_spec.signature_name = "regress_x_to_y"
    task.method_name = "tensorflow/serving/predict"
    _expect_error(predictions.MultiInference, request, grpc.StatusCode.UNIMPLEMENTED,
                  "Unsupported signature method_name: tensorflow/serving/predict")
    task.method_name = "tensorflow/serving/regress"
    other = request.tasks.add()
    other.CopyFrom(task)
    other.model_spec.name = "other"
    _expect_error(predictions.MultiInference, request, INVALID,
                  "All ModelSpecs in a MultiInferenceRequest must access the same model name.")
    other.model_spec.name = MODEL_NAME
    _expect_error(predictions.MultiInference, request, INVALID, "Duplicate evaluation of signature: regress_x_to_y")


def test_reload_with_wrong_config_kind(models):
    request = model_management_pb2.ReloadConfigRequest()
    request.config.custom_model_config.type_url = "x"
    _expect_error(models.HandleReloadConfigRequest, request, INVALID,
                  "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is currently supported")


def test_long_error_messages_are_truncated(predictions):
    name = "m" * 2000
    details = _expect_error(predictions.Predict, _with_spec(name=name), NOT_FOUND, "Servable not found for request: Latest(m")
    assert details.endswith("...TRUNCATED") and len(details) == 1024 + len("...TRUNCATED")


def test_messages_larger_than_4mb(predictions):
    x = np.arange(2_000_000, dtype=np.float32)  # 8 MB in, 8 MB out
    request = _predict_request()
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    response = predictions.Predict(request, timeout=60)
    y = tf.make_ndarray(response.outputs["y"])
    assert y.shape == x.shape and y[-1] == 0.5 * x[-1] + 2


def test_deadline_exceeded(predictions):
    # gRPC keeps deadlines in whole milliseconds, so a tiny request can beat a 1 us deadline (a
    # fast server, TF Serving included, answers within the millisecond). A million-element
    # request takes far longer than that to decode, run and encode, so the deadline always wins.
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones(1_000_000, np.float32)))
    with pytest.raises(grpc.RpcError) as info:
        predictions.Predict(request, timeout=0.000001)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


# ----------------------------------------------------------------- TF Serving's testdata shape (TF1 graph)


def test_tf1_model_matches_tf_serving_testdata(predictions):
    from tests.integration.conftest import TF1_MODEL_NAME

    # testMultiInference: regress_x_to_y + classify_x_to_y over one tf_example:0 input, x=2.0 -> both 3.0
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")):
        task = request.tasks.add()
        task.model_spec.name = TF1_MODEL_NAME
        task.model_spec.signature_name = signature
        task.method_name = f"tensorflow/serving/{method}"
    request.input.example_list.examples.append(_example(x=2.0))
    regress_result, classify_result = predictions.MultiInference(request, timeout=30).results
    assert regress_result.regression_result.regressions[0].value == 3.0
    assert classify_result.classification_result.classifications[0].classes[0].score == 3.0
    assert classify_result.model_spec.signature_name == "classify_x_to_y"

    # Serving does not check the SignatureDef's static shape: x is [-1, 1], a [3] tensor works.
    response = predictions.Predict(_predict_request([2.0, 3.0, 4.0], name=TF1_MODEL_NAME), timeout=30)
    assert list(response.outputs["y"].float_val) == [3.0, 3.5, 4.0]

    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = TF1_MODEL_NAME
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    predictions.GetModelMetadata(metadata, timeout=30).metadata["signature_def"].Unpack(signature_map)
    x = signature_map.signature_def["serving_default"].inputs["x"]
    assert (x.name, [d.size for d in x.tensor_shape.dim]) == ("x:0", [-1, 1])
    assert signature_map.signature_def["classify_x_to_y"].method_name == "tensorflow/serving/classify"
    assert signature_map.signature_def["classify_x_to_y"].inputs["inputs"].name == "tf_example:0"
