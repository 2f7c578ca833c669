"""`rollout watch --drift-thresholds` (DriftCheck): each window reads only the records logged since
the previous one, and the running statistics give the report a full re-read would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfstack import export
from tfstack.serving.rollout import DriftCheck, RolloutError
from tests.support.drift_logs import assert_same_report, in_memory_report, log_entries, profile, write_request_logs


def _version_dir(tmp_path: Path, *, with_profile: bool = True) -> Path:
    version = tmp_path / "models" / "m" / "2"
    (version / "assets.extra").mkdir(parents=True)
    if with_profile:
        (version / "assets.extra" / "data_profile.json").write_text(json.dumps(profile()))
    return version


def _canary(prefix: Path, since: float | None = None) -> list[export.LoggedRequest]:
    return [r for r in export.read_prediction_logs(prefix, model_name="m")
            if r.version == 2 and r.request_id != "tfstack-rollout" and (since is None or r.timestamp >= since)]


def test_windows_read_new_records_only_and_match_a_full_read(tmp_path: Path, monkeypatch):
    version = _version_dir(tmp_path)
    prefix = tmp_path / "logs" / "m"
    check = DriftCheck(prefix, min_rows=10)
    assert check("m", 2, version) is None  # no log file yet
    writer = write_request_logs(prefix, log_entries(200, version=2), max_file_bytes=20_000)
    # Stable's requests and rollout's own probes are logged too; neither counts.
    write_request_logs(prefix, log_entries(40, version=1, start=200), writer=writer)
    probes = [(*entry[:6], "tfstack-rollout") for entry in log_entries(20, version=2, start=240)]
    write_request_logs(prefix, probes, writer=writer)

    parsed = []
    original = export.PredictionLogTail.read

    def counting_read(self):
        for record in original(self):
            parsed.append(record.request_id)
            yield record

    monkeypatch.setattr(export.PredictionLogTail, "read", counting_read)
    reason = check("m", 2, version)
    assert reason is not None and reason.startswith("canary inputs drifted from version 2's data profile: feature")
    assert_same_report(check.last_report, in_memory_report(_canary(prefix), profile(), model_name="m", version=2))
    assert len(parsed) == 260

    # The next window: 150 more requests, some in new files (rotation); only they are read.
    parsed.clear()
    write_request_logs(prefix, log_entries(150, version=2, start=260), writer=writer).close()
    check("m", 2, version)
    assert len(parsed) == 150
    assert_same_report(check.last_report, in_memory_report(_canary(prefix), profile(), model_name="m", version=2))
    assert check.last_report is not None and check.last_report["logs"]["records"] == 350

    # A later step (new `since`) starts over: only requests logged since then count.
    check("m", 2, version, since=1300)
    assert_same_report(check.last_report, in_memory_report(_canary(prefix, 1300), profile(), model_name="m", version=2))


def test_a_version_without_a_profile_is_an_error(tmp_path: Path):
    version = _version_dir(tmp_path, with_profile=False)
    with pytest.raises(RolloutError, match=r"Version 2 of 'm' has no data profile"):
        DriftCheck(tmp_path / "logs" / "m")("m", 2, version)
