"""The REST front end in-process: real aiohttp app over the real ServerCore (half_plus_two).

Requests go over a raw socket so the exact request target (percent-escapes, query strings,
odd methods) reaches the server unaltered, as it would from curl.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from tfstack.serving.server.rest import _app as _rest
from tfstack.serving._errors import Code, StatusError
from tests.support.rest_errors import ERROR_CATALOGUE


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        return self.json()["error"]


async def send(server: TestServer, method: str, target: str, body: bytes = b"", headers: dict | None = None) -> Reply:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        parsed[key.strip().lower()] = value.strip()
    return Reply(int(status_line.split()[1]), parsed, payload)


@pytest.fixture
async def server(core):
    app = _rest.build_rest_app(core, timeout=10.0)
    test_server = TestServer(app)
    await test_server.start_server(**_rest.RUNNER_KWARGS)
    yield test_server
    await test_server.close()


M = "/v1/models/half_plus_two"


async def test_predict_row_and_columnar(server):
    reply = await send(server, "POST", f"{M}:predict", b'{"instances": [1.0, 2.0, 5.0]}')
    assert (reply.status, reply.headers["content-type"]) == (200, "application/json")
    assert reply.body == b'{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}'
    reply = await send(server, "POST", f"{M}/versions/123:predict", b'{"inputs": [2.0, 3.0, 4.0]}')
    assert reply.json() == {"outputs": [3.0, 3.5, 4.0]}
    reply = await send(server, "POST", f"{M}/labels/stable:predict", b'{"signature_name": "serving_default", "instances": [{"x": 1.0}]}')
    assert reply.json() == {"predictions": [2.5]}
    reply = await send(server, "POST", f"{M}:predict", b'{"inputs": {"x": [[1.0], [2.0]]}}')
    assert reply.json() == {"outputs": [[2.5], [3.0]]}


async def test_predict_nan_infinity_and_trailing_garbage(server):
    reply = await send(server, "POST", f"{M}:predict", b'{"instances": [NaN, Infinity, -Infinity]} trailing')
    assert reply.status == 200
    assert b"[NaN, Infinity, -Infinity" in reply.body


async def test_classify_and_regress(server):
    reply = await send(server, "POST", f"{M}:classify", b'{"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}')
    assert reply.status == 200 and reply.json() == {"results": [[["", 3.0]]]}
    reply = await send(server, "POST", f"{M}/labels/stable:regress", b'{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": 80.0}]}')
    assert reply.body == b'{\n    "results": [3.0, 42.0]\n}'
    reply = await send(server, "POST", f"{M}:regress", b'{"signature_name": "regress_x2_to_y3", "context": {"x2": 4.0}, "examples": [{"x": 1.0}]}')
    assert reply.json() == {"results": [5.0]}


async def test_status_and_metadata(server):
    reply = await send(server, "GET", M)
    assert reply.status == 200
    assert reply.json() == {"model_version_status": [{"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert reply.body.startswith(b'{\n "model_version_status": [\n  {\n   "version": "123"')
    assert (await send(server, "GET", f"{M}/versions/123")).json() == reply.json()
    # The label is ignored for status, even an unknown one.
    assert (await send(server, "GET", f"{M}/labels/nope")).json() == reply.json()
    reply = await send(server, "GET", f"{M}/metadata")
    doc = reply.json()
    assert doc["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "123"}
    signatures = doc["metadata"]["signature_def"]["signature_def"]
    x = signatures["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT" and "tensor_shape" in x and x["name"]
    assert signatures["classify_x_to_y"]["outputs"]["scores"]["dtype"] == "DT_FLOAT"
    assert "defaults" in signatures["serving_default"]
    assert (await send(server, "GET", f"{M}/labels/stable/metadata")).json() == doc
    # `METADATA` in upper case silently falls through to the status API.
    assert "model_version_status" in (await send(server, "GET", f"{M}/METADATA")).json()


@pytest.mark.parametrize("method, target, body, status, message", ERROR_CATALOGUE)
async def test_error_catalogue(server, method, target, body, status, message):
    reply = await send(server, method, target, body)
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    assert message in reply.error
    assert reply.body.startswith(b'{\n    "error": ')


async def test_url_is_case_insensitive_and_percent_decoded(server):
    assert (await send(server, "POST", "/V1/MODELS/half_plus_two:predict", b'{"instances": [1.0]}')).status == 200
    assert (await send(server, "POST", "/v1/models/half%5Fplus%5Ftwo/versions/00123:predict", b'{"instances": [1.0]}')).status == 200
    reply = await send(server, "POST", "/v1/models/a%2Fb%21:predict", b"{}")
    assert reply.status == 404 and reply.error == "Servable not found for request: Latest(a/b!)"


async def test_version_overflow_is_an_empty_400(server):
    reply = await send(server, "GET", f"{M}/versions/18446744073709551615")
    assert (reply.status, reply.body, reply.headers["content-type"]) == (400, b"", "application/json")


async def test_non_v1_paths_are_libevent_404s_and_ping_answers(server):
    for target in ("/", "/v1", "/statuspage", "/v2/models/x"):
        reply = await send(server, "GET", target)
        assert reply.status == 404 and reply.body.startswith(b"<HTML>") and b"Not Found" in reply.body
    reply = await send(server, "GET", _rest.PING_PATH)
    assert (reply.status, reply.body, reply.headers["content-type"]) == (200, b"{}", "application/json")


async def test_methods_libevent_refuses(server):
    reply = await send(server, "TRACE", M)
    assert reply.status == 501 and b"Not Implemented" in reply.body
    # Unknown method names are a 400 (aiohttp's parser rejects them before the app, like libevent's).
    assert (await send(server, "FROB", M)).status == 400


async def test_options_preflight(server):
    reply = await send(server, "OPTIONS", f"{M}:predict", headers={"Origin": "http://example.com"})
    assert (reply.status, reply.body) == (200, b"")
    assert "content-type" not in reply.headers
    reply = await send(server, "OPTIONS", f"{M}:predict")
    assert (reply.status, reply.body) == (400, b"")


async def test_gzip_bodies(server):
    body = gzip.compress(b'{"instances": [1.0, 2.0]}')
    reply = await send(server, "POST", f"{M}:predict", body, {"Content-Encoding": "gzip"})
    assert reply.json() == {"predictions": [2.5, 3.0]}
    reply = await send(server, "POST", f"{M}:predict", body[:10] + b"broken", {"Content-Encoding": "gzip"})
    assert reply.status == 400 and reply.error == "JSON Parse error: The document is empty"


async def test_gzip_bodies_with_aiohttp_decompressing_first(core):
    # A runner left at aiohttp's default decodes gzip itself; the app must not decode twice.
    async with TestServer(_rest.build_rest_app(core, timeout=None)) as test_server:
        body = gzip.compress(b'{"instances": [1.0]}')
        reply = await send(test_server, "POST", f"{M}:predict", body, {"Content-Encoding": "gzip"})
        assert reply.json() == {"predictions": [2.5]}
        # aiohttp fails to decode these before we see them: still a client error, never a 5xx.
        for broken, encoding in ((body[:10] + b"broken", "gzip"), (b'{"instances": [1.0]}', "deflate")):
            reply = await send(test_server, "POST", f"{M}:predict", broken, {"Content-Encoding": encoding})
            assert reply.status == 400 and reply.error.startswith("JSON Parse error: ")


async def test_large_body_over_aiohttp_default_limit(server):
    values = ", ".join(["1.50000"] * 500_000).encode()
    body = b'{"instances": [' + values + b"]}"
    assert len(body) > 4 * 1024 * 1024
    reply = await send(server, "POST", f"{M}:predict", body)
    assert reply.status == 200
    predictions = reply.json()["predictions"]
    assert len(predictions) == 500_000 and predictions[0] == 2.75


async def test_deeply_nested_body_does_not_crash(server):
    depth = 200_000
    body = b'{"instances": [1.0], "nested":' + b"[" * depth + b"]" * depth + b"}"
    assert (await send(server, "POST", f"{M}:predict", body)).json() == {"predictions": [2.5]}
    reply = await send(server, "POST", f"{M}:predict", b'{"instances":' + b"[" * depth + b"1.0" + b"]" * depth + b"}")
    assert reply.status == 400


class _SlowCore:
    """Just enough of ServerCore to exercise the timeout and exotic-dtype paths."""

    def __init__(self, outputs: dict[str, np.ndarray] | None = None, delay: float = 0.0) -> None:
        self.outputs = outputs or {}
        self.delay = delay

    def resolve(self, model_name, *, version=None, label=None):
        from tensorflow.core.protobuf import meta_graph_pb2

        signature = meta_graph_pb2.SignatureDef()
        signature.inputs["x"].dtype = 1

        class _Servable:
            signature_defs = {"serving_default": signature}
            version = 1

        return _Servable()

    async def predict(self, servable, signature_name, inputs, output_filter=(), timeout=None):
        try:
            await asyncio.wait_for(asyncio.sleep(self.delay), timeout)
        except asyncio.TimeoutError as exc:
            raise StatusError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded") from exc
        return self.outputs


async def test_timeout_gives_504():
    app = _rest.build_rest_app(_SlowCore(delay=5.0), timeout=0.05)
    async with TestServer(app) as test_server:
        reply = await send(test_server, "POST", "/v1/models/m:predict", b'{"instances": [1.0]}')
    assert reply.status == 504 and reply.error == "Deadline Exceeded"


async def test_unwritable_output_dtype_is_400():
    app = _rest.build_rest_app(_SlowCore(outputs={"c": np.zeros(2, np.complex64)}), timeout=None)
    async with TestServer(app) as test_server:
        reply = await send(test_server, "POST", "/v1/models/m:predict", b'{"instances": [1.0, 2.0]}')
    assert reply.status == 400 and reply.error == "Failed to write JSON value for tensor type: complex64"


def test_build_rest_app_rejects_bad_arguments():
    with pytest.raises(TypeError, match="Received: timeout="):
        _rest.build_rest_app(object(), timeout="30")
    with pytest.raises(ValueError, match="Received: metrics_path="):
        _rest.build_rest_app(object(), timeout=None, metrics_path="metrics")


async def test_cors_metrics_page_and_request_observer(core):
    seen = []
    app = _rest.build_rest_app(
        core,
        timeout=0,  # <= 0 means no timeout, as --rest_api_timeout_in_ms=0 does
        cors=True,
        metrics_page=lambda: "# TYPE :tensorflow:serving:request_count counter\n",
        on_request=lambda *args: seen.append(args),
    )
    async with TestServer(app) as test_server:
        ok = await send(test_server, "POST", f"{M}:predict", b'{"instances": [1.0]}')
        missing = await send(test_server, "GET", "/v1/models/nope")
        malformed = await send(test_server, "GET", "/v1/foo")
        preflight = await send(test_server, "OPTIONS", f"{M}:predict")
        page = await send(test_server, "GET", _rest.DEFAULT_METRICS_PATH)
        queried = await send(test_server, "GET", _rest.DEFAULT_METRICS_PATH + "?x")
        not_v1 = await send(test_server, "GET", "/other")
    for reply in (ok, missing, malformed, preflight):
        assert reply.headers["access-control-allow-origin"] == "*"
        assert reply.headers["access-control-allow-methods"] == "POST, GET"
        assert reply.headers["access-control-allow-headers"] == "Content-Type"
    assert "access-control-allow-origin" not in not_v1.headers
    assert (preflight.status, preflight.body) == (400, b"")
    assert (page.status, page.headers["content-type"]) == (200, "text/plain") and b"# TYPE" in page.body
    assert queried.status == 400 and queried.body == (
        f"Unexpected path: {_rest.DEFAULT_METRICS_PATH}?x. Should be {_rest.DEFAULT_METRICS_PATH}".encode()
    )
    assert [(name, api, code) for name, api, code, _ in seen] == [
        ("half_plus_two", "predict", Code.OK),
        ("nope", "", Code.NOT_FOUND),
        ("", "", Code.INVALID_ARGUMENT),
        ("", "", Code.FAILED_PRECONDITION),
    ]
    assert all(latency >= 0 for *_, latency in seen)
