"""What one hop from the asyncio loop to a worker thread costs, next to the signature call itself.

The embedded server never runs TensorFlow on its event loop, so every Predict pays this hop.
It bounds how close the server's own work can get to the issue-3 budget (150 us over gRPC).

Usage:
  .venv/bin/python benchmarks/executor_hop.py --model-dir models/digits/1 [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import time

import numpy as np


def _p50_us(samples: list[float]) -> float:
    return float(np.percentile(samples, 50) * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a version directory of a tfstack model")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    # As the server runs it (serving/server/_server.py): one intra-op and one inter-op thread.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    signature = tf.saved_model.load(args.model_dir).signatures["serving_default"]
    feeds = {
        name: tf.zeros([1] + [d or 1 for d in spec.shape.as_list()[1:]], spec.dtype)
        for name, spec in signature.structured_input_signature[1].items()
    }

    def call() -> None:
        signature(**feeds)

    for _ in range(200):
        call()
    direct = []
    for _ in range(args.calls):
        started = time.perf_counter()
        call()
        direct.append(time.perf_counter() - started)

    async def through_executor(fn) -> list[float]:
        loop = asyncio.get_running_loop()
        samples = []
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for _ in range(args.calls):
                started = time.perf_counter()
                await loop.run_in_executor(pool, fn)
                samples.append(time.perf_counter() - started)
        return samples

    hopped = asyncio.run(through_executor(call))
    empty = asyncio.run(through_executor(lambda: None))
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(f"signature called directly          p50 {_p50_us(direct):7.0f} us")
    print(f"signature via run_in_executor      p50 {_p50_us(hopped):7.0f} us")
    print(f"empty function via run_in_executor p50 {_p50_us(empty):7.0f} us")


if __name__ == "__main__":
    main()
