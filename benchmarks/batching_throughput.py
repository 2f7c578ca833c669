"""Batch-1 Predict throughput with dynamic batching off and on, next to the transport floor (issue 5, Speed).

At concurrency 32 (closed loop, load from separate spawned processes: `tfstack.serving.bench._load`), for
REST and gRPC, one embedded server per setting:
  * floor: the empty request through the same stack (gRPC grpc.health.v1.Health/Check,
    REST GET /tfstack/ping);
  * Predict b=1 with batching off;
  * Predict b=1 with `--enable_batching` and the parameters below.
Prints throughput and p50/p99 per scenario, the issue-5 target checks (on >= 0.75x floor and
>= 2x off), and the 1-minute load average (the machine is shared).

With --null-model the same three measurements run against benchmarks/null_model_server.py (the
embedded server with a zero-cost model): the best ratio this request path allows for any model.

Usage:
  .venv/bin/python benchmarks/batching_throughput.py [--model-base-path /abs/models/digits] [--duration 5]
  .venv/bin/python benchmarks/batching_throughput.py --null-model
Without --model-base-path it uses ./models/digits, training it first (`tfstack train`) if absent.
This is a thin driver over `tfstack bench`, so the same numbers come from:
  tfstack bench --model-name digits --model-base-path models/digits --batching off,on \\
      --concurrency 32 --batch-sizes 1 --no-baselines --batching_parameters_file <file below>
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Batch whatever has queued while the model runs (timeout 0: no waiting when idle), up to 32.
# One batch thread: on two shared cores the front ends need the other one, and while the
# single thread runs a batch the next one fills up (two threads mostly ran batches of 1-2).
BATCHING_PARAMETERS = """\
max_batch_size { value: 32 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 1000 }
num_batch_threads { value: 1 }
"""


def _tfstack() -> list[str]:
    return [sys.executable, "-m", "tfstack"]


def _ensure_model(base_path: Path) -> Path:
    if base_path.is_dir() and any(p.name.isdigit() for p in base_path.iterdir()):
        return base_path
    print(f"Training the digits model into {base_path} (about a minute)...", flush=True)
    subprocess.run([*_tfstack(), "train", "--base-path", str(base_path.parent)], check=True, cwd=REPO)
    return base_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", type=Path, default=REPO / "models" / "digits")
    parser.add_argument("--model-name", default="digits")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--null-model", action="store_true",
                        help="measure the embedded server with a zero-cost model (the request path's ceiling)")
    args = parser.parse_args(argv)
    if args.null_model:
        return _null_model(args)

    base_path = _ensure_model(args.model_base_path.absolute())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="batching-bench-") as workdir:
        params = Path(workdir) / "batching.config"
        params.write_text(BATCHING_PARAMETERS)
        command = [
            *_tfstack(), "bench",
            "--model-name", args.model_name,
            "--model-base-path", str(base_path),
            "--batching", "off,on",
            "--batching_parameters_file", str(params),
            "--concurrency", str(args.concurrency),
            "--batch-sizes", "1",
            "--no-baselines",
            "--duration", str(args.duration),
        ]
        if args.output_dir is not None:
            command += ["--output-dir", str(args.output_dir)]
        print("$ " + " ".join(command), flush=True)
        code = subprocess.run(command, cwd=REPO).returncode
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    return code


def _null_model(args: argparse.Namespace) -> int:
    """Floor and Predict (batching off/on) against null_model_server.py; prints the ratios."""
    import json

    from tfstack.serving.testing._harness import EmbeddedBackend, ServeRequest, serve_models

    base_path = _ensure_model(args.model_base_path.absolute())
    backend = EmbeddedBackend(entry=(str(REPO / "benchmarks" / "null_model_server.py"),))
    results: dict[str, dict[tuple[str, str], float]] = {}
    with tempfile.TemporaryDirectory(prefix="null-model-bench-") as workdir:
        params = Path(workdir) / "batching.config"
        params.write_text(BATCHING_PARAMETERS)
        for setting in ("off", "on"):
            flags = ("--enable_model_warmup=false",)
            if setting == "on":
                flags += ("--enable_batching=true", f"--batching_parameters_file={params}")
            request = ServeRequest(models={args.model_name: base_path}, flags=flags, timeout=180)
            with serve_models(backend, request, workdir=Path(workdir) / f"server-{setting}") as endpoint:
                out = (args.output_dir / f"null-model-{setting}") if args.output_dir else Path(workdir) / setting
                command = [
                    *_tfstack(), "bench", "--model-name", args.model_name, "--model-base-path", str(base_path),
                    "--rest", endpoint.rest_url, "--grpc", endpoint.grpc_target,
                    "--concurrency", str(args.concurrency), "--batch-sizes", "1", "--no-baselines",
                    "--duration", str(args.duration), "--output-dir", str(out),
                ]
                print(f"null model, batching {setting}: $ " + " ".join(command), flush=True)
                if subprocess.run(command, cwd=REPO).returncode != 0:
                    return 1
            for m in json.loads((out / "bench.json").read_text())["measurements"]:
                results.setdefault(setting, {})[(m["kind"], m["protocol"])] = m["throughput_rps"]
    print("\nnull model (zero-cost TF call), concurrency", args.concurrency, "batch 1:")
    for protocol in ("grpc", "rest"):
        on, off = results["on"][("predict", protocol)], results["off"][("predict", protocol)]
        floor = results["on"][("floor", protocol)]
        print(f"  {protocol}: batching on {on:,.0f}/s, off {off:,.0f}/s, floor {floor:,.0f}/s -> "
              f"on/floor {on / floor:.2f}x, on/off {on / off:.2f}x")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
