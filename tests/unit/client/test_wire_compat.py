"""tfstack's own protos are byte-compatible with tensorflow-serving-api's (TensorFlow needed here).

Each message the client sends or reads is filled with every field the client uses, serialized
with one implementation, parsed with the other, and compared field by field.
"""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import json_format

from tfstack.client._proto import tfstack_serving_pb2 as ours

tf_apis = pytest.importorskip("tensorflow_serving.apis.predict_pb2")  # noqa: F841 (the full install has it)

from tensorflow.core.example import example_pb2  # noqa: E402
from tensorflow.core.framework import tensor_pb2, types_pb2  # noqa: E402
from tensorflow.core.protobuf import meta_graph_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    model_management_pb2,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402


def _model_spec(spec, *, label: bool) -> None:
    spec.name = "half_plus_two"
    spec.signature_name = "serving_default"
    if label:
        spec.version_label = "canary"
    else:
        spec.version.value = 123


def _tensor(t) -> None:
    t.dtype = 1
    t.tensor_shape.dim.add(size=2, name="batch")
    t.tensor_shape.dim.add(size=-1)
    t.float_val.extend([1.5, -2.0])
    t.tensor_content = np.arange(3, dtype="<f4").tobytes()
    t.string_val.extend([b"a", b"\xff"])
    t.int64_val.extend([1, -(2**40)])
    t.int_val.extend([7])
    t.double_val.extend([0.25])
    t.bool_val.extend([True, False])
    t.half_val.extend([15360])
    t.uint32_val.extend([2**32 - 1])
    t.uint64_val.extend([2**64 - 1])
    t.scomplex_val.extend([1.0, 2.0])
    t.dcomplex_val.extend([3.0, 4.0])


def _example(e) -> None:
    f = e.features.feature
    f["x"].float_list.value.extend([2.0, 3.5])
    f["n"].int64_list.value.extend([1, 2**50])
    f["s"].bytes_list.value.extend([b"abc", b"\x00"])


def _predict_request(m, label=False):
    _model_spec(m.model_spec, label=label)
    _tensor(m.inputs["x"])
    m.output_filter.extend(["y", "z"])


def _predict_response(m):
    _model_spec(m.model_spec, label=False)
    _tensor(m.outputs["y"])


def _classification_request(m, context=False):
    _model_spec(m.model_spec, label=True)
    if context:
        _example(m.input.example_list_with_context.context)
        _example(m.input.example_list_with_context.examples.add())
    else:
        _example(m.input.example_list.examples.add())
        _example(m.input.example_list.examples.add())


def _classification_response(m):
    _model_spec(m.model_spec, label=False)
    c = m.result.classifications.add()
    c.classes.add(label="cat", score=0.75)
    c.classes.add(label="dog", score=0.25)


def _regression_response(m):
    _model_spec(m.model_spec, label=False)
    m.result.regressions.add(value=3.5)
    m.result.regressions.add(value=-1.0)


def _metadata_request(m):
    _model_spec(m.model_spec, label=True)
    m.metadata_field.append("signature_def")


def _signature_def_map(m):
    sig = m.signature_def["serving_default"]
    sig.method_name = "tensorflow/serving/predict"
    sig.inputs["x"].name = "x:0"
    sig.inputs["x"].dtype = 1
    sig.inputs["x"].tensor_shape.dim.add(size=-1)
    sig.outputs["y"].name = "y:0"
    sig.outputs["y"].dtype = 7
    sig.outputs["y"].tensor_shape.unknown_rank = True
    sig.inputs["sp"].coo_sparse.values_tensor_name = "v:0"
    sig.inputs["sp"].coo_sparse.indices_tensor_name = "i:0"
    sig.inputs["sp"].coo_sparse.dense_shape_tensor_name = "d:0"
    _tensor(sig.defaults["x"])


def _status_request(m):
    m.model_spec.name = "half_plus_two"
    m.model_spec.version.value = 7


def _status_response(m):
    s = m.model_version_status.add(version=124, state=30)
    s.status.error_code = 0
    s = m.model_version_status.add(version=123, state=50)
    s.status.error_code = 5
    s.status.error_message = "Could not load"


