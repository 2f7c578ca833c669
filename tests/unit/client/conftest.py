"""A fake TF Serving for hermetic client tests, reachable over both transports.

`FakeServing` holds the behaviour (a half_plus_two-like model with two versions and labels,
TF Serving's error texts); `rest_handler` speaks TF Serving's REST JSON through
httpx.MockTransport and `start_grpc_server` speaks gRPC on 127.0.0.1 with the client's own
wire messages. The parametrized `client` fixture runs a test over both.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from urllib.parse import unquote

import grpc
import httpx
import numpy as np
import pytest

from tfstack.client import AsyncServingClient, RetryPolicy, ServingClient
from tfstack.client._grpc import AsyncGrpcTransport, GrpcTransport
from tfstack.client._proto import tfstack_serving_pb2 as pb
from tfstack.client._rest import AsyncRestTransport, RestTransport
from tfstack.client._tensors import to_ndarray

HTTP = {"NOT_FOUND": 404, "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "UNAVAILABLE": 503, "INTERNAL": 500}


class Fault(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _tensor_info(dtype: str, dims: list[int] | None) -> dict:
    return {"dtype": dtype, "dims": dims}


SIGNATURES = {
    "serving_default": {
        "method": "tensorflow/serving/predict",
        "inputs": {"x": _tensor_info("DT_FLOAT", [-1])},
        "outputs": {"y": _tensor_info("DT_FLOAT", [-1])},
    },
    "multi": {
        "method": "tensorflow/serving/predict",
        "inputs": {"x": _tensor_info("DT_FLOAT", [-1]), "name": _tensor_info("DT_STRING", [-1])},
        "outputs": {
            "y": _tensor_info("DT_FLOAT", [-1]),
            "count": _tensor_info("DT_INT64", [-1]),
            "greeting_bytes": _tensor_info("DT_STRING", [-1]),
        },
    },
    "classify_x_to_y": {
        "method": "tensorflow/serving/classify",
        "inputs": {"inputs": _tensor_info("DT_STRING", None)},
        "outputs": {"scores": _tensor_info("DT_FLOAT", [-1, 1])},
    },
    "regress_x_to_y": {
        "method": "tensorflow/serving/regress",
        "inputs": {"inputs": _tensor_info("DT_STRING", None)},
        "outputs": {"outputs": _tensor_info("DT_FLOAT", [-1, 1])},
    },
}


@dataclass
class FakeServing:
    """half_plus_two with versions 1 (y = 0.5x + 2) and 2 (y = 0.5x + 3); labels stable/canary."""

    versions: dict[int, str] = field(default_factory=lambda: {2: "AVAILABLE", 1: "AVAILABLE"})
    labels: dict[str, int] = field(default_factory=lambda: {"stable": 1, "canary": 2})
    delay: float = 0.0
    calls: int = 0
    unavailable_calls: int = 0  # answer UNAVAILABLE this many times first
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self) -> None:
        with self.lock:
            self.calls += 1
            if self.unavailable_calls > 0:
                self.unavailable_calls -= 1
                raise Fault("UNAVAILABLE", "Server is warming up")
        if self.delay:
            time.sleep(self.delay)

    def resolve(self, model: str, version: int | None, label: str | None) -> int:
        self._enter()
        if label is not None:
            if model != "half_plus_two" or label not in self.labels:
                raise Fault("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
            return self.labels[label]
        if model != "half_plus_two":
            raise Fault("NOT_FOUND", f"Servable not found for request: Latest({model})")
        if version is None:
            return max(v for v, s in self.versions.items() if s == "AVAILABLE")
        if self.versions.get(version) != "AVAILABLE":
            raise Fault("NOT_FOUND", f"Servable not found for request: Specific({model}, {version})")
        return version

    @staticmethod
    def signature(name: str) -> dict:
        if name not in SIGNATURES:
            raise Fault("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
        return SIGNATURES[name]

    def predict(self, version: int, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sig = self.signature(signature)
        if set(inputs) != set(sig["inputs"]):
            raise Fault(
                "INVALID_ARGUMENT",
                f"input size does not match signature: {len(inputs)}!={len(sig['inputs'])} "
                f"len({{{','.join(sorted(inputs))}}}) != len({{{','.join(sorted(sig['inputs']))}}})",
            )
        x = inputs["x"]
        if x.dtype.kind not in "fi":
            raise Fault("INVALID_ARGUMENT", f"Expects arg[0] to be float but {x.dtype} is provided")
        y = (0.5 * x.astype(np.float32) + (1.0 + version)).astype(np.float32)
        if signature == "serving_default":
            return {"y": y}
        names = inputs["name"]
        return {
            "y": y,
            "count": np.arange(len(x), dtype=np.int64),
            "greeting_bytes": np.array([b"hi " + n for n in names.reshape(-1)], dtype=object),
        }

    def examples(self, version: int, signature: str, examples: list[dict]) -> list[float]:
        self.signature(signature)
        if signature not in ("classify_x_to_y", "regress_x_to_y"):
            raise Fault("INVALID_ARGUMENT", f"No regression inputs found in SignatureDef: {signature}")
        values = []
        for ex in examples:
            kind, x = ex["x"]
            if kind != "float":
                raise Fault("INVALID_ARGUMENT", "Key: x, Index: 0.  Data types don't match. Data type: int64 but expected type: float")
            values.append(float(np.float32(0.5 * x[0] + 1.0 + version)))
        return values

    def status(self, model: str, version: int | None) -> list[tuple[int, str]]:
        self._enter()
        if model != "half_plus_two":
            raise Fault("NOT_FOUND", f"Could not find any versions of model {model}")
        if version is not None:
            if version not in self.versions:
                raise Fault("NOT_FOUND", f"Could not find version {version} of model {model}")
            return [(version, self.versions[version])]
        return sorted(self.versions.items(), reverse=True)


# ---- REST adapter ---------------------------------------------------------------------------


def _route(path: str) -> tuple[str, int | None, str | None, str | None, bool]:
    verb = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, verb = path.rsplit(":", 1)
    parts = path.split("/")[3:]  # after /v1/models/
    model, version, label, metadata = unquote(parts[0]), None, None, False
    rest = parts[1:]
    if rest and rest[-1] == "metadata":
        metadata, rest = True, rest[:-1]
    if rest[:1] == ["versions"]:
        version = int(rest[1])
    elif rest[:1] == ["labels"]:
        label = unquote(rest[1])
    return model, version, label, verb, metadata


def _dims_json(dims):
    if dims is None:
        return {"dim": [], "unknown_rank": True}
    return {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}


def _features_from_json(example: dict) -> dict:
    out = {}
    for k, v in example.items():
        items = v if isinstance(v, list) else [v]
        kind = "float" if any(isinstance(i, float) for i in items) else "int64" if items and isinstance(items[0], int) else "bytes"
        out[k] = (kind, items)
    return out


def rest_handler(fake: FakeServing, requests: list | None = None):
    def handle(request: httpx.Request) -> httpx.Response:
        if requests is not None:
            requests.append(request)
        try:
            return httpx.Response(200, content=_handle(request))
        except Fault as fault:
            return httpx.Response(HTTP.get(fault.code, 500), json={"error": fault.message})

    def _handle(request: httpx.Request) -> bytes:
        model, version, label, verb, metadata = _route(request.url.path)
        if request.method == "GET" and not metadata:
            entries = fake.status(model, version)
            return json.dumps({"model_version_status": [
                {"version": str(v), "state": s, "status": {"error_code": "OK", "error_message": ""}} for v, s in entries
            ]}).encode()
        served = fake.resolve(model, version, label)
        if metadata:
            sigs = {
                name: {
                    "inputs": {k: {"dtype": i["dtype"], "tensor_shape": _dims_json(i["dims"]), "name": f"{k}:0"} for k, i in s["inputs"].items()},
                    "outputs": {k: {"dtype": i["dtype"], "tensor_shape": _dims_json(i["dims"]), "name": f"{k}:0"} for k, i in s["outputs"].items()},
                    "method_name": s["method"],
                    "defaults": {},
                }
                for name, s in SIGNATURES.items()
            }
            sigs["__saved_model_init_op"] = {"inputs": {}, "outputs": {}, "method_name": "", "defaults": {}}
            return json.dumps({"model_spec": {"name": model, "signature_name": "", "version": str(served)},
                               "metadata": {"signature_def": {"signature_def": sigs}}}).encode()
        content = request.content
        if request.headers.get("content-encoding") == "gzip":
            import gzip

            content = gzip.decompress(content)
        body = json.loads(content)
        signature = body.get("signature_name") or "serving_default"
        if verb in ("classify", "regress"):
            ctx = body.get("context", {})
            values = fake.examples(served, signature, [_features_from_json({**ctx, **e}) for e in body["examples"]])
            if verb == "classify":
                return json.dumps({"results": [[["", v]] for v in values]}).encode()
            return json.dumps({"results": values}).encode()
        sig = fake.signature(signature)
        if "instances" in body:
            rows = body["instances"]
            names = list(sig["inputs"])
            if isinstance(rows[0], dict):
                raw = {n: [r[n] for r in rows] for n in names}
            else:
                raw = {names[0]: rows}
        else:
            raw = body["inputs"] if isinstance(body["inputs"], dict) else {next(iter(sig["inputs"])): body["inputs"]}
        inputs = {}
        for name, value in raw.items():
            if sig["inputs"].get(name, {}).get("dtype") == "DT_STRING":
                flat = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode() for v in np.array(value, dtype=object).reshape(-1)]
                inputs[name] = np.array(flat, dtype=object)
            else:
                inputs[name] = np.asarray(value, dtype=np.float32)
        outputs = fake.predict(served, signature, inputs)

        def js(name, arr):
            if arr.dtype == object:
                return [{"b64": base64.b64encode(b).decode()} if name.endswith("_bytes") else b.decode() for b in arr.tolist()]
            return arr.tolist()

        if "instances" in body:
            if len(outputs) == 1:
                return json.dumps({"predictions": js(*next(iter(outputs.items())))}).encode()
            cols = {n: js(n, a) for n, a in outputs.items()}
            return json.dumps({"predictions": [dict(zip(cols, r)) for r in zip(*cols.values())]}).encode()
        if len(outputs) == 1:
            return json.dumps({"outputs": js(*next(iter(outputs.items())))}).encode()
        return json.dumps({"outputs": {n: js(n, a) for n, a in outputs.items()}}).encode()

    return handle


# ---- gRPC adapter ---------------------------------------------------------------------------


def _typed_tensor(array: np.ndarray) -> pb.TensorProto:
    """Outputs in typed fields (float_val, ...), as TF Serving sends them by default."""
    proto = pb.TensorProto()
    for d in array.shape:
        proto.tensor_shape.dim.add().size = d
    if array.dtype == object:
        proto.dtype = pb.DT_STRING
        proto.string_val.extend(array.reshape(-1).tolist())
    elif array.dtype == np.float32:
        proto.dtype = pb.DT_FLOAT
        proto.float_val.extend(array.reshape(-1).tolist())
    else:
        proto.dtype = pb.DT_INT64
        proto.int64_val.extend(array.reshape(-1).tolist())
    return proto


def _selector(spec: pb.ModelSpec) -> tuple[str, int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    return spec.name, spec.version.value if choice == "version" else None, spec.version_label if choice == "version_label" else None


def _grpc_features(example: pb.Example) -> dict:
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "float_list":
            out[name] = ("float", list(feature.float_list.value))
        elif kind == "int64_list":
            out[name] = ("int64", list(feature.int64_list.value))
        else:
            out[name] = ("bytes", list(feature.bytes_list.value))
    return out


def start_grpc_server(fake: FakeServing, credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.Server, int]:
    def guard(fn):
        def run(request, context):
            try:
                return fn(request)
            except Fault as fault:
                context.abort(getattr(grpc.StatusCode, fault.code), fault.message)

        return run

    def predict(req):
        name, version, label = _selector(req.model_spec)
        served = fake.resolve(name, version, label)
        signature = req.model_spec.signature_name or "serving_default"
        inputs = {k: to_ndarray(v, k) for k, v in req.inputs.items()}
        outputs = fake.predict(served, signature, inputs)
        for alias in req.output_filter:
            if alias not in outputs:
                raise Fault("INVALID_ARGUMENT", f"output tensor alias not found in signature: {alias}")
        if req.output_filter:
            outputs = {k: outputs[k] for k in req.output_filter}
        resp = pb.PredictResponse()
        resp.model_spec.name = name
        resp.model_spec.signature_name = signature
        resp.model_spec.version.value = served
        for k, v in outputs.items():
            resp.outputs[k].CopyFrom(_typed_tensor(v))
        return resp

    def examples_of(req):
        kind = req.input.WhichOneof("kind")
        if kind == "example_list":
            return [_grpc_features(e) for e in req.input.example_list.examples]
        ctx = _grpc_features(req.input.example_list_with_context.context)
        return [{**ctx, **_grpc_features(e)} for e in req.input.example_list_with_context.examples]

    def classify(req):
        name, version, label = _selector(req.model_spec)
        served = fake.resolve(name, version, label)
        values = fake.examples(served, req.model_spec.signature_name or "serving_default", examples_of(req))
        resp = pb.ClassificationResponse()
        resp.model_spec.name, resp.model_spec.version.value = name, served
        for v in values:
            resp.result.classifications.add().classes.add(label="", score=v)
        return resp

    def regress(req):
        name, version, label = _selector(req.model_spec)
        served = fake.resolve(name, version, label)
        values = fake.examples(served, req.model_spec.signature_name or "serving_default", examples_of(req))
        resp = pb.RegressionResponse()
        resp.model_spec.name, resp.model_spec.version.value = name, served
        for v in values:
            resp.result.regressions.add(value=v)
        return resp

    def metadata(req):
        name, version, label = _selector(req.model_spec)
        served = fake.resolve(name, version, label)
        sig_map = pb.SignatureDefMap()
        for sname, s in SIGNATURES.items():
            sd = sig_map.signature_def[sname]
            sd.method_name = s["method"]
            for side in ("inputs", "outputs"):
                for k, info in s[side].items():
                    ti = getattr(sd, side)[k]
                    ti.name, ti.dtype = f"{k}:0", pb.DataType.Value(info["dtype"])
                    if info["dims"] is None:
                        ti.tensor_shape.unknown_rank = True
                    for d in info["dims"] or []:
                        ti.tensor_shape.dim.add().size = d
        resp = pb.GetModelMetadataResponse()
        resp.model_spec.name, resp.model_spec.version.value = name, served
        any_ = resp.metadata["signature_def"]
        any_.type_url = "type.googleapis.com/tensorflow.serving.SignatureDefMap"
        any_.value = sig_map.SerializeToString()
        return resp

    def status(req):
        name, version, _ = _selector(req.model_spec)
        resp = pb.GetModelStatusResponse()
        for v, s in fake.status(name, version):
            resp.model_version_status.add(version=v, state=pb.ModelVersionStatus.State.Value(s))
        return resp

    def handler(fn, req_type, resp_type):
        return grpc.unary_unary_rpc_method_handler(
            guard(fn), request_deserializer=req_type.FromString, response_serializer=resp_type.SerializeToString
        )

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", 2**31 - 1), ("grpc.max_send_message_length", 2**31 - 1)],
    )
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
            "Predict": handler(predict, pb.PredictRequest, pb.PredictResponse),
            "Classify": handler(classify, pb.ClassificationRequest, pb.ClassificationResponse),
            "Regress": handler(regress, pb.RegressionRequest, pb.RegressionResponse),
            "GetModelMetadata": handler(metadata, pb.GetModelMetadataRequest, pb.GetModelMetadataResponse),
        }),
        grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
            "GetModelStatus": handler(status, pb.GetModelStatusRequest, pb.GetModelStatusResponse),
        }),
    ))
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, port


FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
def fake() -> FakeServing:
    return FakeServing()


@pytest.fixture
def grpc_port(fake):
    server, port = start_grpc_server(fake)
    yield port
    server.stop(None)


@pytest.fixture(params=["rest", "grpc"])
def protocol(request) -> str:
    return request.param


@pytest.fixture
def make_client(protocol, fake, request):
    """Build a sync client for the parametrized protocol: make_client(**client_kwargs)."""
    made = []

    def make(**kwargs):
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("timeout", 10.0)
        if protocol == "rest":
            transport = RestTransport(
                "http://fake:8501",
                json_format=kwargs.pop("json_format", "columnar"),
                gzip=kwargs.pop("gzip", False),
                http_transport=httpx.MockTransport(rest_handler(fake)),
            )
        else:
            kwargs.pop("json_format", None), kwargs.pop("gzip", None)
            port = request.getfixturevalue("grpc_port")
            transport = GrpcTransport(f"127.0.0.1:{port}")
        client = ServingClient(transport, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client) -> ServingClient:
    return make_client()


@pytest.fixture
async def aclient(protocol, fake, request):
    if protocol == "rest":
        transport = AsyncRestTransport("http://fake:8501", http_transport=httpx.MockTransport(rest_handler(fake)))
    else:
        port = request.getfixturevalue("grpc_port")
        transport = AsyncGrpcTransport(f"127.0.0.1:{port}")
    client = AsyncServingClient(transport, retry=FAST_RETRY, timeout=10.0)
    yield client
    await client.aclose()
