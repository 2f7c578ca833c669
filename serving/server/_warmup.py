"""SavedModel warmup: replay `assets.extra/tf_serving_warmup_requests` before a version serves (spec §5).

Runs inside the load, so a version turns AVAILABLE only once its first real requests will not
pay for the Session's first runs; any warmup error fails that version's load. Each record is
prepared with the same functions as a live request (`tfstack.serving.server._inference`) and run by the
version's executor, so with batching on it goes through the batch scheduler, as TF Serving's
warmup goes through its batching session.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tfstack.serving._errors import Code, StatusError
from tfstack.serving.server._inference import (
    Executor,
    InferenceTask,
    Prepared,
    examples_from_input,
    prepare_classify,
    prepare_multi_inference,
    prepare_predict,
    prepare_regress,
)
from tfstack.serving.server._servable import Servable

logger = logging.getLogger("tfstack.serving")

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000
# PredictionLog's log_type field numbers, which TF Serving prints for unsupported kinds.
_LOG_TYPE_NUMBER = {"session_run_log": 5, "predict_streamed_log": 7}


def warmup_path(version_dir: Path) -> Path:
    """Where TF Serving looks for a version's warmup records."""
    return Path(version_dir) / "assets.extra" / WARMUP_FILE


def read_warmup_records(path: Path) -> list:
    """Parse the TFRecord file of PredictionLogs, with TF Serving's limits and texts (blocking)."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    try:
        for record in tf.compat.v1.io.tf_record_iterator(str(path)):
            if len(logs) >= MAX_RECORDS:
                raise StatusError(
                    Code.INVALID_ARGUMENT, f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}"
                )
            try:
                logs.append(prediction_log_pb2.PredictionLog.FromString(record))
            except DecodeError as exc:
                raise StatusError(
                    Code.INVALID_ARGUMENT, f"Failed to parse warmup record: {record[:64]!r} from {path}"
                ) from exc
    except tf.errors.OpError as exc:
        raise StatusError(
            Code.DATA_LOSS, f"{exc.message}. Please verify your warmup data is in TFRecord format."
        ) from exc
    return logs


def read_version_warmup(version_dir: Path) -> list | None:
    """The version's warmup records, or None when it has no warmup file (blocking)."""
    path = warmup_path(version_dir)
    if not path.is_file():
        logger.info("No warmup data file found at %s", path)
        return None
    return read_warmup_records(path)


def prepare_record(servable: Servable, log) -> Prepared | None:
    """A PredictionLog's request, prepared like a live one (None for a record without a log type).

    Only the signature name of its model spec matters; the model name and version are ignored.

    Raises:
        StatusError: UNIMPLEMENTED for session_run/predict_streamed logs, or the request's own
            validation error.
    """
    import tensorflow as tf

    kind = log.WhichOneof("log_type")
    if kind is None:
        return None
    if kind == "predict_log":
        request = log.predict_log.request
        inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
        return prepare_predict(servable, request.model_spec.signature_name, inputs, list(request.output_filter))
    if kind == "classify_log":
        request = log.classify_log.request
        return prepare_classify(servable, request.model_spec.signature_name, *examples_from_input(request.input))
    if kind == "regress_log":
        request = log.regress_log.request
        return prepare_regress(servable, request.model_spec.signature_name, *examples_from_input(request.input))
    if kind == "multi_inference_log":
        request = log.multi_inference_log.request
        tasks = [
            InferenceTask(model_name=t.model_spec.name, signature_name=t.model_spec.signature_name, method_name=t.method_name)
            for t in request.tasks
        ]
        return prepare_multi_inference(servable, tasks, *examples_from_input(request.input))
    raise StatusError(Code.UNIMPLEMENTED, f"Unsupported log_type for warmup: {_LOG_TYPE_NUMBER.get(kind, kind)}")


async def replay_warmup(servable: Servable, logs: list, executor: Executor, *, iterations: int = 1) -> int:
    """Run every record `iterations` times through `executor`; returns how many records there are.

    Raises:
        StatusError: a record cannot be prepared or its run fails (the load then fails).
    """
    started = time.perf_counter()
    for _ in range(max(1, iterations)):
        for log in logs:
            prepared = prepare_record(servable, log)
            if prepared is not None:
                await executor.run(prepared, None)
    logger.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        warmup_path(servable.path), len(logs), (time.perf_counter() - started) * 1e6,
    )
    return len(logs)
