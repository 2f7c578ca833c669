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
        [sys.executable, "-m", "tfstack_cli", *args], cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=300,
    )


def test_train_prints_no_native_log_lines_and_whole_tables_then_refuses_another_schema(tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = _tfstack("train", "--dataset", "iris", "--epochs", "1", "--base-path", str(models), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    output = first.stdout + first.stderr
    noise = [line for line in output.splitlines() if NATIVE_LOG_LINE.match(line) or "absl::InitializeLog" in line or "cuInit" in line]
    assert noise == []
    assert "…" not in output  # nothing cut to fit 80 columns
    assert "Published iris version 1" in first.stdout

    csv_path = tmp_path / "iris.csv"
    csv_path.write_text("a,b,label\n" + "".join(f"{i % 5},{i % 3}.5,{'xy'[i % 2]}\n" for i in range(40)))
    before = tree_digest(models)
    refused = _tfstack("train", "--csv", str(csv_path), "--target", "label", "--epochs", "1",
                       "--base-path", str(models), "--run-dir", str(tmp_path / "run2"), cwd=tmp_path)
    assert refused.returncode == 1
    assert "Refusing to publish a new version of 'iris'" in refused.stderr
    assert "serving_default: input 'features' was removed" in refused.stderr
    assert "--model-name" in refused.stderr and "--allow-schema-change" in refused.stderr
    assert tree_digest(models) == before
