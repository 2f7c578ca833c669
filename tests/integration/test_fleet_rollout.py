"""Rollout across a fleet: 3 `tfstack serve` replicas on loopback sharing one models.config.

The versions are half_plus models (tests/support/models.py) with y = 0.5x + b and b = version + 1,
so every answer names the version that computed it. Eight clients (REST and gRPC, spread over
the replicas, through the `stable` and `canary` labels) run while the fleet goes through
publish -> canary -> promote -> rollback -> promote -> retire; a poller records what each
replica reports AVAILABLE. Then: zero failed requests, and no answer from a version that its
replica did not report AVAILABLE around that request. Finally one replica stops in the middle
of a canary: the step fails naming it, and the other two are back on the previous state.

The command line (a fleet given as a servers file and as repeated --grpc/--rest) must do its
steps without importing TensorFlow (issue 18 item 7).
"""

from __future__ import annotations

import bisect
import contextlib
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
from tfstack.serving.rollout import Fleet, LiveServer, ReplicaError, Rollout, RolloutPolicy
from tests.support.models import build_half_plus
from tests.support.server import launch

MODEL = "half"
X = np.array([[2.0]], np.float32)  # y = 0.5 * 2 + b = 1 + b = version + 2
REPO_ROOT = Path(__file__).resolve().parents[2]
REPLICAS = 3
SIGNATURES = {
    "serving_default": {
        "method_name": "tensorflow/serving/predict",
        "inputs": {"x": {"dtype": "float32", "shape": None}},
        "outputs": {"y": {"dtype": "float32", "shape": None}},
    }
}

pytestmark = pytest.mark.timeout(600)


def version_of(y: float) -> int:
    return int(round(y - 2.0))


@pytest.fixture(scope="session")
def half_plus_sources(tmp_path_factory) -> dict[int, Path]:
    """Exported SavedModels for versions 1..3 (b = version + 1), each with a manifest and a sample request."""
    root = tmp_path_factory.mktemp("fleet-sources")
    sources = {}
    for version in (1, 2, 3):
        path = build_half_plus(root / f"v{version}", b=float(version + 1))
        extra = path / "assets.extra"
        extra.mkdir()
        manifest = {"format": 1, "metrics": {"accuracy": 0.9 + version / 100}, "signatures": SIGNATURES}
        (extra / "manifest.json").write_text(json.dumps(manifest))
        (extra / "sample_request.json").write_text(json.dumps({"inputs": {"x": [[1.0], [3.0]]}}))
        sources[version] = path
    return sources


@contextlib.contextmanager
def replicas(tmp_path: Path, config: Path, count: int):
    """`count` servers reading one config file, started together; stopped (SIGTERM) at the end."""
    servers = [launch(tmp_path / f"replica-{i}", f"--model_config_file={config}") for i in range(count)]
    try:
        for server in servers:
            server.wait_for_log("Running gRPC ModelServer at", timeout=180)
            server.wait_for_log("Exporting HTTP/REST API at:", timeout=180)
        yield servers
    finally:
        codes = [server.stop() for server in servers]
    assert all(code == 0 for code in codes if code is not None), codes


