"""`tfstack bench` end to end against real embedded servers (tiny model, a handful of requests).

No timing is asserted: the machine is shared. The checks are that every report is written and
that its counts add up to what was asked for.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.models import build_half_plus
from tests.support.server import logged_models_config

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 12


@pytest.fixture(scope="module")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bench-models") / "half_plus_two"
    build_half_plus(base / "1")
    return base


def _bench(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfstack", "bench", *arguments],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )


def _rows(output_dir: Path) -> list[dict[str, str]]:
    with open(output_dir / "bench.csv", newline="") as source:
        return list(csv.DictReader(source))


def test_bench_starts_the_embedded_server_and_reports_every_scenario(model_base: Path, tmp_path: Path):
    out = tmp_path / "report"
    result = _bench(
        "--model-name", "half_plus_two", "--model-base-path", str(model_base), "--protocol", "grpc,rest",
        "--concurrency", "1,3", "--batch-sizes", "1,2", "--requests", str(REQUESTS), "--warmup", "2",
        "--processes", "2", "--output-dir", str(out),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ("bench.csv", "bench.json", "bench.md", "bench.png"):
        assert (out / name).stat().st_size > 0, name
    assert "p99 ms" in result.stdout and "Where a batch-1 Predict's time goes" in result.stdout
    # What a user sees names no project bookkeeping (issue numbers, internal targets).
    assert "issue" not in result.stdout.lower() and "target" not in result.stdout.lower()

    rows = _rows(out)
    # baselines: in-process b=1 and b=2, official stub, tfstack client x2;
    # then per protocol and concurrency: floor + predict b=1 + predict b=2.
    assert len(rows) == 2 + 1 + 2 + 2 * 2 * 3
    assert {r["kind"] for r in rows} == {"in-process", "official-stub", "tfstack-client", "floor", "predict"}
    for row in rows:
        assert int(row["errors"]) == 0, row
        assert int(row["requests"]) == REQUESTS, row  # a request bound is exact across processes
        assert float(row["throughput_rps"]) > 0
        assert float(row["p50_ms"]) <= float(row["p90_ms"]) <= float(row["p95_ms"]) <= float(row["p99_ms"])
        assert float(row["examples_per_s"]) == pytest.approx(float(row["throughput_rps"]) * int(row["batch_size"]))
    three = [r for r in rows if r["concurrency"] == "3" and r["kind"] == "predict"]
    assert three and all(r["processes"] == "2" for r in three)

    document = json.loads((out / "bench.json").read_text())
    assert len(document["measurements"]) == len(rows)
    assert document["command"].startswith("tfstack bench")
    assert {r["generator"] for r in rows} == {"python"}  # --requests: the C tools run for a duration only
    assert any(line.startswith("grpc (python), batching off: c=1 Predict p50") for line in document["breakdown"])


def test_bench_targets_a_running_server_open_and_closed_loop(model_base: Path, tmp_path: Path):
    from tfstack.serving.testing._harness import EmbeddedBackend, ServeRequest, serve_models

    out = tmp_path / "report"
    request = ServeRequest(models={"half_plus_two": model_base})
    with serve_models(EmbeddedBackend(), request, workdir=tmp_path / "server") as endpoint:
        result = _bench(
            "--model-name", "half_plus_two", "--rest", endpoint.rest_url, "--grpc", endpoint.grpc_target,
            "--no-baselines", "--no-floor", "--concurrency", "2", "--batch-sizes", "1", "--rate", "40",
            "--requests", str(REQUESTS), "--warmup", "1", "--processes", "2", "--output-dir", str(out),
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = _rows(out)
    assert [(r["protocol"], r["mode"]) for r in rows] == [("grpc", "closed"), ("rest", "closed"), ("grpc", "open"), ("rest", "open")]
    for row in rows:
        assert int(row["requests"]) + int(row["errors"]) == REQUESTS, row
        assert int(row["errors"]) == 0, row
        assert row["batching"] == "server"


def test_an_unreachable_server_is_a_clear_error_not_a_hang():
    from tfstack.serving import bench
    from tests.support.server import free_port

    port = free_port()  # nothing listens there
    target = bench.Target(model_name="m", rest_url=f"http://127.0.0.1:{port}", grpc_target=None)
    scenario = bench.Scenario(kind="floor", protocol="rest", concurrency=2)
    with pytest.raises(bench.BenchError, match=rf"failed while starting: .*127\.0\.0\.1:{port}"):
        bench.run_scenario(scenario, target=target, payloads={}, limits=bench.Limits(duration=1.0, warmup=1),
                            processes=2)


@pytest.mark.skipif(not (shutil.which("wrk") and shutil.which("h2load")), reason="wrk and h2load are not installed")
def test_bench_drives_the_server_with_wrk_and_h2load_next_to_the_empty_request(model_base: Path, tmp_path: Path):
    out = tmp_path / "report"
    result = _bench(
        "--model-name", "half_plus_two", "--model-base-path", str(model_base), "--protocol", "grpc,rest",
        "--concurrency", "1,2", "--batch-sizes", "1", "--duration", "1", "--warmup", "2", "--no-baselines",
        "--load-generator", "c", "--output-dir", str(out),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = _rows(out)
    assert sorted((r["protocol"], r["generator"], r["kind"], r["concurrency"]) for r in rows) == sorted(
        (protocol, tool, kind, c) for protocol, tool in (("grpc", "h2load"), ("rest", "wrk"))
        for kind in ("floor", "predict") for c in ("1", "2"))
    for row in rows:
        assert int(row["errors"]) == 0, row
        assert int(row["requests"]) > 0 and float(row["p50_ms"]) <= float(row["p99_ms"]), row
    assert "h2load" in result.stdout and "wrk" in result.stdout


def test_bench_refuses_a_remote_target_before_sending_anything(tmp_path: Path):
    result = _bench("--model-name", "m", "--rest", "http://192.0.2.1:8501", "--protocol", "rest",
                    "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "unless --allow-remote" in result.stderr and "192.0.2.1" in result.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ --replay

# Batch sizes of the logged Predict requests, in the order they are sent (REST then gRPC).
LOGGED_BATCHES = (1, 3, 2, 5)


@pytest.fixture(scope="module")
def request_logs(model_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `tfstack serve` with logging_config (rate 1.0) logged 4 Predict requests of half_plus_two
    with batch sizes 1, 3, 2, 5 (REST and gRPC), one Regress of it, and 2 Predicts of model "other";
    all land in one directory. The server is stopped (logs flushed) before the bench reads them."""
    import grpc
    import httpx
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from tests.support.server import start_server

    root = tmp_path_factory.mktemp("replay")
    logs = root / "logs"
    logs.mkdir()
    config = root / "models.config"
    config.write_text(logged_models_config({name: (model_base, f"{logs}/{name}") for name in ("half_plus_two", "other")}))
    with start_server(root, f"--model_config_file={config}") as server:
        with httpx.Client(timeout=30) as client:
            for size in LOGGED_BATCHES[:2]:
                response = client.post(f"{server.rest_url}/v1/models/half_plus_two:predict",
                                       json={"instances": [float(i) for i in range(size)]})
                assert response.status_code == 200, response.text
            response = client.post(f"{server.rest_url}/v1/models/half_plus_two:regress",
                                   json={"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]})
            assert response.status_code == 200, response.text
            for _ in range(2):
                assert client.post(f"{server.rest_url}/v1/models/other:predict", json={"instances": [1.0]}).status_code == 200
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for size in LOGGED_BATCHES[2:]:
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "half_plus_two"
                request.model_spec.version.value = 1  # pinned: the replay drops the pin
                request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.arange(size, dtype=np.float32)))
                stub.Predict(request, timeout=30)
    return logs


