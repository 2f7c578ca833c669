"""Client overhead: tfstack's client vs the official stubs + tf.make_tensor_proto/make_ndarray.

Measures, against one `tfstack serve` subprocess serving half_plus_two:
  1. end-to-end latency of a batch-1 Predict over gRPC (and REST for tfstack's client),
  2. client-side CPU work per batch-1 Predict with the network taken out (build the request,
     serialize it, parse a real response, convert it to numpy), for both clients,
  3. `from tfstack import client` time and peak RSS in a fresh interpreter, next to
     `import tensorflow_serving.apis` (which imports TensorFlow).

Run:  .venv/bin/python benchmarks/client_overhead.py [--iterations 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _fresh_import(statement: str, repeats: int = 5) -> dict[str, float]:
    """Median wall and CPU time of `statement` and peak RSS (MB) in fresh interpreters.

    CPU time is reported too because wall time on a shared, loaded machine mostly measures
    the wait for a core.
    """
    code = (
        "import resource, time, json\n"
        "t, c = time.perf_counter(), time.process_time()\n"
        f"{statement}\n"
        "dt, dc = time.perf_counter() - t, time.process_time() - c\n"
        "print(json.dumps([dt, dc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]))\n"
    )
    times, cpu, rss = [], [], []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
        dt, dc, mb = json.loads(out.stdout.strip().splitlines()[-1])
        times.append(dt)
        cpu.append(dc)
        rss.append(mb)
    return {"seconds": statistics.median(times), "cpu_seconds": statistics.median(cpu), "rss_mb": statistics.median(rss)}


def _timeit_interleaved(functions: dict, iterations: int) -> dict[str, dict[str, float]]:
    """Time several functions in alternation, so load drift on a shared machine hits all alike."""
    for fn in functions.values():
        for _ in range(min(200, iterations // 10 + 1)):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for i in range(iterations):
        for name in names[i % len(names):] + names[: i % len(names)]:
            t = time.perf_counter()
            functions[name]()
            samples[name].append(time.perf_counter() - t)
    out = {}
    for name, values in samples.items():
        values.sort()
        out[name] = {"p50_us": values[len(values) // 2] * 1e6, "p90_us": values[int(len(values) * 0.9)] * 1e6,
                     "mean_us": statistics.fmean(values) * 1e6}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    options = parser.parse_args()
    sys.path.insert(0, str(REPO))

    results: dict[str, dict] = {}
    results["import"] = {
        "python -c pass": _fresh_import("pass"),
        "import numpy (the floor: results are ndarrays)": _fresh_import("import numpy"),
        "from tfstack import client": _fresh_import("from tfstack import client"),
        "import client + grpc client": _fresh_import("from tfstack import client; client.ServingClient.grpc('127.0.0.1:1').close()"),
        "import client + rest client": _fresh_import("from tfstack import client; client.ServingClient.rest('http://127.0.0.1:1').close()"),
        "import tensorflow_serving.apis (predict stubs)": _fresh_import(
            "from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc", repeats=3
        ),
    }

    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

    from tfstack.client import ServingClient
    from tfstack.client._proto import tfstack_serving_pb2 as pb
    from tests.support.models import build_half_plus
    from tests.support.server import start_server

    x = np.array([[2.0]], dtype=np.float32)

    def official_request() -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.model_spec.signature_name = "serving_default"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
        return request

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "half_plus_two"
        build_half_plus(base / "1")
        with start_server(Path(tmp) / "server", model_name="half_plus_two", model_base_path=base) as server:
            channel = grpc.insecure_channel(server.grpc_target)
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response_bytes = stub.Predict(official_request(), timeout=30).SerializeToString()
            # The client reads the signature once (to check and cast inputs); the in-memory run replays it.
            metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            metadata_request.model_spec.name = "half_plus_two"
            metadata_bytes = stub.GetModelMetadata(metadata_request, timeout=30).SerializeToString()

            def official_e2e() -> None:
                response = stub.Predict(official_request(), timeout=30)
                tf.make_ndarray(response.outputs["y"])

            def raw_stub_e2e() -> None:  # the stub alone, request prebuilt, no conversion
                stub.Predict(prebuilt, timeout=30)

            prebuilt = official_request()
            ours_grpc = ServingClient.grpc(server.grpc_target)
            ours_rest = ServingClient.rest(server.rest_url) if server.rest_url else None
            inputs = {"x": x}
            ours_grpc.predict("half_plus_two", inputs)
            results["end_to_end_grpc"] = _timeit_interleaved(
                {
                    "official stub + make_tensor_proto/make_ndarray": official_e2e,
                    "official stub, prebuilt request, no conversion": raw_stub_e2e,
                    "tfstack ServingClient.grpc().predict": lambda: ours_grpc.predict("half_plus_two", inputs),
                },
                options.iterations,
            )
            if ours_rest is not None:
                ours_rest.predict("half_plus_two", inputs)
                results["end_to_end_rest"] = _timeit_interleaved(
                    {"tfstack ServingClient.rest().predict": lambda: ours_rest.predict("half_plus_two", inputs)},
                    options.iterations,
                )
            ours_grpc.close()
            channel.close()

    # Client-side work only: the same steps with the network replaced by an in-memory reply.
    def official_client_side() -> None:
        official_request().SerializeToString()
        response = predict_pb2.PredictResponse.FromString(response_bytes)
        tf.make_ndarray(response.outputs["y"])

    class InMemory:
        def __init__(self) -> None:
            from tfstack.client._grpc import GrpcCodec

            self.codec = GrpcCodec()

        def send(self, call, timeout):
            call.request.SerializeToString()
            if call.response_type is pb.GetModelMetadataResponse:
                return pb.GetModelMetadataResponse.FromString(metadata_bytes)
            return pb.PredictResponse.FromString(response_bytes)

        def close(self) -> None:
            pass

    in_memory = ServingClient(InMemory())
    results["client_side_only"] = _timeit_interleaved(
        {
            "official: make_tensor_proto + serialize + parse + make_ndarray": official_client_side,
            "tfstack: validate + TensorProto + serialize + parse + to_ndarray (whole client path)": lambda: in_memory.predict(
                "half_plus_two", inputs
            ),
        },
        options.iterations * 5,
    )

    e2e = results["end_to_end_grpc"]
    side = results["client_side_only"]
    official_side, ours_side = (v["p50_us"] for v in side.values())
    raw = e2e["official stub, prebuilt request, no conversion"]["p50_us"]
    results["ratios"] = {
        "client-side work, tfstack / official (p50)": ours_side / official_side,
        "end-to-end gRPC, tfstack / official stub+conversions (p50)": e2e["tfstack ServingClient.grpc().predict"]["p50_us"]
        / e2e["official stub + make_tensor_proto/make_ndarray"]["p50_us"],
        "end-to-end gRPC, tfstack / raw stub without conversions (p50)": e2e["tfstack ServingClient.grpc().predict"]["p50_us"] / raw,
    }

    for section, rows in results.items():
        print(f"\n{section}")
        for name, value in rows.items():
            if isinstance(value, dict):
                print(f"  {name:<90} " + "  ".join(f"{k}={v:,.3f}" for k, v in value.items()))
            else:
                print(f"  {name:<90} {value:.3f}")
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
