"""`tfstack rollout watch --drift-thresholds`: a canary whose inputs drift is rolled back.

Real processes on loopback: `tfstack serve` with `logging_config` (sampling rate 1.0) logs what
the canary answers; `tfstack rollout watch` reads those logs and compares the canary version's
requests with its data profile, with `tfstack monitor`'s thresholds file. TF Serving's OSS
server has no log collector (spec §4.1), so this runs against `tfstack serve` only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfstack import export
from tfstack.client import ServingClient
from tfstack.serving.rollout import LiveServer, Rollout, RolloutPolicy
from tests.support.server import logged_models_config, start_server

MODEL = "iris"
REPO_ROOT = Path(__file__).resolve().parents[2]
ROLLOUT_REQUEST_ID = "tfstack-rollout"  # what LiveServer sends as X-Request-ID / x-request-id

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory):
    """Versions 1 and 2 of iris (each with its data profile), and version 2's training rows."""
    from tfstack.training import TrainConfig, train

    root = tmp_path_factory.mktemp("drift")
    rows = None
    for seed in (1, 2):
        result = train(TrainConfig(dataset="iris", model="mlp", hidden=(8,), epochs=5, seed=seed, model_name=MODEL,
                                   run_dir=str(root / f"run-{seed}")), progress=False)
        assert export.publish(result.export_spec(), root / "models").version == seed
        rows = np.asarray(result.dataset.train.inputs["features"], np.float32)
    return root / "models", rows


def _canary_records(prefix: Path) -> list[export.LoggedRequest]:
    """The logged requests version 2 answered for clients other than rollout itself."""
    try:
        records = export.read_prediction_logs(prefix, model_name=MODEL)
    except ValueError:  # no log file yet: the server writes the first with the first record
        return []
    return [r for r in records if r.version == 2 and r.request_id != ROLLOUT_REQUEST_ID]


def _send(client: ServingClient, prefix: Path, rows: np.ndarray, *, expect: int) -> None:
    """Send `rows` to the canary label in 12 requests, then poll until all `expect` are logged."""
    for chunk in np.array_split(rows, 12):
        client.predict(MODEL, {"features": chunk}, version_label="canary")
    deadline = time.monotonic() + 60
    while len(_canary_records(prefix)) < expect:
        assert time.monotonic() < deadline, f"only {len(_canary_records(prefix))} of {expect} canary requests logged"
        time.sleep(0.1)


def test_watch_rolls_back_a_canary_whose_logged_inputs_drift_from_its_data_profile(tmp_path, published):
    base, rows = published
    config, logs = tmp_path / "models.config", tmp_path / "logs" / MODEL
    config.write_text(logged_models_config({MODEL: (base / MODEL, logs)}, extra="model_version_policy { specific { versions: 1 } }"))
    Rollout(config, base).init(MODEL, 1)  # label-free, as TF Serving needs at startup; logging_config stays
    thresholds = tmp_path / "drift.json"
    thresholds.write_text('{"psi": 0.25, "js_distance": 0.25}\n')
    with start_server(tmp_path, f"--model_config_file={config}", model_base_path=None) as server:
        live = LiveServer(grpc_target=server.grpc_target, rest_url=server.rest_url)
        rollout = Rollout(config, base, server=live, policy=RolloutPolicy(load_timeout=120, skip_gates=("quality", "infra")))
        rollout.init(MODEL)
        rollout.canary(MODEL, 2)
        watch = [sys.executable, "-m", "tfstack", "rollout", "--config", str(config), "--base-path", str(base),
                 "--grpc", server.grpc_target, "watch", MODEL, "--duration", "2", "--interval", "1",
                 "--probe-requests", "5", "--max-p99-ratio", "10", "--min-p99-increase-ms", "500",
                 "--drift-thresholds", str(thresholds)]  # no --logs: the prefix comes from logging_config
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        with ServingClient.rest(server.rest_url, timeout=30) as client:
            # The canary answers the very rows its version was trained on: no drift. The watch's own
            # probes (one repeated sample request) are logged too, and must not count as traffic.
            _send(client, logs, rows, expect=12)
            clean = subprocess.run(watch, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
            assert clean.returncode == 0, clean.stdout + clean.stderr
            assert "Canary healthy" in clean.stdout
            assert f"No drift in {len(rows)} logged canary rows against version 2's data profile." in clean.stdout
            probes = [r for r in export.read_prediction_logs(logs, model_name=MODEL) if r.request_id == ROLLOUT_REQUEST_ID]
            assert {r.version for r in probes} == {1, 2}
            assert rollout.state(MODEL).canary == 2

            # Then the same rows shifted far outside the training range: rolled back, and the one
            # line says which feature drifted by which measure.
            _send(client, logs, rows * 3.0 + 10.0, expect=24)
            drifted = subprocess.run(watch, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
            assert drifted.returncode == 3, drifted.stdout + drifted.stderr
            lines = [line for line in drifted.stdout.splitlines() if line.startswith("Rolled back:")]
            assert len(lines) == 1, drifted.stdout
            assert lines[0].startswith("Rolled back: canary inputs drifted from version 2's data profile: feature features: psi ")
            assert lines[0].endswith(f"over {2 * len(rows)} logged rows"), lines[0]

            assert rollout.state(MODEL).canary is None
            assert client.get_model_metadata(MODEL, version_label="canary").version == 1
            assert client.get_model_metadata(MODEL, version_label="stable").version == 1
        live.close()
