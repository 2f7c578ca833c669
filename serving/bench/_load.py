"""Load generation for `tfstack bench` (a perf_analyzer for TF-Serving-compatible servers).

A *scenario* is one measurement: a kind of request (Predict over gRPC or REST, the empty
request, or a baseline), a concurrency or an open-loop rate, a batch size, a load generator.
The empty request is model status (REST `GET /v1/models/<name>`, gRPC `GetModelStatus`): the
server's whole stack without tensor work, answered by any TF-Serving-compatible server.

Load comes from the C load generators (wrk for REST, h2load for gRPC; tfstack.serving.bench._native;
a replay over REST from wrk too, over gRPC from Python) when they are installed, or from fresh Python worker processes (spawned, so gRPC never crosses a
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
import dataclasses
import math
import multiprocessing
import os
import queue as queue_module
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tfstack.serving.bench._plan import (
    GENERATOR_H2LOAD,
    GENERATOR_PYTHON,
    GENERATOR_WRK,
    KIND_FLOOR,
    KIND_IN_PROCESS,
    KIND_OFFICIAL_STUB,
    KIND_PREDICT,
    KIND_REPLAY,
    KIND_TFSTACK_CLIENT,
    KINDS,
    MODEL_STATUS_METHOD,
    PREDICT_METHOD,
    BenchError,
    Limits,
    Payload,
    Scenario,
    Target,
)
from tfstack.serving.bench._replay import ReplayRequest
from tfstack.serving.bench._stats import LatencyStats, summarize

# --------------------------------------------------------------------------------------------
# workers (each runs in its own spawned process)

# Open loop: beyond this many requests in flight per worker, new ones are dropped and counted
# as errors, so an overloaded server cannot make the generator eat all memory.
MAX_IN_FLIGHT = 4096
_ERROR_SAMPLES = 5
_SETUP_TIMEOUT = 300.0  # workers that import TensorFlow need a while on a loaded machine


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
    replay: tuple[ReplayRequest, ...] = ()  # KIND_REPLAY: the logged requests, cycled in order
    replay_start: int = 0  # where in `replay` this worker starts, so workers spread over the log


@dataclasses.dataclass(kw_only=True)
class WorkerResult:
    latencies: list[float]
    errors: int
    error_samples: list[str]
    end: float
    examples: int = 0  # examples in the answered replay requests


class _Cycle:
    """The next logged request of a worker's replay, in log order, wrapping around."""

    def __init__(self, requests: Sequence[ReplayRequest], start: int) -> None:
        self._requests, self._start = requests, start % len(requests)
        self._next = self._start

    def rewind(self) -> None:
        """Back to the worker's first request (after warmup, so a measured run starts there)."""
        self._next = self._start

    def take(self) -> ReplayRequest:
        request = self._requests[self._next]
        self._next = (self._next + 1) % len(self._requests)
        return request


class _HttpStatus(Exception):
    pass


def model_status_request(model_name: str) -> bytes:
    """A serialized GetModelStatusRequest for `model_name` (the empty request over gRPC)."""
    from tfstack.client import wire as pb

    request = pb.GetModelStatusRequest()
    request.model_spec.name = model_name
    return request.SerializeToString()


