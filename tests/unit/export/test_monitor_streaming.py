"""`tfstack monitor` streams: drift statistics accumulated record by record give the same report,
numbers included, as the in-memory computation (tests/support/drift_logs.py) on the same logs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tfstack import export
from tfstack.export.cli import monitor_command
from tests.support.drift_logs import assert_same_report, in_memory_report, log_entries, profile, write_request_logs


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~3000 logged requests (~6000 rows, more than one flush) in several rotated files, the
    last ending in a torn record (a writer killed mid-write)."""
    prefix = tmp_path_factory.mktemp("logs") / "m"
    write_request_logs(prefix, log_entries(3000)).close()
    last = sorted(prefix.parent.glob("m-*.tfrecord"))[-1]
    with open(last, "ab") as handle:
        handle.write(last.read_bytes()[:40])  # a record header and part of its data
    return prefix


def test_streaming_report_matches_the_in_memory_computation_on_real_logs(logs: Path):
    assert len(list(logs.parent.glob("m-*.tfrecord"))) > 2
    expected = in_memory_report(export.read_prediction_logs(logs), profile(), model_name="m", version=1)
    assert expected["rows"] > 5000 and expected["drifted"]  # shifted rows, unseen cities, NaNs: a real report
    streamed = export.drift_report(export.iter_prediction_logs(logs, model_name="m"), profile(), model_name="m", version=1)
    assert_same_report(streamed, expected)


def test_monitor_cli_reports_the_same_numbers(logs: Path, tmp_path: Path):
    version = tmp_path / "models" / "m" / "1"
    (version / "assets.extra").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    (version / "assets.extra" / "data_profile.json").write_text(json.dumps(profile()))
    result = CliRunner().invoke(monitor_command, [str(logs), "--model-name", "m", "--base-path", str(tmp_path / "models"),
                                                  "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 1, result.output
    expected = in_memory_report(export.read_prediction_logs(logs), profile(), model_name="m", version=1)
    assert_same_report(json.loads((tmp_path / "r.json").read_text()), json.loads(json.dumps(expected)))


def test_skew_sample_is_bounded_and_uniform(logs: Path):
    everything = export.DriftAccumulator(profile(), skew_sample_rows=10**6)
    sampled = export.DriftAccumulator(profile(), skew_sample_rows=500)
    for entry in export.iter_prediction_logs(logs):
        everything.add(entry)
        sampled.add(entry)
    all_rows = everything.skew_sample()
    assert all_rows["x"].shape[0] == everything.rows  # under the limit: every row, in order
    sample = sampled.skew_sample()
    assert sample["x"].shape == (500, 2) and sample["city"].shape == (500,)
    # Each sampled row is a logged row (x and city kept together), drawn from the whole log.
    logged = {(tuple(np.nan_to_num(x, nan=-1).tolist()), c) for x, c in zip(all_rows["x"], all_rows["city"])}
    assert all((tuple(np.nan_to_num(x, nan=-1).tolist()), c) in logged for x, c in zip(sample["x"], sample["city"]))
    positions = {tuple(np.nan_to_num(x, nan=-1).tolist()): i for i, x in enumerate(all_rows["x"])}
    picked = sorted(positions[tuple(np.nan_to_num(x, nan=-1).tolist())] for x in sample["x"])
    assert picked[0] < everything.rows * 0.1 and picked[-1] > everything.rows * 0.9
    with pytest.raises(ValueError, match=r"skew_sample_rows must be an int >= 0. Received: skew_sample_rows=-1"):
        export.DriftAccumulator(profile(), skew_sample_rows=-1)


def test_tail_reads_only_new_records_and_retries_a_torn_last_record(tmp_path: Path):
    prefix = tmp_path / "logs" / "m"
    writer = write_request_logs(prefix, log_entries(50), max_file_bytes=8_000)
    tail = export.PredictionLogTail(prefix)
    first = [r.request_id for r in tail.read()]
    assert first == [f"req-{i}" for i in range(50)]
    assert list(tail.read()) == []
    # The writer is mid-way through a record: the next read stops before it...
    current = writer.path
    assert current is not None
    whole = current.read_bytes()
    write_request_logs(prefix, log_entries(1, start=50), writer=writer)
    record = current.read_bytes()[len(whole):] if current.stat().st_size > len(whole) else None
    assert record is not None  # the record went to the same file (no rotation)
    current.write_bytes(whole + record[: len(record) // 2])
    assert list(tail.read()) == []
    # ...and reads it once it is complete, with the records after it (some in new, rotated files).
    current.write_bytes(whole + record)
    write_request_logs(prefix, log_entries(30, start=51), writer=writer).close()
    assert [r.request_id for r in tail.read()] == [f"req-{i}" for i in range(50, 81)]
    assert len(tail.positions) == len(list(prefix.parent.glob("m-*.tfrecord"))) > 1


def test_regression_outputs_stream_into_the_same_bins(tmp_path: Path):
    rng = np.random.default_rng(5)
    features = (export.FeatureSpec(name="x", dtype="float32", shape=(2,)),)
    reference = export.build_profile(features, {"x": rng.normal(0, 1, size=(500, 2)).astype(np.float32)}, task="regression",
                                     source="training split", labels=rng.normal(3, 1, 200), predictions=rng.normal(3, 1, 200))
    entries = []
    for i in range(3000):
        x = rng.normal(0.5, 1, size=(2, 2)).astype(np.float32)
        y = rng.normal(4, 1.5, size=2).astype(np.float32)
        if i % 3:
            entries.append(("Predict", "r", 1, ("serving_default", {"x": x}, ()), {"prediction": y}, 1000 + i, f"req-{i}"))
        else:
            examples = [_example(row) for row in x]
            entries.append(("Regress", "r", 1, ("regress", examples, b""), [float(v) for v in y], 1000 + i, f"req-{i}"))
    write_request_logs(tmp_path / "r", entries).close()
    expected = in_memory_report(export.read_prediction_logs(tmp_path / "r"), reference, model_name="r", version=1)
    assert expected["predictions"]["kind"] == "values" and expected["predictions"]["rows"] == 6000
    streamed = export.drift_report(export.iter_prediction_logs(tmp_path / "r"), reference, model_name="r", version=1)
    assert_same_report(streamed, expected)


def _example(x: np.ndarray) -> bytes:
    import tensorflow as tf

    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=x.tolist()))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