CASES = [
    ("PredictRequest", ours.PredictRequest, predict_pb2.PredictRequest, _predict_request),
    ("PredictRequest/label", ours.PredictRequest, predict_pb2.PredictRequest, lambda m: _predict_request(m, label=True)),
    ("PredictResponse", ours.PredictResponse, predict_pb2.PredictResponse, _predict_response),
    ("ClassificationRequest", ours.ClassificationRequest, classification_pb2.ClassificationRequest, _classification_request),
    ("ClassificationRequest/context", ours.ClassificationRequest, classification_pb2.ClassificationRequest, lambda m: _classification_request(m, True)),
    ("ClassificationResponse", ours.ClassificationResponse, classification_pb2.ClassificationResponse, _classification_response),
    ("RegressionRequest", ours.RegressionRequest, regression_pb2.RegressionRequest, _classification_request),
    ("RegressionResponse", ours.RegressionResponse, regression_pb2.RegressionResponse, _regression_response),
    ("GetModelMetadataRequest", ours.GetModelMetadataRequest, get_model_metadata_pb2.GetModelMetadataRequest, _metadata_request),
    ("SignatureDefMap", ours.SignatureDefMap, get_model_metadata_pb2.SignatureDefMap, _signature_def_map),
    ("GetModelStatusRequest", ours.GetModelStatusRequest, get_model_status_pb2.GetModelStatusRequest, _status_request),
    ("GetModelStatusResponse", ours.GetModelStatusResponse, get_model_status_pb2.GetModelStatusResponse, _status_response),
    ("TensorProto", ours.TensorProto, tensor_pb2.TensorProto, _tensor),
    ("Example", ours.Example, example_pb2.Example, _example),
    ("Input", ours.Input, input_pb2.Input, lambda m: _example(m.example_list.examples.add())),
    ("ModelSpec", ours.ModelSpec, model_pb2.ModelSpec, lambda m: _model_spec(m, label=False)),
    ("SignatureDef", ours.SignatureDef, meta_graph_pb2.SignatureDef, lambda m: _signature_def_map_single(m)),
]


def _model_server_config(m):
    entry = m.model_config_list.config.add(name="iris", base_path="/models/iris", model_platform="tensorflow")
    entry.model_version_policy.specific.versions.extend([1, 2])
    entry.version_labels["stable"] = 1
    entry.version_labels["canary"] = 2
    entry.logging_config.log_collector_config.type = "file"
    entry.logging_config.log_collector_config.filename_prefix = "/logs/iris"
    entry.logging_config.sampling_config.sampling_rate = 0.5
    entry.logging_config.sampling_config.attributes = 1
    task = entry.logging_config.sampling_config.per_task_sampling_configs.add(dc="a", sampling_rate=0.1)
    task.task_index = 0  # proto3 optional: presence of a zero survives the round trip
    other = m.model_config_list.config.add(name="old", base_path="/models/old", model_type=1)
    other.model_version_policy.latest.num_versions = 2
    m.model_config_list.config.add(name="all", base_path="/models/all").model_version_policy.all.SetInParent()


def _reload_request(m):
    _model_server_config(m.config)
    m.metric_names.append("/tensorflow/serving/model_config_reload")


def _reload_response(m):
    m.status.error_code = 9
    m.status.error_message = "Request to assign label to version 2 of model iris, which is not currently available"
    m.metric.add(name="/tensorflow/serving/model_config_reload", int64_value_increase=1)


CASES += [
    ("ModelServerConfig", ours.ModelServerConfig, model_server_config_pb2.ModelServerConfig, _model_server_config),
    ("ReloadConfigRequest", ours.ReloadConfigRequest, model_management_pb2.ReloadConfigRequest, _reload_request),
    ("ReloadConfigResponse", ours.ReloadConfigResponse, model_management_pb2.ReloadConfigResponse, _reload_response),
]


def _signature_def_map_single(m):
    m.method_name = "tensorflow/serving/regress"
    m.inputs["inputs"].name = "tf_example:0"
    m.inputs["inputs"].dtype = 7


def _as_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


@pytest.mark.parametrize("name, ours_cls, official_cls, fill", CASES, ids=[c[0] for c in CASES])
def test_round_trip_both_directions(name, ours_cls, official_cls, fill):
    mine, theirs = ours_cls(), official_cls()
    fill(mine)
    fill(theirs)
    # ours -> official
    parsed_official = official_cls.FromString(mine.SerializeToString())
    assert parsed_official == theirs
    # official -> ours
    parsed_mine = ours_cls.FromString(theirs.SerializeToString())
    assert _as_dict(parsed_mine) == _as_dict(mine)
    # deterministic serialisation is byte-identical
    assert mine.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)


