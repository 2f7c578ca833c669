"""Seeded fuzzing of a running server's REST and gRPC APIs (half_plus_two model), with an oracle.

Used by tests/integration/test_fuzz.py (CI-sized) and benchmarks/fuzz_server.py (long runs).

    cases = rest_cases(random.Random(7), 2000)
    report = run_rest(port, cases)          # report.failures lists every broken rule
    report = run_grpc(target, grpc_cases(random.Random(7), 1000))

The oracle: no REST answer >= 500 and no gRPC INTERNAL/UNKNOWN/DATA_LOSS/UNAVAILABLE for anything
a client sent, except request bytes that do not decode as the method's message, which get
INTERNAL `Failed to parse request: ...` (what a C++ gRPC server, so TF Serving, answers with an
empty message); every answer within its timeout (no hang); every REST error a JSON
`{"error": ...}` without Python exception names; valid requests answered correctly.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import random
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

MODEL = "half_plus_two"
_PYTHON_INTERNALS = re.compile(
    r"Traceback|(?:Value|Type|Key|Index|Attribute|Overflow|Recursion|Memory|Runtime|Decode|Unicode\w*)Error\b|Exception\b|\.py\b"
)

VALID_REST = [
    (f"/v1/models/{MODEL}:predict", b'{"instances": [1.0, 2.0, 5.0]}', {"predictions": [2.5, 3.0, 4.5]}),
    (f"/v1/models/{MODEL}:predict", b'{"inputs": {"x": [[1.0], [2.0]]}}', {"outputs": [[2.5], [3.0]]}),
    (f"/v1/models/{MODEL}:classify", b'{"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}', None),
    (f"/v1/models/{MODEL}:regress", b'{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}', {"results": [3.0]}),
]


@dataclasses.dataclass
class Report:
    """What a fuzz run saw: answers by code, failures (rule broken) and hangs."""

    sent: int = 0
    codes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failures: list[str] = dataclasses.field(default_factory=list)
    hangs: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        top = ", ".join(f"{k}: {v}" for k, v in self.codes.most_common())
        return f"{self.sent} inputs in {self.seconds:.1f} s, {len(self.failures)} failures, {self.hangs} hangs; {top}"


# ------------------------------------------------------------------------------------------ REST


def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([0, 1, -1, 2**63, -(2**63) - 1, 2**64, 10**30, 7])
    if kind == 1:
        return rng.choice([0.5, -1e308, 1e-320, 3.4e38, float("inf"), float("nan")])
    if kind == 2:
        return rng.choice(["", "x", "é", "\ud800", "a" * 300, "serving_default", "classify_x_to_y"])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return {"b64": rng.choice(["AAAA", "%%%", "", "A", base64.b64encode(rng.randbytes(9)).decode()])}
    if kind == 5:
        return [rng.random() for _ in range(rng.randrange(0, 5))]
    if kind == 6:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    keys = ["x", "y", "instances", "inputs", "examples", "context", "signature_name", "b64", ""]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _dump(value) -> bytes:
    text = json.dumps(value, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def _mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(5)
        position = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(position, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[position:position] = rng.choice([b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b"1e999", b"-", b"\x00"])
        elif op == 2 and data:
            del data[position : position + rng.randrange(1, 8)]
        elif op == 3:
            data[position:position] = data[: rng.randrange(0, 40)]
        else:
            data = data[:position]
    return bytes(data)


def _special_rest_bodies(rng: random.Random) -> list[bytes]:
    """The issue's cases: huge integer literals, deep nesting, rank > 64, long numbers."""
    bodies = []
    for digits in (4300, 4301, 5000, 20_000, 100_000):
        number = ("-" if rng.random() < 0.5 else "") + "9" * digits
        bodies += [f'{{"instances": [{number}]}}'.encode(), f'{{"examples": [{{"x": {number}}}]}}'.encode(),
                   f'{{"inputs": {{"x": [[{number}]]}}}}'.encode(), f'{{"signature_name": {number}}}'.encode()]
    for exponent in ("1e" + "9" * 5000, "1e-" + "9" * 5000, "0." + "0" * 5000 + "1", "1" + "0" * 400 + ".5"):
        bodies.append(f'{{"instances": [{exponent}]}}'.encode())
    for rank in (63, 64, 65, 100, 254, 255, 1000):
        bodies.append(b'{"instances": ' + b"[" * rank + b"1.0" + b"]" * rank + b"}")
        bodies.append(b'{"inputs": {"x": ' + b"[" * rank + b"1.0" + b"]" * rank + b"}}")
    return bodies


