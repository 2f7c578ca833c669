"""Prometheus monitoring as TF Serving exposes it (`--monitoring_config_file`, spec §7).

Metrics live in a private prometheus-client registry, but the page is rendered by our own
formatter: TF Serving's exporter writes no `# HELP` lines, counters without `_total`, no
`_created` samples, and names made from TF metric paths (`/tensorflow/serving/request_count`
→ `:tensorflow:serving:request_count`). Dashboards built against TF Serving keep working.

tfstack adds per-version series under separate names, so TF Serving's stay identical
(tensorflow/serving#1970): `:tensorflow:serving:request_count_by_version{model_name,version,status}`
and `:tensorflow:serving:runtime_latency_by_version{model_name,version,API}`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from typing import Any

from tfstack.serving._errors import Code, StatusError
from tfstack.serving.server._protos import message_class

logger = logging.getLogger("tfstack.serving")

DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"

# request/runtime latency: microseconds, 10 * 1.8^i for 33 buckets (servables/tensorflow/util.cc).
LATENCY_BUCKETS_MICROS: tuple[float, ...] = tuple(10 * 1.8**i for i in range(33))
_GRPC_APIS = {
    "/tensorflow.serving.PredictionService/Predict": "Predict",
    "/tensorflow.serving.PredictionService/Classify": "Classify",
    "/tensorflow.serving.PredictionService/Regress": "Regress",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrometheusConfig:
    """`tensorflow.serving.PrometheusConfig`: whether to serve the page, and where."""

    enable: bool = False
    path: str = DEFAULT_METRICS_PATH


@dataclasses.dataclass(frozen=True, kw_only=True)
class MonitoringConfig:
    """`tensorflow.serving.MonitoringConfig` (only prometheus_config exists)."""

    prometheus_config: PrometheusConfig = PrometheusConfig()


def _monitoring_config_proto_class():
    """`tensorflow.serving.MonitoringConfig` (the pip package lacks it)."""
    return message_class(
        "tfstack/monitoring_config.proto", "proto3",
        (("PrometheusConfig", (("enable", 1, "bool"), ("path", 2, "string"))),
         ("MonitoringConfig", (("prometheus_config", 1, "message", "PrometheusConfig"),))),
        "MonitoringConfig",
    )


def parse_monitoring_config(text: str, *, path: str = "<text>") -> MonitoringConfig:
    """Parse a text-format MonitoringConfig; an empty path means the default one.

    Raises:
        StatusError: INVALID_ARGUMENT `Invalid protobuf file: '<path>'` when it does not parse.
    """
    from google.protobuf import text_format

    proto = _monitoring_config_proto_class()()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        logger.error("Failed to parse MonitoringConfig file %s: %s", path, exc)
        raise StatusError(Code.INVALID_ARGUMENT, f"Invalid protobuf file: '{path}'") from exc
    prometheus = proto.prometheus_config
    return MonitoringConfig(
        prometheus_config=PrometheusConfig(enable=prometheus.enable, path=prometheus.path or DEFAULT_METRICS_PATH)
    )


def read_monitoring_config(path: str | os.PathLike[str]) -> MonitoringConfig:
    """Read `--monitoring_config_file` (unreadable files are reported like unparsable ones)."""
    from tfstack.serving.server._model_config import read_text_proto_file

    path = os.fspath(path)
    return parse_monitoring_config(read_text_proto_file(path, what="MonitoringConfig"), path=path)


# ------------------------------------------------------------------------------ exposition


def metric_name(tf_name: str) -> str:
    """A TF metric path as TF Serving's exporter names it: `[^a-zA-Z0-9_]` → `:`, `_` before a digit."""
    name = re.sub(r"[^a-zA-Z0-9_]", ":", tf_name)
    return "_" + name if name[:1].isdigit() else name


def label_name(name: str) -> str:
    """A label name as TF Serving's exporter writes it (`my-name+1` → `my_name_1`)."""
    name = re.sub(r"[^a-zA-Z0-9]", "_", name)
    return "_" + name if name[:1].isdigit() else name


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer() and abs(value) < 2**63:
        return str(int(value))
    return "%.6g" % value  # absl::StrCat(double)


def _labels(labels: dict[str, str], extra: tuple[str, str] | None = None) -> str:
    parts = [f'{label_name(k)}="{_label_value(str(v))}"' for k, v in labels.items() if k != "le"]
    if extra is not None:
        parts.append(f'{extra[0]}="{extra[1]}"')
    return "{" + ",".join(parts) + "}"


