"""Predict inputs against the published signature, without a server (client/_conform.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tfstack.client import InvalidInputError
from tfstack.client._arguments import ModelSelector
from tfstack.client._conform import conform_inputs, explain_rejection, shape_mismatches
from tfstack.client._results import SignatureInfo, TensorInfo

SEL = ModelSelector(model_name="m")


def signature(**inputs: tuple[str, tuple | None]) -> SignatureInfo:
    return SignatureInfo(
        method_name="tensorflow/serving/predict",
        inputs={name: TensorInfo(name=f"{name}:0", dtype=dtype, shape=shape) for name, (dtype, shape) in inputs.items()},
        outputs={},
    )


@pytest.mark.parametrize(
    ("array", "dtype", "expected"),
    [
        (np.array([1.5, 2.25]), "float32", np.array([1.5, 2.25], np.float32)),
        (np.array([1, 2], np.int64), "float32", np.array([1.0, 2.0], np.float32)),
        (np.array([3.0, -4.0]), "int64", np.array([3, -4], np.int64)),
        (np.array([100, -100], np.int64), "int8", np.array([100, -100], np.int8)),
        (np.array([True, False]), "int32", np.array([1, 0], np.int32)),
        (np.array([b"a"], object), "string", np.array([b"a"], object)),
    ],
)
def test_safe_casts(array, dtype, expected):
    out = conform_inputs(signature(x=(dtype, (None,))), {"x": array}, SEL)["x"]
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("array", "dtype", "text"),
    [
        (np.array([0.5]), "int64", "x: received float64 values that are not whole numbers (e.g. 0.5)"),
        (np.array([300], np.int64), "int8", "x: received 300, outside int8's range [-128, 127]"),
        (np.array([-1], np.int64), "uint8", "x: received -1, outside uint8's range [0, 255]"),
        (np.array([1e300]), "float32", "x: received float64 values such as 1e+300 beyond float32's range"),
    ],
)
def test_lossy_casts_are_refused_with_what_was_received_and_expected(array, dtype, text):
    with pytest.raises(InvalidInputError) as info:
        conform_inputs(signature(x=(dtype, (None,))), {"x": array}, SEL)
    assert text in str(info.value) and f"expects {dtype}" in str(info.value)
    assert info.value.code == "INVALID_ARGUMENT"


def test_a_bare_array_stays_bare_and_unknown_inputs_are_left_to_the_server():
    sig = signature(x=("float32", (None,)))
    bare = conform_inputs(sig, np.array([1.0]), SEL)
    assert isinstance(bare, np.ndarray) and bare.dtype == np.float32
    assert conform_inputs(sig, {"y": np.array([1.0])}, SEL)["y"].dtype == np.float64
    assert conform_inputs(None, {"x": np.array([1.0])}, SEL)["x"].dtype == np.float64


def test_shape_mismatches_name_the_input_and_both_shapes():
    sig = signature(pixels=("float32", (None, 8, 8)), any=("float32", None))
    problems = shape_mismatches(sig, {"pixels": np.zeros((2, 64)), "any": np.zeros((3, 1, 2))})
    assert problems == ["pixels: received shape [2, 64], expected [-1, 8, 8]"]
    assert shape_mismatches(sig, {"pixels": np.zeros((5, 8, 8))}) == []


def test_a_rejection_is_explained_only_when_a_shape_does_not_match():
    sig = signature(pixels=("float32", (None, 8, 8)))
    server = InvalidInputError("Input to reshape is a tensor with 128 values\n\t [[{{node reshape}}]]", code="INVALID_ARGUMENT",
                               grpc_code="INVALID_ARGUMENT")
    explained = explain_rejection(server, sig, {"pixels": np.zeros((2, 64))}, SEL)
    assert str(explained) == ("INVALID_ARGUMENT: pixels: received shape [2, 64], expected [-1, 8, 8] (signature "
                              "'serving_default' of model 'm'). The server said: Input to reshape is a tensor with 128 values")
    assert explained.grpc_code == "INVALID_ARGUMENT"
    assert explain_rejection(server, sig, {"pixels": np.zeros((2, 8, 8))}, SEL) is server