def rest_cases(rng: random.Random, count: int) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """`count` (method, target, body, headers) requests, mostly malformed, some valid."""
    verbs = ["predict", "classify", "regress"]
    cases = [("POST", f"/v1/models/{MODEL}:{verbs[i % 3]}", body, {})
             for i, body in enumerate(_special_rest_bodies(rng))]
    targets = [f"/v1/models/{MODEL}", f"/v1/models/{MODEL}/metadata", f"/v1/models/{MODEL}/versions/123",
               f"/v1/models/{MODEL}/versions/{'9' * 5000}:predict", f"/v1/models/{MODEL}/labels/x:predict",
               "/v1/models/nope:predict", "/v1/" + "a" * 3000, "/nope", "/tfstack/ping"]
    while len(cases) < count:
        roll = rng.random()
        if roll < 0.05:
            target, body, _ = rng.choice(VALID_REST)
            cases.append(("POST", target, body, {}))
        elif roll < 0.45:
            _, body, _ = rng.choice(VALID_REST)
            cases.append(("POST", f"/v1/models/{MODEL}:{rng.choice(verbs)}", _mutate(rng, body), {}))
        elif roll < 0.8:
            document = _random_json(rng)
            if rng.random() < 0.7:
                document = {rng.choice(["instances", "inputs", "examples"]): document}
                if rng.random() < 0.3:
                    document["signature_name"] = rng.choice(["", "classify_x_to_y", "regress_x_to_y", "nope", 5])
            cases.append(("POST", f"/v1/models/{MODEL}:{rng.choice(verbs)}", _dump(document), {}))
        elif roll < 0.9:
            cases.append((rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"]), rng.choice(targets),
                          rng.randbytes(rng.randrange(0, 64)), {}))
        else:
            _, body, _ = rng.choice(VALID_REST)
            headers = {"Content-Encoding": rng.choice(["gzip", "deflate", "br", "identity"])}
            cases.append(("POST", f"/v1/models/{MODEL}:predict", _mutate(rng, b"\x1f\x8b\x08\x00" + body), headers))
    return cases


def _exchange(port: int, method: str, target: str, body: bytes, headers: dict[str, str], timeout: float):
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        chunks = []
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = bytearray(), payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2 :]
        payload = bytes(out)
    return status, head, payload


def run_rest(port: int, cases, *, workers: int = 4, timeout: float = 30.0) -> Report:
    """Send every case on its own connection; check the oracle."""
    report = Report()
    expected = {(t, b): answer for t, b, answer in VALID_REST}

    def one(case):
        method, target, body, headers = case
        try:
            status, head, payload = _exchange(port, method, target, body, headers, timeout)
        except socket.timeout:
            return "hang", f"no answer within {timeout}s: {method} {target[:80]} {body[:80]!r}"
        except (OSError, ValueError, IndexError) as exc:
            return "broken", f"no valid HTTP answer ({exc!r}): {method} {target[:80]} {body[:80]!r}"
        problem = None
        if status >= 500:
            problem = f"{status} {payload[:200]!r}"
        elif target.startswith("/v1/") and payload and b"application/json" in head.lower():
            try:
                document = json.loads(payload.decode("utf-8", "replace"))
            except ValueError:
                document = None
            if status >= 400 and not (isinstance(document, dict) and isinstance(document.get("error"), str)):
                problem = f"{status} without a JSON error: {payload[:200]!r}"
            elif status >= 400 and _PYTHON_INTERNALS.search(document["error"]):
                problem = f"Python internals in {document['error'][:200]!r}"
        answer = expected.get((target, body))
        if method == "POST" and not headers and answer is not None and status == 200 and json.loads(payload) != answer:
            problem = f"wrong answer {payload[:200]!r}"
        if (target, body) in expected and not headers and method == "POST" and status != 200:
            problem = f"valid request answered {status} {payload[:200]!r}"
        if problem:
            return "failure", f"{problem} <- {method} {target[:80]} {body[:80]!r}"
        return str(status), None

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for outcome, detail in pool.map(one, cases):
            report.sent += 1
            report.codes[outcome] += 1
            if outcome == "hang":
                report.hangs += 1
            if detail:
                report.failures.append(detail)
    report.seconds = time.perf_counter() - started
    return report


# ------------------------------------------------------------------------------------------ gRPC


