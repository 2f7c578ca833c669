"""`tfstack train` as a user runs it: a real process, a real repository on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tfstack(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "tfstack", "train", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_train_publishes_a_version_and_prints_the_metrics(tmp_path: Path) -> None:
    models = tmp_path / "models"
    result = _tfstack("--epochs", "2", "--hidden", "16", "--base-path", str(models), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for row in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "Per-class report", "Confusion matrix"):
        assert row in out
    assert f"Published digits version 1: {models / 'digits' / '1'}" in out
    version = models / "digits" / "1"
    assert (version / "saved_model.pb").is_file()
    manifest = json.loads((version / "assets.extra" / "manifest.json").read_text())
    assert manifest["dataset"]["name"] == "digits" and manifest["dataset"]["fingerprint"].startswith("sha256:")
    assert manifest["training_config"]["model"] == "cnn" and manifest["training_config"]["epochs"] == 2
    assert 0.0 <= manifest["metrics"]["accuracy"] <= 1.0
    # Default run directory: runs/<model_name>-<UTC timestamp>/ under the working directory, with TensorBoard logs.
    runs = list((tmp_path / "runs").glob("digits-*"))
    assert len(runs) == 1 and any((runs[0] / "logs").rglob("events.out.tfevents.*"))

    # A second run (same inputs and outputs) gets the next version; --quiet prints only its path.
    again = _tfstack(
        "--model", "mlp", "--epochs", "1", "--quiet",
        "--base-path", str(models), "--run-dir", str(tmp_path / "r2"), cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(models / "digits" / "2")


@pytest.mark.slow
def test_csv_regression_version(tmp_path: Path) -> None:
    csv_path = tmp_path / "houses.csv"
    rows = ["rooms,district,price"] + [f"{1 + i % 6},{'north south east'.split()[i % 3]},{100 + 20 * (i % 6) + i % 3 * 5.5}" for i in range(60)]
    csv_path.write_text("\n".join(rows) + "\n")
    result = _tfstack(
        "--csv", str(csv_path), "--target", "price", "--epochs", "2", "--base-path", str(tmp_path / "m"),
        "--run-dir", str(tmp_path / "run"), "--version", "7", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for row in ("mae", "rmse", "r2"):
        assert row in result.stdout
    assert (tmp_path / "m" / "houses" / "7" / "saved_model.pb").is_file()


def test_bad_input_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    result = _tfstack("--dataset", "mnist", "--base-path", str(tmp_path / "m"), cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "Error: `dataset` must be one of" in result.stderr and "Received: dataset='mnist'" in result.stderr
    assert not (tmp_path / "m").exists()
