"""The request path of `tfstack serve`, measured with C load generators, next to KServe's Python server.

One run, on the same SavedModel (default: the digits model), batch 1, loopback only:
  - `tfstack serve` without and with `--enable_batching` (TF Serving's default parameters);
  - KServe's Python ModelServer (V1 protocol, benchmarks/kserve_peer.py) when `--kserve-python`
    names the Python of a venv with kserve and tensorflow (see that file for how to make one);
  - per server: the empty request (REST `GET /v1/models/<name>`, gRPC `ModelService/GetModelStatus`)
    and Predict with the same row body (`{"instances": [...]}`) / PredictRequest, at each concurrency,
    from wrk (REST) and h2load (gRPC) via tfstack.serving.bench._native, the code `tfstack bench` uses;
  - the in-process Session call (the version's `serving_default` as one Session callable, no server),
    in a separate process.
Every cell runs once per round, rounds interleave the servers, and the report gives the median and
the range over the rounds, with three checks computed per round:
  (a) c=1 Predict p50 <= empty p50 + Session call p50 + 250 us (REST and gRPC);
  (b) c=32, batching on: Predict throughput >= 0.5x the empty request's (REST and gRPC);
  (c) Predict throughput >= 3x KServe's at c=1 and c=32 (REST).

Usage:
  .venv/bin/python benchmarks/request_path.py --model-base-path $PWD/models/digits \\
      --kserve-python /work/peer/.venv/bin/python --rounds 3 --duration 5 --output request-path.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SESSION_CALLS = 3000


def _session_call_p50(version_dir: str) -> None:
    """Child mode: print the p50 (ms) of the version's serving_default as one Session callable."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfstack.serving.server._inference import prepare_predict
    from tfstack.serving.server._servable import load_servable

    sample = json.loads((Path(version_dir) / "assets.extra" / "sample_request.json").read_text())
    import numpy as np

    servable = load_servable("m", int(Path(version_dir).name), version_dir)
    inputs = {name: np.asarray(values[:1], dtype=np.float32) for name, values in sample["inputs"].items()}
    prepared = prepare_predict(servable, "serving_default", inputs)
    servable.run(prepared.feeds, prepared.fetches)  # makes the callable
    callable_ = servable._runner._callables[prepared.tensor_signature]
    feeds = list(prepared.feeds.values())
    for _ in range(300):
        callable_(*feeds)
    samples = []
    for _ in range(SESSION_CALLS):
        began = time.perf_counter()
        callable_(*feeds)
        samples.append(time.perf_counter() - began)
    print(json.dumps({"session_call_p50_ms": statistics.median(samples) * 1e3}))


def _bodies(version_dir: Path, model_name: str) -> tuple[bytes, bytes]:
    """(REST row body, serialized PredictRequest) for the first example of the sample request."""
    import numpy as np

    from tfstack.client._proto import tfstack_serving_pb2 as pb
    from tfstack.client._tensors import to_tensor_proto

    sample = json.loads((version_dir / "assets.extra" / "sample_request.json").read_text())
    inputs = sample.get("inputs")
    if not isinstance(inputs, dict) or len(inputs) != 1:
        raise SystemExit("This script sends one input; the sample request must be columnar with one named input.")
    (name, values), = inputs.items()
    row = values[0]
    rest = json.dumps({"instances": [row]}).encode()
    request = pb.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = "serving_default"
    to_tensor_proto(np.asarray([row], dtype=np.float32), request.inputs[name])
    return rest, request.SerializeToString()


