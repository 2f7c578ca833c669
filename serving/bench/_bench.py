"""Load generation and statistics for `tfstack bench` (a perf_analyzer for TF-Serving-compatible servers).

A *scenario* is one measurement: a kind of request (Predict over gRPC or REST, the empty
request, or a baseline), a concurrency or an open-loop rate, a batch size, a load generator.
The empty request is model status (REST `GET /v1/models/<name>`, gRPC `GetModelStatus`): the
server's whole stack without tensor work, answered by any TF-Serving-compatible server.

Load comes from the C load generators (wrk for REST, h2load for gRPC; tfstack.serving.bench._native)
when they are installed, or from fresh Python worker processes (spawned, so gRPC never crosses a
fork), each an asyncio loop with its share of the concurrent users; the parent only coordinates,
shows progress and computes the statistics, so the load generator never shares an interpreter
with the server or with the report.

Closed loop: `concurrency` users (connections), each sending its next request when the previous answer
arrives. Open loop: requests are *scheduled* at a fixed rate whether or not earlier ones have
returned, and latency is measured from the scheduled time, so a stalled server shows up as
latency instead of as a politely lower rate (no coordinated omission).

Baselines run the same way at concurrency 1: the signature called in-process exactly as the
server calls it (`tfstack.serving.server._inference.run_prepared`), the official tensorflow-serving-api stub used as a user
would (make_tensor_proto, Predict, make_ndarray), and tfstack's `ServingClient`.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import ipaddress
import json
import math
import multiprocessing
import os
import platform
import queue as queue_module
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from tfstack.serving._errors import ServerError

PROTOCOLS = ("grpc", "rest")
PERCENTILES = (50, 90, 95, 99)
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
# The empty request: model status, the cheapest call every TF-Serving-compatible server answers
# (REST GET /v1/models/<name>, gRPC ModelService/GetModelStatus): the server's stack, no tensors.
MODEL_STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"
# Load generators: this module's Python workers, or the C tools of tfstack.serving.bench._native.
GENERATOR_PYTHON = "python"
GENERATOR_WRK = "wrk"
GENERATOR_H2LOAD = "h2load"
GENERATORS = (GENERATOR_PYTHON, GENERATOR_WRK, GENERATOR_H2LOAD)
# Open loop: beyond this many requests in flight per worker, new ones are dropped and counted
# as errors, so an overloaded server cannot make the generator eat all memory.
MAX_IN_FLIGHT = 4096
_ERROR_SAMPLES = 5
_SETUP_TIMEOUT = 300.0  # workers that import TensorFlow need a while on a loaded machine

# Scenario kinds. Load kinds go through the server; baseline kinds are compared against.
KIND_PREDICT = "predict"
KIND_FLOOR = "floor"
KIND_IN_PROCESS = "in-process"
KIND_OFFICIAL_STUB = "official-stub"
KIND_TFSTACK_CLIENT = "tfstack-client"
KINDS = (KIND_PREDICT, KIND_FLOOR, KIND_IN_PROCESS, KIND_OFFICIAL_STUB, KIND_TFSTACK_CLIENT)


class BenchError(ServerError):
    """A benchmark could not run: a bad target, a worker that failed to start, no usable input."""


# --------------------------------------------------------------------------------------------
# statistics


@dataclasses.dataclass(frozen=True, kw_only=True)
class LatencyStats:
    """Summary of one scenario. Latencies in milliseconds; NaN when nothing succeeded."""

    requests: int  # successful requests
    errors: int
    elapsed_s: float
    throughput_rps: float  # successful requests per second of the measured window
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default).

    Returns NaN for no samples.

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
        2.5
    """
    if not 0 <= q <= 100:
        raise ValueError(f"A percentile must be within [0, 100]. Received: q={q!r}")
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        return math.nan
    return float(np.percentile(values, q))


