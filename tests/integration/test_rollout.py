"""Rollout under load against a real `tfstack serve` subprocess (config file + gRPC reloads).

Train v1 (tiny iris MLP), serve it from a models.config that rollout wrote, run 8 clients
(4 REST, 4 gRPC) that query through the `stable`/`canary` labels without pause, then:
publish v2, canary, promote, rollback, promote again, retire v1. Zero failed requests; the
p99 latency of each transition is printed (run with -s) and written to rollout_latency.json.
Then gate failures (a worse and a breaking candidate) must leave the config untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tfstack.client import RetryPolicy, ServingClient, ServingError
from tfstack.client._traffic import CanarySplit, TrafficStats
from tfstack.serving.rollout import GateError, LiveServer, Rollout, RolloutPolicy, WatchThresholds
from tests.support.server import start_server

MODEL = "iris"
ROW = {"features": np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)}
REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(900)


def train(seed: int, epochs: int, *, run_dir: Path, dataset: str = "iris"):
    from tfstack.training import TrainConfig, train as run

    return run(
        TrainConfig(dataset=dataset, model="mlp", hidden=(8,), epochs=epochs, seed=seed, model_name=MODEL,
                    run_dir=str(run_dir / f"{dataset}-{seed}-{epochs}")),
        progress=False,
    )


class Load:
    """8 client threads querying continuously; every request's time, latency, protocol and outcome."""

    def __init__(self, server) -> None:
        self.stop = threading.Event()
        self.records: list[tuple[float, float, str, bool]] = []
        self.failures: list[str] = []
        self.stats = TrafficStats(window=100_000)
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(protocol, i), daemon=True)
            for i, protocol in enumerate(["rest", "grpc"] * 4)
        ]
        self._server = server

    def _client(self, protocol: str) -> ServingClient:
        no_retry = RetryPolicy(max_attempts=1)
        if protocol == "rest":
            return ServingClient.rest(self._server.rest_url, timeout=30, retry=no_retry)
        return ServingClient.grpc(self._server.grpc_target, timeout=30, retry=no_retry)

    def _run(self, protocol: str, index: int) -> None:
        with self._client(protocol) as client:
            split = CanarySplit(client, MODEL, canary_weight=0.3, stats=self.stats, seed=index)
            n = 0
            while not self.stop.is_set():
                n += 1
                started = time.monotonic()
                try:
                    outputs = split.predict(ROW, key=f"{protocol}-{index}-{n}")
                    ok = outputs["probabilities"].shape == (2, 3)
                    if not ok:
                        raise AssertionError(f"bad outputs {outputs}")
                except (ServingError, AssertionError) as exc:
                    ok = False
                    with self._lock:
                        self.failures.append(f"{protocol}: {exc}")
                with self._lock:
                    self.records.append((started, time.monotonic() - started, protocol, ok))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def p99_ms(self, start: float, end: float) -> tuple[int, float | None]:
        with self._lock:
            window = [latency for t, latency, _, _ in self.records if start <= t <= end]
        return len(window), (float(np.percentile(window, 99)) * 1000 if window else None)

    def wait_for_requests(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.records) < count:
            assert time.monotonic() < deadline, f"clients sent only {len(self.records)} requests in {timeout}s: {self.failures[:3]}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tfstack import export

    workdir = tmp_path_factory.mktemp("rollout")
    base = workdir / "models"
    v1 = train(seed=1, epochs=2, run_dir=workdir / "runs")
    export.publish(v1.export_spec(), base)
    v2 = train(seed=2, epochs=40, run_dir=workdir / "runs")
    assert v2.metrics["accuracy"] >= v1.metrics["accuracy"], (v1.metrics["accuracy"], v2.metrics["accuracy"])
    return base, v1, v2