@contextlib.contextmanager
def _kserve(python: str, version_dir: Path, model_name: str, workdir: Path):
    from tfstack.serving.bench._native import check_and_warm_up, rest_status_request
    from tests.support.server import free_port

    port = free_port()
    log = open(workdir / "kserve.log", "w")
    process = subprocess.Popen([python, str(REPO / "benchmarks" / "kserve_peer.py"), "--model-dir", str(version_dir),
                                "--model-name", model_name, "--http-port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                check_and_warm_up(rest_status_request(url, model_name), count=1, timeout=2)
                break
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"KServe peer did not start; see {workdir / 'kserve.log'}") from None
                time.sleep(0.5)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) and its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _measure(kind: str, protocol: str, address: str, model_name: str, bodies: tuple[bytes, bytes], concurrency: int,
             duration: float, pid: int) -> dict:
    from tfstack.serving.bench import _native as native

    if protocol == "rest":
        request = (native.rest_status_request(address, model_name) if kind == "empty"
                   else native.rest_predict_request(address, model_name, bodies[0]))
    else:
        request = (native.grpc_status_request(address, model_name) if kind == "empty"
                   else native.grpc_predict_request(address, bodies[1]))
    request = native.check_and_warm_up(request, count=50, timeout=30)
    run = native.run_wrk if protocol == "rest" else native.run_h2load
    cpu = _cpu_seconds(pid)
    result = run(request, concurrency=concurrency, duration=duration, timeout=30)
    # Server CPU per answered request: far less sensitive to a shared machine than latency.
    cpu_us = (_cpu_seconds(pid) - cpu) / max(1, result.requests + result.errors) * 1e6
    return {"rps": result.throughput_rps, "cpu_us": cpu_us, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "mean_ms": result.mean_ms,
            "errors": result.errors, "requests": result.requests, "load_avg_1m": os.getloadavg()[0]}


