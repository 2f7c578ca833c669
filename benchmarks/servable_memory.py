"""RSS across load/unload cycles of many versions (issue 13, Memory).

One process runs a ServerCore and a ModelManager (the server's own lifecycle code, no front end)
over a model base path holding N copies of one SavedModel version. Each cycle applies a config
that loads every version (`model_version_policy { all {} }`), then one without the model, which
unloads them all; RSS (from /proc/self/statm) is printed after each step. If unloading freed each
version's Session, RSS after every unload stays at the same level instead of growing cycle after
cycle. With TensorFlow's default oneDNN CPU allocator, freed tensor memory stays in that
allocator's pool for the next allocations, so RSS plateaus at the high-water mark; with
--onednn-off (TF_ENABLE_ONEDNN_OPTS=0) it goes back to the OS and RSS drops after each unload.

Usage:
  .venv/bin/python benchmarks/servable_memory.py --version-dir /abs/models/digits/1 [--versions 20] [--cycles 5]
  .venv/bin/python benchmarks/servable_memory.py --model-mib 16   # a generated model holding a 16 MiB variable
  (add --repo /path/to/other/checkout to measure another checkout's serving package, e.g. main)
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _config(name: str, base: Path | None):
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.SetInParent()
    if base is not None:
        entry = config.model_config_list.config.add(name=name, base_path=str(base), model_platform="tensorflow")
        entry.model_version_policy.all.SetInParent()
    return config


async def _until_unloaded(core, name: str, versions: int, deadline: float) -> None:
    from tfstack.serving import State

    while time.monotonic() < deadline:
        states = core.version_states(name)
        if len(states) == versions and all(s is State.END for s in states.values()):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"versions of {name} did not all reach END: {core.version_states(name)}")


def build_model(path: Path, mib: int) -> Path:
    """A SavedModel whose one variable holds `mib` MiB of float32 (y = x + sum(w))."""
    import numpy as np
    import tensorflow as tf

    class Big(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(np.random.default_rng(0).random(mib * 2**18, dtype=np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict(self, x):
            return {"y": x + tf.reduce_sum(self.w)}

    module = Big()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.predict})
    return path


async def run(version_dir: Path, versions: int, cycles: int) -> dict:
    import tensorflow  # noqa: F401  (imported first, so the baseline below includes it)

    from tfstack.serving import ManagerOptions, ModelManager, ServerCore

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "m"
        for version in range(1, versions + 1):
            shutil.copytree(version_dir, base / str(version))
        core = ServerCore(inference_threads=2)
        manager = ModelManager(core, ManagerOptions(file_system_poll_wait_seconds=0, enable_model_warmup=False))
        rows.append({"step": "TensorFlow imported", "rss_mib": rss_mib()})
        try:
            for cycle in range(1, cycles + 1):
                started = time.perf_counter()
                await manager.apply_config(_config("m", base))
                rows.append({"step": f"cycle {cycle}: {versions} versions loaded", "rss_mib": rss_mib(),
                             "seconds": time.perf_counter() - started})
                started = time.perf_counter()
                await manager.apply_config(_config("m", None))
                await _until_unloaded(core, "m", versions, time.monotonic() + 120)
                rows.append({"step": f"cycle {cycle}: all unloaded", "rss_mib": rss_mib(),
                             "seconds": time.perf_counter() - started})
        finally:
            await manager.close()
            core.close()
    return {"rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version-dir", help="one SavedModel version directory to copy N times")
    parser.add_argument("--model-mib", type=int, default=0, help="instead, generate a model with a variable this large")
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]),
                        help="the checkout whose serving package to measure (default: this one)")
    parser.add_argument("--onednn-off", action="store_true",
                        help="TF_ENABLE_ONEDNN_OPTS=0: TensorFlow's plain CPU allocator instead of oneDNN's pooling "
                             "one, so freed tensor memory goes back to the OS and shows in RSS")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args()
    if args.onednn_off:  # read when TensorFlow is imported, which has not happened yet
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    sys.path.insert(0, str(Path(args.repo).resolve()))
    from tfstack import serving

    print(f"serving package: {Path(serving.__file__).parent}")
    if bool(args.version_dir) == bool(args.model_mib):
        parser.error(f"give --version-dir or --model-mib. Received: --version-dir={args.version_dir} "
                     f"--model-mib={args.model_mib}")
    with tempfile.TemporaryDirectory() as tmp:
        version_dir = Path(args.version_dir) if args.version_dir else build_model(Path(tmp) / "big", args.model_mib)
        result = asyncio.run(run(version_dir, args.versions, args.cycles))
    # What glibc still holds but could hand back: only informative (the server does not trim).
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        result["after_malloc_trim_mib"] = rss_mib()
    except OSError:
        result["after_malloc_trim_mib"] = None
    result["load_average"] = os.getloadavg()[0]
    print(f"{'step':<36}{'RSS MiB':>10}{'seconds':>10}")
    for row in result["rows"]:
        seconds = f"{row['seconds']:.1f}" if "seconds" in row else ""
        print(f"{row['step']:<36}{row['rss_mib']:>10.0f}{seconds:>10}")
    if result["after_malloc_trim_mib"] is not None:
        print(f"{'after malloc_trim(0)':<36}{result['after_malloc_trim_mib']:>10.0f}")
    print(f"1-minute load average: {result['load_average']:.1f}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
