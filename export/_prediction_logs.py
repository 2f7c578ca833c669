"""Reading request logs: TFRecord files of `tensorflow.serving.PredictionLog` (what `tfstack serve`
writes for `logging_config`, and the format of warmup files).

Used by `tfstack monitor` (logged inputs vs a version's data profile), `--warmup-from` (logged
requests become the next version's warmup records) and `tfstack train --from-logs` (logged
inputs joined with labels become training rows). A log file that was being written when its
server was killed may end in a torn record: it is skipped with a warning; damage anywhere
else is an error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfstack.export._spec import FeatureSpec

logger = logging.getLogger("tfstack.export")

LOG_SUFFIX = ".tfrecord"
# TF Serving refuses more warmup records than this (spec §5); a replayed log is cut to fit.
MAX_WARMUP_RECORDS = 1000


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoggedRequest:
    """One logged request: its PredictionLog and where it came from."""

    log: Any  # tensorflow.serving.PredictionLog
    path: Path
    index: int

    @property
    def kind(self) -> str | None:
        """"predict_log", "classify_log", "regress_log", "multi_inference_log" (None: no log type)."""
        return self.log.WhichOneof("log_type")

    @property
    def request_id(self) -> str:
        """The request id tfstack stores in `log_metadata.request_origin`."""
        return self.log.log_metadata.request_origin

    @property
    def model_name(self) -> str:
        return self.log.log_metadata.model_spec.name

    @property
    def version(self) -> int | None:
        spec = self.log.log_metadata.model_spec
        return spec.version.value if spec.HasField("version") else None

    @property
    def timestamp(self) -> int:
        return self.log.log_metadata.timestamp_secs


def log_paths(target: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The log files `target` names: a file, a directory (its *.tfrecord files), a filename prefix
    (`<prefix>-*.tfrecord`, as in logging_config), or a list of these. Sorted by name, which is
    the order they were written in.

    Raises:
        ValueError: nothing matches.
    """
    targets = [target] if isinstance(target, (str, os.PathLike)) else list(target)
    found: list[Path] = []
    for item in targets:
        path = Path(item)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(LOG_SUFFIX)))
        elif path.parent.is_dir():
            found.extend(sorted(p for p in path.parent.glob(f"{path.name}-*{LOG_SUFFIX}") if p.is_file()))
    if not found:
        raise ValueError(
            "Expected request logs: a .tfrecord file, a directory of them, or a logging_config filename_prefix. "
            f"Received: {[str(t) for t in targets]} (no log files found)"
        )
    unique = sorted(set(found), key=lambda p: (p.name, str(p)))
    return unique


def read_records(path: Path) -> Iterator[bytes]:
    """The records of one TFRecord file; a torn final record (a killed writer) is skipped.

    Raises:
        ValueError: the file is damaged before its end, or is not a TFRecord file.
    """
    import tensorflow as tf
    from tensorflow.python.util import deprecation

    try:
        # TF's record iterator checks every CRC and names a torn tail "truncated record" (its
        # tf.data replacement logs a C++ warning per file instead); only the deprecation notice is muted.
        with deprecation.silence():
            records = tf.compat.v1.io.tf_record_iterator(str(path))
        for record in records:
            yield record
    except tf.errors.DataLossError as exc:
        if "truncated record" in exc.message:
            logger.warning("Skipped a torn last record in %s (its writer was stopped mid-write).", path)
            return
        raise ValueError(f"{path} is damaged or not a TFRecord file: {exc.message}") from exc
    except tf.errors.OpError as exc:
        raise ValueError(f"Cannot read {path}: {exc.message}") from exc


def read_prediction_logs(
    target: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, model_name: str | None = None
) -> list[LoggedRequest]:
    """Every PredictionLog under `target` (see `log_paths`), optionally only `model_name`'s.

    Raises:
        ValueError: no log files, or a record that is not a PredictionLog.
    """
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for path in log_paths(target):
        for index, record in enumerate(read_records(path)):
            try:
                log = prediction_log_pb2.PredictionLog.FromString(record)
            except DecodeError as exc:
                raise ValueError(f"Record {index} of {path} is not a tensorflow.serving.PredictionLog: {exc}") from exc
            if model_name is None or log.log_metadata.model_spec.name == model_name:
                logs.append(LoggedRequest(log=log, path=path, index=index))
    return logs


def log_range(logs: Sequence[LoggedRequest]) -> dict[str, Any]:
    """What a set of logs covers (for reports and lineage): files, records, time and request-id range."""
    if not logs:
        return {"records": 0, "files": []}
    times = [entry.timestamp for entry in logs]
    return {
        "files": sorted({str(entry.path.absolute()) for entry in logs}),
        "records": len(logs),
        "first_timestamp": min(times),
        "last_timestamp": max(times),
        "first_request_id": logs[0].request_id,
        "last_request_id": logs[-1].request_id,
        "versions": sorted({v for v in (entry.version for entry in logs) if v is not None}),
    }


# ---------------------------------------------------------------------------- inputs and outputs