class FleetTraffic:
    """8 clients over the replicas and labels, plus a poller of each replica's AVAILABLE versions."""

    def __init__(self, servers, replica_indexes) -> None:
        self.servers = servers
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # (replica, protocol, label, started, finished, version or None, error)
        self.records: list[tuple[int, str, str, float, float, int | None, str | None]] = []
        self.available: dict[int, list[tuple[float, frozenset[int]]]] = {i: [] for i in replica_indexes}
        self.threads = [
            threading.Thread(target=self._client, args=(replica_indexes[i % len(replica_indexes)], protocol, i), daemon=True)
            for i, protocol in enumerate(["rest", "grpc"] * 4)
        ]
        self.threads += [threading.Thread(target=self._poll, args=(i,), daemon=True) for i in replica_indexes]

    def _connect(self, replica: int, protocol: str) -> ServingClient:
        server, once = self.servers[replica], RetryPolicy(max_attempts=1)
        if protocol == "rest":
            return ServingClient.rest(server.rest_url, timeout=30, retry=once)
        return ServingClient.grpc(server.grpc_target, timeout=30, retry=once)

    def _client(self, replica: int, protocol: str, index: int) -> None:
        with self._connect(replica, protocol) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                label = "canary" if (n + index) % 2 else "stable"
                started = time.monotonic()
                version, error = None, None
                try:
                    y = client.predict(MODEL, {"x": X}, version_label=label)["y"]
                    version = version_of(float(np.asarray(y).reshape(-1)[0]))
                except ServingError as exc:
                    error = str(exc)
                with self.lock:
                    self.records.append((replica, protocol, label, started, time.monotonic(), version, error))

    def _poll(self, replica: int) -> None:
        with ServingClient.grpc(self.servers[replica].grpc_target, timeout=10, retry=RetryPolicy(max_attempts=1)) as client:
            while not self.stop.is_set():
                try:
                    status = client.get_model_status(MODEL)
                    versions = frozenset(v.version for v in status.versions if v.state == "AVAILABLE")
                except ServingError:
                    versions = frozenset()
                with self.lock:
                    self.available[replica].append((time.monotonic(), versions))
                self.stop.wait(0.02)

    def __enter__(self) -> FleetTraffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def wait_for_requests(self, count: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.records) < count:
            assert time.monotonic() < deadline, f"only {len(self.records)} requests in {timeout}s"
            time.sleep(0.05)

    def failures(self) -> list[str]:
        return [f"replica {r} {p} {label}: {e}" for r, p, label, _, _, _, e in self.records if e is not None]

    def unavailable_answers(self) -> list[str]:
        """Answers from a version the replica did not report AVAILABLE in any status sample from
        the one just before the request to the one just after it."""
        problems = []
        for replica, protocol, label, started, finished, version, error in self.records:
            if error is not None:
                continue
            samples = self.available[replica]
            times = [t for t, _ in samples]
            first = max(bisect.bisect_right(times, started) - 1, 0)
            last = min(bisect.bisect_left(times, finished) + 1, len(samples))
            seen = set().union(*(versions for _, versions in samples[first:last])) if samples else set()
            if version not in seen:
                problems.append(f"replica {replica} {protocol} {label}: version {version} answered; AVAILABLE: {sorted(seen)}")
        return problems

    def versions_seen(self, replica: int, label: str) -> set[int]:
        return {v for r, _, lab, _, _, v, e in self.records if r == replica and lab == label and e is None}


