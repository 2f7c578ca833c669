"""`tfstack rollout` through click's runner: offline steps, messages and exit codes (no server)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from tfstack.client import InternalServerError
from tfstack.serving.rollout import ProbeMetrics, WatchThresholds, judge_canary
from tfstack.serving.rollout.cli import rollout
from tests.unit.serving.test_rollout import MODEL, make_version


def run(tmp_path, *args):
    config = tmp_path / "models.config"
    return CliRunner().invoke(rollout, ["--config", str(config), "--base-path", str(tmp_path / "models"), *args])


def test_init_status_and_retire_offline(tmp_path):
    for version in (1, 2, 3):
        make_version(tmp_path / "models", version)
    result = run(tmp_path, "init", MODEL, "--version", "3")
    assert result.exit_code == 0, result.output
    assert "stable=3" in result.output
    assert "versions: 3" in (tmp_path / "models.config").read_text()

    result = run(tmp_path, "status", MODEL)
    assert result.exit_code == 0, result.output
    assert "accuracy=0.9" in result.output and "stable=3" in result.output

    result = run(tmp_path, "retire", MODEL, "--keep", "1", "--dry-run")
    assert result.exit_code == 0 and "Would remove versions: [1, 2]" in result.output
    assert (tmp_path / "models" / MODEL / "1").exists()


def test_steps_that_need_the_server_say_so(tmp_path):
    make_version(tmp_path / "models", 1)
    result = run(tmp_path, "canary", MODEL, "2")
    assert result.exit_code == 2 and "needs the server: give --grpc" in result.output


def test_errors_are_one_line_without_traceback(tmp_path):
    result = run(tmp_path, "init", MODEL)
    assert result.exit_code == 1
    assert "has no versions under" in result.output and "Traceback" not in result.output


def test_publish_a_saved_model_directory(tmp_path):
    source = make_version(tmp_path / "exported", 5, loadable=True)
    result = run(tmp_path, "publish", MODEL, str(source))
    assert result.exit_code == 0, result.output
    assert f"Published {MODEL} version 1" in result.output


class FlakyClient:
    def __init__(self):
        self.calls = 0

    def predict(self, model_name, inputs, *, version_label, signature_name):
        self.calls += 1
        if version_label == "canary" and self.calls % 4 == 0:
            raise InternalServerError("boom", code="INTERNAL")
        return {"y": np.zeros(1)}


def test_probe_metrics_measure_both_labels_per_window():
    probe = ProbeMetrics(FlakyClient(), MODEL, {"x": np.zeros(1)}, requests=10)
    window = probe.snapshot()
    assert window["stable"].requests == window["canary"].requests == 10
    assert window["stable"].errors == 0 and window["canary"].errors == 5
    assert "error rate 50.00%" in judge_canary(window["stable"], window["canary"], WatchThresholds(min_requests=10))
    assert probe.snapshot()["canary"].requests == 10  # a new window each time


def test_step_help_works_without_config_and_a_step_without_config_is_a_usage_error(monkeypatch):
    from click.testing import CliRunner

    from tfstack.serving.rollout.cli import rollout

    monkeypatch.delenv("TFSTACK_MODEL_CONFIG", raising=False)
    runner = CliRunner()
    helped = runner.invoke(rollout, ["retire", "--help"])
    assert helped.exit_code == 0 and "Remove old versions" in helped.output
    missing = runner.invoke(rollout, ["status", "digits"])
    assert missing.exit_code == 2 and "Missing option '--config'" in missing.output


def test_watch_drift_options_are_checked_before_any_request(tmp_path):
    make_version(tmp_path / "models", 1)
    assert run(tmp_path, "init", MODEL).exit_code == 0
    server = ("--grpc", "127.0.0.1:1")  # never reached: every case below stops first

    result = run(tmp_path, *server, "watch", MODEL, "--logs", str(tmp_path / "logs"))
    assert result.exit_code == 2 and "--logs and --drift-min-rows need --drift-thresholds FILE" in result.output

    bad = tmp_path / "bad.json"
    bad.write_text('{"psi": 0.2, "speed": 3}')
    result = run(tmp_path, *server, "watch", MODEL, "--drift-thresholds", str(bad))
    assert result.exit_code == 2 and "unknown thresholds ['speed']" in result.output

    defaults = tmp_path / "drift.json"
    defaults.write_text("{}")
    result = run(tmp_path, *server, "watch", MODEL, "--drift-thresholds", str(defaults))
    assert result.exit_code == 2
    assert f"Model {MODEL!r} has no logging_config in" in result.output and "give --logs PATH" in result.output


def test_a_drift_check_needs_log_paths_and_a_row_count():
    from tfstack.serving.rollout import DriftCheck

    with pytest.raises(ValueError, match=r"logs must be a path or a non-empty list of paths. Received: logs=\[\]"):
        DriftCheck([])
    with pytest.raises(ValueError, match="min_rows must be an int >= 1. Received: min_rows=0"):
        DriftCheck("/logs/iris", min_rows=0)
    with pytest.raises(TypeError, match="thresholds must be an export.DriftThresholds"):
        DriftCheck("/logs/iris", {"psi": 0.2})  # type: ignore[arg-type]
