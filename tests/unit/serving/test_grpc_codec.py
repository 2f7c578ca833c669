"""gRPC wire helpers: output tensors as TF Serving encodes them, request tensor parsing, channel args."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from tfstack.serving import Code, StatusError
from tfstack.serving.server.grpc._service import _truncate, ndarray_to_tensor_proto, parse_channel_arguments, tensor_proto_to_ndarray


@pytest.mark.parametrize(
    "dtype",
    [np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
     np.bool_, np.float16, np.complex64, np.complex128],
)
@pytest.mark.parametrize("tensor_content", [False, True])
def test_outputs_round_trip_through_tensorflow(dtype, tensor_content):
    array = (np.arange(6).reshape(2, 3) % 3).astype(dtype)
    proto = ndarray_to_tensor_proto(array, tensor_content=tensor_content)
    assert bool(proto.tensor_content) == tensor_content
    decoded = tf.make_ndarray(proto)
    assert decoded.dtype == array.dtype and np.array_equal(decoded, array)


def test_float_outputs_use_float_val_like_tf_serving():
    proto = ndarray_to_tensor_proto(np.array([[3.0]], np.float32))
    assert list(proto.float_val) == [3.0] and [d.size for d in proto.tensor_shape.dim] == [1, 1]
    strings = ndarray_to_tensor_proto(np.array([b"a", b"bc"], object))
    assert strings.dtype == tf.string.as_datatype_enum and list(strings.string_val) == [b"a", b"bc"]


def test_bad_request_tensors_are_parsing_errors():
    huge = tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum, float_val=[1.0])
    huge.tensor_shape.dim.add(size=10**12)  # one value repeated a trillion times: refused, not allocated
    negative = tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum)
    negative.tensor_shape.dim.add(size=-3)
    short = tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum, tensor_content=b"\x00" * 3)
    short.tensor_shape.dim.add(size=2)
    for proto in (huge, negative, short):
        with pytest.raises(StatusError) as info:
            tensor_proto_to_ndarray("x", proto)
        assert (info.value.code, info.value.message) == (Code.INVALID_ARGUMENT, "tensor parsing error: x")


def test_channel_arguments_and_truncation():
    assert parse_channel_arguments("grpc.max_connection_age_ms=2000,grpc.primary_user_agent=x") == [
        ("grpc.max_connection_age_ms", 2000), ("grpc.primary_user_agent", "x")]
    with pytest.raises(ValueError, match="Received: 'oops'"):
        parse_channel_arguments("oops")
    assert _truncate("a" * 1024) == "a" * 1024
    assert _truncate("a" * 1025) == "a" * 1024 + "...TRUNCATED"


_TYPED_FIELD = {np.float32: "float_val", np.float64: "double_val", np.int32: "int_val", np.int64: "int64_val",
                np.uint8: "int_val", np.int8: "int_val", np.bool_: "bool_val"}


@pytest.mark.parametrize("dtype", list(_TYPED_FIELD))
@pytest.mark.parametrize("encoding", ["tensor_content", "typed_full", "typed_short", "empty"])
def test_request_tensors_decode_exactly_as_make_ndarray(dtype, encoding):
    # The decoder has its own fast path for common dtypes; it must agree with TF's in every encoding.
    array = (np.arange(12).reshape(2, 3, 2) % 3).astype(dtype)
    proto = tensor_pb2.TensorProto()
    proto.CopyFrom(tf.make_tensor_proto(array))
    if encoding != "tensor_content":
        proto.ClearField("tensor_content")
        values = array.ravel().tolist()
        field = getattr(proto, _TYPED_FIELD[dtype])
        field.extend({"typed_full": values, "typed_short": values[:1], "empty": []}[encoding])
    try:
        expected = tf.make_ndarray(proto)
    except Exception:  # TF cannot decode it either (e.g. a short bool_val): same refusal here
        with pytest.raises(StatusError, match="tensor parsing error: x"):
            tensor_proto_to_ndarray("x", proto)
        return
    got = tensor_proto_to_ndarray("x", proto)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    got[...] = 0  # a private, writable copy: never a view of the request's bytes