def test_bench_replays_the_logged_requests_with_their_batch_sizes(model_base: Path, request_logs: Path, tmp_path: Path):
    out = tmp_path / "report"
    replayed = 2 * len(LOGGED_BATCHES)  # twice through the log
    result = _bench(
        "--model-name", "half_plus_two", "--model-base-path", str(model_base), "--replay", str(request_logs),
        "--protocol", "grpc,rest", "--concurrency", "1", "--requests", str(replayed), "--warmup", "1",
        "--processes", "1", "--no-floor", "--output-dir", str(out),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Replaying 4 logged Predict requests of half_plus_two" in result.stdout
    assert "Left out of the replay: 2 of model 'other', 1 regress_log records (not Predict)." in result.stdout
    assert "Python generator" in result.stdout and "No baselines with --replay" in result.stdout

    document = json.loads((out / "bench.json").read_text())
    replay = document["plan"]["replay"]
    assert replay["requests"] == 4 and replay["examples"] == sum(LOGGED_BATCHES)
    assert replay["batch_sizes"] == {"1": 1, "2": 1, "3": 1, "5": 1}
    assert replay["input_shapes"] == {"x": {"float32[1]": 1, "float32[3]": 1, "float32[2]": 1, "float32[5]": 1}}
    assert replay["left_out_other_models"] == {"other": 2} and replay["left_out_other_kinds"] == {"regress_log": 1}
    rows = document["measurements"]
    assert [(r["kind"], r["protocol"], r["batch_size"], r["generator"]) for r in rows] == [
        ("replay", "grpc", None, "python"), ("replay", "rest", None, "python")]
    for row in rows:
        assert row["errors"] == 0 and row["requests"] == replayed, row
        # One process, one user, twice through the log from its start: every logged example, twice.
        assert row["examples_per_s"] * row["elapsed_s"] == pytest.approx(2 * sum(LOGGED_BATCHES)), row


WRK_MISSING = "wrk is not installed (apt-get install wrk); REST replay on wrk cannot run here"


@pytest.mark.skipif(shutil.which("wrk") is None, reason=WRK_MISSING)
def test_bench_replays_rest_on_wrk_and_counts_the_logged_batch_sizes_it_sent(model_base: Path, request_logs: Path,
                                                                              tmp_path: Path):
    out = tmp_path / "report"
    result = _bench(
        "--model-name", "half_plus_two", "--model-base-path", str(model_base), "--replay", str(request_logs),
        "--protocol", "rest", "--load-generator", "c", "--concurrency", "1,3", "--duration", "1", "--warmup", "1",
        "--no-floor", "--output-dir", str(out),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "REST replay load from wrk" in result.stdout
    rows = json.loads((out / "bench.json").read_text())["measurements"]
    assert [(r["kind"], r["concurrency"], r["batch_size"], r["generator"]) for r in rows] == [
        ("replay", 1, None, "wrk"), ("replay", 3, None, "wrk")]
    cycle = sum(LOGGED_BATCHES)
    for row in rows:
        assert row["errors"] == 0 and row["requests"] > len(LOGGED_BATCHES), row
        examples = row["examples_per_s"] * row["elapsed_s"]
        full, rest = divmod(row["requests"], len(LOGGED_BATCHES))
        if row["concurrency"] == 1:
            # One connection from the log's start, in log order: whole cycles plus the first `rest` requests.
            assert examples == pytest.approx(full * cycle + sum(LOGGED_BATCHES[:rest])), row
        else:
            # Three connections from their own places: each is off a whole number of cycles by at most the
            # largest partial-cycle deviation from the mean batch size (2.25 examples for 1, 3, 2, 5).
            assert abs(examples - row["requests"] * cycle / len(LOGGED_BATCHES)) <= 3 * 2.25 + 1e-6, row


@pytest.mark.skipif(shutil.which("wrk") is None, reason=WRK_MISSING)
def test_wrk_replay_sends_every_body_byte_for_byte_in_log_order_and_counts_answered_examples(tmp_path: Path):
    """Against a stdlib HTTP server on 127.0.0.1 that records each body and refuses one of them."""
    import http.server
    import threading

    from tfstack.serving.bench import _native as native

    seen: list[bytes] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(body)
            self.send_response(400 if body == b"refused" else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    bodies = [(b'{"inputs": [1]}', 1), (b"line\nbreak ]] \x00\xff\r\n\r\n", 3), (b"refused", 7), (b"{}", 5)]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        request = native.rest_predict_request(f"http://127.0.0.1:{server.server_port}", "m", b"")
        result = native.run_wrk_replay(request, bodies, concurrency=1, duration=1, timeout=5, workdir=tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    answered = result.requests + result.errors
    assert answered >= len(bodies) and len(seen) - answered in (0, 1)  # at most the one in flight when wrk stopped
    assert seen == [bodies[i % len(bodies)][0] for i in range(len(seen))]  # from the start, in order, exact bytes
    sent = [bodies[i % len(bodies)] for i in range(answered)]
    assert result.errors == sum(1 for body, _ in sent if body == b"refused")
    assert result.examples == sum(batch for body, batch in sent if body != b"refused")


def test_bench_replay_errors_are_one_line_and_exit_2(model_base: Path, request_logs: Path, tmp_path: Path, caplog):
    base = ("--model-base-path", str(model_base), "--output-dir", str(tmp_path / "out"))
    cases = {
        "no logs": (("--model-name", "half_plus_two", "--replay", str(tmp_path / "nothing-here")), "no log files found"),
        "no request": (("--model-name", "absent", "--replay", str(request_logs)),
                       "Expected logged Predict requests for model 'absent'. Received: logs with 7 other records "
                       "(5 for model 'half_plus_two', 2 for model 'other')"),
        "with --batch-sizes": (("--model-name", "half_plus_two", "--replay", str(request_logs), "--batch-sizes", "4"),
                         "it does not combine with --batch-sizes"),
    }
    damaged = tmp_path / "damaged.tfrecord"
    damaged.write_bytes(b"this is not a TFRecord file at all")
    cases["damaged"] = (("--model-name", "half_plus_two", "--replay", str(damaged)), "is damaged or not a TFRecord file")
    torn = tmp_path / "torn" / "other-00000.tfrecord"
    torn.parent.mkdir()
    (source,) = request_logs.glob("other-*.tfrecord")
    torn.write_bytes(source.read_bytes()[:-5])  # a writer killed mid-record
    cases["torn"] = (("--model-name", "half_plus_two", "--replay", str(torn.parent)), "1 for model 'other'")
    from click.testing import CliRunner

    from tfstack.serving.bench.cli import bench

    # In-process (every case is refused before a server or load generator would start).
    for name, (arguments, expected) in cases.items():
        result = CliRunner().invoke(bench, [*arguments, *base])
        assert result.exit_code == 2, (name, result.output[-2000:])
        assert isinstance(result.exception, SystemExit), (name, result.exception)  # no traceback
        assert expected in " ".join(result.stderr.split()), (name, result.stderr[-2000:])
    assert "Skipped a torn last record in" in caplog.text  # the torn case: a warning, then the error
    assert not (tmp_path / "out").exists()  # refused before anything started