def _random_tensor(rng: random.Random):
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto()
    proto.dtype = rng.choice([0, 1, 1, 1, 2, 3, 7, 9, 10, 19, 14, 20, 99])
    rank = rng.choice([0, 1, 1, 2, 3, 4, 65, 100, 254, 255, 400]) if rng.random() < 0.9 else rng.randrange(0, 70)
    for _ in range(rank):
        proto.tensor_shape.dim.add(size=rng.choice([1, 1, 1, 0, 2, 3, -1, -7, 10**6, 2**40]) if rank < 8 else 1)
    if rng.random() < 0.1:
        proto.tensor_shape.unknown_rank = True
    kind = rng.randrange(6)
    if kind == 0:
        proto.tensor_content = rng.randbytes(rng.randrange(0, 64))
    elif kind == 1:
        proto.float_val.extend(rng.uniform(-1e9, 1e9) for _ in range(rng.randrange(0, 9)))
    elif kind == 2:
        proto.string_val.extend(rng.randbytes(rng.randrange(0, 9)) for _ in range(rng.randrange(0, 4)))
    elif kind == 3:
        proto.int64_val.extend(rng.randrange(-(2**63), 2**63) for _ in range(rng.randrange(0, 5)))
    elif kind == 4:
        proto.half_val.extend(rng.randrange(0, 65536) for _ in range(rng.randrange(0, 5)))
    return proto


def _spec(rng: random.Random, spec) -> None:
    spec.name = rng.choice([MODEL, MODEL, "", "nope", "x" * 3000])
    spec.signature_name = rng.choice(["", "serving_default", "classify_x_to_y", "regress_x_to_y", "??"])
    choice = rng.random()
    if choice < 0.2:
        spec.version.value = rng.choice([-1, 0, 123, 2**63 - 1])
    elif choice < 0.3:
        spec.version_label = rng.choice(["", "stable", "x" * 500])


def _examples(rng: random.Random, input_message) -> None:
    target = input_message.example_list if rng.random() < 0.7 else input_message.example_list_with_context
    for _ in range(rng.randrange(0, 4)):
        example = target.examples.add()
        feature = example.features.feature[rng.choice(["x", "x2", "q", ""])]
        pick = rng.randrange(3)
        if pick == 0:
            feature.float_list.value.extend(rng.random() for _ in range(rng.randrange(0, 3)))
        elif pick == 1:
            feature.int64_list.value.append(rng.randrange(-(2**63), 2**63))
        else:
            feature.bytes_list.value.append(rng.randbytes(3))