async def _async_sender(spec: WorkerSpec, cycle: _Cycle | None = None) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """An async `send()` that raises on any failure (and returns the examples sent when replaying), and an
    async `close()`."""
    if spec.protocol == "grpc":
        import grpc

        assert spec.target.grpc_target is not None  # a gRPC scenario exists only with a gRPC target
        channel = grpc.aio.insecure_channel(
            spec.target.grpc_target,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        if cycle is not None:
            predict = channel.unary_unary(PREDICT_METHOD)

            async def send_logged() -> int:
                assert cycle is not None  # narrowed above; the closure does not keep the narrowing
                request = cycle.take()
                await predict(request.grpc_request, timeout=spec.timeout)
                return request.batch_size

            async def close_channel() -> None:
                await channel.close()

            return send_logged, close_channel
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
    data: bytes | None
    if spec.kind == KIND_FLOOR:
        method, url, data, headers = "GET", f"{base}/v1/models/{spec.target.model_name}", None, {}
    else:
        method, url = "POST", f"{base}/v1/models/{spec.target.model_name}:predict"
        headers = {"Content-Type": "application/json"}
        if cycle is None:
            assert spec.payload is not None  # Predict scenarios carry their payload
            data = spec.payload.rest_body
        else:
            data = None  # each send takes the next logged body

    async def send() -> int:
        body = data
        examples = 0
        if cycle is not None:
            request = cycle.take()
            body, examples = request.rest_body, request.batch_size
        async with session.request(method, url, data=body, headers=headers) as response:
            text = await response.read()
            if response.status != 200:
                raise _HttpStatus(f"HTTP {response.status}: {text[:200].decode('utf-8', 'replace')}")
        return examples

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
        self.examples = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self._counters, self._slot = counters, slot

    def ok(self, latency: float, examples: int | None = None) -> None:
        self.latencies.append(latency)
        self.examples += examples or 0
        self._counters[self._slot] += 1

    def fail(self, exc: BaseException | str) -> None:
        self.errors += 1
        self._counters[self._slot] += 1
        if len(self.error_samples) < _ERROR_SAMPLES:
            self.error_samples.append(exc if isinstance(exc, str) else f"{type(exc).__name__}: {str(exc)[:300]}")

    def result(self) -> WorkerResult:
        return WorkerResult(latencies=self.latencies, errors=self.errors, error_samples=self.error_samples, end=time.monotonic(),
                            examples=self.examples)


def _deadline(spec: WorkerSpec, start: float) -> float:
    return start + spec.duration if spec.duration is not None else math.inf


async def _run_async(spec: WorkerSpec, recorder: _Recorder, ready: Any, go: Any, start_at: Any, slot: int) -> None:
    cycle = _Cycle(spec.replay, spec.replay_start) if spec.kind == KIND_REPLAY else None
    send, close = await _async_sender(spec, cycle)
    try:
        for _ in range(spec.warmup):
            await send()
        if cycle is not None:
            cycle.rewind()
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
                        examples = await send()
                    except Exception as exc:  # every failure is data: counted and sampled
                        recorder.fail(exc)
                    else:
                        recorder.ok(time.monotonic() - began, examples)

            await asyncio.gather(*(user() for _ in range(spec.users)))
            return
        interval = 1.0 / spec.rate
        in_flight: set[asyncio.Task] = set()

        async def one(scheduled: float) -> None:
            try:
                examples = await send()
            except Exception as exc:
                recorder.fail(exc)
            else:
                recorder.ok(time.monotonic() - scheduled, examples)

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
        if spec.kind in (KIND_PREDICT, KIND_FLOOR, KIND_REPLAY):
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
    examples: int | None = None  # examples in the answered requests, when counted (replay: batch sizes vary)

    def row(self) -> dict[str, Any]:
        """A flat dict for CSV/JSON (a replay's batch_size is None: each request has its logged one)."""
        s = self.scenario
        if self.examples is not None:
            examples_per_s = self.examples / self.stats.elapsed_s if self.stats.elapsed_s > 0 else 0.0
        else:
            examples_per_s = self.stats.throughput_rps * (s.batch_size or 1)
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
            "examples_per_s": examples_per_s,
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
    replay: Sequence[ReplayRequest] = (),
) -> Measurement:
    """Run one scenario in fresh worker processes and summarize it.

    Args:
        processes: worker processes for closed/open-loop load (baselines always use one).
        replay: the logged requests a KIND_REPLAY scenario cycles through (see `build_replay`);
            each worker starts at its own place in the log.
        on_progress: called about 10 times a second with the requests finished so far and the
            seconds since the measurement started.

    Raises:
        BenchError: a worker could not start (bad target, missing dependency) or crashed.
    """
    if scenario.kind not in KINDS:
        raise ValueError(f"Unknown scenario kind. Expected one of {KINDS}. Received: kind={scenario.kind!r}")
    if scenario.kind == KIND_REPLAY and not replay:
        raise ValueError(f"A {KIND_REPLAY} scenario needs the logged requests. Received: replay=()")
    if scenario.generator != GENERATOR_PYTHON:
        return _run_native(scenario, target=target, payloads=payloads, limits=limits, on_progress=on_progress,
                           replay=replay)
    load = scenario.kind in (KIND_PREDICT, KIND_FLOOR, KIND_REPLAY)
    users_total = scenario.concurrency if scenario.rate is None else 0
    n = max(1, min(processes, users_total) if scenario.rate is None else processes) if load else 1
    users = _split(users_total, n) if scenario.rate is None else [0] * n
    quotas = _split(limits.requests, n) if limits.requests is not None else [None] * n
    if limits.requests is not None and limits.requests < n:
        n, users, quotas = limits.requests, users[: limits.requests], quotas[: limits.requests]
    payload = payloads.get(scenario.batch_size) if scenario.kind not in (KIND_FLOOR, KIND_REPLAY) and scenario.batch_size else None
    replayed = tuple(replay) if scenario.kind == KIND_REPLAY else ()
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
            replay=replayed,
            replay_start=slot * len(replayed) // n,
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
        examples=sum(r.examples for r in collected.values()) if scenario.kind == KIND_REPLAY else None,
    )


