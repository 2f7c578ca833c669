"""Predict throughput with and without request logging at sampling rate 1.0 (issue 15).

Starts `tfstack serve` on the digits model twice per pair, once with `logging_config`
(collector `tfrecord`, sampling_rate 1.0) and once without, and drives each with wrk
(REST Predict, one image per request, keep-alive) for --duration seconds at --connections.
Off and on alternate so that noise on this shared machine hits both alike. Reports requests/s,
failures (non-2xx and socket errors), the records written (`request_log_count`) and dropped
(`request_log_dropped`) from the server's Prometheus page, and the on/off ratio.

Usage:
  .venv/bin/python benchmarks/request_logging.py --model-base-path /abs/models/digits \
      [--connections 32] [--duration 20] [--pairs 2] [--threads 2]
Needs `wrk` on PATH. Writes benchmarks/results/request_logging.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.server import launch  # noqa: E402

_CONFIG = """model_config_list {{
  config {{
    name: "digits"
    base_path: "{base}"
    model_platform: "tensorflow"{logging}
  }}
}}
"""
_LOGGING = """
    logging_config {{
      log_collector_config {{ type: "tfrecord" filename_prefix: "{prefix}" }}
      sampling_config {{ sampling_rate: 1.0 }}
    }}"""


def _run(base: Path, work: Path, *, logging: bool, args) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    prefix = work / "logs" / "digits"
    config = work / "models.config"
    config.write_text(_CONFIG.format(base=base, logging=_LOGGING.format(prefix=prefix) if logging else ""))
    monitoring = work / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }\n')
    server = launch(work, f"--model_config_file={config}", f"--monitoring_config_file={monitoring}")
    try:
        server.wait_for_log("Exporting HTTP/REST API at:", timeout=180)
        body = (base / "1" / "assets.extra" / "sample_request.json").read_text()
        request = json.loads(body)
        single = {"signature_name": request.get("signature_name", "serving_default"),
                  "inputs": {k: v[:1] for k, v in request["inputs"].items()}}
        script = work / "post.lua"
        script.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(json.dumps(single))}\n"
        )
        url = f"{server.rest_url}/v1/models/digits:predict"
        subprocess.run(["wrk", "-t1", "-c4", "-d3s", "-s", str(script), url], capture_output=True, check=True)  # warm
        done = subprocess.run(
            ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "10s",
             "-s", str(script), url],
            capture_output=True, text=True, check=True,
        )
        out = done.stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        total = int(re.search(r"(\d+) requests in", out).group(1))
        non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
        errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
        time.sleep(1.0)  # the writer flushes every batch; let the last one land before reading the counters
        page = httpx.get(f"{server.rest_url}/metrics", timeout=30).text
        written = sum(int(float(v)) for v in re.findall(r'request_log_count\{model_name="digits",status_code="OK"\} (\S+)', page))
        dropped = sum(int(float(v)) for v in re.findall(r'request_log_dropped\{model_name="digits"\} (\S+)', page))
        log_bytes = sum(p.stat().st_size for p in prefix.parent.glob("*.tfrecord")) if logging else 0
        return {"logging": logging, "rps": rps, "requests": total, "non_2xx": non2xx, "socket_errors": errors,
                "records_written": written, "records_dropped": dropped, "log_bytes": log_bytes}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", type=Path, default=REPO / "models" / "digits")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "request_logging.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not on PATH")
    base = args.model_base_path.absolute()
    if not (base / "1").is_dir():
        sys.exit(f"{base}/1 does not exist; train it first: tfstack train --base-path {base.parent}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="tfstack-logbench-") as tmp:
        for pair in range(args.pairs):
            for logging in (False, True):
                result = _run(base, Path(tmp) / f"{pair}-{'on' if logging else 'off'}", logging=logging, args=args)
                runs.append(result)
                print(json.dumps(result), flush=True)
    off = statistics.median(r["rps"] for r in runs if not r["logging"])
    on = statistics.median(r["rps"] for r in runs if r["logging"])
    summary = {
        "connections": args.connections, "duration_s": args.duration, "pairs": args.pairs,
        "median_rps_off": off, "median_rps_on": on, "ratio": on / off,
        "failures": sum(r["non_2xx"] + r["socket_errors"] for r in runs),
        "dropped": sum(r["records_dropped"] for r in runs),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nPredict over REST, c={args.connections}, {args.duration}s, {args.pairs} pair(s), medians:")
    print(f"  logging off: {off:8.1f} req/s")
    print(f"  logging on : {on:8.1f} req/s  (rate 1.0)  ratio {on / off:.2f}")
    print(f"  failures: {summary['failures']}  records dropped: {summary['dropped']}  "
          f"records written: {sum(r['records_written'] for r in runs)}")


if __name__ == "__main__":
    main()
