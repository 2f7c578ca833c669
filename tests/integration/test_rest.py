"""REST conformance against a real `tfstack serve` subprocess (spec §1, §2): every endpoint,
the error catalogue with exact status codes, and TF Serving's documented examples.

Requests go over raw sockets so request targets reach the server byte for byte.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
from typing import Any

import pytest

from tests.support.rest_errors import ERROR_CATALOGUE

pytestmark = pytest.mark.slow

M = "/v1/models/half_plus_two"


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)  # json accepts NaN/Infinity tokens, as a conformance test must

    @property
    def error(self) -> str:
        return self.json()["error"]


def http(port: int, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None,
         *, raw_request: bytes | None = None, timeout: float = 30.0) -> Reply:
    """One HTTP/1.1 exchange on a fresh connection (Connection: close)."""
    if raw_request is None:
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw_request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw_request)
        chunks = []
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers_out = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers_out[key.strip().lower()] = value.strip()
    if headers_out.get("transfer-encoding") == "chunked":
        payload = _unchunk(payload)
    return Reply(int(status_line.split()[1]), headers_out, payload)


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


@pytest.fixture(scope="module")
def port(server) -> int:
    return server.rest_port


# ----------------------------------------------------------------------------- success paths


def test_predict_examples_from_tf_serving(port):
    reply = http(port, "POST", f"{M}:predict", b'{"instances": [2.0, 3.0, 4.0]}')
    assert (reply.status, reply.headers["content-type"]) == (200, "application/json")
    assert reply.json() == {"predictions": [3.0, 3.5, 4.0]}
    assert reply.body == b'{\n    "predictions": [3.0, 3.5, 4.0\n    ]\n}'
    assert http(port, "POST", f"{M}:predict", b'{"inputs": [2.0, 3.0, 4.0]}').json() == {"outputs": [3.0, 3.5, 4.0]}
    assert http(port, "POST", f"{M}/versions/123:predict", b'{"instances": [1.0, 2.0]}').json() == {"predictions": [2.5, 3.0]}
    assert http(port, "POST", f"{M}:predict", b'{"signature_name": "serving_default", "instances": [[1.0, 2.0], [3.0, 4.0]]}').json() == {
        "predictions": [[2.5, 3.0], [3.5, 4.0]]
    }
    assert http(port, "POST", f"{M}:predict", b'{"instances": [{"x": 1.0}, {"x": 2.0}]}').json() == {"predictions": [2.5, 3.0]}
    assert http(port, "POST", f"{M}:predict", b'{"inputs": {"x": [1.0]}}').json() == {"outputs": [2.5]}
    assert http(port, "POST", f"{M}:predict", b'{"inputs": 1.0}').json() == {"outputs": 2.5}


def test_predict_special_values_and_lenient_parsing(port):
    reply = http(port, "POST", f"{M}:predict", b'{"instances": [NaN, Infinity, -Infinity, 1435774380]} trailing garbage')
    assert reply.status == 200
    assert reply.body == b'{\n    "predictions": [NaN, Infinity, -Infinity, 717887168.0\n    ]\n}'
    depth = 500_000
    reply = http(port, "POST", f"{M}:predict", b'{"instances": [1.0], "nested":' + b"[" * depth + b"]" * depth + b"}")
    assert reply.json() == {"predictions": [2.5]}


def test_predict_by_label_needs_a_label(port):
    # The default server has no labels configured: any label is unknown (400, not 404).
    reply = http(port, "POST", f"{M}/labels/stable:predict", b'{"instances": [1.0]}')
    assert reply.status == 400 and reply.error == "Unrecognized servable version label: stable"


def test_classify_and_regress(port):
    reply = http(port, "POST", f"{M}:classify", b'{"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}')
    assert reply.json() == {"results": [[["", 3.0]]]}
    reply = http(port, "POST", f"{M}:regress", b'{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}')
    assert reply.json() == {"results": [3.0]}
    reply = http(port, "POST", f"{M}/versions/123:regress", b'{"signature_name": "regress_x_to_y", "examples": [ { "x": 80.0 } ] }')
    assert reply.body == b'{\n    "results": [42.0]\n}'
    reply = http(port, "POST", f"{M}:regress", b'{"signature_name": "regress_x2_to_y3", "context": {"x2": 4.0}, "examples": [{"x": 0.0}, {"x2": 2.0}]}')
    assert reply.json()["results"][0] == 5.0


def test_model_status(port):
    expected = {"model_version_status": [{"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    for target in (M, f"{M}/versions/123", f"{M}/versions/00123", f"{M}/labels/whatever", "/V1/MODELS/half_plus_two"):
        reply = http(port, "GET", target)
        assert (reply.status, reply.json()) == (200, expected), target
    assert http(port, "GET", M).body.endswith(b"\n}\n")


def test_model_metadata(port):
    reply = http(port, "GET", f"{M}/metadata")
    assert reply.status == 200
    doc = reply.json()
    assert doc["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "123"}
    signatures = doc["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "classify_x_to_y", "regress_x_to_y", "regress_x_to_y2", "regress_x2_to_y3"} <= set(signatures)
    x = signatures["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT" and x["name"].startswith("serving_default_x")
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert signatures["serving_default"]["defaults"] == {}
    inputs = signatures["classify_x_to_y"]["inputs"]["inputs"]
    assert inputs["dtype"] == "DT_STRING" and inputs["tensor_shape"]["dim"][0]["size"] == "-1"
    assert http(port, "GET", f"{M}/versions/123/metadata").json() == doc


def test_gzip_request_body(port):
    body = gzip.compress(b'{"instances": [1.0, 5.0]}')
    reply = http(port, "POST", f"{M}:predict", body, {"Content-Encoding": "gzip"})
    assert reply.json() == {"predictions": [2.5, 4.5]}


def test_large_request_body(port):
    values = ", ".join(["2.000000"] * 600_000).encode()
    body = b'{"instances": [' + values + b"]}"
    assert len(body) > 4 * 1024 * 1024
    reply = http(port, "POST", f"{M}:predict", body, timeout=120)
    assert reply.status == 200 and reply.json()["predictions"][-1] == 3.0


def test_ping_route_for_the_transport_floor(port):
    reply = http(port, "GET", "/tfstack/ping")
    assert (reply.status, reply.body) == (200, b"{}")


# ----------------------------------------------------------------------------- error catalogue


@pytest.mark.parametrize("method, target, body, status, message", ERROR_CATALOGUE)
def test_error_catalogue(port, method, target, body, status, message):
    reply = http(port, method, target, body)
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    assert message in reply.error
    assert set(reply.json()) == {"error"}


def test_uppercase_metadata_falls_through_to_status(port):
    assert "model_version_status" in http(port, "GET", f"{M}/METADATA").json()


def test_version_overflow_is_400_with_empty_body(port):
    reply = http(port, "GET", f"{M}/versions/18446744073709551615")
    assert (reply.status, reply.body) == (400, b"")
    assert reply.headers["content-type"] == "application/json"


def test_non_v1_paths_get_libevent_404(port):
    for target in ("/", "/v1", "/statuspage", "/models/half_plus_two"):
        reply = http(port, "GET", target)
        assert reply.status == 404 and b"<H1>Not Found</H1>" in reply.body


def test_options_preflight(port):
    reply = http(port, "OPTIONS", f"{M}:predict", headers={"Origin": "https://example.com"})
    assert (reply.status, reply.body) == (200, b"")
    assert (http(port, "OPTIONS", f"{M}:predict").status, http(port, "OPTIONS", f"{M}:predict").body) == (400, b"")


def test_b64_is_decoded_for_string_inputs_via_examples(port):
    # half_plus_two has no string predict input; classify takes b64 bytes features.
    payload = base64.b64encode(b"\x00\x01").decode()
    reply = http(port, "POST", f"{M}:classify", json.dumps(
        {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0, "raw": {"b64": payload}}]}).encode())
    assert reply.json() == {"results": [[["", 3.0]]]}
