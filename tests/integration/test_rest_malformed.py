"""Hundreds of malformed REST requests against a real server: every one must get a 4xx (never
a 5xx, never a dropped connection), and the server must still answer correctly afterwards."""

from __future__ import annotations

import json
import random
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.test_rest import M, http


pytestmark = pytest.mark.slow

VALID_BODIES = [
    b'{"instances": [1.0, 2.0, 5.0]}',
    b'{"signature_name": "serving_default", "inputs": {"x": [[1.0], [2.0]]}}',
    b'{"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}',
    b'{"signature_name": "regress_x_to_y", "context": {"x2": 1.0}, "examples": [{"x": 2.0}]}',
]
VERBS = ["predict", "classify", "regress"]


def _bad_bodies(rng: random.Random) -> list[bytes]:
    bodies: list[bytes] = []
    # Random garbage, printable and not.
    for _ in range(60):
        bodies.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
    for _ in range(40):
        bodies.append("".join(rng.choice('{}[]":,0123456789.eE-+ntrufalsNIiy\\ab') for _ in range(rng.randrange(1, 80))).encode())
    # Every truncation of valid bodies (all strictly shorter than the document).
    for valid in VALID_BODIES:
        bodies += [valid[:i] for i in range(0, len(valid) - 1, 2)]
    # Wrong types in every slot.
    for bad in ['"x"', "true", "null", "{}", '{"b64": "AAAA"}', "[[1], 2]", "[1, [2]]", "[[[]]]", "1e999", "-", "NaN", "Nan"]:
        bodies.append(f'{{"instances": [{bad}]}}'.encode())
        bodies.append(f'{{"inputs": {bad}}}'.encode())
        bodies.append(f'{{"signature_name": {bad}, "instances": [1.0]}}'.encode())
        bodies.append(f'{{"examples": [{{"x": {bad}}}]}}'.encode())
        bodies.append(f'{{"examples": {bad}}}'.encode())
        bodies.append(f'{{"context": {bad}, "examples": [{{"x": 1.0}}]}}'.encode())
    # Deep nesting, in and out of the tensor.
    for depth in (100, 1_000, 10_000, 100_000):
        bodies.append(b'{"instances": ' + b"[" * depth + b"1.0" + b"]" * depth + b"}")
        bodies.append(b'{"instances": ' + b"[" * depth + b"}")
        bodies.append(b'{"examples": [{"x": ' + b"[" * depth + b"]" * depth + b"}]}")
        bodies.append(b'{"inputs": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}")
    # Huge numbers and long digit strings.
    for number in ["1" * 400, "-" + "9" * 30, "1e308", "1e309", "-1e400", "1." + "0" * 500, "18446744073709551616", "0.0000001e-400"]:
        bodies.append(f'{{"instances": [{number}]}}'.encode())
        bodies.append(f'{{"examples": [{{"x": {number}}}]}}'.encode())
    # Bad base64 and b64 look-alikes.
    for b64 in ['{"b64": "%%%"}', '{"b64": "A"}', '{"b64": 1}', '{"b64": "AAAA", "x": 1}', '{"b64": ["AAAA"]}', '{"B64": "AAAA"}']:
        bodies.append(f'{{"instances": [{b64}]}}'.encode())
        bodies.append(f'{{"examples": [{{"x": {b64}}}]}}'.encode())
    # Ragged and mixed rows.
    bodies += [
        b'{"instances": [[1, 2], [3]]}', b'{"instances": [{"x": 1.0}, 2.0]}', b'{"instances": [2.0, {"x": 1.0}]}',
        b'{"instances": [{"x": 1.0, "y": 2.0}]}', b'{"instances": [{}]}', b'{"inputs": {}}', b'{"instances": [], "inputs": []}',
        b'{"instances": [1.0], "inputs": [1.0]}', "{\"instances\": [\"\u00e9\\ud800\"]}".encode(), b'{"instances": ["\xff\xfe"]}',
    ]
    return bodies


def _bad_requests(rng: random.Random) -> list[tuple[str, str, bytes, dict[str, str]]]:
    requests = []
    bodies = _bad_bodies(rng)
    for i, body in enumerate(bodies):
        requests.append(("POST", f"{M}:{VERBS[i % 3]}", body, {}))
    # Bodies that claim a content encoding they do not have.
    for body in bodies[:20] + [b"\x1f\x8b\x08\x00broken"]:
        for encoding in ("gzip", "deflate", "br", "gzip, identity"):
            requests.append(("POST", f"{M}:predict", body, {"Content-Encoding": encoding}))
    # Bad URLs and methods with a valid body.
    targets = [
        "/v1/models/half_plus_two/versions/99999999999999999999999:predict",
        "/v1/models/half_plus_two/versions/-1:predict", "/v1/models/half_plus_two/versions/:predict",
        "/v1/models/:predict", "/v1/models//versions/1", "/v1/models/%zz%:predict", "/v1/models/%00:predict",
        "/v1/models/half_plus_two:predict/extra", "/v1/models/half_plus_two::predict", "/v1/models/half_plus_two:",
        "/v1/models/half_plus_two/labels/:predict", "/v1/models/half_plus_two/labels/%C3%A9:predict",
        "/v1/" + "a" * 4000, "/v1/models/" + "m" * 4000 + ":predict", "/v1/models/half_plus_two/metadata/extra",
        "/v1/models/half_plus_two:predict#frag", "/v1//models/half_plus_two:predict", "/nope", "/",
    ]
    for target in targets:
        for method in ("GET", "POST", "PUT", "DELETE"):
            requests.append((method, target, VALID_BODIES[0], {}))
    return requests


def test_malformed_requests_never_get_5xx_and_server_survives(server):
    port = server.rest_port
    rng = random.Random(20260127)
    requests = _bad_requests(rng)
    assert len(requests) > 400

    def one(request: tuple[str, str, bytes, dict[str, str]]):
        method, target, body, headers = request
        try:
            reply = http(port, method, target, body, headers, timeout=60)
        except (OSError, ValueError, IndexError) as exc:
            return request, f"no valid HTTP reply: {exc!r}"
        if reply.status >= 500:
            return request, f"{reply.status} {reply.body[:300]!r}"
        # An aiohttp runner that decodes bodies itself answers an encoding it cannot decode
        # (e.g. br) with its own plain-text 400 before the app runs; still a client error.
        if target.startswith("/v1/") and reply.status != 404 and reply.body and not headers:
            try:
                # Messages echo request bytes verbatim (as TF Serving does), even invalid UTF-8.
                assert set(json.loads(reply.body.decode("utf-8", "replace"))) <= {"error", "predictions", "outputs", "results", "model_version_status",
                                                       "model_spec", "metadata"}
            except (ValueError, AssertionError):
                return request, f"unexpected body {reply.body[:300]!r}"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(one, requests) if f is not None]
    assert not failures, "\n".join(f"{m} {t[:80]} {h} body={b[:60]!r}: {why}" for (m, t, b, h), why in failures[:20])

    # Raw garbage on the socket (not even HTTP) must not hurt either.
    for garbage in (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"POST /v1/models/x:predict HTTP/1.1\r\nContent-Length: 99999\r\n\r\n{"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(10)
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass

    # Still serving, with correct answers.
    assert http(port, "POST", f"{M}:predict", b'{"instances": [2.0, 3.0, 4.0]}').json() == {"predictions": [3.0, 3.5, 4.0]}
    assert http(port, "POST", f"{M}:regress", b'{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}').json() == {"results": [3.0]}
    assert http(port, "GET", M).json()["model_version_status"][0]["state"] == "AVAILABLE"
    assert server.process.poll() is None