def valid_predict_bytes() -> bytes:
    """A serialized PredictRequest for x=2.0 (answer: y=3.0)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    valid = predict_pb2.PredictRequest()
    valid.model_spec.name = MODEL
    valid.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([2.0], np.float32)))
    return valid.SerializeToString()


def grpc_cases(rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    """`count` (method path, serialized request) pairs: structured, mutated and raw bytes."""
    from grpc_health.v1 import health_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        inference_pb2,
        predict_pb2,
        regression_pb2,
    )

    service = "/tensorflow.serving.PredictionService/"
    valid_bytes = valid_predict_bytes()
    cases: list[tuple[str, bytes]] = []
    for rank in (64, 65, 100, 254, 255, 1000):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        tensor = request.inputs["x"]
        tensor.dtype = 1
        for _ in range(rank):
            tensor.tensor_shape.dim.add(size=1)
        tensor.float_val.append(1.0)
        cases.append((service + "Predict", request.SerializeToString()))
    while len(cases) < count:
        roll = rng.random()
        if roll < 0.05:
            cases.append((service + "Predict", valid_bytes))
        elif roll < 0.35:
            request = predict_pb2.PredictRequest()
            if rng.random() < 0.9:
                _spec(rng, request.model_spec)
            for _ in range(rng.randrange(0, 3)):
                request.inputs[rng.choice(["x", "y", "inputs", ""])].CopyFrom(_random_tensor(rng))
            request.output_filter.extend(rng.sample(["y", "z", "y"], rng.randrange(0, 3)))
            cases.append((service + "Predict", request.SerializeToString()))
        elif roll < 0.5:
            message = rng.choice([classification_pb2.ClassificationRequest, regression_pb2.RegressionRequest])()
            if rng.random() < 0.9:
                _spec(rng, message.model_spec)
            _examples(rng, message.input)
            name = "Classify" if message.DESCRIPTOR.name == "ClassificationRequest" else "Regress"
            cases.append((service + name, message.SerializeToString()))
        elif roll < 0.58:
            request = inference_pb2.MultiInferenceRequest()
            for _ in range(rng.randrange(0, 3)):
                task = request.tasks.add()
                _spec(rng, task.model_spec)
                task.method_name = rng.choice(["tensorflow/serving/classify", "tensorflow/serving/regress", "x"])
            _examples(rng, request.input)
            cases.append((service + "MultiInference", request.SerializeToString()))
        elif roll < 0.66:
            request = get_model_metadata_pb2.GetModelMetadataRequest()
            if rng.random() < 0.8:
                _spec(rng, request.model_spec)
            request.metadata_field.extend(rng.sample(["signature_def", "x", ""], rng.randrange(0, 3)))
            cases.append((service + "GetModelMetadata", request.SerializeToString()))
        elif roll < 0.72:
            request = get_model_status_pb2.GetModelStatusRequest()
            if rng.random() < 0.8:
                _spec(rng, request.model_spec)
            cases.append(("/tensorflow.serving.ModelService/GetModelStatus", request.SerializeToString()))
        elif roll < 0.75:
            request = health_pb2.HealthCheckRequest(service=rng.choice(["", "PredictionService", "nope"]))
            cases.append(("/grpc.health.v1.Health/Check", request.SerializeToString()))
        elif roll < 0.9:
            cases.append((service + "Predict", _mutate(rng, valid_bytes)))
        else:
            method = rng.choice([service + "Predict", service + "Classify", service + "GetModelMetadata",
                                 "/tensorflow.serving.ModelService/GetModelStatus", "/grpc.health.v1.Health/Check"])
            cases.append((method, rng.randbytes(rng.randrange(1, 200))))
    return cases


def _request_class(method: str):
    from grpc_health.v1 import health_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        inference_pb2,
        predict_pb2,
        regression_pb2,
    )

    return {
        "Predict": predict_pb2.PredictRequest, "Classify": classification_pb2.ClassificationRequest,
        "Regress": regression_pb2.RegressionRequest, "MultiInference": inference_pb2.MultiInferenceRequest,
        "GetModelMetadata": get_model_metadata_pb2.GetModelMetadataRequest,
        "GetModelStatus": get_model_status_pb2.GetModelStatusRequest, "Check": health_pb2.HealthCheckRequest,
    }[method.rsplit("/", 1)[1]]


def run_grpc(target: str, cases, *, workers: int = 4, timeout: float = 30.0) -> Report:
    """Send every case as raw bytes on one channel; check the oracle."""
    import grpc
    from google.protobuf.message import DecodeError

    report = Report()
    valid = valid_predict_bytes()
    channel = grpc.insecure_channel(
        target, options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    )
    server_faults = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS,
                     grpc.StatusCode.UNAVAILABLE}

    def one(case):
        method, payload = case
        request_class = _request_class(method)
        try:
            request_class.FromString(payload)
            decodable = True
        except (DecodeError, RuntimeError, ValueError):
            decodable = False
        call = channel.unary_unary(method)
        try:
            reply = call(payload, timeout=timeout)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                return "hang", f"no answer within {timeout}s: {method} {payload[:60]!r}"
            if not decodable:
                wanted = f"Failed to parse request: {len(payload)} bytes received are not a valid {request_class.DESCRIPTOR.full_name} message."
                if code is not grpc.StatusCode.INTERNAL or details != wanted:
                    return "failure", f"undecodable {method}: {code.name} {details[:200]!r}"
                return "INTERNAL (undecodable)", None
            if code in server_faults:
                return "failure", f"{method}: {code.name} {details[:200]!r} <- {payload[:80]!r}"
            if _PYTHON_INTERNALS.search(details):
                return "failure", f"Python internals in {details[:200]!r}"
            return code.name, None
        if not decodable:
            return "failure", f"undecodable {method} answered OK"
        if payload == valid and method.endswith("/Predict"):
            from tensorflow_serving.apis import predict_pb2

            if list(predict_pb2.PredictResponse.FromString(reply).outputs["y"].float_val) != [3.0]:
                return "failure", "the valid Predict got a wrong answer"
        return "OK", None

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for outcome, detail in pool.map(one, cases):
                report.sent += 1
                report.codes[outcome] += 1
                if outcome == "hang":
                    report.hangs += 1
                if detail:
                    report.failures.append(detail)
    finally:
        channel.close()
    report.seconds = time.perf_counter() - started
    return report
