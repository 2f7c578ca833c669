"""`assets.extra/` content derived from real samples: TF Serving warmup records and a REST body."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfstack.export._signatures import CLASSIFY, REGRESS, SERVING_DEFAULT, make_examples
from tfstack.export._spec import ExportSpec

WARMUP_FILE = "tf_serving_warmup_requests"
SAMPLE_REQUEST_FILE = "sample_request.json"
SAMPLE_REQUEST_ROWS = 3


def warmup_logs(spec: ExportSpec) -> list[Any]:
    """PredictionLog records TF Serving replays while loading the version (spec §5).

    A batch of all samples and a single row (the common online case) through serving_default,
    and one classify/regress request so the tf.Example parsing path is warm too.
    """
    from tensorflow_serving.apis import (
        classification_pb2,
        input_pb2,
        model_pb2,
        prediction_log_pb2,
        regression_pb2,
    )

    logs = predict_warmup_logs(spec.model_name, spec.sample_inputs)
    model_input = input_pb2.Input(
        example_list=input_pb2.ExampleList(examples=make_examples(spec.features, spec.sample_inputs))
    )
    if spec.task == "classification":
        request = classification_pb2.ClassificationRequest(
            model_spec=model_pb2.ModelSpec(name=spec.model_name, signature_name=CLASSIFY), input=model_input
        )
        logs.append(prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=request)))
    else:
        request = regression_pb2.RegressionRequest(
            model_spec=model_pb2.ModelSpec(name=spec.model_name, signature_name=REGRESS), input=model_input
        )
        logs.append(prediction_log_pb2.PredictionLog(regress_log=prediction_log_pb2.RegressLog(request=request)))
    return logs


def predict_warmup_logs(
    model_name: str, inputs: Mapping[str, np.ndarray], signature_name: str = SERVING_DEFAULT
) -> list[Any]:
    """Predict records for `signature_name`: all rows as one batch, then the first row alone."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    rows = next(iter(inputs.values())).shape[0]
    batches = [inputs] if rows == 1 else [inputs, {name: array[:1] for name, array in inputs.items()}]
    logs = []
    for batch in batches:
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
        for name, array in batch.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(_tensor_value(np.asarray(array))))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


LOGGED_WARMUP_RECORDS = 100


def write_warmup(spec: ExportSpec, path: Path) -> int:
    """Write the warmup TFRecord file at `path`; return the number of records.

    With `spec.warmup_from`, up to 100 logged requests follow the sample records, so the new
    version warms up on the traffic it will actually see.
    """
    return write_warmup_logs(warmup_logs(spec) + logged_warmup_logs(spec.warmup_from, spec.model_name), path)


def logged_warmup_logs(logs: Sequence[str], model_name: str) -> list[Any]:
    """Warmup records from request logs (none when `logs` is empty).

    Raises:
        ExportError: the logs cannot be read or hold no replayable request.
    """
    if not logs:
        return []
    from tfstack.export._errors import ExportError
    from tfstack.export._prediction_logs import read_prediction_logs, warmup_records

    try:
        return warmup_records(read_prediction_logs(list(logs)), model_name=model_name, limit=LOGGED_WARMUP_RECORDS)
    except ValueError as exc:
        raise ExportError(f"Cannot use the logs {list(logs)} as warmup records: {exc}") from exc


def write_warmup_logs(logs: Sequence[Any], path: Path) -> int:
    """Write PredictionLog records as TF Serving's warmup TFRecord file; return how many."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return len(logs)


def read_warmup_logs(path: Path) -> list[Any]:
    """The PredictionLog records of an existing warmup file."""
    from tensorflow_serving.apis import prediction_log_pb2

    from tfstack.export._prediction_logs import read_records

    try:
        return [prediction_log_pb2.PredictionLog.FromString(record) for record in read_records(path)]
    except Exception as exc:
        from tfstack.export._errors import ExportError

        raise ExportError(f"Cannot read the warmup records {path}: {exc}") from exc


def sample_request(spec: ExportSpec, rows: int = SAMPLE_REQUEST_ROWS) -> dict[str, Any]:
    """A TF Serving REST predict body (columnar format) for the first few sample rows."""
    return sample_request_body({f.name: spec.sample_inputs[f.name] for f in spec.features}, rows=rows)


def sample_request_body(
    inputs: Mapping[str, np.ndarray], *, rows: int = SAMPLE_REQUEST_ROWS, signature_name: str = SERVING_DEFAULT
) -> dict[str, Any]:
    """A REST predict body (columnar `inputs`) with the first `rows` rows of `inputs`."""
    return {"signature_name": signature_name, "inputs": {name: _json_value(np.asarray(a)[:rows]) for name, a in inputs.items()}}


def _tensor_value(array: np.ndarray) -> np.ndarray:
    # make_tensor_proto cannot infer a dtype from an object array of bytes.
    return array.astype(np.bytes_) if array.dtype == object else array


def _json_value(array: np.ndarray) -> Any:
    if array.dtype == np.float32:
        # Shortest decimal that round-trips to the same float32: 71.1, not 71.0999984741211.
        return array.astype(str).astype(np.float64).tolist()
    if array.dtype != object:
        return array.tolist()

    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return [convert(v) for v in value]
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            # TF Serving's REST API carries binary strings as {"b64": ...} (spec §2.6).
            return {"b64": base64.b64encode(value).decode("ascii")}

    return convert(array.tolist())
