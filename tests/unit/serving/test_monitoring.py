"""Monitoring config parsing and the Prometheus page in TF Serving's format (no TensorFlow)."""

from __future__ import annotations

import pytest

from tfstack.serving._errors import Code, StatusError
from tfstack.serving.server._monitoring import (
    DEFAULT_METRICS_PATH,
    ServerMetrics,
    label_name,
    metric_name,
    metrics_from_flags,
    parse_monitoring_config,
    read_monitoring_config,
)


def test_parses_tf_servings_example_config():
    config = parse_monitoring_config('prometheus_config {\n  enable: true,\n  path: "/monitoring/prometheus/metrics"\n}\n')
    assert config.prometheus_config.enable and config.prometheus_config.path == DEFAULT_METRICS_PATH


def test_empty_path_means_the_default_path():
    assert parse_monitoring_config("prometheus_config { enable: true }").prometheus_config.path == DEFAULT_METRICS_PATH
    assert parse_monitoring_config("prometheus_config { path: '/m' }").prometheus_config.path == "/m"


def test_unparsable_file_is_invalid_protobuf_file(tmp_path):
    path = tmp_path / "monitoring.config"
    path.write_text("improperly formatted file")
    with pytest.raises(StatusError) as info:
        read_monitoring_config(path)
    assert info.value.code is Code.INVALID_ARGUMENT and info.value.message == f"Invalid protobuf file: '{path}'"


def test_config_is_only_read_with_rest(tmp_path):
    path = tmp_path / "monitoring.config"
    path.write_text("not a config")
    assert metrics_from_flags(0, str(path)) == (None, DEFAULT_METRICS_PATH)
    path.write_text("prometheus_config { enable: false }")
    assert metrics_from_flags(8501, str(path))[0] is None
    path.write_text("prometheus_config { enable: true path: '/metrics' }")
    metrics, where = metrics_from_flags(8501, str(path))
    assert isinstance(metrics, ServerMetrics) and where == "/metrics"


def test_names_are_sanitised_like_tf_servings_exporter():
    assert metric_name("/tensorflow/serving/request_count") == ":tensorflow:serving:request_count"
    assert metric_name("0abc/x") == "_0abc:x"
    assert label_name("my-name+1") == "my_name_1"
    assert label_name("1x") == "_1x"


def test_empty_registry_renders_only_a_newline():
    assert ServerMetrics().page() == "\n"


def test_counter_has_type_line_no_help_and_no_total_or_created():
    metrics = ServerMetrics()
    metrics.observe_rest("half_plus_two", "predict", Code.OK, 0.002)
    metrics.observe_rest("", "", Code.INVALID_ARGUMENT, 0.001)
    page = metrics.page()
    assert page.endswith("\n") and "# HELP" not in page and "_total" not in page and "_created" not in page
    lines = page.splitlines()
    assert lines[0] == "# TYPE :tensorflow:serving:request_count counter"
    assert ':tensorflow:serving:request_count{model_name="half_plus_two",status="OK"} 1' in lines
    assert ':tensorflow:serving:request_count{model_name="",status="INVALID_ARGUMENT"} 1' in lines


def test_histogram_has_33_buckets_plus_inf_then_sum_and_count():
    metrics = ServerMetrics()
    metrics.observe_request("m", "Predict", Code.OK, 0.000_020, entrypoint="GRPC")  # 20 µs
    metrics.observe_request("m", "Predict", Code.NOT_FOUND, 1.0, entrypoint="GRPC")  # errors: count only
    lines = [line for line in metrics.page().splitlines() if "request_latency" in line]
    assert lines[0] == "# TYPE :tensorflow:serving:request_latency histogram"
    buckets = [line for line in lines if "_bucket" in line]
    assert len(buckets) == 34
    assert buckets[0] == ':tensorflow:serving:request_latency_bucket{model_name="m",API="Predict",entrypoint="GRPC",le="10"} 0'
    assert buckets[1].endswith('le="18"} 0') and buckets[2].endswith('le="32.4"} 1')
    assert buckets[-1].endswith('le="+Inf"} 1')
    assert lines[-2] == ':tensorflow:serving:request_latency_sum{model_name="m",API="Predict",entrypoint="GRPC"} 20'
    assert lines[-1] == ':tensorflow:serving:request_latency_count{model_name="m",API="Predict",entrypoint="GRPC"} 1'


def test_label_values_escape_backslash_and_quote():
    metrics = ServerMetrics()
    metrics.observe_rest('a"b\\c', "predict", Code.NOT_FOUND, 0.0)
    assert ':tensorflow:serving:request_count{model_name="a\\"b\\\\c",status="NOT_FOUND"} 1' in metrics.page()


def test_per_version_series_use_their_own_names():
    metrics = ServerMetrics()
    metrics.observe_inference("m", 7, "Predict", Code.OK, 0.001)
    metrics.observe_inference("m", 7, "Predict", Code.INVALID_ARGUMENT, 0.001)
    page = metrics.page()
    assert ':tensorflow:serving:request_count_by_version{model_name="m",version="7",status="OK"} 1' in page
    assert ':tensorflow:serving:request_count_by_version{model_name="m",version="7",status="INVALID_ARGUMENT"} 1' in page
    assert ':tensorflow:serving:runtime_latency_count{model_name="m",API="Predict",runtime="TF1"} 1' in page
    assert ':tensorflow:serving:runtime_latency_by_version_count{model_name="m",version="7",API="Predict"} 1' in page
    assert ":tensorflow:serving:request_count{" not in page  # TF Serving's series are untouched


def test_batching_queuing_latency_by_thread_pool():
    metrics = ServerMetrics()
    metrics.observe_queuing(0.000_5, "model_server_batch_threads")
    assert "wrapped_run_count" not in metrics.page()  # no cell until a batch ran
    metrics.observe_batch(3, 4)
    page = metrics.page()
    assert ':tensorflow:serving:batching_session:queuing_latency_count{thread_pool_name="model_server_batch_threads"} 1' in page
    assert ":tensorflow:serving:batching_session:wrapped_run_count{} 1" in page


def test_load_and_warmup_metrics_use_tf_servings_names():
    metrics = ServerMetrics()
    metrics.observe_load_attempt("/models/m/1", True, 0.25)
    metrics.observe_load_attempt("/models/m/2", False, 0.01)
    metrics.observe_warmup("/models/m/1", Code.OK, 0.0015, 3)
    page = metrics.page()
    assert ':tensorflow:cc:saved_model:load_attempt_count{model_path="/models/m/1",status="success"} 1' in page
    assert ':tensorflow:cc:saved_model:load_attempt_count{model_path="/models/m/2",status="fail"} 1' in page
    assert ':tensorflow:cc:saved_model:load_latency{model_path="/models/m/1"} 250000' in page
    assert ':tensorflow:serving:model_warmup_latency_sum{model_path="/models/m/1",status="OK"} 1500' in page
    assert ':tensorflow:serving:model_warmup_records_read{model_path="/models/m/1",status="OK"} 3' in page


def test_metrics_sorted_by_name_and_cells_by_label_values_like_tf_serving():
    metrics = ServerMetrics()
    metrics.observe_rest("zeta", "predict", Code.NOT_FOUND, 0.0)
    metrics.observe_rest("alpha", "predict", Code.NOT_FOUND, 0.0)
    metrics.observe_queuing(0.001, "pool")
    page = metrics.page()
    types = [line.split()[2] for line in page.splitlines() if line.startswith("# TYPE")]
    assert types == sorted(types)
    assert page.index('model_name="alpha"') < page.index('model_name="zeta"')
