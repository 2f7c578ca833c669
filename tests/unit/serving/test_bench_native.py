"""The C load generators' glue (tfstack.serving.bench._native) and how `tfstack bench` picks them; no server, no timing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tfstack.serving.bench import _native as native

WRK_STDOUT = """Running 2s test @ http://127.0.0.1:8501/v1/models/digits:predict
  1 threads and 32 connections
Requests/sec:   1500.00
TFSTACK_WRK {"requests":3000,"duration_us":2000000,"connect":0,"read":1,"write":0,"status":20,"timeout":2,\
"mean_us":21000.5,"max_us":90000,"p50_us":20000, "p90_us":30000, "p95_us":40000, "p99_us":80000}
"""

H2LOAD_STDOUT = """finished in 2.00s, 1000.00 req/s, 160.00KB/s
requests: 2000 total, 2001 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 420.00KB (430000) total, 60.00KB (61440) headers (space savings 96.00%), 316.41KB ({data}) data
"""


def test_grpc_frame_is_flag_length_message():
    assert native.grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert native.grpc_frame(b"") == b"\x00" * 5


def test_wrk_summary_counts_http_and_socket_errors_apart_from_successes():
    result = native.parse_wrk_output(WRK_STDOUT)
    assert result.requests == 2980  # answered minus the 20 non-2xx
    assert result.errors == 20 + 1 + 2
    assert result.elapsed_s == 2.0 and result.throughput_rps == pytest.approx(1490.0)
    assert (result.p50_ms, result.p90_ms, result.p95_ms, result.p99_ms) == (20.0, 30.0, 40.0, 80.0)
    assert result.mean_ms == pytest.approx(21.0005) and result.max_ms == 90.0


def test_wrk_without_a_summary_line_is_a_clear_error():
    with pytest.raises(native.NativeToolError, match="wrk printed no summary.*Requests/sec"):
        native.parse_wrk_output("Running 1s test\nRequests/sec: 10\n")


def test_h2load_percentiles_come_from_the_per_request_log():
    log = [f"1700000000000000\t200\t{us}" for us in range(100, 1100)] + ["1700000000000000\t-1\t5000"]
    result = native.parse_h2load_output(H2LOAD_STDOUT.format(data=1000 * 162), log, response_bytes=None)
    assert result.requests == 1000 and result.errors == 1
    assert result.elapsed_s == 2.0
    assert result.p50_ms == pytest.approx(0.5995) and result.max_ms == pytest.approx(1.099)


def test_h2load_counts_grpc_failures_that_came_as_http_200_by_their_missing_bytes():
    log = ["1\t200\t300"] * 10
    # 10 answers with HTTP 200, but only 7 carried a whole 162-byte response: 3 were gRPC errors.
    result = native.parse_h2load_output(H2LOAD_STDOUT.format(data=7 * 162), log, response_bytes=162)
    assert (result.requests, result.errors) == (7, 3)


def test_h2load_without_a_summary_is_a_clear_error():
    with pytest.raises(native.NativeToolError, match="h2load printed no summary"):
        native.parse_h2load_output("something else", [], response_bytes=None)


def test_the_wrk_script_sets_method_headers_and_body_file_without_quoting_problems(tmp_path: Path):
    request = native.rest_predict_request("http://127.0.0.1:8501/", "digits", b'{"instances": [1]}')
    assert request.url == "http://127.0.0.1:8501/v1/models/digits:predict"
    odd = tmp_path / "a]]b's \"body\".json"
    script = native.wrk_script(request, odd)
    assert "wrk.method = [[POST]]" in script
    assert "wrk.headers[ [[Content-Type]] ] = [[application/json]]" in script
    assert f"[=[{odd}]=]" in script  # a long bracket the path cannot close early
    assert "latency:percentile(99)" in script and "TFSTACK_WRK" in script


def test_grpc_requests_are_framed_with_grpc_headers():
    from tfstack.client._proto import tfstack_serving_pb2 as pb

    status = native.grpc_status_request("127.0.0.1:8500", "digits")
    assert status.url == "http://127.0.0.1:8500/tensorflow.serving.ModelService/GetModelStatus"
    assert status.headers == {"content-type": "application/grpc", "te": "trailers"}
    message = pb.GetModelStatusRequest.FromString(status.body[5:])
    assert message.model_spec.name == "digits" and status.body[1:5] == len(status.body[5:]).to_bytes(4, "big")
    predict = native.grpc_predict_request("127.0.0.1:8500", b"\x0a\x00")
    assert predict.url.endswith("/tensorflow.serving.PredictionService/Predict") and predict.body == b"\x00\x00\x00\x00\x02\x0a\x00"


def test_a_missing_tool_names_the_package_that_installs_it(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: neither tool is found
    assert native.find_tool("rest") is None and native.find_tool("grpc") is None
    assert "apt-get install wrk" in native.missing_tool_message("rest")
    assert "apt-get install nghttp2-client" in native.missing_tool_message("grpc")
    with pytest.raises(native.NativeToolError, match="h2load .* is not installed"):
        native.run_h2load(native.grpc_status_request("127.0.0.1:1", "m"), concurrency=1, duration=1, timeout=1)


def _options(**overrides):
    options = {"load_generator": "auto", "protocols": ("grpc", "rest"), "requests": None, "duration": 2.0,
               "rest": None, "grpc": None, "allow_remote": False, "model_base_path": Path("."), "warmup": 1,
               "timeout": 5.0, "enable_batching": False, "batching_modes": None, "processes": 1,
               "concurrencies": (1,), "batch_sizes": (1,), "rate": None, "replay_logs": (), "baselines": True,
               "model_name": "m", "explicit": set()}
    options.update(overrides)
    return options


def test_bench_falls_back_to_python_with_a_message_when_the_tools_are_missing(monkeypatch, tmp_path: Path):
    from tfstack.serving.bench.cli import _plan

    monkeypatch.setenv("PATH", str(tmp_path))
    plan = _plan(_options())
    assert plan["generators"] == {"grpc": "python", "rest": "python"}
    assert len(plan["notes"]) == 2 and "apt-get install wrk" in " ".join(plan["notes"])
    with pytest.raises(ValueError, match="--load-generator c: h2load .*apt-get install nghttp2-client"):
        _plan(_options(load_generator="c"))


def test_bench_uses_the_installed_tools_and_python_when_asked(monkeypatch, tmp_path: Path):
    from tfstack.serving.bench.cli import _plan

    for tool in ("wrk", "h2load"):
        (tmp_path / tool).write_text("#!/bin/sh\n")
        (tmp_path / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _plan(_options())["generators"] == {"grpc": "h2load", "rest": "wrk"}
    assert _plan(_options(load_generator="python"))["generators"] == {"grpc": "python", "rest": "python"}
    requests = _plan(_options(requests=10, duration=None))
    assert requests["generators"] == {"grpc": "python", "rest": "python"} and "--requests" in requests["notes"][0]


def test_allow_remote_lifts_the_loopback_rule_without_sending_anything():
    from tfstack.serving.bench.cli import _plan

    remote = _options(rest="http://192.0.2.10:8501", grpc="192.0.2.10:8500", model_base_path=None,
                      load_generator="python")
    with pytest.raises(ValueError, match="unless --allow-remote"):
        _plan(remote)
    plan = _plan({**remote, "allow_remote": True})
    assert plan["batching_modes"] == ("server",)


def test_native_result_without_answers_has_nan_latency():
    stdout = ('TFSTACK_WRK {"requests":0,"duration_us":1000000,"connect":3,"read":0,"write":0,"status":0,"timeout":0,'
              '"mean_us":0,"max_us":0,"p50_us":0, "p90_us":0, "p95_us":0, "p99_us":0}')
    result = native.parse_wrk_output(stdout)
    assert result.requests == 0 and result.errors == 3 and math.isnan(result.p50_ms)


# ------------------------------------------------------------------------------ REST replay on wrk


ODD_BODIES = [(b'{"inputs": [1]}', 1), (b"line\nbreak ]] ]=] \x00\xff\r\n", 3), (b"", 2), (b"7 9\n", 5)]


def _read_records(data: bytes) -> list[tuple[bytes, int]]:
    """Read the records as the Lua script does: a "<length> <batch>" line, then exactly <length> bytes."""
    records, position = [], 0
    while position < len(data):
        end = data.index(b"\n", position)
        length, batch = (int(x) for x in data[position:end].split(b" "))
        records.append((data[end + 1:end + 1 + length], batch))
        position = end + 1 + length
    return records


def test_replay_records_hold_any_bytes_and_their_offsets(tmp_path: Path):
    path = tmp_path / "records.bin"
    offsets = native.write_replay_records(path, ODD_BODIES)
    data = path.read_bytes()
    assert _read_records(data) == ODD_BODIES  # newlines, NULs, invalid UTF-8, empty: all back byte for byte
    assert [_read_records(data[offset:])[0] for offset in offsets] == ODD_BODIES
    with pytest.raises(ValueError, match="Expected at least one body"):
        native.write_replay_records(path, [])
    with pytest.raises(ValueError, match=r"batch size .* Received: -1"):
        native.write_replay_records(path, [(b"{}", -1)])


def test_each_wrk_connection_starts_at_its_own_place_in_the_log():
    offsets = [0, 10, 20, 30, 40, 50, 60, 70]
    assert native.replay_starts(offsets, 1) == [0]
    assert native.replay_starts(offsets, 4) == [0, 20, 40, 60]  # like the Python workers: k * n // C
    assert native.replay_starts(offsets[:2], 3) == [0, 0, 10]  # more connections than requests


def test_the_replay_script_reads_the_records_file_and_counts_examples_per_answer(tmp_path: Path):
    request = native.rest_predict_request("http://127.0.0.1:8501", "digits", b"")
    records = tmp_path / "odd ]] path" / "records.bin"
    script = native.wrk_replay_script(request, records, [0, 123, 4567])
    assert "local starts = { 0, 123, 4567 }" in script
    assert f"io.open([=[{records}]=], \"rb\")" in script  # a long bracket the path cannot close early
    assert "wrk.method = [[POST]]" in script and "wrk.headers[ [[Content-Type]] ] = [[application/json]]" in script
    assert "request = function()" in script and "wrk.format(nil, nil, nil, body)" in script
    # One connection per thread: the answer belongs to the request just sent; errors as wrk counts them.
    assert "if status < 400 then\n    examples = examples + current" in script
    assert 'thread:get("examples")' in script and '"examples":%d' in script and "TFSTACK_WRK" in script
    assert "inputs" not in script  # no body is inlined into the script


def test_the_wrk_summary_carries_the_replayed_examples():
    stdout = ('TFSTACK_WRK {"requests":40,"duration_us":1000000,"connect":0,"read":0,"write":0,"status":2,"timeout":0,'
              '"mean_us":900,"max_us":5000,"p50_us":800, "p90_us":1000, "p95_us":1200, "p99_us":4000,"examples":107}')
    result = native.parse_wrk_output(stdout)
    assert (result.requests, result.errors, result.examples) == (38, 2, 107)
    assert native.parse_wrk_output(WRK_STDOUT).examples is None  # a fixed request: examples = requests x batch size
