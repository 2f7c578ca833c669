"""Request logging: `logging_config` in models.config, written as PredictionLog TFRecord files.

TF Serving defines the hook (ModelConfig.logging_config, `core/server_request_logger.cc`,
`core/request_logger.cc`, `core/log_collector.cc`) but its open-source server registers no log
collector, so a config with `logging_config` fails there with `No request-logger-creator
provided.` (spec §4.1). tfstack registers one collector type, `tfrecord`, and otherwise follows
TF Serving's rules:

- one logger per distinct LoggingConfig, shared by the models that name the same config
  (`ServerRequestLogger::FindOrCreateLogger`); the map is replaced after a config reload;
- `sampling_config.sampling_rate` is the probability that a request is logged, drawn uniformly
  per request (`RequestLogger::Log`); only answered requests are logged (the log holds the response);
- each record is a `tensorflow.serving.PredictionLog` (predict/classify/regress/multi_inference
  log with request and response) whose `log_metadata` holds the model spec, the sampling
  config, the SavedModel tags and the time; `/tensorflow/serving/request_log_count{model_name,
  status_code}` counts them;
- an unknown collector type is NOT_FOUND `Cannot find LogCollector::Factory for type: <type>`
  (`LogCollector::Create`).

What TF Serving leaves to the collector, tfstack decides: files are
`<filename_prefix>-<UTC start>-<pid>-<sequence>.tfrecord` (the format of warmup files, so a log
file can become `tf_serving_warmup_requests`), rotated by size and deleted oldest-first beyond
a disk cap. LogMetadata has no request-id field, so the request id (the client's
`X-Request-ID` header / `x-request-id` metadata, else generated) is stored in
`log_metadata.request_origin`.

Logging never blocks or fails a request: the request path samples and appends to a bounded
queue (a few microseconds); a writer thread builds the protos, writes and flushes. When the
queue is full the record is dropped and counted (`/tensorflow/serving/request_log_dropped`).
Flushed records survive kill -9; the reader (`export.read_prediction_logs`) skips a torn last record.
"""

from __future__ import annotations

import collections
import contextvars
import dataclasses
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tfstack.serving._errors import Code, StatusError

logger = logging.getLogger("tfstack.serving")

COLLECTOR_TYPE = "tfrecord"
FILE_SUFFIX = ".tfrecord"
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_TOTAL_BYTES = 1024 * 1024 * 1024
DEFAULT_QUEUE_SIZE = 8192
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_METADATA = "x-request-id"

# Set by the front ends (REST middleware, gRPC interceptor) for the request being served.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("tfstack_request_id", default=None)

# (model_name, status_code) for each record written or failed; (model_name,) for each drop.
LoggedObserver = Callable[[str, str], None]
DroppedObserver = Callable[[str], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogLimits:
    """Limits of the files one logger writes (server flags, not part of LoggingConfig)."""

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    queue_size: int = DEFAULT_QUEUE_SIZE

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_total_bytes", "queue_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")
        if self.max_total_bytes < self.max_file_bytes:
            raise ValueError(
                "max_total_bytes must be at least max_file_bytes. "
                f"Received: max_total_bytes={self.max_total_bytes}, max_file_bytes={self.max_file_bytes}"
            )


def validate_logging_config(model_name: str, config) -> None:
    """Refuse a LoggingConfig tfstack cannot honour, before anything of the reload is applied.

    Raises:
        StatusError: NOT_FOUND for an unknown collector type (TF Serving's text);
            INVALID_ARGUMENT for a sampling rate outside [0, 1] or a relative/empty filename_prefix.
    """
    collector = config.log_collector_config
    if collector.type != COLLECTOR_TYPE:
        raise StatusError(Code.NOT_FOUND, f"Cannot find LogCollector::Factory for type: {collector.type}")
    rate = config.sampling_config.sampling_rate
    if not 0.0 <= rate <= 1.0:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"logging_config of model {model_name}: sampling_config.sampling_rate must be in [0, 1]. Received: {rate}",
        )
    prefix = collector.filename_prefix
    if not prefix or not os.path.isabs(prefix) or prefix.endswith("/"):
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"logging_config of model {model_name}: log_collector_config.filename_prefix must be an absolute path "
            f"ending in a file name prefix, e.g. /var/log/tfstack/{model_name}/requests. Received: {prefix!r}",
        )


# ---------------------------------------------------------------------------- files

# TFRecord framing around each record: length (8), its CRC (4), data, data CRC (4).
_FRAME_BYTES = 16


