"""SavedModel warmup: replay `assets.extra/tf_serving_warmup_requests` before a version serves (spec §5).

Runs inside the load (in the loader thread), so a version turns AVAILABLE only once its first
real requests will not pay for graph tracing; any warmup error fails that version's load.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving._core import (
    InferenceTask,
    Servable,
    examples_from_input,
    run_classify,
    run_multi_inference,
    run_predict,
    run_regress,
)
from serving._errors import Code, StatusError

logger = logging.getLogger("tfstack.serving")

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000
# PredictionLog's log_type field numbers, which TF Serving prints for unsupported kinds.
_LOG_TYPE_NUMBER = {"session_run_log": 5, "predict_streamed_log": 7}


def warmup_path(version_dir: Path) -> Path:
    """Where TF Serving looks for a version's warmup records."""
    return Path(version_dir) / "assets.extra" / WARMUP_FILE


def read_warmup_records(path: Path) -> list:
    """Parse the TFRecord file of PredictionLogs, with TF Serving's limits and texts."""
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


# How a replayed request runs: (api, servable, signature_name, payload, extra) -> result, where api
# is "predict" | "classify" | "regress" | "multi_inference" (see `_replay`). Blocking.
Runner = Callable[..., Any]


_DIRECT = {"predict": run_predict, "classify": run_classify, "regress": run_regress, "multi_inference": run_multi_inference}


def run_directly(api: str, servable: Servable, *args: Any) -> Any:
    """The default runner: the blocking run_* entry points, in the calling (loader) thread."""
    return _DIRECT[api](servable, *args)


def run_warmup(servable: Servable, *, iterations: int = 1, runner: Runner = run_directly) -> int:
    """Replay the version's warmup records `iterations` times; returns how many records were read.

    `runner` lets the server send the records through its batch scheduler, as TF Serving's warmup
    goes through the batching session (so batching's rules and padding apply to warmup too).

    Raises:
        StatusError: the file is malformed, holds an unsupported log type, or a request fails.
    """
    path = warmup_path(servable.path)
    if not path.is_file():
        logger.info("No warmup data file found at %s", path)
        return 0
    started = time.perf_counter()
    logs = read_warmup_records(path)
    for _ in range(max(1, iterations)):
        for log in logs:
            _replay(servable, log, runner)
    logger.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        path, len(logs), (time.perf_counter() - started) * 1e6,
    )
    return len(logs)


def _replay(servable: Servable, log, runner: Runner) -> None:
    import tensorflow as tf

    kind = log.WhichOneof("log_type")
    if kind is None:
        return
    if kind == "predict_log":
        request = log.predict_log.request
        inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
        runner("predict", servable, request.model_spec.signature_name, inputs, list(request.output_filter))
    elif kind == "classify_log":
        request = log.classify_log.request
        runner("classify", servable, request.model_spec.signature_name, *examples_from_input(request.input))
    elif kind == "regress_log":
        request = log.regress_log.request
        runner("regress", servable, request.model_spec.signature_name, *examples_from_input(request.input))
    elif kind == "multi_inference_log":
        request = log.multi_inference_log.request
        tasks = [
            InferenceTask(model_name=t.model_spec.name, signature_name=t.model_spec.signature_name, method_name=t.method_name)
            for t in request.tasks
        ]
        runner("multi_inference", servable, tasks, *examples_from_input(request.input))
    else:
        raise StatusError(Code.UNIMPLEMENTED, f"Unsupported log_type for warmup: {_LOG_TYPE_NUMBER.get(kind, kind)}")
