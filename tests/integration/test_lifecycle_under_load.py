"""Versions roll while clients query (issue 5, Reliability): no failed request, no stale version.

Version v of the test model answers y = 0.5x + v, so with x = 0 every response names the version
that computed it, over REST and gRPC alike. A status poller records when each version was
AVAILABLE; every response must come from a version that was AVAILABLE around that moment.
"""

from __future__ import annotations

import bisect
import os
import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
)

from tfstack.client import ServingClient
from tests.support.models import build_half_plus
from tests.support.server import start_server

MODEL = "rolling"
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
# Responses are matched to status snapshots taken at most this far from the request's lifetime.
SLACK_S = 0.3


def _config_text(base: Path, labels: dict[str, int]) -> str:
    label_lines = "".join(f"    version_labels {{ key: '{k}' value: {v} }}\n" for k, v in labels.items())
    return (
        "model_config_list {\n  config {\n"
        f"    name: '{MODEL}'\n    base_path: '{base}'\n    model_platform: 'tensorflow'\n"
        "    model_version_policy { latest { num_versions: 2 } }\n"
        f"{label_lines}  }}\n}}\n"
    )


def _publish(models: Path, version: int) -> None:
    staging = models.parent / f".staging-{version}"
    build_half_plus(staging, b=float(version))
    os.rename(staging, models / str(version))  # atomic: the poller never sees half a version


class _StatusRecorder(threading.Thread):
    """Polls GetModelStatus and keeps (time, AVAILABLE versions) snapshots."""

    def __init__(self, target: str) -> None:
        super().__init__(daemon=True)
        self._stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(target))
        self.times: list[float] = []
        self.available: list[frozenset[int]] = []
        self.stop_event = threading.Event()

    def current(self) -> frozenset[int]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        rows = self._stub.GetModelStatus(request, timeout=10).model_version_status
        return frozenset(r.version for r in rows if r.state == AVAILABLE)

    def run(self) -> None:
        while not self.stop_event.is_set():
            snapshot = self.current()
            self.times.append(time.monotonic())
            self.available.append(snapshot)
            self.stop_event.wait(0.01)

    def was_available(self, version: int, start: float, end: float) -> bool:
        lo = bisect.bisect_left(self.times, start - SLACK_S)
        hi = bisect.bisect_right(self.times, end + SLACK_S)
        return any(version in snapshot for snapshot in self.available[lo:hi])

    def wait_for(self, expected: frozenset[int], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.current() != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"AVAILABLE versions never became {sorted(expected)}; last {sorted(self.current())}")
            self.stop_event.wait(0.05)


class _Client(threading.Thread):
    def __init__(self, client: ServingClient, label: str | None, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.client, self.label, self.stop = client, label, stop
        self.responses: list[tuple[float, float, int]] = []
        self.failures: list[str] = []

    def run(self) -> None:
        x = {"x": np.zeros([1], np.float32)}
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                y = self.client.predict(MODEL, x, version_label=self.label, timeout=30)["y"]
            except Exception as exc:  # every failure is a finding, whatever its type
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            self.responses.append((started, time.monotonic(), int(round(float(y[0])))))


def _reload(target: str, config: str) -> None:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(config, request.config)
    assert isinstance(request.config, model_server_config_pb2.ModelServerConfig)
    response = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(target)).HandleReloadConfigRequest(
        request, timeout=120
    )
    assert response.status.error_code == 0, response.status.error_message


@pytest.mark.timeout(600)
def test_versions_roll_under_load_with_no_failed_request(tmp_path: Path):
    models = tmp_path / "models" / MODEL
    models.mkdir(parents=True)
    _publish(models, 1)
    config = tmp_path / "models.config"
    config.write_text(_config_text(models, {"stable": 1}))

    with start_server(
        tmp_path,
        f"--model_config_file={config}",
        "--file_system_poll_wait_seconds=1",
        "--allow_version_labels_for_unavailable_models=true",  # a label in the startup config (spec §4.5)
        model_base_path=None,
        rest=True,
    ) as server:
        recorder = _StatusRecorder(server.grpc_target)
        recorder.wait_for(frozenset({1}))
        recorder.start()
        stop = threading.Event()
        clients = [
            _Client(ServingClient.rest(server.rest_url), label, stop) for label in (None, "stable", None, "stable")
        ] + [_Client(ServingClient.grpc(server.grpc_target), label, stop) for label in (None, "stable", None, "stable")]
        for client in clients:
            client.start()
        try:
            _publish(models, 2)  # a new directory appears: 1 and 2 are the latest two
            recorder.wait_for(frozenset({1, 2}))
            _reload(server.grpc_target, _config_text(models, {"stable": 2}))  # the config moves the label
            _publish(models, 3)  # 2 and 3 are now the latest two: 1 unloads once 3 is AVAILABLE
            recorder.wait_for(frozenset({2, 3}))
            _reload(server.grpc_target, _config_text(models, {"stable": 3}))
            shutil.rmtree(models / "1")  # old directories are deleted: only 3 is left to serve
            shutil.rmtree(models / "2")
            recorder.wait_for(frozenset({3}))
            seen_three = sum(len(c.responses) for c in clients)
            deadline = time.monotonic() + 60
            while sum(len(c.responses) for c in clients) < seen_three + 40 and time.monotonic() < deadline:
                stop.wait(0.05)  # keep querying a little on the final state
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=60)
            recorder.stop_event.set()
            recorder.join(timeout=30)

    failures = [f for c in clients for f in c.failures]
    assert failures == [], f"{len(failures)} failed requests, first: {failures[:3]}"
    responses = [(c.label, r) for c in clients for r in c.responses]
    assert len(responses) > 100, "the clients should have kept querying through every transition"
    stale = [(label, r) for label, r in responses if not recorder.was_available(r[2], r[0], r[1])]
    assert stale == [], f"responses from versions that were not AVAILABLE then: {stale[:5]}"
    versions_seen = {r[2] for _, r in responses}
    assert versions_seen == {1, 2, 3}, f"every version should have served some traffic; saw {sorted(versions_seen)}"
    # After the last label move and unloads, everything is answered by version 3.
    final = [r for _, r in responses if r[0] > recorder.times[-1] - 0.5]
    assert final and all(version == 3 for _, _, version in final)
