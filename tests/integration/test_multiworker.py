"""`tfstack train --local-workers 2`: a real two-worker MultiWorkerMirroredStrategy cluster on
127.0.0.1, as a user runs it. Kept small (an MLP on digits, a few epochs of global batch 64):
process start-up and the per-step all-reduces over loopback gRPC dominate the time."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# One seed and one set of settings for the single-process run and the cluster.
SETTINGS = ("--model", "mlp", "--batch-size", "64", "--learning-rate", "0.005", "--seed", "7")
DEADLINE_SECONDS = 240


def _env() -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "120", "PYTHONPATH": str(ROOT)}
    env.pop("TF_CONFIG", None)
    return env


def _tfstack(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tfstack", "train", *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=DEADLINE_SECONDS,
    )


def _versions(model_dir: Path) -> list[str]:
    return sorted((p.name for p in model_dir.iterdir() if p.is_dir()), key=lambda n: (not n.isdigit(), n))


def _manifest(version_dir: Path) -> dict:
    return json.loads((version_dir / "assets.extra" / "manifest.json").read_text())


def _wait_for_line(path: Path, pattern: str, process: subprocess.Popen, deadline: float) -> re.Match:
    """Poll `path` until a line matches `pattern`; fail if `process` ends or the deadline passes."""
    while time.monotonic() < deadline:
        if path.exists():
            match = re.search(pattern, path.read_text(errors="replace"), re.MULTILINE)
            if match:
                return match
        assert process.poll() is None, f"the run ended before {pattern!r} appeared:\n{path.read_text()[-3000:]}"
        time.sleep(0.05)
    pytest.fail(f"{pattern!r} did not appear in {path} within the deadline")


@pytest.mark.slow
def test_two_local_workers_publish_one_version_as_accurate_as_one_process(tmp_path: Path) -> None:
    models = tmp_path / "models"
    single = _tfstack(*SETTINGS, "--epochs", "4", "--base-path", str(models), "--run-dir", str(tmp_path / "single"),
                      "--quiet", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    assert _versions(models / "digits") == ["1"]

    run_dir = tmp_path / "cluster"
    cluster = _tfstack("--local-workers", "2", *SETTINGS, "--epochs", "4", "--base-path", str(models),
                       "--run-dir", str(run_dir), cwd=tmp_path)

    assert cluster.returncode == 0, cluster.stderr
    # Exactly one new version, complete, and nothing half-written next to it.
    assert _versions(models / "digits") == ["1", "2"]
    assert "[worker 0] Published digits version 2:" in cluster.stdout
    assert "[worker 1] Worker 1 of 2 trained mlp on digits" in cluster.stdout
    assert "Published" not in "\n".join(l for l in cluster.stdout.splitlines() if l.startswith("[worker 1]"))
    # Both workers trained every epoch, in step: the same averaged logs on each.
    for epoch in range(1, 5):
        logs = {
            worker: re.search(rf"^\[worker {worker}\] worker {worker}/2 epoch {epoch}/4  (.*)$", cluster.stderr, re.MULTILINE)
            for worker in (0, 1)
        }
        assert all(logs.values()), cluster.stderr
        assert logs[0].group(1) == logs[1].group(1)

    published, baseline = _manifest(models / "digits" / "2"), _manifest(models / "digits" / "1")
    assert published["training_config"]["strategy"] == "multi-worker"
    assert published["metrics"]["epochs_trained"] == 4 and published["metrics"]["resumed_from_epoch"] == 0
    # The chief evaluated on the whole test split.
    assert sum(map(sum, json.loads((run_dir / "summary.json").read_text())["confusion_matrix"])) == 360
    assert abs(published["metrics"]["accuracy"] - baseline["metrics"]["accuracy"]) <= 0.02, (
        published["metrics"]["accuracy"], baseline["metrics"]["accuracy"],
    )
    # Only the chief wrote into the run directory (the launcher adds the worker logs); the
    # backup is gone once training finished.
    assert sorted(p.name for p in run_dir.iterdir()) == ["logs", "summary.json", "worker-0.log", "worker-1.log"]
    assert "Published digits version 2" in (run_dir / "worker-0.log").read_text()


@pytest.mark.slow
def test_a_killed_worker_stops_the_run_and_the_same_command_resumes_from_the_backup(tmp_path: Path) -> None:
    models, run_dir = tmp_path / "models", tmp_path / "run"
    command = ["--local-workers", "2", *SETTINGS, "--epochs", "4", "--base-path", str(models), "--run-dir", str(run_dir)]
    launcher_log = tmp_path / "launcher.err"
    deadline = time.monotonic() + DEADLINE_SECONDS
    with launcher_log.open("w") as err:
        first = subprocess.Popen(
            [sys.executable, "-m", "tfstack", "train", *command], cwd=tmp_path, env=_env(),
            stdout=subprocess.DEVNULL, stderr=err, text=True,
        )
        try:
            pid = int(_wait_for_line(launcher_log, r"^\[launcher\] worker 1: pid (\d+)", first, deadline).group(1))
            # The chief logs an epoch after BackupAndRestore saved it: from here on a backup exists.
            _wait_for_line(launcher_log, r"^\[worker 0\] worker 0/2 epoch 1/4 ", first, deadline)
            os.kill(pid, signal.SIGKILL)
            first.wait(timeout=DEADLINE_SECONDS)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    stderr = launcher_log.read_text()

    assert first.returncode != 0
    assert f"Error: Worker 1 of 2 (pid {pid}) was killed by SIGKILL" in stderr
    assert f"the backup in {run_dir / 'backup'} is kept: run the same command again to resume from it" in stderr
    assert not (models / "digits").exists() or _versions(models / "digits") == []

    again = _tfstack(*command, cwd=tmp_path)

    assert again.returncode == 0, again.stderr
    resumed = re.search(r"^\[worker 0\] Resumed from the backup in .*: (\d) of 4 epochs were done", again.stderr, re.MULTILINE)
    assert resumed, again.stderr
    done = int(resumed.group(1))
    assert 1 <= done < 4
    assert re.search(rf"^\[worker 1\] Resumed from the backup in .*: {done} of 4 epochs were done", again.stderr, re.MULTILINE)
    # The restarted run trained only the remaining epochs, and says so in the published version.
    assert f"worker 0/2 epoch {done}/4 " not in again.stderr
    assert "worker 0/2 epoch 4/4 " in again.stderr
    assert _versions(models / "digits") == ["1"]
    metrics = _manifest(models / "digits" / "1")["metrics"]
    assert metrics["resumed_from_epoch"] == done and metrics["epochs_trained"] == 4
    assert len(json.loads((run_dir / "summary.json").read_text())["history"]["loss"]) == 4 - done
    assert not (run_dir / "backup").exists()
