"""What tfstack's pytest plugin costs every pytest run of an environment (issue 14).

pytest imports every installed pytest11 plugin at startup, whether a test uses it or not. This
times `import pytest` with and without the plugin module in fresh interpreters (median of 7),
and, with --before DIR, the plugin of an older checkout of the old layout (top-level `serving`).

Run (from a directory that holds no `serving/` folder):
    cd /tmp && /path/to/.venv/bin/python /path/to/benchmarks/plugin_cost.py [--before /path/to/old/checkout]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

_RSS = "\nimport resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def measure(code: str, env: dict[str, str] | None = None, repeats: int = 7) -> tuple[float, float]:
    """(median seconds, median peak RSS in MB) of a fresh interpreter running `code`."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code + _RSS], capture_output=True, text=True, env=env, check=True)
        runs.append((time.perf_counter() - started, int(done.stdout.split()[-1]) / 1024))
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="an old checkout whose plugin was the top-level serving.pytest_plugin")
    args = parser.parse_args()
    rows = {"import pytest": measure("import pytest"),
            "+ tfstack plugin": measure("import pytest, tfstack.serving.testing.pytest_plugin")}
    if args.before:
        rows["+ plugin of --before"] = measure("import pytest, serving.pytest_plugin",
                                               env={**os.environ, "PYTHONPATH": args.before})
    base_s, base_mb = rows["import pytest"]
    for name, (seconds, mb) in rows.items():
        print(f"{name:24s} {seconds * 1000:6.0f} ms {mb:6.1f} MB  (+{(seconds - base_s) * 1000:.0f} ms, +{mb - base_mb:.1f} MB)")


if __name__ == "__main__":
    main()