def _run_native(scenario: Scenario, *, target: Target, payloads: Mapping[int, Payload], limits: Limits,
                on_progress: Callable[[int, float], None] | None, replay: Sequence[ReplayRequest] = ()) -> Measurement:
    """One closed-loop scenario from wrk (REST) or h2load (gRPC); see tfstack.serving.bench._native.

    A REST replay runs on wrk with the logged bodies cycled in log order (`run_wrk_replay`); gRPC
    replay stays on the Python generator (h2load sends one request file).
    """
    from tfstack.serving.bench import _native as native

    expected = {"rest": GENERATOR_WRK, "grpc": GENERATOR_H2LOAD}[scenario.protocol]
    kinds = (KIND_PREDICT, KIND_FLOOR, KIND_REPLAY) if scenario.protocol == "rest" else (KIND_PREDICT, KIND_FLOOR)
    if scenario.generator != expected or scenario.rate is not None or scenario.kind not in kinds:
        raise ValueError(f"{scenario.generator} cannot run {scenario.label}: C load generators run closed-loop "
                         f"{KIND_PREDICT}/{KIND_FLOOR} load, wrk over REST (and {KIND_REPLAY}) and h2load over gRPC.")
    if limits.duration is None:
        raise ValueError("C load generators run for a duration; give `duration`, not `requests`.")
    address = target.rest_url if scenario.protocol == "rest" else target.grpc_target
    assert address is not None  # a scenario's protocol always has its target
    if scenario.kind == KIND_REPLAY:
        return _run_wrk_replay(scenario, address=address, model_name=target.model_name, limits=limits,
                               on_progress=on_progress, replay=replay)
    payload = payloads[scenario.batch_size] if scenario.kind == KIND_PREDICT and scenario.batch_size is not None else None
    if scenario.protocol == "rest":
        request = (native.rest_predict_request(address, target.model_name, payload.rest_body) if payload is not None
                   else native.rest_status_request(address, target.model_name))
    else:
        request = (native.grpc_predict_request(address, payload.grpc_request) if payload is not None
                   else native.grpc_status_request(address, target.model_name))
    try:
        request = native.check_and_warm_up(request, count=limits.warmup, timeout=limits.timeout)
        run = native.run_wrk if scenario.protocol == "rest" else native.run_h2load
        result = run(request, concurrency=scenario.concurrency, duration=limits.duration, timeout=limits.timeout)
    except native.NativeToolError as exc:
        raise BenchError(f"{scenario.label}: {exc}") from exc
    return _native_measurement(scenario, result, on_progress)


def _run_wrk_replay(scenario: Scenario, *, address: str, model_name: str, limits: Limits,
                    on_progress: Callable[[int, float], None] | None, replay: Sequence[ReplayRequest]) -> Measurement:
    """A REST replay from wrk: first `warmup` logged bodies (at least one) from Python, each checked, then wrk."""
    from tfstack.serving.bench import _native as native

    assert limits.duration is not None  # checked by _run_native
    request = native.rest_predict_request(address, model_name, b"")
    bodies = [(r.rest_body, r.batch_size) for r in replay]
    try:
        native.check_and_warm_up(request, count=limits.warmup, timeout=limits.timeout, bodies=[b for b, _ in bodies])
        result = native.run_wrk_replay(request, bodies, concurrency=scenario.concurrency, duration=limits.duration,
                                       timeout=limits.timeout)
    except native.NativeToolError as exc:
        raise BenchError(f"{scenario.label}: {exc}") from exc
    return _native_measurement(scenario, result, on_progress)


def _native_measurement(scenario: Scenario, result: Any, on_progress: Callable[[int, float], None] | None) -> Measurement:
    stats = LatencyStats(
        requests=result.requests, errors=result.errors, elapsed_s=result.elapsed_s, throughput_rps=result.throughput_rps,
        mean_ms=result.mean_ms, p50_ms=result.p50_ms, p90_ms=result.p90_ms, p95_ms=result.p95_ms, p99_ms=result.p99_ms,
        max_ms=result.max_ms,
    )
    if on_progress is not None:
        on_progress(result.requests + result.errors, result.elapsed_s)
    samples = (f"{result.errors} failed requests (the tool reports counts, not texts)",) if result.errors else ()
    return Measurement(scenario=scenario, stats=stats, processes=1, load_avg_1m=os.getloadavg()[0], error_samples=samples,
                       examples=result.examples if scenario.kind == KIND_REPLAY else None)


def expected_requests(scenario: Scenario, limits: Limits) -> int | None:
    """How many requests a scenario will send when that is known in advance (for the progress bar)."""
    if limits.requests is not None:
        return limits.requests
    if scenario.rate is not None and limits.duration is not None:
        return int(scenario.rate * limits.duration)
    return None