def _fmt_range(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", type=Path, default=REPO / "models" / "digits")
    parser.add_argument("--model-name", default="digits")
    parser.add_argument("--kserve-python", default=None, help="Python of a venv with kserve + tensorflow (optional).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--output", type=Path, default=None, help="Write every measurement as JSON here.")
    parser.add_argument("--compare-repo", type=Path, default=None,
                        help="Also serve from this checkout of tfstack (e.g. `git archive main`), as `before`.")
    parser.add_argument("--session-call", default=None, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.session_call:
        _session_call_p50(options.session_call)
        return
    from tfstack.serving.bench import _native as native
    from tfstack.serving.testing._harness import EmbeddedBackend, ServeRequest, serve_models

    for protocol in ("rest", "grpc"):
        if native.find_tool(protocol) is None:
            raise SystemExit(native.missing_tool_message(protocol))
    base = options.model_base_path.resolve()
    version_dir = max((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    bodies = _bodies(version_dir, options.model_name)
    concurrencies = [int(c) for c in options.concurrency.split(",")]
    cells: dict[tuple[str, str, str, int], list[dict]] = {}
    session_p50: list[float] = []
    with tempfile.TemporaryDirectory(prefix="request-path-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        servers: dict[str, dict[str, str]] = {}
        variants = [("tfstack", EmbeddedBackend())]
        if options.compare_repo:
            # The other checkout's own tfstack_cli first on sys.path (ahead of the editable install).
            code = f"import sys; sys.path.insert(0, {str(options.compare_repo.resolve())!r}); from tfstack import cli as tfstack_cli; tfstack_cli.main()"
            variants.append(("before", EmbeddedBackend(entry=("-c", code, "serve"))))
        for (prefix, backend), (suffix, flags) in ((v, f) for v in variants for f in (("", ()), ("+batching", ("--enable_batching=true",)))):
            name = prefix + suffix
            endpoint = stack.enter_context(serve_models(
                backend, ServeRequest(models={options.model_name: base}, flags=flags), workdir=workdir / name))
            servers[name] = {"rest": endpoint.rest_url, "grpc": endpoint.grpc_target, "pid": endpoint.running.process.pid}
        if options.kserve_python:
            url, pid = stack.enter_context(_kserve(options.kserve_python, version_dir, options.model_name, workdir))
            servers["kserve"] = {"rest": url, "pid": pid}
        plan = []
        for concurrency in concurrencies:
            for protocol in ("rest", "grpc"):
                for prefix, _ in variants:
                    plan += [(prefix, protocol, "empty", concurrency), (prefix, protocol, "predict", concurrency),
                             (prefix + "+batching", protocol, "predict", concurrency)]
            if "kserve" in servers:
                plan += [("kserve", "rest", "empty", concurrency), ("kserve", "rest", "predict", concurrency)]
        for round_ in range(options.rounds):
            child = subprocess.run([sys.executable, __file__, "--session-call", str(version_dir)], capture_output=True,
                                   text=True, check=True)
            session_p50.append(json.loads(child.stdout.strip().splitlines()[-1])["session_call_p50_ms"])
            for server, protocol, kind, concurrency in plan:
                result = _measure(kind, protocol, servers[server][protocol], options.model_name, bodies, concurrency,
                                  options.duration, servers[server]["pid"])
                cells.setdefault((server, protocol, kind, concurrency), []).append(result)
                print(f"round {round_ + 1} {server:16s} {protocol:4s} {kind:7s} c={concurrency:<3d} "
                      f"{result['rps']:8.0f}/s p50 {result['p50_ms'] * 1e3:7.0f} us p99 {result['p99_ms'] * 1e3:7.0f} us "
                      f"cpu {result['cpu_us']:6.0f} us/req err {result['errors']} load {result['load_avg_1m']:.1f}", flush=True)

    def values(server: str, protocol: str, kind: str, concurrency: int, field: str) -> list[float]:
        return [r[field] for r in cells.get((server, protocol, kind, concurrency), [])]

    print("\n| server | protocol | request | c | req/s | p50 us | p99 us | server CPU us/request |\n|---|---|---|---|---|---|---|---|")
    for (server, protocol, kind, concurrency), runs in cells.items():
        print(f"| {server} | {protocol} | {kind} | {concurrency} | {_fmt_range([r['rps'] for r in runs], 0)} | "
              f"{_fmt_range([r['p50_ms'] * 1e3 for r in runs], 0)} | {_fmt_range([r['p99_ms'] * 1e3 for r in runs], 0)} | "
              f"{_fmt_range([r['cpu_us'] for r in runs], 0)} |")
    print(f"\nSession call p50 (in-process): {_fmt_range([v * 1e3 for v in session_p50], 0)} us")
    checks = []
    for prefix, _ in variants:
        for protocol in ("rest", "grpc"):
            over = [(p - e - s) * 1e3 for p, e, s in zip(values(prefix, protocol, "predict", 1, "p50_ms"),
                                                           values(prefix, protocol, "empty", 1, "p50_ms"), session_p50)]
            checks.append((f"(a) {prefix} {protocol} c=1: Predict p50 - empty p50 - Session p50 <= 250 us", over,
                           [v <= 250 for v in over], "us"))
            ratio = [p / e for p, e in zip(values(prefix + "+batching", protocol, "predict", 32, "rps"),
                                           values(prefix, protocol, "empty", 32, "rps"))]
            checks.append((f"(b) {prefix} {protocol} c=32, batching on: Predict req/s / empty req/s >= 0.5", ratio,
                           [v >= 0.5 for v in ratio], "x"))
    for concurrency in concurrencies:
        for server in [p + b for p, _ in variants for b in ("", "+batching")]:
            ratio = [t / k for t, k in zip(values(server, "rest", "predict", concurrency, "rps"),
                                           values("kserve", "rest", "predict", concurrency, "rps"))]
            checks.append((f"(c) {server} / KServe, REST Predict req/s, c={concurrency} >= 3", ratio,
                           [v >= 3 for v in ratio], "x"))
    print("\n| check | per round | median | met in rounds |\n|---|---|---|---|")
    for name, measured, met, unit in checks:
        if not measured:
            continue
        digits = 0 if unit == "us" else 2
        print(f"| {name} | {', '.join(f'{v:.{digits}f}' for v in measured)} | {statistics.median(measured):.{digits}f} "
              f"| {sum(met)}/{len(met)} |")
    if options.output:
        document = {"session_call_p50_ms": session_p50, "duration_s": options.duration, "rounds": options.rounds,
                    "cells": [{"server": s, "protocol": p, "request": k, "concurrency": c, "runs": runs}
                              for (s, p, k, c), runs in cells.items()],
                    "checks": [{"name": n, "values": v, "met": m} for n, v, m, _ in checks]}
        options.output.write_text(json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
