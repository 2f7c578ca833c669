"""Batch-1 Predict latency of the embedded server, next to its floors (issue 3, Speed).

Measures, in one run, at concurrency 1:
  (a) in-process: the SavedModel's serving_default signature called directly (flat call, as
      the server does; the structured tf.function call for reference), and through ServerCore's
      blocking predict path (validation and numpy conversion included);
  (b) transport floor: an empty request through the same server stack: gRPC
      grpc.health.v1.Health/Check and a REST route that touches no model (GET /, a 404);
  (c) Predict over gRPC and over REST.
The load generator runs in a separate process and sends pre-serialized bytes (no TensorFlow
in the client), so the numbers are the server's, plus one loopback round trip.

Usage:
  .venv/bin/python benchmarks/server_latency.py [--model-base-path /abs/models/digits] [--requests 2000]
Without --model-base-path it uses ./models/digits, training it first (`tfstack train`) if absent.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _percentiles(samples_us: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_us)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return statistics.median(ordered), p99


def _timed(call, requests: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(requests):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def _load_generator(grpc_target: str, rest_port: int, predict_bytes: bytes, rest_path: str, rest_body: bytes,
                    requests: int, warmup: int, results) -> None:
    """Runs in its own process: sequential requests, latencies in microseconds."""
    import grpc

    channel = grpc.insecure_channel(grpc_target)
    health = channel.unary_unary("/grpc.health.v1.Health/Check")
    predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    connection = http.client.HTTPConnection("127.0.0.1", rest_port)

    def rest(method: str, path: str, body: bytes | None, expect: int):
        def call():
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
            response = connection.getresponse()
            response.read()
            assert response.status == expect, response.status
        return call

    out = {
        "grpc_floor": _timed(lambda: health(b"", timeout=10), requests, warmup),
        "grpc_predict": _timed(lambda: predict(predict_bytes, timeout=10), requests, warmup),
        "rest_floor": _timed(rest("GET", "/", None, 404), requests, warmup),
        "rest_predict": _timed(rest("POST", rest_path, rest_body, 200), requests, warmup),
    }
    results.put(out)


def _ensure_model(base_path: str | None) -> tuple[str, Path]:
    if base_path:
        base = Path(base_path).resolve()
        return base.name, base
    base = REPO / "models" / "digits"
    if not base.is_dir():
        print(f"{base} not found: training the default digits model (tfstack train) ...", flush=True)
        subprocess.run([sys.executable, "-m", "tfstack_cli", "train", "--base-path", str(base.parent), "--quiet"],
                       check=True, cwd=REPO)
    return "digits", base


def _batch1_inputs(signature):
    import numpy as np
    import tensorflow as tf

    inputs = {}
    for alias, info in signature.inputs.items():
        dtype = tf.dtypes.as_dtype(info.dtype)
        dims = [1] if info.tensor_shape.unknown_rank else [d.size if d.size > 0 else 1 for d in info.tensor_shape.dim]
        if dtype == tf.string:
            inputs[alias] = np.array([b""] * int(np.prod(dims)), dtype=object).reshape(dims)
        else:
            inputs[alias] = np.zeros(dims, dtype=dtype.as_numpy_dtype)
    return inputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", default=None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--json", dest="json_path", default=None, help="also write the numbers here")
    args = parser.parse_args()

    model_name, base = _ensure_model(args.model_base_path)
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from serving._core import load_servable, run_predict
    from serving._manager import discover_versions
    from tests.support.server import start_server

    versions = discover_versions(model_name, str(base))
    version = max(versions)
    servable = load_servable(model_name, version, versions[version])
    signature = servable.signature_defs["serving_default"]
    inputs = _batch1_inputs(signature)
    function = servable._functions["serving_default"]
    tensors = {k: tf.constant(v) for k, v in inputs.items()}
    flat_args = [tensors[name] for name in servable._flat_args["serving_default"]]
    results: dict[str, list[float]] = {
        # the signature as the server calls it (a flat call, like a TF Serving session run)
        "in_process_signature": _timed(lambda: function._call_flat(flat_args, function.captured_inputs), args.requests, args.warmup),
        "in_process_structured": _timed(lambda: function(**tensors), args.requests, args.warmup),
        "in_process_core": _timed(lambda: run_predict(servable, "serving_default", inputs), args.requests, args.warmup),
    }

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    for alias, array in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(array))
    rest_body = json.dumps({"instances": [{k: _jsonable(v[0]) for k, v in inputs.items()}]}).encode()

    with tempfile.TemporaryDirectory() as log_dir, start_server(
        Path(log_dir), model_name=model_name, model_base_path=base, rest=True
    ) as server:
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        generator = context.Process(
            target=_load_generator,
            args=(server.grpc_target, server.rest_port, request.SerializeToString(),
                  f"/v1/models/{model_name}:predict", rest_body, args.requests, args.warmup, queue),
        )
        generator.start()
        results.update(queue.get(timeout=1800))
        generator.join()

    rows = {name: _percentiles(samples) for name, samples in results.items()}
    print(f"\nmodel {model_name} v{version} ({base}), batch 1, concurrency 1, {args.requests} requests each, "
          f"{os.cpu_count()} CPUs\n")
    print(f"{'measurement':<24}{'p50 (us)':>12}{'p99 (us)':>12}")
    for name, (p50, p99) in rows.items():
        print(f"{name:<24}{p50:>12.0f}{p99:>12.0f}")
    in_process = rows["in_process_signature"][0]
    for transport, budget in (("grpc", 150), ("rest", 250)):
        floor, predict = rows[f"{transport}_floor"][0], rows[f"{transport}_predict"][0]
        overhead = predict - floor - in_process
        verdict = "OK" if overhead <= budget else "OVER"
        print(f"{transport}: predict p50 - floor p50 - in-process p50 = {overhead:.0f} us (target <= {budget} us): {verdict}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({k: {"p50_us": v[0], "p99_us": v[1]} for k, v in rows.items()}, indent=1))
    return 0


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if hasattr(value, "item") else value


if __name__ == "__main__":
    sys.exit(main())
