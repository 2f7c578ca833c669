"""`tfstack bench` statistics, planning, inputs and reports on synthetic data (no server, no timing)."""

from __future__ import annotations

import base64
import csv
import json
import math

import numpy as np
import pytest

from tfstack.client import SignatureInfo, TensorInfo
from tfstack.client._proto import tfstack_serving_pb2 as pb
from tfstack.client._tensors import to_ndarray
from tfstack.serving import bench
from tfstack.serving.bench import LatencyStats, Limits, Measurement, Scenario


# --------------------------------------------------------------------------- statistics


def test_percentile_interpolates_between_ranks_like_numpy():
    samples = list(range(1, 101))  # 1..100
    assert bench.percentile(samples, 50) == pytest.approx(50.5)
    assert bench.percentile(samples, 99) == pytest.approx(99.01)
    assert bench.percentile(samples, 0) == 1
    assert bench.percentile(samples, 100) == 100
    assert bench.percentile([7.0], 95) == 7.0


def test_percentile_of_nothing_is_nan_and_bad_q_is_rejected():
    assert math.isnan(bench.percentile([], 50))
    with pytest.raises(ValueError, match=r"Received: q=101"):
        bench.percentile([1.0], 101)


def test_summarize_reports_milliseconds_throughput_and_errors():
    rng = np.random.default_rng(0)
    latencies = rng.permutation(np.arange(1, 1001) / 1e3)  # 1 ms .. 1000 ms, shuffled
    stats = bench.summarize(latencies, errors=3, elapsed_s=2.0)
    assert stats.requests == 1000
    assert stats.errors == 3
    assert stats.throughput_rps == pytest.approx(500.0)  # successes only
    assert stats.p50_ms == pytest.approx(500.5)
    assert stats.p90_ms == pytest.approx(900.1)
    assert stats.p95_ms == pytest.approx(950.05)
    assert stats.p99_ms == pytest.approx(990.01)
    assert stats.max_ms == pytest.approx(1000.0)
    assert stats.mean_ms == pytest.approx(500.5)
    assert stats.p50_ms <= stats.p90_ms <= stats.p95_ms <= stats.p99_ms <= stats.max_ms


def test_summarize_with_only_errors_has_zero_throughput_and_nan_latency():
    stats = bench.summarize([], errors=5, elapsed_s=1.0)
    assert stats.requests == 0 and stats.errors == 5 and stats.throughput_rps == 0
    assert math.isnan(stats.p50_ms) and math.isnan(stats.p99_ms)


@pytest.mark.parametrize("kwargs, match", [
    ({"errors": -1, "elapsed_s": 1.0}, "errors=-1"),
    ({"errors": 0, "elapsed_s": 0.0}, "elapsed_s=0.0"),
])
def test_summarize_rejects_impossible_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bench.summarize([0.001], **kwargs)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("kwargs", [{"duration": None, "requests": None}, {"duration": 1.0, "requests": 10}])
def test_limits_need_exactly_one_bound(kwargs):
    with pytest.raises(ValueError, match="Exactly one of `duration` and `requests`"):
        Limits(**kwargs)


def test_limits_reject_non_positive_values():
    with pytest.raises(ValueError, match="requests=0"):
        Limits(duration=None, requests=0)
    with pytest.raises(ValueError, match="duration=-1"):
        Limits(duration=-1)


def test_plan_runs_baselines_then_floor_and_predict_per_concurrency_then_open_loop():
    plan = bench.plan_scenarios(protocols=("grpc", "rest"), concurrencies=(1, 4), batch_sizes=(1, 8), rate=100.0)
    kinds = [s.kind for s in plan]
    assert kinds[:5] == ["in-process", "in-process", "official-stub", "tfstack-client", "tfstack-client"]
    closed = [s for s in plan[5:] if s.rate is None]
    # per protocol and concurrency: one floor + one predict per batch size
    assert len(closed) == 2 * 2 * 3
    assert {(s.protocol, s.concurrency) for s in closed if s.kind == "floor"} == {
        ("grpc", 1), ("grpc", 4), ("rest", 1), ("rest", 4)}
    open_loop = [s for s in plan if s.rate is not None]
    assert [(s.protocol, s.batch_size, s.mode) for s in open_loop] == [
        ("grpc", 1, "open"), ("grpc", 8, "open"), ("rest", 1, "open"), ("rest", 8, "open")]