def _histogram_order(samples: list) -> list:
    """Per labelled cell: its buckets, then `_sum`, then `_count`."""
    cells: dict[tuple, list] = {}
    for sample in samples:
        key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        cells.setdefault(key, []).append(sample)
    rank = {"_bucket": 0, "_sum": 1, "_count": 2}
    ordered: list = []
    for _, cell in sorted(cells.items(), key=lambda item: [v for _, v in item[0]]):
        ordered += sorted(cell, key=lambda s: rank.get(s.name[s.name.rfind("_"):], 3))
    return ordered


def render_prometheus(registry) -> str:
    """The registry's metrics in TF Serving's text format (no HELP, plain counter names, `\\n`-joined).

    Metrics without any labelled cell yet are left out, as in TF Serving.
    """
    lines: list[str] = []
    # TF Serving walks std::maps: metrics sorted by name, cells by their label values.
    for family in sorted(registry.collect(), key=lambda f: f.name):
        kind = family.type if family.type in ("counter", "gauge", "histogram") else "untyped"
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        if kind != "histogram":
            samples.sort(key=lambda s: list(s.labels.values()))
        else:
            # prometheus-client yields buckets, count, sum; TF Serving writes buckets, sum, count.
            samples = _histogram_order(samples)
        if not samples:
            continue
        lines.append(f"# TYPE {family.name} {kind}")
        for sample in samples:
            name = sample.name
            if kind == "counter" and name.endswith("_total"):
                name = name[: -len("_total")]
            if kind == "histogram" and name.endswith("_bucket"):
                le = float(sample.labels["le"])
                lines.append(f"{name}{_labels(sample.labels, ('le', _number(le)))} {_number(sample.value)}")
            else:
                lines.append(f"{name}{_labels(sample.labels)} {_number(sample.value)}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ metrics


class ServerMetrics:
    """TF Serving's metrics (spec §7 table) plus tfstack's per-version series, in one registry.

    The `observe_*` methods are the hooks the server wires into REST, gRPC, the core, the batch
    scheduler and the model lifecycle; `page()` renders the Prometheus text.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=False)
        r, micros = self.registry, LATENCY_BUCKETS_MICROS

        def counter(tf_name: str, labels: list[str]) -> Any:
            return Counter(metric_name(tf_name), tf_name, labels, registry=r)

        def histogram(tf_name: str, labels: list[str]) -> Any:
            return Histogram(metric_name(tf_name), tf_name, labels, registry=r, buckets=micros)

        self.request_count = counter("/tensorflow/serving/request_count", ["model_name", "status"])
        self.request_latency = histogram("/tensorflow/serving/request_latency", ["model_name", "API", "entrypoint"])
        self.runtime_latency = histogram("/tensorflow/serving/runtime_latency", ["model_name", "API", "runtime"])
        self.request_count_by_version = counter(
            "/tensorflow/serving/request_count_by_version", ["model_name", "version", "status"]
        )
        self.runtime_latency_by_version = histogram(
            "/tensorflow/serving/runtime_latency_by_version", ["model_name", "version", "API"]
        )
        self.queuing_latency = histogram("/tensorflow/serving/batching_session/queuing_latency", ["thread_pool_name"])
        # Label-less: created on first use, so the page only shows it once batching has run.
        self.wrapped_run_count: Any = None
        self._counter = counter
        self.warmup_latency = histogram("/tensorflow/serving/model_warmup_latency", ["model_path", "status"])
        self.warmup_records_read = counter("/tensorflow/serving/model_warmup_records_read", ["model_path", "status"])
        self.load_attempt_count = counter("/tensorflow/cc/saved_model/load_attempt_count", ["model_path", "status"])
        self.load_latency = counter("/tensorflow/cc/saved_model/load_latency", ["model_path"])
        self.request_log_count = counter("/tensorflow/serving/request_log_count", ["model_name", "status_code"])
        # tfstack's own: sampled requests the log writer could not keep up with.
        self.request_log_dropped = counter("/tensorflow/serving/request_log_dropped", ["model_name"])

    def page(self) -> str:
        """The Prometheus text page."""
        return render_prometheus(self.registry)

    def observe_request(self, model_name: str, api: str, code: Code, seconds: float, *, entrypoint: str) -> None:
        """One finished REST or gRPC request (latency is recorded for successful ones only)."""
        self.request_count.labels(model_name, Code(code).name).inc()
        if code == Code.OK:
            self.request_latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

    def observe_rest(self, model_name: str, api: str, code: Code, seconds: float) -> None:
        """`build_rest_app(on_request=...)`: every /v1 request."""
        self.observe_request(model_name, api, code, seconds, entrypoint="REST")

    def observe_inference(self, model_name: str, version: int, api: str, code: Code, seconds: float) -> None:
        """`ServerCore.on_inference`: one Predict/Classify/Regress that reached a loaded version."""
        self.request_count_by_version.labels(model_name, str(version), Code(code).name).inc()
        if code == Code.OK:
            self.runtime_latency.labels(model_name, api, "TF1").observe(seconds * 1e6)
            self.runtime_latency_by_version.labels(model_name, str(version), api).observe(seconds * 1e6)

    def observe_queuing(self, seconds: float, thread_pool_name: str) -> None:
        """`BatchScheduler(on_queued=...)`: how long one task waited for its batch to start."""
        self.queuing_latency.labels(thread_pool_name).observe(seconds * 1e6)

    def observe_batch(self, size: int, padded_size: int) -> None:
        """`BatchScheduler(on_batch=...)`: one merged run of the model."""
        if self.wrapped_run_count is None:
            self.wrapped_run_count = self._counter("/tensorflow/serving/batching_session/wrapped_run_count", [])
        self.wrapped_run_count.inc()

    def observe_request_log(self, model_name: str, status_code: str) -> None:
        """`ServerRequestLogger(on_logged=...)`: one sampled request written (or failed), as request_logger.cc counts."""
        self.request_log_count.labels(model_name, status_code).inc()

    def observe_request_log_dropped(self, model_name: str) -> None:
        """`ServerRequestLogger(on_dropped=...)`: one sampled request dropped because the writer fell behind."""
        self.request_log_dropped.labels(model_name).inc()

    def grpc_interceptor(self):
        """A grpc.aio server interceptor counting Predict/Classify/Regress like TF Serving."""
        return _make_interceptor_class()(self)

    def observe_load_attempt(self, model_path: str, ok: bool, seconds: float) -> None:
        """`ModelManager(observer=...)`: one attempt to load a version (warmup included), as TF's loader counts."""
        self.load_attempt_count.labels(model_path, "success" if ok else "fail").inc()
        if ok:
            self.load_latency.labels(model_path).inc(int(seconds * 1e6))

    def observe_warmup(self, model_path: str, code: Code, seconds: float, records: int) -> None:
        """`ModelManager(observer=...)`: one warmup replay of a version's records."""
        status = Code(code).name
        self.warmup_latency.labels(model_path, status).observe(seconds * 1e6)
        self.warmup_records_read.labels(model_path, status).inc(records)


def _grpc_code_to_code(status: Any) -> Code:
    name = getattr(status, "name", None)
    if name and name in Code.__members__:
        return Code[name]
    try:
        return Code(int(status.value[0] if isinstance(getattr(status, "value", None), tuple) else status))
    except (TypeError, ValueError):
        return Code.UNKNOWN


class _GrpcMetricsInterceptor:
    def __init__(self, metrics: ServerMetrics) -> None:
        import grpc

        self._metrics = metrics
        self._grpc = grpc

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        api = _GRPC_APIS.get(handler_call_details.method)
        if handler is None or api is None or handler.unary_unary is None:
            return handler
        grpc, inner, metrics = self._grpc, handler.unary_unary, self._metrics

        async def observed(request, context):
            started, code = time.perf_counter(), Code.OK
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                code = _grpc_code_to_code(context.code())
                raise
            except BaseException:
                code = Code.UNKNOWN
                raise
            finally:
                # An undecodable request (tfstack.serving.server.grpc._service.Undecodable) has no model_spec.
                has_spec = hasattr(request, "HasField") and request.HasField("model_spec")
                model_name = request.model_spec.name if has_spec else ""
                try:
                    metrics.observe_request(model_name, api, code, time.perf_counter() - started, entrypoint="GRPC")
                except Exception:  # metrics must never fail a request
                    logger.exception("gRPC metrics observer failed")

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


# grpc.aio wants a real ServerInterceptor subclass; define it lazily so importing stays cheap.
def _make_interceptor_class():
    import grpc

    return type("GrpcMetricsInterceptor", (_GrpcMetricsInterceptor, grpc.aio.ServerInterceptor), {})


def metrics_from_flags(rest_api_port: int, monitoring_config_file: str) -> tuple[ServerMetrics | None, str]:
    """(metrics, page path) for `--monitoring_config_file`; (None, path) when Prometheus is off.

    TF Serving reads the file only when REST is enabled (the page is served on the REST port).

    Raises:
        StatusError: the file does not parse (a startup error).
    """
    if not monitoring_config_file or not rest_api_port:
        return None, DEFAULT_METRICS_PATH
    config = read_monitoring_config(monitoring_config_file).prometheus_config
    if not config.enable:
        return None, config.path
    if not config.path.startswith("/"):
        raise StatusError(
            Code.INVALID_ARGUMENT, f"prometheus_config.path must start with '/'. Received: path={config.path!r}"
        )
    logger.info("Prometheus metrics are served at %s on the REST port", config.path)
    return ServerMetrics(), config.path
