"""Canary split, shadow mode and per-label counters over a fake client (no server, no TensorFlow)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tfstack.client import InternalServerError, VersionLabelNotFoundError
from tfstack.client._traffic import AsyncCanarySplit, CanarySplit, TrafficStats, bucket


class FakeClient:
    def __init__(self, outputs=None, fail=(), missing=()):
        self.outputs = outputs or {"stable": 1.0, "canary": 1.0}
        self.fail, self.missing = set(fail), set(missing)
        self.calls = []

    def predict(self, model_name, inputs, *, version_label=None, **kwargs):
        self.calls.append(version_label)
        if version_label in self.missing:
            raise VersionLabelNotFoundError(f"Unrecognized servable version label: {version_label}", code="INVALID_ARGUMENT")
        if version_label in self.fail:
            raise InternalServerError("boom", code="INTERNAL")
        return {"y": np.array([self.outputs[version_label]], np.float32)}


class AsyncFakeClient(FakeClient):
    async def predict(self, model_name, inputs, **kwargs):
        return FakeClient.predict(self, model_name, inputs, **kwargs)


def test_split_is_sticky_per_key_and_close_to_its_weight():
    split = CanarySplit(FakeClient(), "m", canary_weight=0.1)
    labels = [split.choose(f"user-{i}") for i in range(5000)]
    assert abs(labels.count("canary") / len(labels) - 0.1) < 0.02
    assert all(split.choose(f"user-{i}") == labels[i] for i in range(100))
    assert bucket("user-1") == bucket(b"user-1") and 0 <= bucket(42) < 1


def test_requests_are_counted_per_label_with_errors_and_latency():
    client = FakeClient(fail={"canary"})
    split = CanarySplit(client, "m", canary_weight=0.5, seed=1)
    errors = 0
    for i in range(200):
        try:
            split.predict({"x": [1.0]}, key=i)
        except InternalServerError:
            errors += 1
    stats = split.stats.snapshot()
    assert stats["canary"].errors == errors == stats["canary"].requests > 50
    assert stats["stable"].errors == 0 and stats["stable"].requests == 200 - errors
    assert stats["stable"].p99_ms is not None and stats["canary"].error_rate == 1.0


def test_a_missing_canary_label_falls_back_to_stable():
    client = FakeClient(missing={"canary"})
    split = CanarySplit(client, "m", canary_weight=1.0)
    assert split.predict({"x": [1.0]})["y"][0] == 1.0
    assert client.calls == ["canary", "stable"] and split.stats.snapshot()["stable"].requests == 1


def test_shadow_mode_compares_outputs_and_answers_with_stable():
    split = CanarySplit(FakeClient(outputs={"stable": 1.0, "canary": 2.0}), "m", canary_weight=0.0, shadow_fraction=1.0)
    for _ in range(10):
        assert split.predict({"x": [1.0]})["y"][0] == 1.0
    split.close()
    report = split.shadow_report()
    assert report.compared == 10 and report.disagreed == 10 and report.disagreement_rate == 1.0
    assert "max abs difference 1" in report.examples[0]
    agreeing = CanarySplit(FakeClient(), "m", canary_weight=0.0, shadow_fraction=1.0)
    agreeing.predict({"x": [1.0]})
    agreeing.close()
    assert agreeing.shadow_report().disagreed == 0


async def test_async_split_counts_and_shadows():
    split = AsyncCanarySplit(AsyncFakeClient(outputs={"stable": 1.0, "canary": 1.5}), "m", canary_weight=0.2, shadow_fraction=1.0)
    await asyncio.gather(*(split.predict({"x": [1.0]}, key=i) for i in range(50)))
    await split.aclose()
    stats = split.stats.snapshot()
    assert stats["stable"].requests + stats["canary"].requests == 50
    assert split.shadow_report().compared == stats["stable"].requests


def test_snapshot_reset_starts_a_new_window():
    stats = TrafficStats()
    stats.record("stable", 0.01, ok=True)
    assert stats.snapshot(reset=True)["stable"].requests == 1
    assert stats.snapshot() == {}


@pytest.mark.parametrize("option", [{"canary_weight": 1.5}, {"shadow_fraction": -0.1}, {"stable_label": "canary"}])
def test_bad_options_are_rejected(option):
    with pytest.raises(ValueError):
        CanarySplit(FakeClient(), "m", **option)


def test_importing_the_traffic_module_pulls_in_no_tensorflow_or_server_code():
    import subprocess
    import sys

    code = (
        "import sys, tfstack.client._traffic; "
        "bad = [m for m in ('tensorflow', 'serving', 'export', 'training', 'grpc', 'httpx') if m in sys.modules]; "
        "print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
