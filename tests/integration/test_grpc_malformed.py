"""Hundreds of malformed gRPC requests: client errors stay client errors and the server keeps serving."""

from __future__ import annotations

import random

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.integration.conftest import MODEL_NAME

# Only request bytes that do not even parse as the request message may get grpc's own INTERNAL.
_SERVER_FAULTS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}


def _random_tensor(rng: random.Random) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto()
    proto.dtype = rng.choice([0, 1, 2, 3, 7, 9, 10, 19, 20, 21, 14, 99])
    for _ in range(rng.randint(0, 4)):
        proto.tensor_shape.dim.add(size=rng.choice([-5, -1, 0, 1, 2, 3, 7, 10**6, 10**12, 2**62]))
    if rng.random() < 0.3:
        proto.tensor_shape.unknown_rank = True
    kind = rng.randint(0, 5)
    if kind == 0:
        proto.tensor_content = rng.randbytes(rng.randint(0, 64))
    elif kind == 1:
        proto.float_val.extend(rng.uniform(-1e9, 1e9) for _ in range(rng.randint(0, 9)))
    elif kind == 2:
        proto.string_val.extend(rng.randbytes(rng.randint(0, 9)) for _ in range(rng.randint(0, 4)))
    elif kind == 3:
        proto.int64_val.extend(rng.randint(-(2**63), 2**63 - 1) for _ in range(rng.randint(0, 5)))
    elif kind == 4:
        proto.half_val.extend(rng.randint(0, 65535) for _ in range(rng.randint(0, 5)))
    return proto


def test_hundreds_of_bad_requests(grpc_channel):
    rng = random.Random(1234)
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
    models = model_service_pb2_grpc.ModelServiceStub(grpc_channel)
    raw_predict = grpc_channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    seen: dict[str, int] = {}
    for i in range(400):
        choice = i % 6
        try:
            if choice == 0:  # bytes that are not a PredictRequest
                try:
                    raw_predict(rng.randbytes(rng.randint(1, 200)), timeout=30)
                except grpc.RpcError as exc:
                    seen[exc.code().name] = seen.get(exc.code().name, 0) + 1
                continue
            if choice in (1, 2):
                request = predict_pb2.PredictRequest()
                request.model_spec.name = rng.choice([MODEL_NAME, "", "nope", "x" * 3000])
                request.model_spec.signature_name = rng.choice(["", "serving_default", "classify_x_to_y", "??"])
                if rng.random() < 0.3:
                    request.model_spec.version.value = rng.choice([-1, 0, 123, 2**63 - 1])
                for _ in range(rng.randint(0, 3)):
                    request.inputs[rng.choice(["x", "y", "inputs", ""])].CopyFrom(_random_tensor(rng))
                request.output_filter.extend(rng.sample(["y", "z", "y"], rng.randint(0, 3)))
                predictions.Predict(request, timeout=30)
            elif choice == 3:
                request = classification_pb2.ClassificationRequest() if rng.random() < 0.5 else regression_pb2.RegressionRequest()
                request.model_spec.name = MODEL_NAME
                request.model_spec.signature_name = rng.choice(["", "classify_x_to_y", "regress_x_to_y", "regress_x2_to_y3"])
                for _ in range(rng.randint(0, 3)):
                    example = request.input.example_list.examples.add()
                    feature = example.features.feature[rng.choice(["x", "x2", "q"])]
                    rng.choice([
                        lambda: feature.float_list.value.extend([rng.random()] * rng.randint(0, 3)),
                        lambda: feature.int64_list.value.append(7),
                        lambda: feature.bytes_list.value.append(b"zz"),
                    ])()
                call = predictions.Classify if isinstance(request, classification_pb2.ClassificationRequest) else predictions.Regress
                call(request, timeout=30)
            elif choice == 4:
                request = get_model_metadata_pb2.GetModelMetadataRequest()
                if rng.random() < 0.8:
                    request.model_spec.name = rng.choice([MODEL_NAME, "nope"])
                request.metadata_field.extend(rng.sample(["signature_def", "x", ""], rng.randint(0, 2)))
                predictions.GetModelMetadata(request, timeout=30)
            else:
                request = get_model_status_pb2.GetModelStatusRequest()
                if rng.random() < 0.8:
                    request.model_spec.name = rng.choice([MODEL_NAME, "nope", ""])
                    if rng.random() < 0.5:
                        request.model_spec.version.value = rng.choice([1, 123, -4])
                models.GetModelStatus(request, timeout=30)
            seen["OK"] = seen.get("OK", 0) + 1
        except grpc.RpcError as exc:
            seen[exc.code().name] = seen.get(exc.code().name, 0) + 1
            assert exc.code() not in _SERVER_FAULTS, (i, exc.code(), exc.details())

    assert seen.get("INVALID_ARGUMENT", 0) > 50 and seen.get("NOT_FOUND", 0) > 10, seen
    # and it still answers correctly
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([2.0], np.float32)))
    assert list(predictions.Predict(request, timeout=30).outputs["y"].float_val) == [3.0]
