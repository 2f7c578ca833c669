"""Request logs to replay with `tfstack bench --replay` (the wrk vs Python replay measurement).

Starts `tfstack serve` on the digits model with `logging_config` (collector `tfrecord`,
sampling_rate 1.0), sends --requests REST Predicts whose batch sizes are drawn (fixed seed) from
1, 2, 4, 8, 16, 32 with weights 50, 15, 12, 10, 8, 5 (rows cycled from the model's
assets.extra/sample_request.json), stops the server (logs flushed) and prints the mix.

Usage:
  .venv/bin/python benchmarks/replay_logs.py --model-base-path /abs/models/digits --logs /tmp/replay-logs \
      [--requests 400]
then, for example:
  tfstack bench --model-name digits --model-base-path models/digits --replay /tmp/replay-logs \
      --protocol rest --load-generator c --concurrency 1,32 --duration 10 --no-floor
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import tempfile
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.server import start_server  # noqa: E402

_CONFIG = """model_config_list {{ config {{ name: "digits" base_path: "{base}" model_platform: "tensorflow"
  logging_config {{ log_collector_config {{ type: "tfrecord" filename_prefix: "{logs}/digits" }}
                    sampling_config {{ sampling_rate: 1.0 }} }} }} }}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base-path", type=Path, required=True)
    parser.add_argument("--logs", type=Path, required=True, help="Directory the request logs are written to.")
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    base, logs = args.model_base_path.absolute(), args.logs.absolute()
    logs.mkdir(parents=True, exist_ok=True)
    sample = json.loads((base / "1" / "assets.extra" / "sample_request.json").read_text())["inputs"]["pixels"]
    sizes = random.Random(15).choices([1, 2, 4, 8, 16, 32], weights=[50, 15, 12, 10, 8, 5], k=args.requests)
    with tempfile.TemporaryDirectory(prefix="replay-logs-") as work:
        config = Path(work) / "models.config"
        config.write_text(_CONFIG.format(base=base, logs=logs))
        with start_server(Path(work), f"--model_config_file={config}", model_name=None) as server, \
                httpx.Client(timeout=30) as client:
            for size in sizes:
                rows = [sample[i % len(sample)] for i in range(size)]
                response = client.post(f"{server.rest_url}/v1/models/digits:predict", json={"inputs": {"pixels": rows}})
                response.raise_for_status()
    mix = ", ".join(f"{count}x b={size}" for size, count in sorted(collections.Counter(sizes).items()))
    print(f"logged {len(sizes)} requests, {sum(sizes)} examples ({mix}) in {logs}")


if __name__ == "__main__":
    main()