def request_inputs(entry: LoggedRequest, features: Sequence[FeatureSpec]) -> dict[str, np.ndarray] | None:
    """The raw input rows of one logged request, per feature (None: the request has none of them).

    Predict requests carry tensors by input alias; classify/regress/multi-inference requests carry
    tf.Examples, whose features are read by name (absent ones become NaN / empty strings).
    """
    import tensorflow as tf

    kind = entry.kind
    if kind == "predict_log":
        inputs = entry.log.predict_log.request.inputs
        if not all(f.name in inputs for f in features):
            return None
        arrays = {f.name: tf.make_ndarray(inputs[f.name]) for f in features}
        return {name: (array if array.ndim else array.reshape(1)) for name, array in arrays.items()}
    if kind in ("classify_log", "regress_log", "multi_inference_log"):
        model_input = getattr(entry.log, kind).request.input
        which = model_input.WhichOneof("kind")
        if which is None:
            return None
        examples = getattr(model_input, which).examples
        context = model_input.example_list_with_context.context if which == "example_list_with_context" else None
        return {f.name: np.stack([_example_feature(e, f, context) for e in examples]) if len(examples) else
                np.zeros((0, *f.shape), f.numpy_dtype) for f in features}
    return None


def _example_feature(example, feature: FeatureSpec, context) -> np.ndarray:
    size = int(np.prod(feature.shape)) if feature.shape else 1
    for source in (example, context):
        if source is None or feature.name not in source.features.feature:
            continue
        value = source.features.feature[feature.name]
        which = value.WhichOneof("kind")
        values = list(getattr(value, which).value) if which else []
        if len(values) == size:
            return np.asarray(values, dtype=feature.numpy_dtype).reshape(feature.shape)
    if feature.dtype == "string":
        return np.full(feature.shape, b"", dtype=object)
    return np.full(feature.shape, np.nan, dtype=np.float64)


def logged_inputs(logs: Sequence[LoggedRequest], features: Sequence[FeatureSpec]) -> tuple[dict[str, np.ndarray], list[str]]:
    """All logged input rows, per feature, and the request id of each row."""
    parts: dict[str, list[np.ndarray]] = {f.name: [] for f in features}
    ids: list[str] = []
    for entry in logs:
        rows = request_inputs(entry, features)
        if rows is None:
            continue
        count = next(iter(rows.values())).shape[0]
        if any(array.shape[0] != count for array in rows.values()):
            continue
        for name, array in rows.items():
            parts[name].append(array)
        ids.extend([entry.request_id] * count)
    arrays = {}
    for feature in features:
        chunks = parts[feature.name]
        arrays[feature.name] = np.concatenate(chunks) if chunks else np.zeros((0, *feature.shape), feature.numpy_dtype)
    return arrays, ids


def logged_predictions(logs: Sequence[LoggedRequest], *, task: str, class_names: Sequence[str] = ()) -> np.ndarray:
    """The served outputs, one per row: class indices (classification) or values (regression)."""
    import tensorflow as tf

    values: list[Any] = []
    index = {name: i for i, name in enumerate(class_names)}
    for entry in logs:
        kind = entry.kind
        if kind == "predict_log":
            outputs = entry.log.predict_log.response.outputs
            if task == "classification":
                if "class_id" in outputs:
                    values.extend(tf.make_ndarray(outputs["class_id"]).reshape(-1).tolist())
                elif "probabilities" in outputs:
                    values.extend(tf.make_ndarray(outputs["probabilities"]).argmax(-1).reshape(-1).tolist())
            else:
                for name in ("prediction", "outputs"):
                    if name in outputs:
                        values.extend(tf.make_ndarray(outputs[name]).reshape(-1).tolist())
                        break
        elif kind == "classify_log" and task == "classification":
            for row in entry.log.classify_log.response.result.classifications:
                if row.classes:
                    best = max(row.classes, key=lambda c: c.score)
                    values.append(index.get(best.label, -1))
        elif kind == "regress_log" and task == "regression":
            values.extend(r.value for r in entry.log.regress_log.response.result.regressions)
    if task == "classification":
        return np.asarray([v for v in values if v >= 0], dtype=np.int64)
    return np.asarray(values, dtype=np.float64)


def warmup_records(logs: Sequence[LoggedRequest], *, model_name: str, limit: int = 100) -> list[Any]:
    """Logged requests as warmup records for `model_name`: requests only, at most `limit`, spread
    evenly over the logs so that every kind of traffic seen is represented.

    Raises:
        ValueError: `limit` outside 1..1000, or no replayable request in the logs.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    if not 1 <= limit <= MAX_WARMUP_RECORDS:
        raise ValueError(f"limit must be in 1..{MAX_WARMUP_RECORDS} (TF Serving's warmup maximum). Received: limit={limit}")
    replayable = [e for e in logs if e.kind in ("predict_log", "classify_log", "regress_log", "multi_inference_log")]
    if not replayable:
        raise ValueError("The logs hold no predict, classify, regress or multi-inference request to replay.")
    if len(replayable) > limit:
        picks = np.linspace(0, len(replayable) - 1, limit).round().astype(int)
        replayable = [replayable[i] for i in sorted(set(picks.tolist()))]
    records = []
    for entry in replayable:
        kind = entry.kind
        assert kind is not None  # replayable holds the four request kinds only
        record = prediction_log_pb2.PredictionLog()
        getattr(record, kind).request.CopyFrom(getattr(entry.log, kind).request)
        request = getattr(record, kind).request
        # Only the signature name matters for warmup; the name follows the new version.
        if kind == "multi_inference_log":
            for task in request.tasks:
                task.model_spec.name = model_name
                task.model_spec.ClearField("version")
        else:
            request.model_spec.name = model_name
            request.model_spec.ClearField("version")
            request.model_spec.ClearField("version_label")
        records.append(record)
    return records


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """`sha256:<hex>` of a file's bytes."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def features_from_profile(profile: Mapping[str, Any]) -> tuple[FeatureSpec, ...]:
    """The schema a data profile records, as FeatureSpecs."""
    return tuple(FeatureSpec(name=f["name"], dtype=f["dtype"], shape=tuple(f.get("shape") or ())) for f in profile["features"])
