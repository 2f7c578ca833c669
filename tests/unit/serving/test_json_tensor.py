"""The JSON <-> tensor codec against TF Serving's behaviour (spec §1.6-§1.9, §2)."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest

from tfstack.serving.server.rest import _json_tensor as jt
from tfstack.serving._errors import Code, StatusError

DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_STRING, DT_INT64, DT_BOOL, DT_HALF = 1, 2, 3, 4, 7, 9, 10, 19
X_FLOAT = {"x": DT_FLOAT}


def parse_error(body: bytes) -> str:
    with pytest.raises(StatusError) as info:
        jt.parse_json(body)
    assert info.value.code is Code.INVALID_ARGUMENT
    return info.value.message


def predict(body: bytes, dtypes=X_FLOAT):
    doc = jt.parse_json(body)
    return jt.predict_inputs_from_json(doc, dtypes, body=body)


def predict_error(body: bytes, dtypes=X_FLOAT) -> StatusError:
    with pytest.raises(StatusError) as info:
        predict(body, dtypes)
    return info.value


def loads(data: bytes):
    """Parse a response the way a conformance test should: NaN/Infinity tokens allowed."""
    return json.loads(data)


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"   ", "JSON Parse error: The document is empty. at offset: 3"),
        (b"instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0"),
        (b'{"instances": [1,]}', "JSON Parse error: Invalid value. at offset: 17"),
        (b'{"a": {"b": 1,}}', "JSON Parse error: Missing a name for object member. at offset: 14"),
        (b'{"a" 1}', "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
        (b'{"a": 1 "b": 2}', "JSON Parse error: Missing a comma or '}' after an object member. at offset: 8"),
        (b'{"a": [1 2]}', "JSON Parse error: Missing a comma or ']' after an array element. at offset: 9"),
        (b'{"a": "\\x"}', "JSON Parse error: Invalid escape character in string. at offset: 7"),
        (b'{"a": "abc', "JSON Parse error: Missing a closing quotation mark in string. at offset: 10"),
        (b'{"a": 1e400}', "JSON Parse error: Number too big to be stored in double. at offset: 6"),
        (b'{"a": 1.}', "JSON Parse error: Miss fraction part in number. at offset: 8"),
        (b'{"a": 1e}', "JSON Parse error: Miss exponent in number. at offset: 8"),
        (b'{"a": "\\ud800"}', "JSON Parse error: The surrogate pair in string is invalid. at offset: 7"),
        (b'{"a": "\\u12x4"}', "JSON Parse error: Incorrect hex digit after \\u escape in string. at offset: 7"),
        (b'{"a": Nan}', "JSON Parse error: Invalid value. at offset: 8"),
        (b"[1, 2]", "JSON Value: [1, 2] Is not object"),
    ],
)
def test_parse_errors_use_rapidjson_texts_and_offsets(body, message):
    assert parse_error(body) == message


def test_nan_and_infinity_tokens_are_accepted():
    doc = jt.parse_json(b'{"a": [NaN, Infinity, -Infinity, Inf, -Inf, -NaN]}')
    values = doc["a"]
    assert math.isnan(values[0]) and math.isnan(values[5])
    assert values[1:5] == [math.inf, -math.inf, math.inf, -math.inf]


def test_trailing_bytes_after_the_document_are_ignored():
    assert jt.parse_json(b'{"instances": [1]} garbage ]]') == {"instances": [1]}


def test_byte_order_mark_and_invalid_utf8_are_accepted_like_rapidjson():
    assert jt.parse_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    doc = jt.parse_json(b'{"a": "\xff"}')
    assert doc["a"].encode("utf-8", "surrogateescape") == b"\xff"


def test_integers_and_doubles_keep_rapidjson_types():
    doc = jt.parse_json(b'{"i": 1, "d": 1.0, "big": 18446744073709551616, "u": 18446744073709551615, "e": 1e2}')
    assert type(doc["i"]) is int and type(doc["d"]) is float and type(doc["e"]) is float
    assert type(doc["big"]) is float and doc["u"] == 2**64 - 1


def test_deeply_nested_body_is_accepted():
    # TF Serving's iterative parser accepts this (spec §2.1); a recursive parser would crash.
    depth = 500_000
    body = b'{"instances":[1], "nested":' + b"[" * depth + b"]" * depth + b"}"
    doc = jt.parse_json(body)
    assert doc["instances"] == [1]
    inputs, fmt = jt.predict_inputs_from_json(doc, X_FLOAT, body=body)
    assert fmt == jt.ROW and inputs["x"].tolist() == [1.0]


def test_deeply_nested_instances_fail_cleanly():
    depth = 100_000
    body = b'{"instances":' + b"[" * depth + b"1" + b"]" * depth + b"}"
    error = predict_error(body)
    assert error.code is Code.INVALID_ARGUMENT


def test_deeply_nested_garbage_reports_offset():
    depth = 100_000
    message = parse_error(b'{"a":' + b"[" * depth)
    assert message == f"JSON Parse error: Invalid value. at offset: {5 + depth}"


# ----------------------------------------------------------------------------- debug rendering


def test_debug_string_is_pretty_writer_with_single_line_arrays():
    text = jt.debug_string({"signature_name": 100, "a": [1.0, 2.5, "x", None, True], "b": {"c": 1e100}})
    assert text == (
        '{\n    "signature_name": 100,\n    "a": [1.0, 2.5, "x", null, true],\n'
        '    "b": {\n        "c": 1e100\n    }\n}'
    )


def test_debug_string_is_truncated_near_256_bytes():
    text = jt.debug_string({"instances": list(range(1000))})
    assert 256 <= len(text) < 270
    assert text.startswith('{\n    "instances": [0, 1, 2')


def test_signature_name_type_error_renders_the_document():
    doc = jt.parse_json(b'{"signature_name": 100}')
    with pytest.raises(StatusError) as info:
        jt.signature_name_from_json(doc)
    assert info.value.message == (
        "JSON Value: {\n    \"signature_name\": 100\n} not formatted correctly. "
        "'signature_name' key must be a string value."
    )


# ----------------------------------------------------------------------------- row / columnar


def test_row_and_columnar_requests_build_tensors():
    inputs, fmt = predict(b'{"instances": [2.0, 3.0, 4.0]}')
    assert fmt == jt.ROW and inputs["x"].dtype == np.float32 and inputs["x"].tolist() == [2.0, 3.0, 4.0]
    inputs, fmt = predict(b'{"inputs": [[1, 2], [3, 4]]}')
    assert fmt == jt.COLUMNAR and inputs["x"].shape == (2, 2)
    inputs, _ = predict(b'{"inputs": 1.0}')
    assert inputs["x"].shape == ()
    inputs, _ = predict(b'{"instances": [{"x": 1.0}, {"x": 2.0}]}')
    assert inputs["x"].tolist() == [1.0, 2.0]
    inputs, _ = predict(b'{"inputs": {"x": [1.0], "ignored": "extra keys are fine"}}')
    assert inputs["x"].tolist() == [1.0]
    inputs, _ = predict(b'{"instances": [[], []]}')
    assert inputs["x"].shape == (2, 0)


def test_float_conversion_rules():
    inputs, _ = predict(b'{"instances": [1435774380, 1.7976931348623157e308, 2.2250738585072014e-308, NaN]}')
    values = inputs["x"].tolist()
    assert values[0] == 1435774336.0 and values[1] == math.inf and values[2] == 0.0 and math.isnan(values[3])


def test_multi_input_rows_and_columns():
    dtypes = {"a": DT_FLOAT, "b": DT_INT64}
    inputs, _ = predict(b'{"instances": [{"a": [1.0, 2.0], "b": 1}, {"a": [3.0, 4.0], "b": 2}]}', dtypes)
    assert inputs["a"].shape == (2, 2) and inputs["b"].dtype == np.int64 and inputs["b"].tolist() == [1, 2]
    inputs, _ = predict(b'{"inputs": {"a": [1.0], "b": [[1, 2, 3]]}}', dtypes)
    assert inputs["a"].shape == (1,) and inputs["b"].shape == (1, 3)


def test_strings_and_b64():
    inputs, _ = predict(b'{"instances": [{"b64": "aGVsbG8="}, "abc"]}', {"x": DT_STRING})
    assert inputs["x"].tolist() == [b"hello", b"abc"]
    inputs, _ = predict(b'{"inputs": {"b64": "aGVsbG8"}}', {"x": DT_STRING})
    assert inputs["x"].tolist() == b"hello"


@pytest.mark.parametrize(
    "body, dtypes, code, message",
    [
        (b'{"instances": ["x","y"]}', X_FLOAT, Code.INVALID_ARGUMENT,
         "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: \"x\" Type: String is not of expected type: float"),
        (b'{"inputs": ["x"]}', X_FLOAT, Code.INVALID_ARGUMENT, 'JSON Value: "x" Type: String is not of expected type: float'),
        (b'{"instances": [[1,2],[3,4],[5,6,7]]}', X_FLOAT, Code.INVALID_ARGUMENT,
         "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor size: 2 but got: 3"),
        (b'{"instances": [[1,2],[3,4],[[5,6]]]}', X_FLOAT, Code.INVALID_ARGUMENT,
         "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape [2] but got: [1,2]"),
        (b'{"inputs": [[1,2],[3]]}', X_FLOAT, Code.INVALID_ARGUMENT,
         "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
        (b'{"inputs": [[1,2],[3,[4]]]}', X_FLOAT, Code.INVALID_ARGUMENT, "Encountered list at unexpected level: 2 expected < 2"),
        (b'{"inputs": [[1,2],3]}', X_FLOAT, Code.INVALID_ARGUMENT,
         "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
        (b'{"instances": [{"a": 1.0}]}', {"a": DT_FLOAT, "b": DT_FLOAT}, Code.INVALID_ARGUMENT,
         "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"a\": 1.0\n} keys must be equal to: a,b"),
        (b'{"instances": [{"x": 1.0, "y": 2}]}', X_FLOAT, Code.INVALID_ARGUMENT,
         "Failed to process element: 0 key: y of 'instances' list. Error: INVALID_ARGUMENT: JSON object: does not have named input: y"),
        (b'{"inputs": {"a": [1.0]}}', {"a": DT_FLOAT, "b": DT_FLOAT}, Code.INVALID_ARGUMENT, "Missing named input: b in 'inputs' object."),
        (b'{"instances": [1.0]}', {"a": DT_FLOAT, "b": DT_FLOAT}, Code.INVALID_ARGUMENT,
         "instances is a plain list, but expecting list of objects as multiple input tensors required as per tensorinfo_map"),
        (b'{"inputs": [1.0]}', {"a": DT_FLOAT, "b": DT_FLOAT}, Code.INVALID_ARGUMENT,
         "inputs is a plain value/list, but expecting an object as multiple input tensors required as per tensorinfo_map"),
        (b'{"instances": [{"x": 1.0}, [2.0]]}', X_FLOAT, Code.INVALID_ARGUMENT, "Expecting object but got list at item 1 of input list"),
        (b'{"instances": [[2.0], {"x": 1.0}]}', X_FLOAT, Code.INVALID_ARGUMENT, "Expecting value/list but got object at item 1 of input list"),
        (b'{"inputs": [{"b64": 1}]}', {"x": DT_STRING}, Code.INVALID_ARGUMENT,
         'JSON Value: {\n    "b64": 1\n} not formatted correctly for base64 data'),
        (b'{"inputs": [{"b64": "!!!"}]}', {"x": DT_STRING}, Code.INVALID_ARGUMENT, "Unable to base64 decode"),
        (b'{"inputs": [1.0]}', {"x": DT_HALF}, Code.UNIMPLEMENTED, "Conversion of JSON Value: 1.0 to type: half"),
        (b'{"instances": [1.0]}', {"x": DT_HALF}, Code.INVALID_ARGUMENT,
         "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: Conversion of JSON Value: 1.0 to type: half"),
        (b'{"instances": [1.0]}', {"x": DT_INT32}, Code.INVALID_ARGUMENT, "JSON Value: 1.0 Type: Number is not of expected type: int32"),
        (b'{"instances": [2147483648]}', {"x": DT_INT32}, Code.INVALID_ARGUMENT, "Type: Number is not of expected type: int32"),
        (b'{"instances": [1]}', {"x": DT_BOOL}, Code.INVALID_ARGUMENT, "JSON Value: 1 Type: Number is not of expected type: bool"),
        (b'{"instances": [true]}', X_FLOAT, Code.INVALID_ARGUMENT, "JSON Value: true Type: True is not of expected type: float"),
        (b'{"instances": [null]}', X_FLOAT, Code.INVALID_ARGUMENT, "JSON Value: null Type: Null is not of expected type: float"),
        (b'{"instances": [{"x": {"y": 1}}]}', X_FLOAT, Code.INVALID_ARGUMENT, "Type: Object is not of expected type: float"),
        (b'{"instances": [18446744073709551615]}', {"x": DT_INT64}, Code.INVALID_ARGUMENT, "is not of expected type: int64"),
        (b'{"instances": [], "x": 1}', X_FLOAT, Code.INVALID_ARGUMENT, "JSON Value: {\n    \"instances\": [],\n    \"x\": 1\n} No values in 'instances' array"),
        (b'{"instances": 5}', X_FLOAT, Code.INVALID_ARGUMENT, "Expecting 'instances' to be an list/array"),
        (b'{"instances": [1], "inputs": [1]}', X_FLOAT, Code.INVALID_ARGUMENT,
         "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "),
        (b'{"foo": 1}', X_FLOAT, Code.INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key"),
        (b'{"instances": [1]}', {}, Code.INVALID_ARGUMENT, "Failed to get input map for signature: DEFAULT"),
    ],
)
def test_predict_request_errors(body, dtypes, code, message):
    error = predict_error(body, dtypes)
    assert error.code is code
    assert message in error.message


def test_int_types_accept_integers_and_bool_accepts_booleans():
    inputs, _ = predict(b'{"instances": [1, -2]}', {"x": DT_INT32})
    assert inputs["x"].dtype == np.int32 and inputs["x"].tolist() == [1, -2]
    inputs, _ = predict(b'{"instances": [true, false]}', {"x": DT_BOOL})
    assert inputs["x"].tolist() == [True, False]
    inputs, _ = predict(b'{"instances": [1.5]}', {"x": DT_DOUBLE})
    assert inputs["x"].dtype == np.float64
    inputs, _ = predict(b'{"instances": [300]}', {"x": DT_UINT8})
    assert inputs["x"].tolist() == [44]  # no range check, the cast wraps like TF's


# ----------------------------------------------------------------------------- responses


@pytest.mark.parametrize(
    "value, is_f32, text",
    [
        (9000000, True, "9e+06"),
        (999999, True, "999999.0"),
        (0.5, True, "0.5"),
        (0.0003, True, "0.0003"),
        (0.00003, True, "3e-05"),
        (555557.5, True, "555557.5"),
        (3, True, "3.0"),
        (-0.0, True, "-0.0"),
        (0.1, True, "0.1"),
        (1 / 3, True, "0.333333343"),
        (1 / 3, False, "0.33333333333333331"),
        (0.1, False, "0.1"),
        (math.nan, True, "NaN"),
        (math.inf, True, "Infinity"),
        (-math.inf, False, "-Infinity"),
    ],
)
def test_float_formatting_vectors(value, is_f32, text):
    v = float(np.float32(value)) if is_f32 else float(value)
    assert jt.format_float(v, is_float32=is_f32) == text
    many = jt.predict_response_json({"y": np.full(8, v, np.float32 if is_f32 else np.float64)}, jt.COLUMNAR)
    assert many.count(text.encode()) == 8


def test_row_response_bytes_match_tf_serving_layout():
    out = jt.predict_response_json({"y": np.array([3.5, 4.0, 5.5], np.float32)}, jt.ROW)
    assert out == b'{\n    "predictions": [3.5, 4.0, 5.5\n    ]\n}'
    out = jt.predict_response_json({"y": np.array([[2.5, 3.0], [3.5, 4.0]], np.float32)}, jt.ROW)
    assert loads(out) == {"predictions": [[2.5, 3.0], [3.5, 4.0]]}


def test_multi_output_rows_are_objects_and_bytes_aliases_are_b64():
    outputs = {
        "scores": np.array([[0.25, 0.75], [1.0, 0.0]], np.float32),
        "label_bytes": np.array([b"\x00\xff", b"ok"], dtype=object),
        "label": np.array([b"cat", b"dog"], dtype=object),
        "id": np.array([1, 2**40], np.int64),
    }
    rows = loads(jt.predict_response_json(outputs, jt.ROW))["predictions"]
    assert rows[0] == {"scores": [0.25, 0.75], "label_bytes": {"b64": base64.b64encode(b"\x00\xff").decode()},
                       "label": "cat", "id": 1}
    assert rows[1]["id"] == 2**40
    columns = loads(jt.predict_response_json(outputs, jt.COLUMNAR))["outputs"]
    assert columns["label"] == ["cat", "dog"] and columns["id"] == [1, 2**40]
    assert columns["label_bytes"][1] == {"b64": "b2s="}


def test_columnar_scalar_and_empty_batches():
    assert loads(jt.predict_response_json({"y": np.array(2.5, np.float32)}, jt.COLUMNAR)) == {"outputs": 2.5}
    empty = {"a": np.zeros((0, 3), np.float32), "b": np.zeros((0,), np.int32)}
    assert jt.predict_response_json(empty, jt.ROW) == b'{\n    "predictions": []\n}'
    assert loads(jt.predict_response_json({"a": np.zeros((2, 0), np.float32)}, jt.COLUMNAR)) == {"outputs": [[], []]}


def test_nan_and_infinity_outputs_are_bare_tokens():
    out = jt.predict_response_json({"y": np.array([np.nan, np.inf, -np.inf, 1.0], np.float32)}, jt.ROW)
    assert b"[NaN, Infinity, -Infinity, 1.0" in out
    assert jt.regress_response_json([0.2, math.inf, 1.0, -math.inf, math.nan]) == (
        b'{\n    "results": [0.2, Infinity, 1.0, -Infinity, NaN]\n}'
    )


@pytest.mark.parametrize(
    "outputs, message",
    [
        ({"y": np.array(1.0, np.float32)}, "Tensor name: y has no shape information "),
        ({"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)}, "Tensor name: b has inconsistent batch size: 3 expecting: 2"),
        ({"c": np.zeros(2, np.complex64)}, "Failed to write JSON value for tensor type: complex64"),
    ],
)
def test_row_output_errors(outputs, message):
    with pytest.raises(StatusError) as info:
        jt.predict_response_json(outputs, jt.ROW)
    assert info.value.code is Code.INVALID_ARGUMENT and info.value.message == message


def test_classify_and_error_bodies():
    body = jt.classify_response_json([[("car", 0.2), ("bike", 0.7), ("bus", 0.1)], [("car", 0.7), ("bike", 0.1), ("bus", 0.2)]])
    assert loads(body) == {"results": [[["car", 0.2], ["bike", 0.7], ["bus", 0.1]], [["car", 0.7], ["bike", 0.1], ["bus", 0.2]]]}
    assert jt.classify_response_json([[("", 3.0)]]) == b'{\n    "results": [[["", 3.0]]\n    ]\n}'
    assert jt.error_json('Bad key: "key"') == b'{\n    "error": "Bad key: \\"key\\""\n}'


# ----------------------------------------------------------------------------- classify / regress


def _example(serialized: bytes):
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    example.ParseFromString(serialized)
    return example.features.feature


def test_examples_become_tf_examples_with_context():
    doc = jt.parse_json(
        b'{"context": {"c": "ctx"}, "examples": [{"x": 2.0, "n": [1, true, false], "s": ["a", {"b64": "AAE="}], "e": []}]}'
    )
    (serialized,) = jt.examples_from_json(doc)
    features = _example(serialized)
    assert list(features["x"].float_list.value) == [2.0]
    assert list(features["n"].int64_list.value) == [1, 1, 0]
    assert list(features["s"].bytes_list.value) == [b"a", b"\x00\x01"]
    assert features["e"].WhichOneof("kind") is None
    assert list(features["c"].bytes_list.value) == [b"ctx"]


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"signature_name": "s"}', "When method is classify, key 'examples' is expected and was not found"),
        (b'{"examples": {}}', "Expecting 'examples' value to be an list/array"),
        (b'{"examples": []}', "'examples' value is an empty array"),
        (b'{"examples": [[1]]}', "Example must be JSON object but got JSON Array"),
        (b'{"examples": [{"f": null}]}', "Feature: f has element with unexpected JSON type: Null"),
        (b'{"examples": [{"f": [[1]]}]}', "Feature: f has element with unexpected JSON type: Array"),
        (b'{"examples": [{"f": {"a": 1}}]}', "Feature: f has element with unexpected JSON type: Object"),
        (b'{"examples": [{"names": [10, 10.0]}]}', "Unexpected element type in feature: names expecting type: int64"),
        (b'{"examples": [{"f": [18446744073709551615]}]}', "Feature: f has uint64_t element. Only int64_t is supported."),
        (b'{"context": [1], "examples": [{}]}', "Example must be JSON object but got JSON Array"),
    ],
)
def test_example_errors(body, message):
    doc = jt.parse_json(body)
    with pytest.raises(StatusError) as info:
        jt.examples_from_json(doc)
    assert info.value.code is Code.INVALID_ARGUMENT and message in info.value.message


@pytest.mark.parametrize(
    "value, text",
    [
        (1.0, "1.0"), (0.5, "0.5"), (-0.0, "-0.0"), (100.0, "100.0"), (1e21, "1e21"), (1.5e-7, "1.5e-7"),
        (0.001, "0.001"), (1234.5678, "1234.5678"), (1e100, "1e100"), (123456789012345680000.0, "123456789012345680000.0"),
        (1.2345e-5, "0.000012345"), (2.5e-7, "2.5e-7"), (1.7976931348623157e308, "1.7976931348623157e308"),
    ],
)
def test_debug_rendering_of_doubles_matches_rapidjson_dtoa(value, text):
    assert jt.debug_string(value) == text


def test_debug_rendering_stops_at_nan_like_rapidjson():
    # rapidjson's writer refuses NaN without kWriteNanAndInfFlag and the rendering stops there.
    assert jt.debug_string({"a": [1.0, math.nan, 3]}) == '{\n    "a": [1.0, '
    error = predict_error(b'{"instances": [NaN], "inputs": [1]}')
    assert error.message == (
        'JSON Value: {\n    "instances": [ Not formatted correctly expecting only one of '
        "'inputs' or 'instances' keys to exist "
    )


def test_debug_rendering_escapes_like_rapidjson_writer():
    assert jt.debug_string({"k\n": "a\"b\\c\x01/é"}) == '{\n    "k\\n": "a\\"b\\\\c\\u0001/é"\n}'


@pytest.mark.parametrize("digits", [21, 4300, 4301, 100_000])
def test_integer_literals_past_int_limits_are_rapidjsons_too_big(digits):
    # rapidjson turns an integer past uint64 into a double and stops at DBL_MAX ("too big");
    # Python's int() would refuse 4,301+ digits with a ValueError (issue 17).
    for sign in ("", "-"):
        body = f'{{"instances": [{sign}{"9" * digits}]}}'.encode()
        if digits < 300:
            assert jt.parse_json(body)["instances"][0] == float(f"{sign}{'9' * digits}")
            continue
        with pytest.raises(StatusError) as caught:
            jt.parse_json(body)
        assert caught.value.message == "JSON Parse error: Number too big to be stored in double. at offset: 15"


def test_a_negative_exponent_with_thousands_of_digits_underflows_quickly():
    assert jt.parse_json(b'{"instances": [1e-' + b"9" * 200_000 + b"]}")["instances"] == [0.0]


def test_an_example_feature_name_that_is_not_utf8_is_kept_as_bytes():
    from tensorflow.core.example import example_pb2

    doc = jt.parse_json(b'{"examples": [{"x": 2.0, "q\xa4": [1, 2]}]}')
    (serialized,) = jt.examples_from_json(doc)
    assert b"q\xa4" in serialized
    # Everything else decodes as the Example it is (protobuf's Python parser refuses the key).
    valid = jt.examples_from_json(jt.parse_json(b'{"examples": [{"x": 2.0}]}'))[0]
    assert example_pb2.Example.FromString(valid).features.feature["x"].float_list.value == [2.0]