def test_metadata_response_any_parses_with_our_signature_def_map():
    official = get_model_metadata_pb2.GetModelMetadataResponse()
    official.model_spec.name = "m"
    official.model_spec.version.value = 3
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    _signature_def_map(sig_map)
    official.metadata["signature_def"].Pack(sig_map)
    mine = ours.GetModelMetadataResponse.FromString(official.SerializeToString())
    assert mine.metadata["signature_def"].type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    parsed = ours.SignatureDefMap.FromString(mine.metadata["signature_def"].value)
    assert parsed.signature_def["serving_default"].inputs["x"].name == "x:0"


def test_a_models_config_text_file_reads_the_same_with_ours_and_tensorflow_servings():
    """models.config is shared by rollout (our messages) and the servers (TF Serving's): the
    same text must mean the same config, and what rollout writes must parse as TF Serving's."""
    from google.protobuf import text_format

    official = model_server_config_pb2.ModelServerConfig()
    _model_server_config(official)
    text = text_format.MessageToString(official)
    mine = text_format.Parse(text, ours.ModelServerConfig())
    assert mine.SerializeToString(deterministic=True) == official.SerializeToString(deterministic=True)
    assert text_format.MessageToString(mine) == text
    assert text_format.Parse(text_format.MessageToString(mine), model_server_config_pb2.ModelServerConfig()) == official


def test_enums_match():
    for value in types_pb2.DataType.DESCRIPTOR.values:
        if value.number <= 23:
            assert ours.DataType.Name(value.number) == value.name
    official_state = get_model_status_pb2.ModelVersionStatus.State
    for name in ("UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING", "END"):
        assert ours.ModelVersionStatus.State.Value(name) == official_state.Value(name)
    for value in model_server_config_pb2.ModelType.DESCRIPTOR.values:
        assert ours.ModelType.Name(value.number) == value.name


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([1.5, np.nan, np.inf], dtype=np.float64),
        np.array([[1, -2]], dtype=np.int32),
        np.array([2**40], dtype=np.int64),
        np.array([1, 255], dtype=np.uint8),
        np.array([-3], dtype=np.int8),
        np.array([7], dtype=np.int16),
        np.array([65535], dtype=np.uint16),
        np.array([2**32 - 1], dtype=np.uint32),
        np.array([2**64 - 1], dtype=np.uint64),
        np.array([True, False]),
        np.array([0.5, -1.0], dtype=np.float16),
        np.array([1 + 2j], dtype=np.complex64),
        np.array([1 - 2j], dtype=np.complex128),
        np.array([b"a", b"\xff\x00"], dtype=object),
        np.array(["h\u00e9", "x"]),
        np.array(3.0, dtype=np.float32),
        np.zeros((0, 4), dtype=np.float32),
    ],
    ids=lambda a: f"{a.dtype}{list(a.shape)}",
)
def test_tensors_match_tensorflows_make_ndarray_and_make_tensor_proto(array):
    import tensorflow as tf

    from tfstack.client._tensors import to_ndarray, to_tensor_proto

    # ours -> TF
    official = tensor_pb2.TensorProto.FromString(to_tensor_proto(array).SerializeToString())
    expected = np.array([s.encode() for s in array.reshape(-1)]).reshape(array.shape) if array.dtype.kind == "U" else array
    got = tf.make_ndarray(official)
    if array.dtype.kind in "OU":
        assert got.tolist() == np.asarray(expected, dtype=object).tolist()
    else:
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == array.dtype
    # TF (typed fields when small, tensor_content when not) -> ours
    back = to_ndarray(ours.TensorProto.FromString(tf.make_tensor_proto(array).SerializeToString()))
    assert back.shape == array.shape
    if array.dtype.kind in "OU":
        assert back.tolist() == np.asarray(expected, dtype=object).tolist()
    else:
        np.testing.assert_array_equal(back, array)
        assert back.dtype == array.dtype


def test_typed_fields_are_read_like_tensorflow():
    import tensorflow as tf

    from tfstack.client._tensors import to_ndarray

    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=2)
    proto.float_val.extend([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(to_ndarray(ours.TensorProto.FromString(proto.SerializeToString())), tf.make_ndarray(proto))
    # One value fills the whole tensor, as in TF.
    del proto.float_val[1:]
    np.testing.assert_array_equal(to_ndarray(ours.TensorProto.FromString(proto.SerializeToString())), tf.make_ndarray(proto))
    half = tensor_pb2.TensorProto(dtype=types_pb2.DT_HALF, half_val=[15360, 16384])
    half.tensor_shape.dim.add(size=2)
    np.testing.assert_array_equal(to_ndarray(ours.TensorProto.FromString(half.SerializeToString())), tf.make_ndarray(half))