class StopsBeforeReload:
    """A replica whose server stops just before its `n`-th config reload of a step (a pod going away)."""

    def __init__(self, live: LiveServer, server, n: int) -> None:
        self.live, self.server, self.n, self.reloads = live, server, n, 0

    def __getattr__(self, name):
        return getattr(self.live, name)

    def reload(self, config) -> None:
        self.reloads += 1
        if self.reloads == self.n:
            assert self.server.stop() == 0
        self.live.reload(config)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`tfstack ARGS` in a subprocess that reports which TensorFlow modules it imported."""
    probe = (
        "import atexit, sys\nfrom tfstack import cli as tfstack_cli\n"
        "atexit.register(lambda: print('imported:', sorted({m.split('.')[0] for m in sys.modules} "
        "& {'tensorflow', 'tensorflow_serving', 'keras'}), file=sys.stderr))\n"
        "sys.argv = ['tfstack', *sys.argv[1:]]\n"
        "tfstack_cli.main()\n"
    )
    return subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=REPO_ROOT,
                          env={**os.environ, "COLUMNS": "200"}, timeout=300)


def test_a_fleet_of_three_rolls_out_in_step_and_restores_the_others_when_one_stops(tmp_path, half_plus_sources):
    base, config = tmp_path / "models", tmp_path / "models.config"
    offline = Rollout(config, base)
    assert offline.publish(MODEL, half_plus_sources[1]).version == 1
    offline.init(MODEL)  # label-free, as TF Serving needs at startup

    with replicas(tmp_path, config, REPLICAS) as servers:
        lives = [LiveServer(grpc_target=s.grpc_target, rest_url=s.rest_url) for s in servers]
        fleet = Fleet(lives)
        rollout = Rollout(config, base, server=fleet, policy=RolloutPolicy(load_timeout=60))
        assert rollout.init(MODEL).stable == 1

        with FleetTraffic(servers, list(range(REPLICAS))) as traffic:
            traffic.wait_for_requests(100)
            assert rollout.publish(MODEL, half_plus_sources[2]).version == 2
            state = rollout.canary(MODEL, 2)  # gates, incl. the infra gate on every replica and protocol
            assert (state.stable, state.canary) == (1, 2)
            traffic.wait_for_requests(len(traffic.records) + 100)
            state = rollout.promote(MODEL, grace_seconds=300)
            assert (state.stable, state.previous) == (2, 1)
            traffic.wait_for_requests(len(traffic.records) + 100)
            state = rollout.rollback(MODEL)
            assert (state.stable, state.canary) == (1, 2)
            traffic.wait_for_requests(len(traffic.records) + 100)
            state = rollout.promote(MODEL, grace_seconds=0)
            assert (state.stable, state.canary, state.previous) == (2, None, 1)
            assert rollout.retire(MODEL, keep=1) == [1]
            traffic.wait_for_requests(len(traffic.records) + 100)

        assert traffic.failures() == [], traffic.failures()[:5]
        assert traffic.unavailable_answers() == [], traffic.unavailable_answers()[:5]
        for replica in range(REPLICAS):
            protocols = {p for r, p, *_ in traffic.records if r == replica}
            assert protocols == {"rest", "grpc"}, (replica, protocols)
            # Every replica really moved: canary reached 2 while stable was 1, then stable reached 2.
            assert traffic.versions_seen(replica, "canary") == {1, 2}
            assert traffic.versions_seen(replica, "stable") == {1, 2}
        for live in lives:
            states = live.version_states(MODEL)
            assert states[2] == "AVAILABLE" and states.get(1) != "AVAILABLE", states
            assert live.client.get_model_metadata(MODEL, version_label="stable").version == 2
        assert sorted(p.name for p in (base / MODEL).iterdir() if p.name.isdigit()) == ["2"]

        # ---- the command line: the fleet from a servers file; no step imports TensorFlow
        servers_file = tmp_path / "servers.txt"
        servers_file.write_text("# replica: gRPC target, REST URL\n"
                                + "".join(f"{s.grpc_target} {s.rest_url}\n" for s in servers))
        cli = ["rollout", "--config", str(config), "--base-path", str(base), "--servers-file", str(servers_file)]
        assert rollout.publish(MODEL, half_plus_sources[3]).version == 3
        canary = run_cli(*cli, "canary", MODEL, "3", "--skip-gate", "infra")
        assert canary.returncode == 0, canary.stderr
        assert "stable=2 canary=3" in canary.stdout
        assert "imported: []" in canary.stderr
        watch = run_cli("rollout", "--config", str(config), "--base-path", str(base),
                        *[arg for s in servers for arg in ("--grpc", s.grpc_target, "--rest", s.rest_url)],
                        "watch", MODEL, "--duration", "0.5", "--interval", "0.5", "--probe-requests", "3",
                        "--max-p99-ratio", "100", "--min-p99-increase-ms", "1000")
        assert watch.returncode == 0 and "Canary healthy" in watch.stdout, watch.stdout + watch.stderr
        rollback = run_cli(*cli, "rollback", MODEL)
        assert rollback.returncode == 0, rollback.stderr
        assert "stable=2 canary=2 (no canary)" in rollback.stdout and "imported: []" in rollback.stderr
        status = run_cli(*cli, "status", MODEL)
        assert status.returncode == 0, status.stderr
        assert "3 replicas" in status.stdout
        for server in servers:
            line = next(l for l in status.stdout.splitlines() if server.grpc_target in l)
            assert "2 AVAILABLE" in line and "canary -> 2" in line and "stable -> 2" in line and "yes" in line, line

        # ---- a replica stops in the middle of a canary: the step stops, the others go back
        before = config.read_bytes()
        state_before = rollout.state(MODEL)
        stopping = StopsBeforeReload(lives[2], servers[2], n=2)  # after the load phase, before the labels move
        broken = Rollout(config, base, server=Fleet([lives[0], lives[1], stopping]),
                         policy=RolloutPolicy(load_timeout=60, skip_gates=("infra",)))
        with FleetTraffic(servers, [0, 1]) as traffic:
            traffic.wait_for_requests(50)
            with pytest.raises(ReplicaError) as failed:
                broken.canary(MODEL, 3)
            traffic.wait_for_requests(len(traffic.records) + 50)
        message = str(failed.value)
        assert f"Replica {servers[2].grpc_target} (3 of 3) failed to reload the config" in message
        assert "UNAVAILABLE" in message
        assert f"is restored on {servers[0].grpc_target}, {servers[1].grpc_target}." in message
        assert failed.value.replicas == (servers[2].grpc_target,)
        assert config.read_bytes() == before
        assert rollout.state(MODEL) == state_before
        for live in lives[:2]:
            deadline = time.monotonic() + 30
            while live.version_states(MODEL).get(3) == "AVAILABLE":
                assert time.monotonic() < deadline, live.version_states(MODEL)
                time.sleep(0.05)
            assert live.client.get_model_metadata(MODEL, version_label="canary").version == 2
            assert live.client.get_model_metadata(MODEL, version_label="stable").version == 2
        assert traffic.failures() == [], traffic.failures()[:5]
        assert traffic.unavailable_answers() == [], traffic.unavailable_answers()[:5]
        fleet.close()
