"""TF Serving's REST JSON encoding, byte-level where TF Serving is picky (spec §2)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from tfstack.client import BadResponseError, InternalServerError, InvalidInputError, ModelNotFoundError, ServingClient
from tfstack.client import _json_codec as codec
from tfstack.client._rest import RestTransport


def test_columnar_body_keeps_names_dtypes_and_b64():
    body = codec.predict_body(
        "serving_default",
        {"x": np.array([[1.0, 2.5]], np.float32), "n": np.array([3], np.int64), "s": np.array(["a"]), "b": np.array([b"\xff"], dtype=object)},
        row_format=False,
    )
    assert json.loads(body) == {
        "signature_name": "serving_default",
        "inputs": {"x": [[1.0, 2.5]], "n": [3], "s": ["a"], "b": [{"b64": "/w=="}]},
    }


def test_float_inputs_are_written_with_a_decimal_point():
    # DT_INT* inputs reject 1.0 and int features become int64 (spec §2.5, §2.8): dtype must show.
    assert b"[1.0,2.0]" in codec.predict_body("s", {"x": np.array([1.0, 2.0], np.float32)}, row_format=False)
    assert b"[1,2]" in codec.predict_body("s", {"x": np.array([1, 2], np.int64)}, row_format=False)


def test_non_finite_values_use_tf_servings_tokens():
    body = codec.predict_body("s", {"x": np.array([np.nan, np.inf, -np.inf, 1.0], np.float32)}, row_format=False)
    assert b"[NaN,Infinity,-Infinity,1.0]" in body


def test_row_body():
    body = codec.predict_body("s", {"x": np.array([[1.0], [2.0]], np.float32), "k": np.array([1, 2])}, row_format=True)
    assert json.loads(body)["instances"] == [{"x": [1.0], "k": 1}, {"x": [2.0], "k": 2}]
    assert json.loads(codec.predict_body("s", np.array([1.0, 2.0], np.float32), row_format=True))["instances"] == [1.0, 2.0]
    with pytest.raises(ValueError, match="share its first"):
        codec.predict_body("s", {"x": np.ones(2), "k": np.ones(3)}, row_format=True)


def test_examples_body_keeps_float_vs_int_and_b64_for_binary():
    from tfstack.client._arguments import examples

    ex, ctx = examples([{"x": 2.0, "n": 2, "s": "txt", "raw": b"\xff"}], context={"c": [1.5, float("nan")]})
    document = json.loads(codec.examples_body("regress_x_to_y", ex, ctx).decode().replace("NaN", '"NaN"'))
    assert document["examples"] == [{"x": [2.0], "n": [2], "s": ["txt"], "raw": [{"b64": "/w=="}]}]
    assert document["context"] == {"c": [1.5, "NaN"]}
    assert b'"x":[2.0]' in codec.examples_body("r", ex, None).replace(b" ", b"")


def test_loads_accepts_nan_tokens():
    assert np.isnan(codec.loads(b'{"outputs": [NaN, Infinity, -Infinity]}')["outputs"][0])
    with pytest.raises(BadResponseError):
        codec.loads(b"<html>")


@pytest.mark.parametrize(
    "document, dtypes, row, expected",
    [
        ({"outputs": [3.0, 3.5]}, {"y": "DT_FLOAT"}, False, {"y": np.array([3.0, 3.5], np.float32)}),
        ({"outputs": 2.5}, {"y": "DT_FLOAT"}, False, {"y": np.array(2.5, np.float32)}),
        ({"outputs": {"a": [1], "b": [[1.0]]}}, {"a": "DT_INT32", "b": "DT_DOUBLE"}, False, {"a": np.array([1], np.int32), "b": np.array([[1.0]])}),
        ({"predictions": [3.0, 3.5]}, {"y": "DT_FLOAT"}, True, {"y": np.array([3.0, 3.5], np.float32)}),
        ({"predictions": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}, {"a": "DT_INT64", "b": "DT_STRING"}, True,
         {"a": np.array([1, 2]), "b": np.array([b"x", b"y"], dtype=object)}),
        ({"outputs": {"img_bytes": [{"b64": "/w=="}]}}, {"img_bytes": "DT_STRING"}, False, {"img_bytes": np.array([b"\xff"], dtype=object)}),
        ({"predictions": []}, {"a": "DT_FLOAT", "b": "DT_FLOAT"}, True, {"a": np.zeros(0, np.float32), "b": np.zeros(0, np.float32)}),
    ],
)
def test_predict_outputs_decoding(document, dtypes, row, expected):
    got = codec.predict_outputs(document, dtypes, row_format=row)
    assert sorted(got) == sorted(expected)
    for name, array in expected.items():
        assert got[name].dtype == array.dtype
        assert got[name].shape == array.shape
        assert got[name].tolist() == array.tolist()


def _client(handler) -> ServingClient:
    return ServingClient(RestTransport("http://h:1", http_transport=httpx.MockTransport(handler)), retry=None)


@pytest.mark.parametrize(
    "status, body, error, code, text",
    [
        (404, b'{ "error": "Servable not found for request: Latest(m)" }', ModelNotFoundError, "NOT_FOUND", "Servable not found"),
        (400, b"", InvalidInputError, "INVALID_ARGUMENT", "HTTP 400 with an empty body"),
        (501, b'{"error": "Conversion of JSON Value: 1.0 to type: half"}', InvalidInputError, "UNIMPLEMENTED", "to type: half"),
        (500, b"<html>oops</html>", InternalServerError, "INTERNAL", "HTTP 500: <html>oops</html>"),
        (200, b"not json", BadResponseError, "INTERNAL", "not valid JSON"),
        (200, b'{"something": 1}', BadResponseError, "INTERNAL", "Expected a JSON object with key 'outputs'"),
    ],
)
def test_http_errors_map_to_the_error_tree(status, body, error, code, text):
    client = _client(lambda request: httpx.Response(status, content=body))
    with pytest.raises(error, match=text) as info:
        client.predict("m", {"x": [1.0]})
    assert info.value.code == code
    assert info.value.http_status == (status if status != 200 else None)


def test_connection_refused_is_unavailable_and_retried():
    from tfstack.client import RetryPolicy, ServerUnavailableError

    calls = []

    def refuse(request):
        calls.append(request)
        raise httpx.ConnectError("Connection refused", request=request)

    client = ServingClient(
        RestTransport("http://h:1", http_transport=httpx.MockTransport(refuse)),
        retry=RetryPolicy(max_attempts=4, initial_backoff=0.001),
    )
    with pytest.raises(ServerUnavailableError, match="gave up after 4 attempts") as info:
        client.get_model_status("m")
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(calls) == 4


def test_requests_use_tf_serving_urls_and_gzip():
    seen = []

    def handler(request):
        seen.append(request)
        if request.url.path.endswith("/metadata"):
            return httpx.Response(200, json={"model_spec": {"version": "5"}, "metadata": {"signature_def": {"signature_def": {
                "serving_default": {"inputs": {}, "outputs": {"y": {"dtype": "DT_FLOAT"}}, "method_name": ""}}}}})
        return httpx.Response(200, content=b'{"outputs": [1.0]}')

    transport = RestTransport("http://h:1/", gzip=True, http_transport=httpx.MockTransport(handler), headers={"Authorization": "Bearer t"})
    client = ServingClient(transport)
    client.predict("my model", {"x": [1.0]}, version_label="can ary")
    client.predict("m", {"x": [1.0]}, version=3)
    # The signature is read first (cached), to cast inputs to its dtypes.
    assert seen[0].url.raw_path == b"/v1/models/my%20model/labels/can%20ary/metadata"
    assert seen[1].url.raw_path == b"/v1/models/my%20model/labels/can%20ary:predict"
    assert seen[1].headers["content-encoding"] == "gzip"
    assert seen[1].headers["authorization"] == "Bearer t"
    import gzip

    assert json.loads(gzip.decompress(seen[1].content))["inputs"] == {"x": [1.0]}
    assert seen[2].url.raw_path == b"/v1/models/m/versions/3/metadata"
    assert seen[3].url.raw_path == b"/v1/models/m/versions/3:predict"


def test_scalars_and_non_contiguous_arrays_keep_their_shape():
    assert json.loads(codec.predict_body("s", {"x": np.array(2.0, np.float32)}, row_format=False))["inputs"] == {"x": 2.0}
    strided = np.arange(6, dtype=">f4").reshape(2, 3).T
    assert json.loads(codec.predict_body("s", {"x": strided}, row_format=False))["inputs"]["x"] == strided.tolist()


def test_rest_refreshes_a_stale_signature_when_outputs_change():
    state = {"outputs": ["y"], "metadata_calls": 0}

    def handler(request):
        if request.url.path.endswith("/metadata"):
            state["metadata_calls"] += 1
            outputs = {name: {"dtype": "DT_INT64"} for name in state["outputs"]}
            return httpx.Response(200, json={"model_spec": {"version": "1"}, "metadata": {"signature_def": {"signature_def": {
                "serving_default": {"inputs": {"x": {"dtype": "DT_FLOAT"}}, "outputs": outputs, "method_name": ""}}}}})
        if len(state["outputs"]) == 1:
            return httpx.Response(200, json={"outputs": [1]})
        return httpx.Response(200, json={"outputs": {name: [1] for name in state["outputs"]}})

    client = _client(handler)
    assert list(client.predict("m", {"x": [1.0]})) == ["y"]
    assert list(client.predict("m", {"x": [1.0]})) == ["y"]
    assert state["metadata_calls"] == 1  # cached
    state["outputs"] = ["a", "b"]  # a new version behind "latest"
    outputs = client.predict("m", {"x": [1.0]})
    assert sorted(outputs) == ["a", "b"] and outputs["a"].dtype == np.int64
    assert state["metadata_calls"] == 2


@pytest.mark.parametrize(
    "exc, error, code",
    [
        (httpx.ReadTimeout("timed out"), "RequestTimeoutError", "DEADLINE_EXCEEDED"),
        (httpx.ConnectTimeout("timed out"), "RequestTimeoutError", "DEADLINE_EXCEEDED"),
        (httpx.RemoteProtocolError("Server disconnected"), "ServerUnavailableError", "UNAVAILABLE"),
        (httpx.ReadError("reset"), "ServerUnavailableError", "UNAVAILABLE"),
    ],
)
def test_httpx_failures_map_to_the_error_tree(exc, error, code):
    from tfstack import client as package

    def fail(request):
        raise exc

    with pytest.raises(getattr(package, error)) as info:
        _client(fail).predict("m", {"x": [1.0]})
    assert info.value.code == code and info.value.__cause__ is exc
