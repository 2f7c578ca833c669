"""What a new user sees from `tfstack train` (issue 18, items 2 and 10), as a real process.

- No TensorFlow C++ log line (`I0000 ... port.cc`, the CUDA probe's `E0000 ... cuInit`), and
  rich tables at their natural width when the output is piped (rich falls back to 80 columns).
- `tfstack train --csv iris.csv --target label` next to an existing `iris` (another input
  schema) is refused, names `--model-name` and `--allow-schema-change`, and leaves the
  repository byte-for-byte unchanged.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.export.test_schema_change import tree_digest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# absl/glog-style lines: severity letter, MMDD, time, thread id, file:line]
NATIVE_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w.]+:\d+\]")


def _tfstack(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "COLUMNS")}  # a fresh shell
    return subprocess.run(
        [sys.executable, "-m", "tfstack", *args], cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=300,
    )


def _publish_iris(models: Path) -> None:
    """What `tfstack train --dataset iris` publishes: `features` float32 [4] -> three classes."""
    import keras
    import numpy as np

    from tfstack import export

    x = keras.Input((4,), name="features", dtype="float32")
    model = keras.Model({"features": x}, keras.layers.Dense(3, activation="softmax")(x))
    export.publish(export.ExportSpec(
        model_name="iris", task="classification", keras_model=model,
        features=(export.FeatureSpec(name="features", dtype="float32", shape=(4,)),),
        class_names=("setosa", "versicolor", "virginica"),
        sample_inputs={"features": np.ones((3, 4), np.float32)},
        metrics={"accuracy": 0.9}, training_config={}, dataset={"name": "iris"},
    ), models)


def test_train_prints_no_native_log_lines_and_whole_tables_then_refuses_another_schema(tmp_path: Path) -> None:
    models = tmp_path / "models"
    _publish_iris(models)
    csv_path = tmp_path / "iris.csv"  # named like the existing model, other columns
    csv_path.write_text("a,b,label\n" + "".join(f"{i % 5},{i % 3}.5,{'xy'[i % 2]}\n" for i in range(40)))

    # Under another name it trains and publishes, quietly and with whole tables.
    run = _tfstack("train", "--csv", str(csv_path), "--target", "label", "--epochs", "1", "--model-name", "iris_csv",
                   "--base-path", str(models), cwd=tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    noise = [line for line in output.splitlines() if NATIVE_LOG_LINE.match(line) or "absl::InitializeLog" in line or "cuInit" in line]
    assert noise == []
    assert "Test metrics" in run.stdout and "Per-class report" in run.stdout
    assert "…" not in output  # nothing cut to fit 80 columns

    # Under the file's name it would become iris version 2 with other inputs: refused before training.
    before = tree_digest(models)
    refused = _tfstack("train", "--csv", str(csv_path), "--target", "label", "--epochs", "1",
                       "--base-path", str(models), cwd=tmp_path)
    assert refused.returncode == 1
    assert "Test metrics" not in refused.stdout, "refused before training, not after"
    assert "Refusing to publish a new version of 'iris'" in refused.stderr
    assert "serving_default: input 'features' was removed" in refused.stderr
    assert "--model-name" in refused.stderr and "--allow-schema-change" in refused.stderr
    assert tree_digest(models) == before
