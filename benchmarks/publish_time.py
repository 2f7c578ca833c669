"""How long one `export.publish` takes (export, Session-loader verification, warmup, plots, fsync, rename).

Publishing runs on every `tfstack train`, `tfstack export` and rollout publish, so the verification
it does must stay cheap next to training. Trains each model once (1 epoch), then publishes it
`--repeats` times into a temporary repository and prints the median and the spread.

Usage:
  .venv/bin/python benchmarks/publish_time.py [--repeats 5] [--datasets digits,iris,csv]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from pathlib import Path


def _csv(path: Path) -> Path:
    import random

    rng = random.Random(0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["age", "city", "income", "label"])
        for _ in range(200):
            city = rng.choice(["paris", "rome", "oslo"])
            age = rng.randint(18, 80)
            writer.writerow([age, city, f"{rng.random() * 100:.2f}", "yes" if city == "oslo" or age > 60 else "no"])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--datasets", default="digits,iris,csv")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from tfstack import export
    from tfstack.training import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.datasets.split(","):
            settings = {"epochs": 1, "run_dir": str(root / f"run-{name}")}
            if name == "csv":
                settings.update(csv_path=str(_csv(root / "people.csv")), target="label")
            else:
                settings.update(dataset=name)
            result = train(TrainConfig(**settings), progress=False)
            spec = result.export_spec()
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                export.publish(spec, root / "models")
                seconds.append(time.perf_counter() - start)
            print(
                f"{name:8s} {result.config.model:10s} publish median {statistics.median(seconds):.2f}s "
                f"(min {min(seconds):.2f}s, max {max(seconds):.2f}s, n={len(seconds)})"
            )


if __name__ == "__main__":
    main()
