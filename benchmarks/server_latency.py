"""Batch-1 Predict latency of the embedded server, next to its floors (issues 3 and 13, Speed).

Measures, in one run, at concurrency 1:
  (a) in-process: the version's Session callable (what the server runs since issue 13), the same
      SavedModel's serving_default signature as a TF2 concrete function (tf.saved_model.load, flat
      call: what the server ran before), and the server's whole unbatched predict path
      (prepare -> Session call -> finish, `tfstack.serving.server._inference.run_prepared`);
  (b) transport floor: an empty request through the same server stack: gRPC
      grpc.health.v1.Health/Check and the REST route that touches no model (GET /tfstack/ping);
  (c) Predict over gRPC and over REST.
The load generator runs in a separate process and sends pre-serialized bytes (no TensorFlow
in the client), so the numbers are the server's, plus one loopback round trip.

Usage:
  .venv/bin/python benchmarks/server_latency.py [--model-base-path /abs/models/digits] [--requests 2000]
      [--session-parallelism N]
Without --model-base-path it uses ./models/digits, training it first (`tfstack train`) if absent.
--session-parallelism is passed to the server as --tensorflow_session_parallelism and used for the
in-process Session and the TF2 call alike (0, the default: the server's default of one intra-op and
one inter-op thread).
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
        subprocess.run([sys.executable, "-m", "tfstack", "train", "--base-path", str(base.parent), "--quiet"],
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
    parser.add_argument("--session-parallelism", type=int, default=0,
                        help="TF intra/inter-op threads, in-process and in the server (0: the server's default, 1)")
    args = parser.parse_args()

    model_name, base = _ensure_model(args.model_base_path)
    import numpy as np
    import tensorflow as tf

    # The TF2 call's pools sized like the Session's (0: the server's default, one thread each).
    tf.config.threading.set_intra_op_parallelism_threads(args.session_parallelism or 1)
    tf.config.threading.set_inter_op_parallelism_threads(args.session_parallelism or 1)
    from tensorflow_serving.apis import predict_pb2

    from tfstack.serving.server._inference import prepare_predict, run_prepared
    from tfstack.serving.server._manager import discover_versions
    from tfstack.serving.server._servable import BundleOptions, load_servable, session_config_from_flags
    from tests.support.server import start_server

    versions = discover_versions(model_name, str(base))
    version = max(versions)
    options = BundleOptions(session_config=session_config_from_flags(session_parallelism=args.session_parallelism))
    servable = load_servable(model_name, version, versions[version], options=options)
    signature = servable.signature_defs["serving_default"]
    inputs = _batch1_inputs(signature)
    prepared = prepare_predict(servable, "serving_default", inputs)
    function = tf.saved_model.load(versions[version]).signatures["serving_default"]
    tensors = {k: tf.constant(v) for k, v in inputs.items()}
    arg_names = [p.name for p in function.function_type.parameters.values()]
    flat_args = [tensors[name] for name in arg_names]
    in_process = {
        # the Session callable the server runs for this request (feeds and fetches by tensor name)
        "in_process_session": lambda: servable.run(prepared.feeds, prepared.fetches),
        # the same signature as a TF2 concrete function, called flat (the server before issue 13)
        "in_process_tf2": lambda: function._call_flat(flat_args, function.captured_inputs),
        # the server's unbatched predict path: prepare, Session call, finish
        "in_process_core": lambda: run_prepared(prepare_predict(servable, "serving_default", inputs)),
    }
    for _ in range(args.warmup):
        for call in in_process.values():
            call()
    results: dict[str, list[float]] = {name: [] for name in in_process}
    load_before = os.getloadavg()

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    for alias, array in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(array))
    rest_body = json.dumps({"instances": [{k: _jsonable(v[0]) for k, v in inputs.items()}]}).encode()

    with tempfile.TemporaryDirectory() as log_dir, start_server(
        Path(log_dir), f"--tensorflow_session_parallelism={args.session_parallelism}",
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
    load_after = os.getloadavg()
    print(f"\nmodel {model_name} v{version} ({base}), batch 1, concurrency 1, {len(results['grpc_predict'])} requests each, "
          f"{os.cpu_count()} CPUs, session parallelism {args.session_parallelism or 'default (1)'}\n")
    print(f"1-minute load average: {load_before[0]:.1f} before, {load_after[0]:.1f} after measuring")
    print(f"{'measurement':<24}{'p50 (us)':>12}{'p99 (us)':>12}")
    for name, (p50, p99) in rows.items():
        print(f"{name:<24}{p50:>12.0f}{p99:>12.0f}")
    session, tf2 = rows["in_process_session"][0], rows["in_process_tf2"][0]
    print(f"Session call / TF2 call (p50): {session / tf2:.2f} (issue 13 target <= 0.5)")
    if args.json_path:
        document = {k: {"p50_us": v[0], "p99_us": v[1]} for k, v in rows.items()}
        document["load_average"] = {"before": load_before[0], "after": load_after[0]}
        Path(args.json_path).write_text(json.dumps(document, indent=1))
    return 0


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if hasattr(value, "item") else value


if __name__ == "__main__":
    sys.exit(main())