def test_plan_without_grpc_has_no_official_stub_and_without_model_dir_no_in_process():
    plan = bench.plan_scenarios(protocols=("rest",), concurrencies=(1,), batch_sizes=(1,), in_process=False)
    assert [s.kind for s in plan] == ["tfstack-client", "floor", "predict"]


def test_plan_gives_closed_loop_runs_to_the_c_generators_and_open_loop_to_python():
    plan = bench.plan_scenarios(protocols=("grpc", "rest"), concurrencies=(1, 32), batch_sizes=(1,), rate=50.0,
                                 baselines=False, generators={"grpc": "h2load", "rest": "wrk"})
    closed = {(s.protocol, s.generator) for s in plan if s.rate is None}
    assert closed == {("grpc", "h2load"), ("rest", "wrk")}
    assert {s.generator for s in plan if s.rate is not None} == {"python"}
    assert "(wrk)" in next(s.label for s in plan if s.generator == "wrk")
    with pytest.raises(ValueError, match="generators="):
        bench.plan_scenarios(protocols=("rest",), concurrencies=(1,), batch_sizes=(1,), generators={"rest": "ab"})


@pytest.mark.parametrize("kwargs, match", [
    ({"protocols": ("http",)}, r"protocols=\('http',\)"),
    ({"concurrencies": (0,)}, r"concurrencies=\(0,\)"),
    ({"batch_sizes": ()}, r"batch_sizes=\(\)"),
    ({"rate": 0.0}, "rate=0.0"),
])
def test_plan_rejects_bad_sweeps(kwargs, match):
    arguments = {"protocols": ("grpc",), "concurrencies": (1,), "batch_sizes": (1,), **kwargs}
    with pytest.raises(ValueError, match=match):
        bench.plan_scenarios(**arguments)


@pytest.mark.parametrize("address", ["127.0.0.1:8500", "http://127.0.0.1:8501", "localhost:1", "http://[::1]:8501",
                                     "127.0.0.2:9"])
def test_loopback_targets_are_accepted(address):
    bench.require_loopback(address, what="--grpc")


@pytest.mark.parametrize("address", ["10.0.0.7:8500", "http://example.com:8501", "0.0.0.0:8500", "https://192.168.1.2"])
def test_non_loopback_targets_are_refused_with_the_address(address):
    with pytest.raises(ValueError, match=r"only targets servers on this machine.*--allow-remote.*Received: --rest="):
        bench.require_loopback(address, what="--rest")


# --------------------------------------------------------------------------- inputs


def _signature(**inputs: tuple[str, tuple]) -> SignatureInfo:
    return SignatureInfo(
        method_name="tensorflow/serving/predict",
        inputs={name: TensorInfo(name=name, dtype=dtype, shape=shape) for name, (dtype, shape) in inputs.items()},
    )


def _decode(payload: bench.Payload) -> tuple[pb.PredictRequest, dict]:
    request = pb.PredictRequest.FromString(payload.grpc_request)
    return request, json.loads(payload.rest_body)


def test_payloads_cycle_sample_rows_up_to_the_batch_size_in_both_wire_formats():
    sample = {"signature_name": "serving_default", "inputs": {"pixels": [[1.0, 2.0], [3.0, 4.0]]}}
    signature = _signature(pixels=("float32", (None, 2)))
    payloads = bench.build_payloads(model_name="m", signature_name="serving_default", signature=signature,
                                     sample_body=sample, batch_sizes=(1, 3))
    request, body = _decode(payloads[3])
    assert request.model_spec.name == "m" and request.model_spec.signature_name == "serving_default"
    np.testing.assert_array_equal(to_ndarray(request.inputs["pixels"]), [[1, 2], [3, 4], [1, 2]])
    assert body == {"signature_name": "serving_default", "inputs": {"pixels": [[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]]}}
    assert payloads[1].inputs["pixels"].shape == (1, 2) and payloads[1].inputs["pixels"].dtype == np.float32


