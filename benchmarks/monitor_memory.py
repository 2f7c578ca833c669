"""Peak memory and time of `tfstack monitor` on large request logs (issue 15: streaming drift).

Writes --records digits-shaped PredictionLogs (one 8x8 float32 image per Predict request, with
its class_id and probabilities) with tfstack serve's own writer (`build_prediction_log` and the
rotating TFRecord writer, 64 MiB files), a version directory holding only a data profile, and
runs `tfstack monitor --json` on them in a child process per source tree: the peak RSS (from
wait4) and the wall time. Half the images are shifted, so the run also reports drift (exit 1).

Usage:
  .venv/bin/python benchmarks/monitor_memory.py [--records 200000] [--work DIR] \
      [--source /path/to/other/checkout ...]
It always measures this checkout; each --source names another checkout to compare with (the
in-memory monitor: `git worktree add /tmp/monitor-main 9ea9b23`). Writes
benchmarks/results/monitor_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# Runs `tfstack monitor` from the tfstack tree at argv[1] (its four package folders under one
# `tfstack` namespace), ignoring the editable install of this checkout.
_CHILD = """
import sys, os
namespace = sys.argv.pop(1)
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                    and "editable" not in getattr(f, "__name__", "").lower()]
sys.path.insert(0, namespace)
import tfstack.export
assert tfstack.export.__file__.startswith(namespace), tfstack.export.__file__
from tfstack.export.cli import monitor_command
monitor_command(prog_name="tfstack monitor")
"""


def write_logs(work: Path, records: int) -> tuple[Path, Path]:
    """The logs (a filename_prefix) and the model repository with version 1's data profile."""
    from tensorflow_serving.config import logging_config_pb2

    from tfstack import export
    from tfstack.serving.server._request_log import RotatingRecordWriter, build_prediction_log

    rng = np.random.default_rng(0)
    base = work / "models"
    version = base / "digits" / "1"
    (version / "assets.extra").mkdir(parents=True, exist_ok=True)
    (version / "saved_model.pb").write_bytes(b"")
    (version / "assets.extra" / "manifest.json").write_text('{"model_name": "digits", "version": 1}')
    training = rng.integers(0, 17, size=(2000, 8, 8)).astype(np.float32)
    probabilities = rng.dirichlet(np.ones(10), size=2000)
    profile = export.build_profile(
        (export.FeatureSpec(name="pixels", dtype="float32", shape=(8, 8)),), {"pixels": training},
        task="classification", class_names=tuple("0123456789"), source="training split",
        labels=probabilities.argmax(-1), predictions=probabilities,
    )
    (version / "assets.extra" / "data_profile.json").write_text(json.dumps(profile))
    prefix = work / "logs" / "digits"
    existing = sorted(prefix.parent.glob("digits-*.tfrecord")) if prefix.parent.is_dir() else []
    if existing:
        return prefix, base
    sampling = logging_config_pb2.SamplingConfig(sampling_rate=1.0)
    writer = RotatingRecordWriter(prefix)
    batch: list[bytes] = []
    started = time.time()
    for i in range(records):
        image = rng.integers(0, 17, size=(1, 8, 8)).astype(np.float32)
        if i % 2:
            image = 16 - image + rng.normal(0, 4, size=image.shape).astype(np.float32)  # inverted and noised
        scores = rng.dirichlet(np.ones(10), size=1).astype(np.float32)
        result = {"class_id": scores.argmax(-1).astype(np.int64), "probabilities": scores}
        entry = ("Predict", "digits", 1, ("serving_default", {"pixels": image}, ()), result, started + i * 0.01, f"req-{i}")
        batch.append(build_prediction_log(entry, sampling, ("serve",)).SerializeToString())
        if len(batch) == 1000:
            writer.write_batch(batch)
            batch = []
    writer.write_batch(batch)
    writer.close()
    return prefix, base


def namespace_for(source: Path, work: Path) -> Path:
    """A directory whose `tfstack/` holds `source`'s four packages (as the install maps them)."""
    target = work / "namespaces" / str(abs(hash(str(source.resolve()))))
    package = target / "tfstack"
    package.mkdir(parents=True, exist_ok=True)
    for name in ("training", "export", "serving", "client"):
        link = package / name
        if not link.exists():
            link.symlink_to(source.resolve() / name)
    return target


def measure(source: Path, work: Path, prefix: Path, base: Path) -> dict:
    report = work / f"report-{abs(hash(str(source.resolve())))}.json"
    command = [sys.executable, "-c", _CHILD, str(namespace_for(source, work)), str(prefix), "--model-name", "digits",
               "--base-path", str(base), "--json", str(report)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"tfstack monitor from {source} failed (exit {code}):\n{stderr[-3000:]}")
    data = json.loads(report.read_text())
    return {
        "source": str(source.resolve()),
        "exit_code": code,
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "seconds": round(seconds, 1),
        "rows": data["rows"],
        "records": data["logs"]["records"],
        "psi": {f["name"]: f["psi"] for f in data["features"]},
        "prediction_psi": data["predictions"]["psi"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tfstack-monitor-memory"))
    parser.add_argument("--source", type=Path, action="append", default=[], help="another checkout to compare with")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    prefix, base = write_logs(args.work / f"{args.records}", args.records)
    files = sorted(prefix.parent.glob("digits-*.tfrecord"))
    log_bytes = sum(p.stat().st_size for p in files)
    print(f"logs: {len(files)} files, {log_bytes / 2**20:.0f} MiB ({time.perf_counter() - started:.0f} s to write)", flush=True)
    results = []
    for source in [*args.source, REPO]:
        result = measure(source, args.work, prefix, base)
        results.append(result)
        print(json.dumps(result), flush=True)
    out = {"records": args.records, "log_mib": round(log_bytes / 2**20, 1), "runs": results}
    (REPO / "benchmarks" / "results").mkdir(exist_ok=True)
    (REPO / "benchmarks" / "results" / "monitor_memory.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