def test_publish_canary_promote_rollback_promote_retire_under_load(tmp_path, trained):
    base, _, v2_result = trained
    config = tmp_path / "models.config"
    Rollout(config, base).init(MODEL, 1)  # label-free, as TF Serving needs at startup
    with start_server(tmp_path, f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1",
                      model_base_path=None) as server:
        live = LiveServer(grpc_target=server.grpc_target, rest_url=server.rest_url)
        rollout = Rollout(config, base, server=live, policy=RolloutPolicy(load_timeout=120))
        assert rollout.init(MODEL).stable == 1
        transitions: list[tuple[str, float, float]] = []

        def step(name, action):
            started = time.monotonic()
            result = action()
            transitions.append((name, started, time.monotonic()))
            return result

        with Load(server) as load:
            load.wait_for_requests(200)
            published = step("publish v2", lambda: rollout.publish(MODEL, v2_result))
            assert published.version == 2
            state = step("canary 2", lambda: rollout.canary(MODEL, 2))
            assert (state.stable, state.canary) == (1, 2)
            # The clients' own per-label counters feed the watcher; a healthy canary stays.
            lenient = WatchThresholds(max_p99_ratio=10.0, min_p99_increase_ms=500.0)
            watched = step("watch 2s", lambda: rollout.watch(MODEL, load.stats, thresholds=lenient, duration=2, interval=0.5))
            assert not watched.rolled_back and watched.checks >= 2, watched
            state = step("promote", lambda: rollout.promote(MODEL, grace_seconds=300))
            assert (state.stable, state.previous) == (2, 1)
            state = step("rollback", lambda: rollout.rollback(MODEL))
            assert (state.stable, state.canary) == (1, 2)
            state = step("promote again", lambda: rollout.promote(MODEL, grace_seconds=0))
            assert state.stable == 2
            removed = step("retire --keep 1", lambda: rollout.retire(MODEL, keep=1))
            assert removed == [1]
            load.wait_for_requests(len(load.records) + 200)
        live.close()

        report = {
            name: dict(zip(("requests", "p99_ms"), load.p99_ms(start, end)), seconds=round(end - start, 2))
            for name, start, end in transitions
        }
        report["whole run"] = dict(zip(("requests", "p99_ms"), load.p99_ms(0, time.monotonic())))
        (tmp_path / "rollout_latency.json").write_text(json.dumps(report, indent=2))
        print("\nrollout under load (8 clients, REST+gRPC):")
        for name, row in report.items():
            print(f"  {name:16s} requests={row['requests']:6d} p99={row['p99_ms'] or float('nan'):8.1f} ms")
        assert load.failures == [], load.failures[:5]
        by_protocol = {p: sum(1 for r in load.records if r[2] == p) for p in ("rest", "grpc")}
        assert min(by_protocol.values()) > 100, by_protocol
        stats = load.stats.snapshot()
        assert stats["canary"].requests > 50 and stats["stable"].errors == stats["canary"].errors == 0
        assert sorted(p.name for p in (base / MODEL).iterdir() if p.name.isdigit()) == ["2"]

        # ---- gate failures leave config and state untouched
        before = config.read_bytes()
        state_before = rollout.state(MODEL)
        from tfstack import export

        v_bad = export.publish(train(seed=1, epochs=1, run_dir=tmp_path).export_spec(), base).version  # worse than v2
        cli = [sys.executable, "-m", "tfstack", "rollout", "--config", str(config), "--base-path", str(base),
               "--grpc", server.grpc_target, "--rest", server.rest_url]
        result = subprocess.run([*cli, "canary", MODEL, str(v_bad)], capture_output=True, text=True, cwd=REPO_ROOT,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
        assert result.returncode == 1, result.stderr
        assert "quality gate FAILED" in result.stderr and "nothing was changed" in result.stderr
        assert config.read_bytes() == before

        breaking = train(seed=3, epochs=1, run_dir=tmp_path, dataset="wine")  # 13 features instead of 4, same model name
        # Export refuses this onto an existing model by default; forced, it reaches the canary's gate.
        v_breaking = export.publish(breaking.export_spec(), base, allow_schema_change=True).version
        rollout_no_quality = Rollout(config, base, server=LiveServer(grpc_target=server.grpc_target),
                                     policy=RolloutPolicy(skip_gates=("quality",)))
        with pytest.raises(GateError, match=r"input 'features' shape changed incompatibly: \[-1, 4\] -> \[-1, 13\]"):
            rollout_no_quality.canary(MODEL, v_breaking)
        assert config.read_bytes() == before
        assert rollout.state(MODEL) == state_before

        status = subprocess.run([*cli, "status", MODEL], capture_output=True, text=True, cwd=REPO_ROOT,
                                env={**os.environ, "COLUMNS": "160", "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
        assert status.returncode == 0, status.stderr
        assert "canary, stable" in status.stdout and "AVAILABLE" in status.stdout


def test_canary_and_promote_relying_on_config_polling_only(tmp_path, trained):
    """No HandleReloadConfigRequest: each phase waits until the polling server shows its effect."""
    _, v1_result, v2_result = trained
    base = tmp_path / "models"
    config = tmp_path / "models.config"
    offline = Rollout(config, base)
    assert offline.publish(MODEL, v1_result).version == 1
    offline.init(MODEL)
    with start_server(tmp_path, f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1",
                      model_base_path=None) as server:
        live = LiveServer(rest_url=server.rest_url)  # REST only: no reload RPC at all
        assert not live.use_reload_rpc
        rollout = Rollout(config, base, server=live, policy=RolloutPolicy(load_timeout=120))
        rollout.init(MODEL)
        rollout.publish(MODEL, v2_result)
        with Load(server) as load:
            load.wait_for_requests(100)
            rollout.canary(MODEL, 2)
            watch = subprocess.run(
                [sys.executable, "-m", "tfstack", "rollout", "--config", str(config), "--base-path", str(base),
                 "--rest", server.rest_url, "watch", MODEL, "--duration", "1", "--interval", "0.5",
                 "--probe-requests", "5", "--max-p99-ratio", "10", "--min-p99-increase-ms", "500"],
                capture_output=True, text=True, cwd=REPO_ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300,
            )
            assert watch.returncode == 0 and "Canary healthy" in watch.stdout, watch.stdout + watch.stderr
            rollout.promote(MODEL, grace_seconds=0)
            load.wait_for_requests(len(load.records) + 100)
        live.close()
        assert load.failures == [], load.failures[:5]
        with ServingClient.grpc(server.grpc_target) as client:
            assert client.get_model_metadata(MODEL, version_label="stable").version == 2
            assert client.get_model_status(MODEL).available_versions == (2,)