def test_payloads_from_row_format_with_b64_strings():
    raw = b"\x00\xffbin"
    sample = {"instances": [{"text": {"b64": base64.b64encode(raw).decode()}, "n": 3}]}
    signature = _signature(text=("string", (None,)), n=("int64", (None,)))
    payload = bench.build_payloads(model_name="m", signature_name="s", signature=signature,
                                    sample_body=sample, batch_sizes=(2,))[2]
    request, body = _decode(payload)
    assert list(request.inputs["text"].string_val) == [raw, raw]
    assert body["inputs"]["n"] == [3, 3]
    assert payload.inputs["n"].dtype == np.int64


def test_payloads_are_synthesized_from_metadata_without_a_sample():
    signature = _signature(pixels=("float32", (None, 8, 8)), word=("string", (-1,)))
    payload = bench.build_payloads(model_name="m", signature_name="s", signature=signature,
                                    sample_body=None, batch_sizes=(4,))[4]
    assert payload.inputs["pixels"].shape == (4, 8, 8) and not payload.inputs["pixels"].any()
    assert payload.inputs["word"].tolist() == [b""] * 4


def test_a_sample_missing_an_input_is_refused_with_the_names():
    with pytest.raises(ValueError, match=r"lacks inputs \['n'\]"):
        bench.build_payloads(model_name="m", signature_name="s", signature=_signature(x=("float32", (None,)), n=("int64", (None,))),
                              sample_body={"inputs": {"x": [1.0]}}, batch_sizes=(1,))


# --------------------------------------------------------------------------- targets and reports


def _measurement(kind: str, protocol: str, p50_ms: float, rps: float, *, concurrency: int = 1, batch: int = 1,
                 batching: str = "off", errors: int = 0) -> Measurement:
    stats = LatencyStats(requests=int(rps), errors=errors, elapsed_s=1.0, throughput_rps=rps, mean_ms=p50_ms,
                         p50_ms=p50_ms, p90_ms=p50_ms * 1.5, p95_ms=p50_ms * 2, p99_ms=p50_ms * 3, max_ms=p50_ms * 4)
    scenario = Scenario(kind=kind, protocol=protocol, concurrency=concurrency, batch_size=batch, batching=batching)
    return Measurement(scenario=scenario, stats=stats, processes=1, load_avg_1m=0.5)


SYNTHETIC = [
    _measurement("in-process", "", 0.25, 4000),
    _measurement("official-stub", "grpc", 1.0, 1000),
    _measurement("tfstack-client", "grpc", 1.05, 950),
    _measurement("tfstack-client", "rest", 1.5, 600),
    _measurement("floor", "grpc", 0.70, 1400),
    _measurement("predict", "grpc", 1.05, 950),  # 1.05 - 0.70 - 0.25 = 0.10 ms: within 150 us
    _measurement("floor", "rest", 0.40, 2500),
    _measurement("predict", "rest", 1.00, 1000, errors=2),  # 1.00 - 0.40 - 0.25 = 0.35 ms: over 250 us
    _measurement("floor", "grpc", 20.0, 1600, concurrency=32, batching="on"),
    _measurement("predict", "grpc", 25.0, 1300, concurrency=32, batching="on"),
    _measurement("predict", "grpc", 60.0, 500, concurrency=32, batching="off"),
]


def test_breakdown_splits_predict_latency_and_compares_throughput_with_the_empty_request():
    lines = bench.breakdown(SYNTHETIC)
    assert ("grpc (python), batching off: c=1 Predict p50 1,050 us = empty request 700 us + model in-process 250 us "
            "+ request path 100 us") in lines
    assert ("rest (python), batching off: c=1 Predict p50 1,000 us = empty request 400 us + model in-process 250 us "
            "+ request path 350 us") in lines
    assert "grpc (python), batching on: c=32 Predict 1,300/s = 0.81x the empty request's 1,600/s" in lines
    # batching off at c=32 has no empty request of its own in this set: no line for it
    assert not any("batching off: c=32" in line for line in lines)