def summarize(latencies_s: Sequence[float] | np.ndarray, *, errors: int, elapsed_s: float) -> LatencyStats:
    """Percentiles and throughput of one scenario.

    Args:
        latencies_s: latency of every successful request, in seconds.
        errors: failed (or, open loop, dropped) requests.
        elapsed_s: the measured window: from the common start to the last answer.
    """
    if errors < 0:
        raise ValueError(f"`errors` must be >= 0. Received: errors={errors!r}")
    if not elapsed_s > 0:
        raise ValueError(f"`elapsed_s` must be > 0. Received: elapsed_s={elapsed_s!r}")
    ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    p50, p90, p95, p99 = (percentile(ms, q) for q in PERCENTILES)
    return LatencyStats(
        requests=int(ms.size),
        errors=int(errors),
        elapsed_s=float(elapsed_s),
        throughput_rps=ms.size / elapsed_s,
        mean_ms=float(ms.mean()) if ms.size else math.nan,
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=float(ms.max()) if ms.size else math.nan,
    )


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
        batch_size: examples per request.
        batching: the server's batching setting as a label ("off", "on", "server" if unknown).
        generator: who sends the load: "python" (this module's workers), "wrk" (REST) or
            "h2load" (gRPC), see tfstack.serving.bench._native.
    """

    kind: str
    protocol: str
    concurrency: int = 1
    rate: float | None = None
    batch_size: int = 1
    batching: str = "off"
    generator: str = GENERATOR_PYTHON

    @property
    def mode(self) -> str:
        return "open" if self.rate is not None else "closed"

    @property
    def label(self) -> str:
        load = f"rate {self.rate:g}/s" if self.rate is not None else f"c={self.concurrency}"
        where = f"{self.kind} {self.protocol}".strip()
        by = f" ({self.generator})" if self.generator != GENERATOR_PYTHON else ""
        return f"{where}{by} {load} b={self.batch_size} batching={self.batching}"


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
) -> list[Scenario]:
    """The scenarios of one sweep, in the order they run.

    Baselines first (sequential, concurrency 1), then for each protocol the empty request and
    Predict at each batch size over the concurrency sweep, then the open-loop runs.

    Args:
        generators: protocol -> load generator of its closed-loop runs (default: "python");
            open-loop runs always use the Python generator.
    """
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if not protocols or unknown:
        raise ValueError(f"`protocols` must be a non-empty subset of {PROTOCOLS}. Received: protocols={tuple(protocols)!r}")
    for name, values in (("concurrencies", concurrencies), ("batch_sizes", batch_sizes)):
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"`{name}` must be a non-empty list of ints >= 1. Received: {name}={tuple(values)!r}")
    if rate is not None and not rate > 0:
        raise ValueError(f"`rate` must be > 0 requests per second. Received: rate={rate!r}")
    generators = dict(generators or {})
    bad = {p: g for p, g in generators.items() if g not in GENERATORS}
    if bad:
        raise ValueError(f"`generators` values must be among {GENERATORS}. Received: generators={generators!r}")
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
            for batch in batch_sizes:
                out.append(Scenario(kind=KIND_PREDICT, protocol=protocol, concurrency=concurrency, batch_size=batch,
                                    batching=batching, generator=generator))
    if rate is not None:
        for protocol in protocols:
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


# --------------------------------------------------------------------------------------------
# workers (each runs in its own spawned process)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerSpec:
    kind: str
    protocol: str
    target: Target
    payload: Payload | None
    users: int  # closed-loop users in this worker
    rate: float | None  # this worker's open-loop rate
    phase: float  # open loop: fraction of an interval to offset this worker's schedule
    requests: int | None  # this worker's quota
    duration: float | None
    warmup: int
    timeout: float


@dataclasses.dataclass(kw_only=True)
class WorkerResult:
    latencies: list[float]
    errors: int
    error_samples: list[str]
    end: float


class _HttpStatus(Exception):
    pass


def model_status_request(model_name: str) -> bytes:
    """A serialized GetModelStatusRequest for `model_name` (the empty request over gRPC)."""
    from tfstack.client import wire as pb

    request = pb.GetModelStatusRequest()
    request.model_spec.name = model_name
    return request.SerializeToString()


async def _async_sender(spec: WorkerSpec) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """An async `send()` that raises on any failure, and an async `close()`."""
    if spec.protocol == "grpc":
        import grpc

        assert spec.target.grpc_target is not None  # a gRPC scenario exists only with a gRPC target
        channel = grpc.aio.insecure_channel(
            spec.target.grpc_target,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        if spec.kind == KIND_FLOOR:
            method, body = channel.unary_unary(MODEL_STATUS_METHOD), model_status_request(spec.target.model_name)
        else:
            assert spec.payload is not None  # Predict scenarios carry their payload
            method, body = channel.unary_unary(PREDICT_METHOD), spec.payload.grpc_request

        async def send_grpc() -> None:
            await method(body, timeout=spec.timeout)

        async def close() -> None:
            await channel.close()

        return send_grpc, close

    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=spec.timeout)
    )
    assert spec.target.rest_url is not None  # a REST scenario exists only with a REST target
    base = spec.target.rest_url.rstrip("/")
    if spec.kind == KIND_FLOOR:
        method, url, data, headers = "GET", f"{base}/v1/models/{spec.target.model_name}", None, {}
    else:
        assert spec.payload is not None  # Predict scenarios carry their payload
        method, url = "POST", f"{base}/v1/models/{spec.target.model_name}:predict"
        data, headers = spec.payload.rest_body, {"Content-Type": "application/json"}

    async def send() -> None:
        async with session.request(method, url, data=data, headers=headers) as response:
            text = await response.read()
            if response.status != 200:
                raise _HttpStatus(f"HTTP {response.status}: {text[:200].decode('utf-8', 'replace')}")

    return send, session.close


def _sync_sender(spec: WorkerSpec) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """A blocking `send()` for the baselines (they are measured one request at a time)."""
    assert spec.payload is not None  # every baseline sends a Predict
    target, inputs = spec.target, spec.payload.inputs
    if spec.kind == KIND_IN_PROCESS:
        from tfstack.serving.server._inference import prepare_predict, run_prepared
        from tfstack.serving.server._servable import load_servable

        assert target.version_path is not None  # the in-process baseline runs only with a local model
        path = Path(target.version_path)
        servable = load_servable(target.model_name, int(path.name), path)
        # Exactly what the server's inference pool runs for an unbatched Predict.
        return (lambda: run_prepared(prepare_predict(servable, target.signature_name, inputs))), servable.retire
    if spec.kind == KIND_OFFICIAL_STUB:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        channel = grpc.insecure_channel(
            target.grpc_target, options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        )
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def official() -> None:
            # As a user writes it: build with make_tensor_proto, read every output with make_ndarray.
            request = predict_pb2.PredictRequest()
            request.model_spec.name = target.model_name
            request.model_spec.signature_name = target.signature_name
            for name, array in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
            response = stub.Predict(request, timeout=spec.timeout)
            for proto in response.outputs.values():
                tf.make_ndarray(proto)

        return official, channel.close
    if spec.kind == KIND_TFSTACK_CLIENT:
        from tfstack.client import ServingClient

        address = target.grpc_target if spec.protocol == "grpc" else target.rest_url
        assert address is not None  # a scenario's protocol always has its target
        if spec.protocol == "grpc":
            client = ServingClient.grpc(address, timeout=spec.timeout)
        else:
            client = ServingClient.rest(address, timeout=spec.timeout)
        return (lambda: client.predict(target.model_name, inputs, signature_name=target.signature_name)), client.close
    raise ValueError(f"No synchronous sender for kind={spec.kind!r}")


class _Recorder:
    """Latencies and errors of one worker; bumps the shared progress counter per request."""

    def __init__(self, counters: Any, slot: int) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.error_samples: list[str] = []
        self._counters, self._slot = counters, slot

    def ok(self, latency: float) -> None:
        self.latencies.append(latency)
        self._counters[self._slot] += 1

    def fail(self, exc: BaseException | str) -> None:
        self.errors += 1
        self._counters[self._slot] += 1
        if len(self.error_samples) < _ERROR_SAMPLES:
            self.error_samples.append(exc if isinstance(exc, str) else f"{type(exc).__name__}: {str(exc)[:300]}")

    def result(self) -> WorkerResult:
        return WorkerResult(latencies=self.latencies, errors=self.errors, error_samples=self.error_samples, end=time.monotonic())


def _deadline(spec: WorkerSpec, start: float) -> float:
    return start + spec.duration if spec.duration is not None else math.inf


async def _run_async(spec: WorkerSpec, recorder: _Recorder, ready: Any, go: Any, start_at: Any, slot: int) -> None:
    send, close = await _async_sender(spec)
    try:
        for _ in range(spec.warmup):
            await send()
        ready.put((slot, None))
        await asyncio.get_running_loop().run_in_executor(None, go.wait, _SETUP_TIMEOUT)
        start = start_at.value
        deadline = _deadline(spec, start)
        if spec.rate is None:
            quota = [spec.requests if spec.requests is not None else math.inf]

            async def user() -> None:
                while quota[0] > 0:
                    quota[0] -= 1
                    began = time.monotonic()
                    if began >= deadline:
                        return
                    try:
                        await send()
                    except Exception as exc:  # every failure is data: counted and sampled
                        recorder.fail(exc)
                    else:
                        recorder.ok(time.monotonic() - began)

            await asyncio.gather(*(user() for _ in range(spec.users)))
            return
        interval = 1.0 / spec.rate
        in_flight: set[asyncio.Task] = set()

        async def one(scheduled: float) -> None:
            try:
                await send()
            except Exception as exc:
                recorder.fail(exc)
            else:
                recorder.ok(time.monotonic() - scheduled)

        k = 0
        while spec.requests is None or k < spec.requests:
            scheduled = start + (k + spec.phase) * interval
            if scheduled >= deadline:
                break
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= MAX_IN_FLIGHT:
                recorder.fail(f"dropped: more than {MAX_IN_FLIGHT} requests in flight")
            else:
                task = asyncio.create_task(one(scheduled))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            k += 1
        if in_flight:
            await asyncio.gather(*in_flight)
    finally:
        await close()


def _run_sync(spec: WorkerSpec, recorder: _Recorder, ready: Any, go: Any, start_at: Any, slot: int) -> None:
    send, close = _sync_sender(spec)
    try:
        for _ in range(spec.warmup):
            send()
        ready.put((slot, None))
        go.wait(_SETUP_TIMEOUT)
        deadline = _deadline(spec, start_at.value)
        remaining = spec.requests if spec.requests is not None else math.inf
        while remaining > 0:
            remaining -= 1
            began = time.monotonic()
            if began >= deadline:
                break
            try:
                send()
            except Exception as exc:
                recorder.fail(exc)
            else:
                recorder.ok(time.monotonic() - began)
    finally:
        close()


def _worker_main(spec: WorkerSpec, slot: int, counters: Any, ready: Any, go: Any, start_at: Any, results: Any) -> None:
    """Entry point of a load-generator process."""
    # Baseline workers import TensorFlow; its start-up banner would bury the progress display.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    recorder = _Recorder(counters, slot)
    try:
        if spec.kind in (KIND_PREDICT, KIND_FLOOR):
            asyncio.run(_run_async(spec, recorder, ready, go, start_at, slot))
        else:
            _run_sync(spec, recorder, ready, go, start_at, slot)
    except BaseException as exc:  # report instead of dying silently; the parent raises BenchError
        message = f"{type(exc).__name__}: {exc}"
        ready.put((slot, message))
        results.put((slot, None, message))
        return
    results.put((slot, recorder.result(), None))


# --------------------------------------------------------------------------------------------
# running scenarios


@dataclasses.dataclass(frozen=True, kw_only=True)
class Measurement:
    """One scenario's result, with the machine's 1-minute load average when it ended."""

    scenario: Scenario
    stats: LatencyStats
    processes: int
    load_avg_1m: float
    error_samples: tuple[str, ...] = ()

    def row(self) -> dict[str, Any]:
        """A flat dict for CSV/JSON."""
        s = self.scenario
        return {
            "kind": s.kind,
            "protocol": s.protocol,
            "mode": s.mode,
            "concurrency": s.concurrency if s.rate is None else None,
            "rate": s.rate,
            "batch_size": s.batch_size,
            "batching": s.batching,
            "generator": s.generator,
            **dataclasses.asdict(self.stats),
            "examples_per_s": self.stats.throughput_rps * s.batch_size,
            "processes": self.processes,
            "load_avg_1m": self.load_avg_1m,
            "error_samples": list(self.error_samples),
        }


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_scenario(
    scenario: Scenario,
    *,
    target: Target,
    payloads: Mapping[int, Payload],
    limits: Limits,
    processes: int,
    on_progress: Callable[[int, float], None] | None = None,
) -> Measurement:
    """Run one scenario in fresh worker processes and summarize it.

    Args:
        processes: worker processes for closed/open-loop load (baselines always use one).
        on_progress: called about 10 times a second with the requests finished so far and the
            seconds since the measurement started.

    Raises:
        BenchError: a worker could not start (bad target, missing dependency) or crashed.
    """
    if scenario.kind not in KINDS:
        raise ValueError(f"Unknown scenario kind. Expected one of {KINDS}. Received: kind={scenario.kind!r}")
    if scenario.generator != GENERATOR_PYTHON:
        return _run_native(scenario, target=target, payloads=payloads, limits=limits, on_progress=on_progress)
    load = scenario.kind in (KIND_PREDICT, KIND_FLOOR)
    users_total = scenario.concurrency if scenario.rate is None else 0
    n = max(1, min(processes, users_total) if scenario.rate is None else processes) if load else 1
    users = _split(users_total, n) if scenario.rate is None else [0] * n
    quotas = _split(limits.requests, n) if limits.requests is not None else [None] * n
    if limits.requests is not None and limits.requests < n:
        n, users, quotas = limits.requests, users[: limits.requests], quotas[: limits.requests]
    payload = payloads.get(scenario.batch_size) if scenario.kind != KIND_FLOOR else None
    context = multiprocessing.get_context("spawn")
    counters = context.Array("q", n, lock=False)
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    start_at = context.Value("d", 0.0, lock=False)
    workers = []
    for slot in range(n):
        spec = WorkerSpec(
            kind=scenario.kind,
            protocol=scenario.protocol,
            target=target,
            payload=payload,
            users=max(1, users[slot]) if load else 1,
            rate=scenario.rate / n if scenario.rate is not None else None,
            phase=slot / n,
            requests=quotas[slot],
            duration=limits.duration,
            warmup=limits.warmup,
            timeout=limits.timeout,
        )
        process = context.Process(
            target=_worker_main, args=(spec, slot, counters, ready, go, start_at, results), daemon=True
        )
        process.start()
        workers.append(process)
    try:
        setup_deadline = time.monotonic() + _SETUP_TIMEOUT
        started = 0
        while started < n:
            try:
                slot, error = ready.get(timeout=0.2)
            except queue_module.Empty:
                # Polling so a worker that died without a word (killed, crashed) fails fast.
                dead = [p for p in workers if p.exitcode is not None]
                if dead:
                    raise BenchError(f"A load generator for {scenario.label} exited with code {dead[0].exitcode} "
                                     "while starting.") from None
                if time.monotonic() > setup_deadline:
                    raise BenchError(f"Load generators for {scenario.label} were not ready within {_SETUP_TIMEOUT:g}s.") from None
                continue
            if error is not None:
                raise BenchError(f"A load generator for {scenario.label} failed while starting: {error}")
            started += 1
        start_at.value = time.monotonic()
        go.set()
        collected: dict[int, WorkerResult] = {}
        while len(collected) < n:
            try:
                slot, result, error = results.get(timeout=0.1)
            except queue_module.Empty:
                if on_progress is not None:
                    on_progress(sum(counters), time.monotonic() - start_at.value)
                dead = [p for p in workers if p.exitcode not in (None, 0)]
                if dead:
                    raise BenchError(f"A load generator for {scenario.label} exited with code {dead[0].exitcode}.") from None
                continue
            if error is not None:
                raise BenchError(f"A load generator for {scenario.label} failed: {error}")
            collected[slot] = result
        if on_progress is not None:
            on_progress(sum(counters), time.monotonic() - start_at.value)
    finally:
        for process in workers:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()
    latencies = [x for r in collected.values() for x in r.latencies]
    errors = sum(r.errors for r in collected.values())
    elapsed = max(r.end for r in collected.values()) - start_at.value
    samples = tuple(dict.fromkeys(s for r in collected.values() for s in r.error_samples))[:_ERROR_SAMPLES]
    return Measurement(
        scenario=scenario,
        stats=summarize(latencies, errors=errors, elapsed_s=max(elapsed, 1e-9)),
        processes=n,
        load_avg_1m=os.getloadavg()[0],
        error_samples=samples,
    )


def _run_native(scenario: Scenario, *, target: Target, payloads: Mapping[int, Payload], limits: Limits,
                on_progress: Callable[[int, float], None] | None) -> Measurement:
    """One closed-loop scenario from wrk (REST) or h2load (gRPC); see tfstack.serving.bench._native."""
    from tfstack.serving.bench import _native as native

    expected = {"rest": GENERATOR_WRK, "grpc": GENERATOR_H2LOAD}[scenario.protocol]
    if scenario.generator != expected or scenario.rate is not None or scenario.kind not in (KIND_PREDICT, KIND_FLOOR):
        raise ValueError(f"{scenario.generator} cannot run {scenario.label}: C load generators run closed-loop "
                         f"{KIND_PREDICT}/{KIND_FLOOR} load, wrk over REST and h2load over gRPC.")
    if limits.duration is None:
        raise ValueError("C load generators run for a duration; give `duration`, not `requests`.")
    address = target.rest_url if scenario.protocol == "rest" else target.grpc_target
    assert address is not None  # a scenario's protocol always has its target
    if scenario.protocol == "rest":
        request = (native.rest_status_request(address, target.model_name) if scenario.kind == KIND_FLOOR
                   else native.rest_predict_request(address, target.model_name, payloads[scenario.batch_size].rest_body))
    else:
        request = (native.grpc_status_request(address, target.model_name) if scenario.kind == KIND_FLOOR
                   else native.grpc_predict_request(address, payloads[scenario.batch_size].grpc_request))
    try:
        request = native.check_and_warm_up(request, count=limits.warmup, timeout=limits.timeout)
        run = native.run_wrk if scenario.protocol == "rest" else native.run_h2load
        result = run(request, concurrency=scenario.concurrency, duration=limits.duration, timeout=limits.timeout)
    except native.NativeToolError as exc:
        raise BenchError(f"{scenario.label}: {exc}") from exc
    stats = LatencyStats(
        requests=result.requests, errors=result.errors, elapsed_s=result.elapsed_s, throughput_rps=result.throughput_rps,
        mean_ms=result.mean_ms, p50_ms=result.p50_ms, p90_ms=result.p90_ms, p95_ms=result.p95_ms, p99_ms=result.p99_ms,
        max_ms=result.max_ms,
    )
    if on_progress is not None:
        on_progress(result.requests + result.errors, result.elapsed_s)
    samples = (f"{result.errors} failed requests (the tool reports counts, not texts)",) if result.errors else ()
    return Measurement(scenario=scenario, stats=stats, processes=1, load_avg_1m=os.getloadavg()[0], error_samples=samples)


def expected_requests(scenario: Scenario, limits: Limits) -> int | None:
    """How many requests a scenario will send when that is known in advance (for the progress bar)."""
    if limits.requests is not None:
        return limits.requests
    if scenario.rate is not None and limits.duration is not None:
        return int(scenario.rate * limits.duration)
    return None


# --------------------------------------------------------------------------------------------
# ratios, the time breakdown, reports


def _find(measurements: Sequence[Measurement], **fields: Any) -> Measurement | None:
    for m in measurements:
        if all(getattr(m.scenario, k) == v for k, v in fields.items()):
            return m
    return None


def baseline_ratios(measurements: Sequence[Measurement]) -> dict[str, float]:
    """The comparisons the report publishes (NaN where a term was not measured)."""
    def p50(**fields: Any) -> float:
        m = _find(measurements, **fields)
        return m.stats.p50_ms if m is not None else math.nan

    ratios = {}
    stub = p50(kind=KIND_OFFICIAL_STUB, protocol="grpc")
    for protocol in PROTOCOLS:
        ours = p50(kind=KIND_TFSTACK_CLIENT, protocol=protocol)
        ratios[f"tfstack client {protocol} p50 / official stub p50"] = ours / stub
    in_process = p50(kind=KIND_IN_PROCESS, batch_size=1)
    for protocol in PROTOCOLS:
        predict = p50(kind=KIND_PREDICT, protocol=protocol, concurrency=1, batch_size=1, rate=None)
        ratios[f"{protocol} predict c=1 b=1 p50 / in-process p50"] = predict / in_process
    return ratios


def breakdown(measurements: Sequence[Measurement]) -> list[str]:
    """Where a batch-1 Predict's time goes, one line per protocol, generator and batching setting.

    At concurrency 1: Predict p50 = empty request p50 (the server's stack and the round trip) +
    in-process p50 (the model, as the server runs it) + the rest (decoding, tensor conversion,
    hand-offs, encoding). At the highest concurrency measured: Predict throughput as a fraction of
    the empty request's.
    """
    lines = []
    in_process = _find(measurements, kind=KIND_IN_PROCESS, batch_size=1)
    keys = dict.fromkeys((m.scenario.protocol, m.scenario.generator, m.scenario.batching) for m in measurements
                         if m.scenario.kind == KIND_PREDICT and m.scenario.rate is None)
    for protocol, generator, batching in keys:
        where = dict(protocol=protocol, generator=generator, batching=batching, rate=None)
        name = f"{protocol} ({generator}), batching {batching}"
        predict = _find(measurements, kind=KIND_PREDICT, concurrency=1, batch_size=1, **where)
        empty = _find(measurements, kind=KIND_FLOOR, concurrency=1, **where)
        if predict is not None and empty is not None and predict.stats.requests and empty.stats.requests:
            text = (f"{name}: c=1 Predict p50 {predict.stats.p50_ms * 1e3:,.0f} us = empty request "
                    f"{empty.stats.p50_ms * 1e3:,.0f} us")
            if in_process is not None and in_process.stats.requests:
                rest = predict.stats.p50_ms - empty.stats.p50_ms - in_process.stats.p50_ms
                text += f" + model in-process {in_process.stats.p50_ms * 1e3:,.0f} us + request path {rest * 1e3:,.0f} us"
            else:
                text += f" + {(predict.stats.p50_ms - empty.stats.p50_ms) * 1e3:,.0f} us"
            lines.append(text)
        top = max((m.scenario.concurrency for m in measurements if m.scenario.kind == KIND_PREDICT
                   and m.scenario.concurrency > 1 and all(getattr(m.scenario, k) == v for k, v in where.items())), default=None)
        if top is not None:
            predict = _find(measurements, kind=KIND_PREDICT, concurrency=top, batch_size=1, **where)
            empty = _find(measurements, kind=KIND_FLOOR, concurrency=top, **where)
            if predict is not None and empty is not None and empty.stats.throughput_rps:
                lines.append(f"{name}: c={top} Predict {predict.stats.throughput_rps:,.0f}/s = "
                             f"{predict.stats.throughput_rps / empty.stats.throughput_rps:.2f}x the empty request's "
                             f"{empty.stats.throughput_rps:,.0f}/s")
    return lines


def machine_info() -> dict[str, Any]:
    """Where the numbers came from: CPUs, CPU model, RAM, Python and library versions."""
    info: dict[str, Any] = {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    except OSError:
        info["cpu_model"] = ""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        kb = int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith("MemTotal")))
        info["ram_gib"] = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        info["ram_gib"] = None
    from importlib import metadata

    for package in ("tensorflow", "tensorflow-serving-api", "grpcio", "aiohttp", "numpy"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    return info


CSV_FIELDS = (
    "kind", "protocol", "mode", "concurrency", "rate", "batch_size", "batching", "generator", "requests", "errors", "elapsed_s",
    "throughput_rps", "examples_per_s", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "processes", "load_avg_1m",
)


def write_csv(measurements: Sequence[Measurement], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as sink:
        writer = csv.DictWriter(sink, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for m in measurements:
            writer.writerow(m.row())


def write_json(measurements: Sequence[Measurement], path: Path, *, command: str, extra: Mapping[str, Any]) -> None:
    document = {
        "command": command,
        "machine": machine_info(),
        "measurements": [m.row() for m in measurements],
        "ratios": baseline_ratios(measurements),
        "breakdown": breakdown(measurements),
        **extra,
    }
    # NaN is not JSON; a missing value is null.
    text = json.dumps(document, indent=1, default=str)
    path.write_text(text.replace("NaN", "null"), encoding="utf-8")


def _plain_ticks(axis: Any) -> None:
    """Log-scale axes labelled 1, 2, 5, 10, 20, 50, ... 1,000 (no 10^3 notation)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def plain(value: float, _: Any) -> str:
        return f"{value:,.0f}" if value >= 1 else f"{value:g}"

    for which in (axis.xaxis, axis.yaxis):
        which.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        which.set_major_formatter(FuncFormatter(plain))
        which.set_minor_formatter(NullFormatter())


def write_chart(measurements: Sequence[Measurement], path: Path) -> None:
    """Latency against throughput (p50 left, p99 right), one line per protocol/kind/batch size/batching/generator.

    The empty request is drawn dashed; the one-at-a-time baselines (in-process, official stub,
    tfstack client) are horizontal dotted lines at their latency.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple[str, str, int, str, str], list[Measurement]] = {}
    for m in measurements:
        s = m.scenario
        if s.kind in (KIND_PREDICT, KIND_FLOOR) and s.rate is None and m.stats.requests:
            series.setdefault((s.kind, s.protocol, s.batch_size, s.batching, s.generator), []).append(m)
    baselines = [m for m in measurements if m.scenario.kind in (KIND_IN_PROCESS, KIND_OFFICIAL_STUB, KIND_TFSTACK_CLIENT)
                 and m.scenario.batch_size == 1 and m.stats.requests]
    figure, axes = plt.subplots(1, 2, figsize=(13, 6.5), sharex=True)
    colours = {"grpc": "tab:blue", "rest": "tab:orange"}
    baseline_colours = {(KIND_IN_PROCESS, ""): "tab:green", (KIND_OFFICIAL_STUB, "grpc"): "tab:purple",
                        (KIND_TFSTACK_CLIENT, "grpc"): "tab:brown", (KIND_TFSTACK_CLIENT, "rest"): "tab:olive"}
    for axis, stat in zip(axes, ("p50_ms", "p99_ms")):
        for (kind, protocol, batch, batching, generator), points in sorted(series.items()):
            points.sort(key=lambda m: m.scenario.concurrency)
            x = [m.stats.throughput_rps for m in points]
            y = [getattr(m.stats, stat) for m in points]
            style = {"color": colours.get(protocol, "tab:grey"), "alpha": 0.5 if kind == KIND_FLOOR else 1.0}
            dashes = "--" if kind == KIND_FLOOR else ("-" if batch == 1 else "-.")
            marker = "s" if batching == "on" else ("^" if batch > 1 else "o")
            if generator != GENERATOR_PYTHON:
                style["markerfacecolor"] = "white"
            what = "empty request" if kind == KIND_FLOOR else f"predict b={batch}"
            axis.plot(x, y, dashes, marker=marker, label=f"{protocol} {what}, batching {batching}, {generator}", **style)
            for m, value in zip(points, y):
                axis.annotate(f"c{m.scenario.concurrency}", (m.stats.throughput_rps, value), fontsize=7,
                              textcoords="offset points", xytext=(3, 3))
        for m in baselines:
            s = m.scenario
            name = f"{s.kind} {s.protocol}".strip() + f" (c=1, batching {s.batching})"
            axis.axhline(getattr(m.stats, stat), linestyle=":", linewidth=1.2,
                         color=baseline_colours.get((s.kind, s.protocol), "tab:grey"), label=name)
        axis.set_xlabel("throughput (requests/s, log scale)")
        axis.set_ylabel(f"{stat[:3]} latency (ms, log scale)")
        axis.set_xscale("log")
        axis.set_yscale("log")
        _plain_ticks(axis)
        axis.set_title(f"{stat[:3]} latency vs throughput")
        axis.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    figure.suptitle("tfstack bench, closed loop (point labels = concurrency; dotted: one-at-a-time baselines)")
    figure.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(labels) / 3), 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def results_table(measurements: Sequence[Measurement], *, title: str = "tfstack bench") -> Any:
    """A rich Table of every measurement (under 100 columns wide); the CSV has every field (p90, p95...).

    `÷empty` is Predict throughput over the empty request's at the same load; `÷model` is p50
    latency over the in-process model call's.
    """
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, 1), collapse_padding=True)
    for column in ("request", "proto", "by", "load", "b", "batching", "req/s", "p50 ms", "p99 ms", "err",
                   "÷empty", "÷model", "load avg"):
        table.add_column(column, justify="left" if column in ("request", "proto", "by", "load", "batching") else "right",
                         no_wrap=True)
    in_process = {m.scenario.batch_size: m.stats.p50_ms for m in measurements if m.scenario.kind == KIND_IN_PROCESS}
    names = {KIND_FLOOR: "empty", KIND_IN_PROCESS: "in-process", KIND_OFFICIAL_STUB: "stub", KIND_TFSTACK_CLIENT: "client"}
    for m in measurements:
        s, st = m.scenario, m.stats
        floor = _find(measurements, kind=KIND_FLOOR, protocol=s.protocol, concurrency=s.concurrency, rate=None,
                      batching=s.batching, generator=s.generator)
        x_floor = (f"{st.throughput_rps / floor.stats.throughput_rps:.2f}"
                   if s.kind == KIND_PREDICT and s.rate is None and floor and floor.stats.throughput_rps else "")
        ratio = (f"{st.p50_ms / in_process[s.batch_size]:.1f}"
                 if s.kind not in (KIND_IN_PROCESS, KIND_FLOOR) and s.batch_size in in_process and st.requests else "")
        generator = {GENERATOR_PYTHON: "py"}.get(s.generator, s.generator)
        table.add_row(
            names.get(s.kind, s.kind), s.protocol or "-", generator if s.kind in (KIND_PREDICT, KIND_FLOOR) else "",
            f"{s.rate:g}/s" if s.rate is not None else f"c={s.concurrency}", str(s.batch_size), s.batching,
            f"{st.throughput_rps:,.0f}", *(f"{v:.3f}" for v in (st.p50_ms, st.p99_ms)), str(st.errors),
            x_floor, ratio, f"{m.load_avg_1m:.1f}",
            style="red" if st.errors else None,
        )
    return table


def markdown_table(measurements: Sequence[Measurement]) -> str:
    """The measurements as a GitHub-flavoured markdown table (for docs/performance.md)."""
    header = ("| scenario | protocol | generator | load | batch | batching | ok | errors | req/s | p50 ms | p90 ms | p95 ms "
              "| p99 ms | load avg |")
    lines = [header, "|" + "|".join("---" for _ in range(14)) + "|"]
    for m in measurements:
        s, st = m.scenario, m.stats
        load = f"{s.rate:g}/s" if s.rate is not None else f"c={s.concurrency}"
        lines.append(
            f"| {s.kind} | {s.protocol or '-'} | {s.generator} | {load} | {s.batch_size} | {s.batching} | {st.requests} "
            f"| {st.errors} | "
            f"{st.throughput_rps:,.0f} | {st.p50_ms:.3f} | {st.p90_ms:.3f} | {st.p95_ms:.3f} | {st.p99_ms:.3f} | {m.load_avg_1m:.2f} |"
        )
    return "\n".join(lines)


def python_command() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
