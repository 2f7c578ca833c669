"""What `tfstack bench` measures: scenarios, limits, targets (loopback unless allowed) and request payloads."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from tfstack.serving._errors import ServerError

PROTOCOLS = ("grpc", "rest")
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
# The empty request: model status, the cheapest call every TF-Serving-compatible server answers
# (REST GET /v1/models/<name>, gRPC ModelService/GetModelStatus): the server's stack, no tensors.
MODEL_STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"
# Load generators: this module's Python workers, or the C tools of tfstack.serving.bench._native.
GENERATOR_PYTHON = "python"
GENERATOR_WRK = "wrk"
GENERATOR_H2LOAD = "h2load"
GENERATORS = (GENERATOR_PYTHON, GENERATOR_WRK, GENERATOR_H2LOAD)

# Scenario kinds. Load kinds go through the server; baseline kinds are compared against.
KIND_PREDICT = "predict"
KIND_FLOOR = "floor"
KIND_IN_PROCESS = "in-process"
KIND_OFFICIAL_STUB = "official-stub"
KIND_TFSTACK_CLIENT = "tfstack-client"
# Predict load made of logged requests (`--replay`), each with its own logged batch size.
KIND_REPLAY = "replay"
KINDS = (KIND_PREDICT, KIND_FLOOR, KIND_IN_PROCESS, KIND_OFFICIAL_STUB, KIND_TFSTACK_CLIENT, KIND_REPLAY)


class BenchError(ServerError):
    """A benchmark could not run: a bad target, a worker that failed to start, no usable input."""



# --------------------------------------------------------------------------------------------
# configuration


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scenario:
    """One measurement.

    Args:
        kind: one of KINDS.
        protocol: "grpc" or "rest" ("" for the in-process baseline).
        concurrency: closed-loop users (ignored when `rate` is set).
        rate: open-loop requests per second, or None for closed loop.
        batch_size: examples per request; None for replay (each request has its logged batch size).
        batching: the server's batching setting as a label ("off", "on", "server" if unknown).
        generator: who sends the load: "python" (this module's workers), "wrk" (REST) or
            "h2load" (gRPC), see tfstack.serving.bench._native.
    """

    kind: str
    protocol: str
    concurrency: int = 1
    rate: float | None = None
    batch_size: int | None = 1
    batching: str = "off"
    generator: str = GENERATOR_PYTHON

    @property
    def batch_label(self) -> str:
        """The batch size as shown in tables: a number, or "logged" for replay."""
        return "logged" if self.batch_size is None else str(self.batch_size)

    @property
    def mode(self) -> str:
        return "open" if self.rate is not None else "closed"

    @property
    def label(self) -> str:
        load = f"rate {self.rate:g}/s" if self.rate is not None else f"c={self.concurrency}"
        where = f"{self.kind} {self.protocol}".strip()
        by = f" ({self.generator})" if self.generator != GENERATOR_PYTHON else ""
        return f"{where}{by} {load} b={self.batch_label} batching={self.batching}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """How long each scenario runs: `duration` seconds, or `requests` requests, whichever is set."""

    duration: float | None = 5.0
    requests: int | None = None
    warmup: int = 20
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if (self.duration is None) == (self.requests is None):
            raise ValueError(
                "Exactly one of `duration` and `requests` must be set. "
                f"Received: duration={self.duration!r}, requests={self.requests!r}"
            )
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"`duration` must be > 0 seconds. Received: duration={self.duration!r}")
        if self.requests is not None and (isinstance(self.requests, bool) or not isinstance(self.requests, int) or self.requests < 1):
            raise ValueError(f"`requests` must be an int >= 1. Received: requests={self.requests!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"`warmup` must be an int >= 0. Received: warmup={self.warmup!r}")
        if not self.timeout > 0:
            raise ValueError(f"`timeout` must be > 0 seconds. Received: timeout={self.timeout!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    """Where the server is (loopback only) and what to ask it."""

    model_name: str
    rest_url: str | None
    grpc_target: str | None
    signature_name: str = "serving_default"
    version_path: Path | None = None  # a local version directory, for the in-process baseline


def plan_scenarios(
    *,
    protocols: Sequence[str],
    concurrencies: Sequence[int],
    batch_sizes: Sequence[int],
    rate: float | None = None,
    floor: bool = True,
    baselines: bool = True,
    in_process: bool = True,
    batching: str = "off",
    generators: Mapping[str, str] | None = None,
    replay: bool = False,
) -> list[Scenario]:
    """The scenarios of one sweep, in the order they run.

    Baselines first (sequential, concurrency 1), then for each protocol the empty request and
    Predict at each batch size over the concurrency sweep, then the open-loop runs.

    Args:
        generators: protocol -> load generator of its closed-loop runs (default: "python");
            open-loop runs always use the Python generator.
        replay: the Predict load is logged requests (KIND_REPLAY, batch size as logged; REST on the
            Python generator or wrk, gRPC on the Python generator only) instead of one request
            per batch size; `batch_sizes` and the baselines (which need one fixed request) do not apply.
    """
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if not protocols or unknown:
        raise ValueError(f"`protocols` must be a non-empty subset of {PROTOCOLS}. Received: protocols={tuple(protocols)!r}")
    for name, values in (("concurrencies", concurrencies), ("batch_sizes", [1] if replay else batch_sizes)):
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"`{name}` must be a non-empty list of ints >= 1. Received: {name}={tuple(values)!r}")
    if rate is not None and not rate > 0:
        raise ValueError(f"`rate` must be > 0 requests per second. Received: rate={rate!r}")
    generators = dict(generators or {})
    bad = {p: g for p, g in generators.items() if g not in GENERATORS}
    if bad:
        raise ValueError(f"`generators` values must be among {GENERATORS}. Received: generators={generators!r}")
    if replay:
        if generators.get("grpc", GENERATOR_PYTHON) != GENERATOR_PYTHON:
            raise ValueError("gRPC replay load comes from the Python generator (h2load sends one request file). "
                             f"Received: generators={generators!r}")
        if baselines:
            raise ValueError("The baselines send one fixed request; they do not run with replay. "
                             "Received: baselines=True, replay=True")
    out: list[Scenario] = []
    if baselines:
        for batch in batch_sizes if in_process else ():
            out.append(Scenario(kind=KIND_IN_PROCESS, protocol="", batch_size=batch, batching=batching))
        if "grpc" in protocols:
            out.append(Scenario(kind=KIND_OFFICIAL_STUB, protocol="grpc", batching=batching))
        for protocol in protocols:
            out.append(Scenario(kind=KIND_TFSTACK_CLIENT, protocol=protocol, batching=batching))
    for protocol in protocols:
        generator = generators.get(protocol, GENERATOR_PYTHON)
        for concurrency in concurrencies:
            if floor:
                out.append(Scenario(kind=KIND_FLOOR, protocol=protocol, concurrency=concurrency, batching=batching,
                                    generator=generator))
            if replay:
                out.append(Scenario(kind=KIND_REPLAY, protocol=protocol, concurrency=concurrency, batch_size=None,
                                    batching=batching, generator=generator))
                continue
            for batch in batch_sizes:
                out.append(Scenario(kind=KIND_PREDICT, protocol=protocol, concurrency=concurrency, batch_size=batch,
                                    batching=batching, generator=generator))
    if rate is not None:
        for protocol in protocols:
            if replay:
                out.append(Scenario(kind=KIND_REPLAY, protocol=protocol, rate=float(rate), batch_size=None, batching=batching))
                continue
            for batch in batch_sizes:
                out.append(Scenario(kind=KIND_PREDICT, protocol=protocol, rate=float(rate), batch_size=batch, batching=batching))
    return out


# --------------------------------------------------------------------------------------------
# targets and inputs


def require_loopback(address: str, *, what: str) -> str:
    """Return the host of a URL or host:port if it is a loopback address; raise ValueError otherwise.

    Load aimed at another machine must be deliberate (`tfstack bench --allow-remote`).
    """
    if not isinstance(address, str) or not address:
        raise ValueError(f"{what} must be a non-empty string. Received: {what}={address!r}")
    host = urlsplit(address).hostname if "://" in address else urlsplit(f"//{address}").hostname
    if not host:
        raise ValueError(f"{what} has no host. Received: {what}={address!r}")
    if host == "localhost":
        return host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"`tfstack bench` only targets servers on this machine (127.0.0.1, ::1 or localhost) unless "
            f"--allow-remote is given. Received: {what}={address!r}"
        )
    return host


@dataclasses.dataclass(frozen=True, kw_only=True)
class Payload:
    """Everything a worker sends for one batch size, prepared once in the parent."""

    batch_size: int
    inputs: dict[str, np.ndarray]  # for the client/stub/in-process baselines
    rest_body: bytes  # a columnar REST predict body
    grpc_request: bytes  # a serialized PredictRequest


def _leaf_to_bytes(value: Any) -> bytes:
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ValueError(f"A string input must hold strings or {{'b64': ...}} objects. Received: {value!r}")


def _example_rows(body: Mapping[str, Any], input_names: Sequence[str]) -> dict[str, list[Any]]:
    """Per-input lists of examples (JSON values) from a REST predict body, columnar or row format."""
    if "inputs" in body:
        columns = body["inputs"]
        if not isinstance(columns, dict):
            if len(input_names) != 1:
                raise ValueError(f"An unnamed 'inputs' value needs a single-input signature; this one has {list(input_names)}.")
            columns = {input_names[0]: columns}
        rows = {name: list(values) if isinstance(values, list) else [values] for name, values in columns.items()}
    elif "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise ValueError(f"'instances' must be a non-empty list. Received: {str(instances)[:80]}")
        if all(isinstance(row, dict) and not ("b64" in row and len(row) == 1) for row in instances):
            rows = {name: [row[name] for row in instances] for name in instances[0]}
        elif len(input_names) == 1:
            rows = {input_names[0]: list(instances)}
        else:
            raise ValueError(f"Row-format instances without names need a single-input signature; this one has {list(input_names)}.")
    else:
        raise ValueError(f"A predict body needs 'inputs' or 'instances'. Received keys: {sorted(body)}")
    missing = sorted(set(input_names) - set(rows))
    if missing:
        raise ValueError(f"The sample request lacks inputs {missing}; the signature expects {sorted(input_names)}.")
    if any(not values for values in rows.values()):
        raise ValueError("The sample request has an input with no examples.")
    return {name: rows[name] for name in input_names}


def _synthesized_rows(signature: Any) -> dict[str, list[Any]]:
    """One all-zeros (or empty-string) example per input, shaped by the signature's metadata."""
    rows: dict[str, list[Any]] = {}
    for name, info in signature.inputs.items():
        dims = [1 if d is None or d < 0 else d for d in (info.shape or (None,))[1:]]
        dtype = _numpy_dtype(info.dtype)
        if dtype is object:
            value: Any = np.full(dims, "", dtype=object).tolist() if dims else ""
        else:
            value = np.zeros(dims, dtype=dtype).tolist()  # a Python scalar for a 0-d array
        rows[name] = [value]
    return rows


def _numpy_dtype(name: str) -> Any:
    if name == "string":
        return object
    try:
        return np.dtype(name)
    except TypeError:
        return np.float32


def build_payloads(
    *, model_name: str, signature_name: str, signature: Any, sample_body: Mapping[str, Any] | None, batch_sizes: Iterable[int]
) -> dict[int, Payload]:
    """One Payload per batch size: the sample's examples repeated cyclically up to the batch size.

    Args:
        signature: a `client.SignatureInfo` (input names and dtypes come from the server).
        sample_body: a REST predict body (the model's assets.extra/sample_request.json), or None
            to synthesize zeros from the metadata.
    """
    from tfstack.client import wire as pb

    names = list(signature.inputs)
    rows = _example_rows(sample_body, names) if sample_body is not None else _synthesized_rows(signature)
    payloads = {}
    for batch in batch_sizes:
        picked = {name: [values[i % len(values)] for i in range(batch)] for name, values in rows.items()}
        inputs: dict[str, np.ndarray] = {}
        for name, values in picked.items():
            dtype = _numpy_dtype(signature.inputs[name].dtype)
            if dtype is object:
                array = np.array(values, dtype=object)
                inputs[name] = np.vectorize(_leaf_to_bytes, otypes=[object])(array) if array.size else array
            else:
                inputs[name] = np.asarray(values, dtype=dtype)
        request = pb.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature_name
        for name, array in inputs.items():
            pb.to_tensor_proto(array, request.inputs[name])
        body = json.dumps({"signature_name": signature_name, "inputs": picked}).encode("utf-8")
        payloads[batch] = Payload(batch_size=batch, inputs=inputs, rest_body=body, grpc_request=request.SerializeToString())
    return payloads