class RotatingRecordWriter:
    """Appends TFRecords to `<prefix>-<start>-<pid>-<n>.tfrecord`, rotating and capping by size.

    Not thread-safe: one writer thread owns it. Each `write_batch` ends with a flush to the OS,
    so a killed process loses at most the batch being written (and a torn record, which
    readers skip).
    """

    def __init__(self, prefix: str | os.PathLike[str], limits: LogLimits = LogLimits()) -> None:
        self._prefix = Path(prefix)
        self._limits = limits
        self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self._sequence = 0
        self._handle: Any = None  # TensorFlow's TFRecordWriter, opened by _rotate
        self._size = 0
        self.path: Path | None = None

    def write_batch(self, records: list[bytes]) -> None:
        """Write records and flush them to the OS (raises OSError on a full or unwritable disk)."""
        import tensorflow as tf

        try:
            for record in records:
                size = len(record) + _FRAME_BYTES
                if self._handle is None or (self._size and self._size + size > self._limits.max_file_bytes):
                    self._rotate()
                self._handle.write(record)
                self._size += size
            if self._handle is not None:
                self._handle.flush()
        except tf.errors.OpError as exc:
            raise OSError(exc.message) from exc

    def _rotate(self) -> None:
        self.close()
        self._prefix.parent.mkdir(parents=True, exist_ok=True)
        import tensorflow as tf

        while True:
            self._sequence += 1
            path = Path(f"{self._prefix}-{self._stamp}-{os.getpid()}-{self._sequence:05d}{FILE_SUFFIX}")
            if not path.exists():  # never overwrite another writer's file
                break
        # TensorFlow's own TFRecord writer: the framing and CRCs every TFRecord reader expects.
        self._handle = tf.io.TFRecordWriter(str(path))
        self.path, self._size = path, 0
        self._enforce_cap()

    def _enforce_cap(self) -> None:
        """Delete the oldest files of this prefix until they fit in max_total_bytes (the open one stays)."""
        files = sorted(log_files(self._prefix), key=lambda p: (p.stat().st_mtime, p.name))
        total = sum(p.stat().st_size for p in files)
        for path in files:
            if total + self._limits.max_file_bytes <= self._limits.max_total_bytes or path == self.path:
                break
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            total -= size
            logger.info("Request log disk cap (%d bytes): deleted %s", self._limits.max_total_bytes, path)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def log_files(prefix: str | os.PathLike[str]) -> list[Path]:
    """The log files written for `prefix`, oldest name first."""
    prefix = Path(prefix)
    if not prefix.parent.is_dir():
        return []
    return sorted(p for p in prefix.parent.glob(f"{prefix.name}-*{FILE_SUFFIX}") if p.is_file())


# ---------------------------------------------------------------------------- one logger


