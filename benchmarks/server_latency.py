"""Batch-1 Predict latency of the embedded server, next to its floors (issue 3, Speed).

Measures, in one run, at concurrency 1:
  (a) in-process: the SavedModel's serving_default signature called directly (flat call, as
      the server does; the structured tf.function call for reference), and through ServerCore's
      blocking predict path (validation and numpy conversion included);
  (b) transport floor: an empty request through the same server stack: gRPC
      grpc.health.v1.Health/Check and the REST route that touches no model (GET /tfstack/ping);
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


def _load_generator(grpc_target: str, rest_port: int, predict_bytes: bytes, rest_path: str, rest_body: bytes,
                    warmup: int, pipe) -> None:
    """Runs in its own process: on each "go", one chunk of sequential requests, interleaved.

    Interleaving the four kinds request by request (and the chunks with the parent's
    in-process chunks) lets machine noise hit every measurement alike.
    """
    import grpc

    channel = grpc.insecure_channel(grpc_target)
    health = channel.unary_unary("/grpc.health.v1.Health/Check")
    predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    connection = http.client.HTTPConnection("127.0.0.1", rest_port)

    def rest(method: str, path: str, body: bytes | None, expect: int):
        headers = {"Content-Type": "application/json"} if body else {}

        def call():
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == expect, response.status
        return call

    calls = {
        "grpc_floor": lambda: health(b"", timeout=10),
        "grpc_predict": lambda: predict(predict_bytes, timeout=10),
        "rest_floor": rest("GET", "/tfstack/ping", None, 200),
        "rest_predict": rest("POST", rest_path, rest_body, 200),
    }
    for _ in range(warmup):
        for call in calls.values():
            call()
    while True:
        size = pipe.recv()
        if size is None:
            return
        out: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(size):
            for name, call in calls.items():
                started = time.perf_counter_ns()
                call()
                out[name].append((time.perf_counter_ns() - started) / 1000)
        pipe.send(out)


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
    parser.add_argument("--rounds", type=int, default=20, help="alternate in-process and remote chunks this often")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the numbers here")
    parser.add_argument("--intra-op", type=int, default=1,
                        help="TF intra/inter-op threads, in-process and in the server (the server's auto is 1)")
    args = parser.parse_args()

    model_name, base = _ensure_model(args.model_base_path)
    import numpy as np
    import tensorflow as tf

    # Same TF threading as the server, so the in-process baseline is what the server runs.
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(args.intra_op)
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
    in_process = {
        # the signature as the server calls it (a flat call, like a TF Serving session run)
        "in_process_signature": lambda: function._call_flat(flat_args, function.captured_inputs),
        "in_process_structured": lambda: function(**tensors),
        "in_process_core": lambda: run_predict(servable, "serving_default", inputs),
    }
    for _ in range(args.warmup):
        for call in in_process.values():
            call()
    results: dict[str, list[float]] = {name: [] for name in in_process}

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    for alias, array in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(array))
    rest_body = json.dumps({"instances": [{k: _jsonable(v[0]) for k, v in inputs.items()}]}).encode()

    with tempfile.TemporaryDirectory() as log_dir, start_server(
        Path(log_dir), f"--tensorflow_session_parallelism={args.intra_op}",
        model_name=model_name, model_base_path=base, rest=True,
    ) as server:
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        generator = context.Process(
            target=_load_generator,
            args=(server.grpc_target, server.rest_port, request.SerializeToString(),
                  f"/v1/models/{model_name}:predict", rest_body, args.warmup, child_end),
        )
        generator.start()
        chunk = max(1, args.requests // args.rounds)
        for _ in range(args.rounds):
            for _ in range(chunk):
                for name, call in in_process.items():
                    started = time.perf_counter_ns()
                    call()
                    results[name].append((time.perf_counter_ns() - started) / 1000)
            parent_end.send(chunk)
            for name, samples in parent_end.recv().items():
                results.setdefault(name, []).extend(samples)
        parent_end.send(None)
        generator.join()

    rows = {name: _percentiles(samples) for name, samples in results.items()}
    print(f"\nmodel {model_name} v{version} ({base}), batch 1, concurrency 1, {len(results['grpc_predict'])} requests each, "
          f"{os.cpu_count()} CPUs\n")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} (the targets assume an otherwise idle machine)")
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
