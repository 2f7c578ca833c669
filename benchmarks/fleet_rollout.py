"""How long rollout steps take on a fleet of `tfstack serve` replicas (issue 16) and from the command line (issue 18 item 7).

Starts N replicas on 127.0.0.1 that share one models.config, publishes two half_plus versions
(tests/support/models.py) and runs the cycle canary 2 -> promote -> rollback -> rollback
`--repeats` times, twice:
  (a) in-process (`Rollout` over a `Fleet` of `LiveServer`s): the time of each step and of each of
      its phases (load, labels, unload: write the config, reload every replica, wait until every
      replica agrees);
  (b) as a user runs it: `tfstack rollout --grpc ... STEP` in a fresh process each time (start-up,
      imports and the step).
The gates that need no server run; the infra gate is skipped (it loads the candidate into this
process with TensorFlow by design). Prints the median and the range of each.

Usage:
  .venv/bin/python benchmarks/fleet_rollout.py [--replicas 3] [--repeats 3] [--tfstack-root DIR]
--tfstack-root runs the command-line steps from another checkout of tfstack (e.g. an older
commit, to compare; it must accept the given number of --grpc).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = "half"
CYCLE = (("canary", ("canary", MODEL, "2", "--skip-gate", "infra")), ("promote", ("promote", MODEL)),
         ("rollback (to 1)", ("rollback", MODEL)), ("rollback (drop 2)", ("rollback", MODEL)))
SIGNATURES = {"serving_default": {"method_name": "tensorflow/serving/predict",
                                  "inputs": {"x": {"dtype": "float32", "shape": None}},
                                  "outputs": {"y": {"dtype": "float32", "shape": None}}}}


class PhaseTimer(logging.Handler):
    """Times each phase from rollout's own log lines: a phase ends when the next one starts."""

    PHASE = re.compile(r"\[(load|labels|unload)\]")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.marks: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = self.PHASE.search(record.getMessage())
        if match:
            self.marks.append((time.perf_counter(), match.group(1)))


def _source(root: Path, version: int) -> Path:
    from tests.support.models import build_half_plus

    path = build_half_plus(root / f"v{version}", b=float(version + 1))
    (path / "assets.extra").mkdir()
    manifest = {"format": 1, "metrics": {"accuracy": 0.9 + version / 100}, "signatures": SIGNATURES}
    (path / "assets.extra" / "manifest.json").write_text(json.dumps(manifest))
    return path


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} s  ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tfstack-root", type=Path, default=REPO)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from tfstack.serving.rollout import Fleet, LiveServer, Rollout, RolloutPolicy
    from tests.support.server import launch

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base, config = root / "models", root / "models.config"
        offline = Rollout(config, base)
        for version in (1, 2):
            offline.publish(MODEL, _source(root / "sources", version))
        offline.init(MODEL, 1)
        servers = [launch(root / f"replica-{i}", f"--model_config_file={config}") for i in range(args.replicas)]
        try:
            for server in servers:
                server.wait_for_log("Exporting HTTP/REST API at:", timeout=300)
            fleet = Fleet([LiveServer(grpc_target=s.grpc_target) for s in servers])
            runner = Rollout(config, base, server=fleet, policy=RolloutPolicy(skip_gates=("infra",)))
            runner.init(MODEL)
            timer = PhaseTimer()
            logging.getLogger("tfstack.rollout").addHandler(timer)
            logging.getLogger("tfstack.rollout").setLevel(logging.INFO)
            logging.getLogger("tfstack.rollout").propagate = False
            steps: dict[str, list[float]] = defaultdict(list)
            phases: dict[str, list[float]] = defaultdict(list)
            actions = {"canary": lambda: runner.canary(MODEL, 2), "promote": lambda: runner.promote(MODEL),
                       "rollback (to 1)": lambda: runner.rollback(MODEL), "rollback (drop 2)": lambda: runner.rollback(MODEL)}
            for _ in range(args.repeats):
                for name, _ in CYCLE:
                    timer.marks.clear()
                    started = time.perf_counter()
                    actions[name]()
                    ended = time.perf_counter()
                    steps[name].append(ended - started)
                    marks = timer.marks + [(ended, "end")]
                    for (t0, phase), (t1, _) in zip(marks, marks[1:]):
                        phases[f"{name}: {phase}"].append(t1 - t0)
            fleet.close()

            cli: dict[str, list[float]] = defaultdict(list)
            command = [sys.executable, "-m", "tfstack", "rollout", "--config", str(config), "--base-path", str(base)]
            command += [arg for s in servers for arg in ("--grpc", s.grpc_target)]
            env = {**os.environ, "PYTHONPATH": str(args.tfstack_root)}
            for _ in range(args.repeats):
                for name, step in CYCLE:
                    started = time.perf_counter()
                    result = subprocess.run([*command, *step], cwd=args.tfstack_root, env=env, capture_output=True, text=True)
                    cli[name].append(time.perf_counter() - started)
                    if result.returncode != 0:
                        raise SystemExit(f"`{' '.join(step)}` failed:\n{result.stderr[-2000:]}")
        finally:
            for server in servers:
                server.stop()

    print(f"\nrollout steps on {args.replicas} replica(s), {args.repeats} cycles, median (min-max):")
    for name, _ in CYCLE:
        print(f"  {name:18s} in-process {_summary(steps[name])}   `tfstack rollout` {_summary(cli[name])}")
    print("phases (write the config, reload every replica, wait until every replica agrees):")
    for name, values in phases.items():
        print(f"  {name:28s} {_summary(values)}")


if __name__ == "__main__":
    main()