class RequestLogger:
    """One LoggingConfig: sampling, a bounded queue and a writer thread for its files."""

    def __init__(
        self,
        config,
        *,
        limits: LogLimits = LogLimits(),
        saved_model_tags: tuple[str, ...] = ("serve",),
        on_logged: LoggedObserver | None = None,
        on_dropped: DroppedObserver | None = None,
        start: bool = True,
    ) -> None:
        """`start=False` leaves the writer thread to `start()` (a test can fill the queue first)."""
        self.config = config
        self.sampling_rate = float(config.sampling_config.sampling_rate)
        self._tags = saved_model_tags
        self._limits = limits
        self._writer = RotatingRecordWriter(config.log_collector_config.filename_prefix, limits)
        self._pending: collections.deque = collections.deque()
        self._wakeup = threading.Event()
        self._closing = False
        self._on_logged = on_logged
        self._on_dropped = on_dropped
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="tfstack-request-log", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def submit(self, entry: tuple) -> None:
        """Queue one sampled request (called on the event loop; never blocks)."""
        if len(self._pending) >= self._limits.queue_size or self._closing:
            self.dropped += 1
            if self._on_dropped is not None:
                self._on_dropped(entry[1])
            return
        self._pending.append(entry)
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _run(self) -> None:
        while True:
            self._wakeup.wait(0.5)
            self._wakeup.clear()
            batch = []
            while self._pending:
                batch.append(self._pending.popleft())
            if batch:
                try:
                    self._write(batch)
                except Exception:  # keep the writer alive: the next batch may well succeed
                    logger.exception("Request log writer failed on a batch of %d records", len(batch))
            if self._closing and not self._pending:
                self._writer.close()
                return

    def _write(self, batch: list[tuple]) -> None:
        records, statuses = [], []
        for entry in batch:
            try:
                records.append(build_prediction_log(entry, self.config.sampling_config, self._tags).SerializeToString())
                statuses.append((entry[1], "OK"))
            except Exception as exc:  # a request we cannot describe is skipped, never retried
                logger.warning("Cannot build a PredictionLog for model %s: %s", entry[1], exc)
                statuses.append((entry[1], "INTERNAL"))
        try:
            self._writer.write_batch(records)
            self.written += len(records)
        except OSError as exc:
            logger.error("Cannot write request logs under %s: %s", self.config.log_collector_config.filename_prefix, exc)
            statuses = [(name, "DATA_LOSS") for name, _ in statuses]
        if self._on_logged is not None:
            for name, status in statuses:
                self._on_logged(name, status)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, close the file and stop the thread."""
        self._closing = True
        self._wakeup.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        else:
            self._writer.close()


# ---------------------------------------------------------------------------- the server's loggers


class ServerRequestLogger:
    """Model name -> its request loggers; `log()` is the request path's one hook (ServerCore._infer)."""

    def __init__(
        self,
        *,
        limits: LogLimits = LogLimits(),
        saved_model_tags: tuple[str, ...] = ("serve",),
        on_logged: LoggedObserver | None = None,
        on_dropped: DroppedObserver | None = None,
    ) -> None:
        self._limits = limits
        self._tags = tuple(saved_model_tags)
        self._on_logged = on_logged
        self._on_dropped = on_dropped
        self._by_model: dict[str, list[RequestLogger]] = {}
        self._by_config: dict[bytes, RequestLogger] = {}
        self._lock = threading.Lock()
        self._random = random.Random()
        self._boot = uuid.uuid4().hex[:12]
        self._counter = 0

    @property
    def enabled(self) -> bool:
        """True when some model has a logging_config (front ends then assign request ids)."""
        return bool(self._by_model)

    def update(self, configs: Mapping[str, Any]) -> None:
        """Apply model name -> LoggingConfig after a (re)load; loggers of equal configs are reused."""
        by_config: dict[bytes, RequestLogger] = {}
        by_model: dict[str, list[RequestLogger]] = {}
        with self._lock:
            for model_name, config in configs.items():
                key = config.SerializeToString(deterministic=True)
                found = by_config.get(key) or self._by_config.get(key)
                if found is None:
                    found = RequestLogger(config, limits=self._limits, saved_model_tags=self._tags,
                                          on_logged=self._on_logged, on_dropped=self._on_dropped)
                    logger.info("Logging requests of model %s (sampling rate %g) to %s-*%s", model_name,
                                found.sampling_rate, config.log_collector_config.filename_prefix, FILE_SUFFIX)
                by_config[key] = found
                by_model.setdefault(model_name, []).append(found)
            retired = [lg for key, lg in self._by_config.items() if key not in by_config]
            self._by_model, self._by_config = by_model, by_config
        for old in retired:
            # Called on the event loop (config reloads): flush and close the old files off it.
            threading.Thread(target=old.close, name="tfstack-request-log-close", daemon=True).start()

    def log(self, api: str, servable, args: tuple, result: Any) -> None:
        """Sample and queue one answered request; never raises, never blocks."""
        loggers = self._by_model.get(servable.model_name)
        if not loggers:
            return
        try:
            for request_logger in loggers:
                if request_logger.sampling_rate < 1.0 and self._random.random() >= request_logger.sampling_rate:
                    continue
                request_logger.submit(
                    (api, servable.model_name, servable.version, args, result, time.time(), self.request_id())
                )
        except Exception:  # logging must never fail a request
            logger.exception("Request logging failed")

    def request_id(self) -> str:
        """The current request's id (from the front end), else a new one unique to this server."""
        current = request_id_var.get()
        if current:
            return current
        self._counter += 1
        return f"{self._boot}-{self._counter}"

    def new_request_id(self) -> str:
        """A fresh id for a request that did not bring one."""
        self._counter += 1
        return f"{self._boot}-{self._counter}"

    def close(self) -> None:
        with self._lock:
            loggers, self._by_config, self._by_model = list(self._by_config.values()), {}, {}
        for request_logger in loggers:
            request_logger.close()

    def stats(self) -> dict[str, int]:
        """Records written and dropped by the current loggers."""
        current = list(self._by_config.values())
        return {"written": sum(lg.written for lg in current), "dropped": sum(lg.dropped for lg in current)}


def logging_configs(entries) -> dict[str, Any]:
    """Model name -> LoggingConfig for the config entries that have one."""
    return {entry.name: entry.logging_config for entry in entries if entry.HasField("logging_config")}


# ---------------------------------------------------------------------------- PredictionLog