def test_ratios_compare_clients_with_the_official_stub_and_predict_with_in_process():
    ratios = bench.baseline_ratios(SYNTHETIC)
    assert ratios["tfstack client grpc p50 / official stub p50"] == pytest.approx(1.05)
    assert ratios["grpc predict c=1 b=1 p50 / in-process p50"] == pytest.approx(4.2)


def test_csv_json_markdown_and_chart_hold_every_measurement(tmp_path):
    bench.write_csv(SYNTHETIC, tmp_path / "bench.csv")
    bench.write_json(SYNTHETIC, tmp_path / "bench.json", command="tfstack bench ...", extra={"plan": {}})
    bench.write_chart(SYNTHETIC, tmp_path / "bench.png")
    with open(tmp_path / "bench.csv", newline="") as source:
        rows = list(csv.DictReader(source))
    assert len(rows) == len(SYNTHETIC)
    assert rows[7]["errors"] == "2" and float(rows[7]["throughput_rps"]) == 1000
    document = json.loads((tmp_path / "bench.json").read_text())
    assert len(document["measurements"]) == len(SYNTHETIC)
    assert document["machine"]["nproc"] >= 1 and "load_avg_1m" in document["measurements"][0]
    assert document["breakdown"] == bench.breakdown(SYNTHETIC)
    assert "targets" not in document and "issue" not in json.dumps(document)
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = bench.markdown_table(SYNTHETIC).splitlines()
    assert len(markdown) == 2 + len(SYNTHETIC) and markdown[0].startswith("| scenario |")


def test_the_terminal_table_fits_100_columns_and_names_no_project_bookkeeping():
    from rich.console import Console

    console = Console(width=200, record=True)
    with console.capture() as capture:
        console.print(bench.results_table(SYNTHETIC))
    text = capture.get()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 100
    assert "issue" not in text.lower() and "target" not in text.lower()
    assert "empty" in text and "0.81" in text  # the batching-on Predict / empty request ratio


def test_chart_ticks_are_plain_numbers_and_the_baselines_are_drawn(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda self, *a, **k: figures.append(self))
    bench.write_chart(SYNTHETIC, tmp_path / "bench.png")
    (figure,) = figures
    axis = figure.axes[0]
    figure.canvas.draw()
    labels = [t.get_text() for t in axis.get_xticklabels() + axis.get_yticklabels() if t.get_text()]
    assert labels and not any("^" in label or "e+" in label or "$" in label for label in labels), labels
    legend = [line.get_label() for line in axis.get_lines()]
    assert any(label.startswith("in-process") for label in legend)
    assert any(label.startswith("official-stub grpc") for label in legend)
    assert any("empty request" in label for label in legend)


# --------------------------------------------------------------------------- command line (fails before any I/O)


@pytest.mark.parametrize("arguments, message", [
    (["--grpc", "10.1.2.3:8500", "--protocol", "grpc"], "only targets servers on this machine"),
    (["--rest", "http://192.168.7.7:8501", "--protocol", "rest"], "unless --allow-remote"),
    (["--grpc", "127.0.0.1:1", "--protocol", "grpc", "--requests", "5", "--load-generator", "c"],
     "run for a --duration, not a number of requests"),
    (["--rest", "http://127.0.0.1:8501"], "--protocol includes grpc but no --grpc address"),
    (["--rest", "http://127.0.0.1:8501", "--protocol", "rest", "--enable_batching"], "a running server's batching"),
    (["--grpc", "127.0.0.1:1", "--protocol", "grpc", "--duration", "1", "--requests", "5"], "not both"),
    ([], "Give --model-base-path"),
    (["--grpc", "127.0.0.1:1", "--concurrency", "1,x"], "comma-separated integers"),
    (["--grpc", "127.0.0.1:1", "--protocol", "grpc,http"], "subset of grpc,rest"),
])
def test_bench_cli_rejects_bad_arguments_with_what_it_received(arguments, message, tmp_path):
    from click.testing import CliRunner

    from tfstack.serving.bench.cli import bench

    result = CliRunner().invoke(bench, ["--model-name", "m", "--output-dir", str(tmp_path / "out"), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()