def build_prediction_log(entry: tuple, sampling_config, saved_model_tags: tuple[str, ...]):
    """The PredictionLog for one queued request (runs on the writer thread)."""
    from tensorflow_serving.apis import prediction_log_pb2, regression_pb2

    from tfstack.serving.server.grpc._service import fill_tensor_proto
    from tfstack.serving.server._inference import CLASSIFY_METHOD

    api, model_name, version, args, result, timestamp, request_id = entry
    log = prediction_log_pb2.PredictionLog()
    metadata = log.log_metadata
    metadata.model_spec.name = model_name
    metadata.model_spec.version.value = version
    metadata.sampling_config.CopyFrom(sampling_config)
    metadata.saved_model_tags.extend(saved_model_tags)
    metadata.timestamp_secs = int(timestamp)
    metadata.request_origin = request_id

    def spec(target, signature_name: str) -> None:
        target.name = model_name
        target.version.value = version
        target.signature_name = signature_name

    if api == "Predict":
        signature_name, inputs, output_filter = args
        metadata.model_spec.signature_name = signature_name
        request, response = log.predict_log.request, log.predict_log.response
        spec(request.model_spec, signature_name)
        for alias, array in inputs.items():
            fill_tensor_proto(request.inputs[alias], array)
        request.output_filter.extend(output_filter)
        spec(response.model_spec, signature_name)
        for alias, array in result.items():
            fill_tensor_proto(response.outputs[alias], array)
        return log
    if api in ("Classify", "Regress"):
        signature_name, examples, context = args
        metadata.model_spec.signature_name = signature_name
        target = log.classify_log if api == "Classify" else log.regress_log
        spec(target.request.model_spec, signature_name)
        _fill_input(target.request.input, examples, context)
        spec(target.response.model_spec, signature_name)
        if api == "Classify":
            _fill_classifications(target.response.result, result)
        else:
            target.response.result.regressions.extend(regression_pb2.Regression(value=v) for v in result)
        return log
    tasks, examples, context = args
    request, response = log.multi_inference_log.request, log.multi_inference_log.response
    for task in tasks:
        added = request.tasks.add(method_name=task.method_name)
        spec(added.model_spec, task.signature_name)
    _fill_input(request.input, examples, context)
    for task, task_result in zip(tasks, result):
        target = response.results.add()
        spec(target.model_spec, task.signature_name)
        if task.method_name == CLASSIFY_METHOD:
            _fill_classifications(target.classification_result, task_result)
        else:
            target.regression_result.regressions.extend(regression_pb2.Regression(value=v) for v in task_result)
    return log


def _fill_input(target, examples, context: bytes) -> None:
    if context:
        target.example_list_with_context.context.ParseFromString(context)
        for example in examples:
            target.example_list_with_context.examples.add().ParseFromString(example)
    else:
        for example in examples:
            target.example_list.examples.add().ParseFromString(example)


def _fill_classifications(result, classifications) -> None:
    for row in classifications:
        target = result.classifications.add()
        for label, score in row:
            target.classes.add(label=label, score=score)


# ---------------------------------------------------------------------------- request ids


def rest_request_id_middleware(request_logger: ServerRequestLogger):
    """aiohttp middleware: with logging on, the request's `X-Request-ID` (or a new id) is logged and echoed."""
    from aiohttp import web

    @web.middleware
    async def request_id(request, handler):
        if not request_logger.enabled:
            return await handler(request)
        value = request.headers.get(REQUEST_ID_HEADER) or request_logger.new_request_id()
        token = request_id_var.set(value)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers[REQUEST_ID_HEADER] = value
            raise
        finally:
            request_id_var.reset(token)
        response.headers[REQUEST_ID_HEADER] = value
        return response

    return request_id


def request_id_interceptor(request_logger: ServerRequestLogger):
    """grpc.aio interceptor: with logging on, the call's `x-request-id` metadata (or a new id) is logged
    and sent back as initial metadata."""
    import grpc

    class RequestIdInterceptor(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation, handler_call_details):
            handler = await continuation(handler_call_details)
            if handler is None or handler.unary_unary is None or not request_logger.enabled:
                return handler
            inner = handler.unary_unary
            given = dict(handler_call_details.invocation_metadata or ()).get(REQUEST_ID_METADATA)

            async def with_request_id(request, context):
                value = given if isinstance(given, str) and given else request_logger.new_request_id()
                token = request_id_var.set(value)
                try:
                    await context.send_initial_metadata(((REQUEST_ID_METADATA, value),))
                    return await inner(request, context)
                finally:
                    request_id_var.reset(token)

            return grpc.unary_unary_rpc_method_handler(
                with_request_id,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

    return RequestIdInterceptor()
