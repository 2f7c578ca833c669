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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfstack.export._errors import LogsNotFoundError
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
        LogsNotFoundError: nothing matches (a ValueError).
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
        raise LogsNotFoundError(
            "Expected request logs: a .tfrecord file, a directory of them, or a logging_config filename_prefix. "
            f"Received: {[str(t) for t in targets]} (no log files found)"
        )
    unique = sorted(set(found), key=lambda p: (p.name, str(p)))
    return unique


class _RecordFile:
    """One TFRecord file read from a byte offset: each record comes with the offset just past it.

    TensorFlow's own reader (`RandomRecordReader`, the C++ `RecordReader` behind
    `tf_record_iterator`) checks both CRCs of every record; it is the only TFRecord reader in
    TensorFlow that starts at an offset, which is what lets a watcher read only what was
    appended since its last look. A torn last record (a writer killed or still writing) ends
    the scan at its first byte (`torn_at`), so the next scan can try it again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.torn_at: int | None = None

    def records(self, offset: int = 0) -> Iterator[tuple[bytes, int]]:
        """(record, offset after it) from `offset` on.

        Raises:
            ValueError: a damaged record before the end, or not a TFRecord file.
        """
        import tensorflow as tf
        from tensorflow.python.lib.io import _pywrap_record_io

        try:
            reader = _pywrap_record_io.RandomRecordReader(str(self.path))
        except tf.errors.OpError as exc:
            raise ValueError(f"Cannot read {self.path}: {exc.message}") from exc
        try:
            while True:
                try:
                    record, end = reader.read(offset)
                except IndexError:
                    # The end, or fewer bytes than a record header: a header torn mid-write.
                    if offset < self._size():
                        self.torn_at = offset
                    return
                except tf.errors.DataLossError as exc:
                    if "truncated record" in exc.message:
                        self.torn_at = offset
                        return
                    raise ValueError(f"{self.path} is damaged or not a TFRecord file: {exc.message}") from exc
                except tf.errors.OpError as exc:
                    raise ValueError(f"Cannot read {self.path}: {exc.message}") from exc
                yield record, end
                offset = end
        finally:
            reader.close()

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0


def read_records(path: Path) -> Iterator[bytes]:
    """The records of one TFRecord file; a torn final record (a killed writer) is skipped.

    Raises:
        ValueError: the file is damaged before its end, or is not a TFRecord file.
    """
    scan = _RecordFile(path)
    for record, _ in scan.records():
        yield record
    if scan.torn_at is not None:
        logger.warning("Skipped a torn last record in %s (its writer was stopped mid-write).", path)


def _parse(record: bytes, path: Path, index: int) -> Any:
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import prediction_log_pb2

    try:
        return prediction_log_pb2.PredictionLog.FromString(record)
    except DecodeError as exc:
        raise ValueError(f"Record {index} of {path} is not a tensorflow.serving.PredictionLog: {exc}") from exc


def iter_prediction_logs(
    target: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, model_name: str | None = None
) -> Iterator[LoggedRequest]:
    """Every PredictionLog under `target` (see `log_paths`), one at a time: memory holds one
    record, whatever the size of the logs. Optionally only `model_name`'s.

    Raises:
        ValueError: no log files, or a record that is not a PredictionLog.
    """
    for path in log_paths(target):
        for index, record in enumerate(read_records(path)):
            log = _parse(record, path, index)
            if model_name is None or log.log_metadata.model_spec.name == model_name:
                yield LoggedRequest(log=log, path=path, index=index)


def read_prediction_logs(
    target: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, model_name: str | None = None
) -> list[LoggedRequest]:
    """Every PredictionLog under `target` (see `log_paths`), optionally only `model_name`'s, as a
    list (all in memory: for large logs iterate `iter_prediction_logs` instead).

    Raises:
        ValueError: no log files, or a record that is not a PredictionLog.
    """
    return list(iter_prediction_logs(target, model_name=model_name))


class PredictionLogTail:
    """Reads request logs incrementally: each `read()` yields only the records appended since the
    previous one (like `tail -f`), remembering per file how far it got.

    Log files are append-only and rotated by size (`tfstack serve`'s logging_config): a new
    file is read from its start, a file deleted by the disk cap is forgotten, and a torn last
    record (its writer is still writing it, or was killed) is not passed over: the next `read()`
    tries it again. A file that became shorter than what was read (replaced) is read again from
    its start.

    Example:
        >>> tail = PredictionLogTail("/var/log/tfstack/iris/requests", model_name="iris")
        >>> first = list(tail.read())   # everything logged so far
        >>> later = list(tail.read())   # only what was logged since
    """

    def __init__(
        self, target: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, model_name: str | None = None
    ) -> None:
        self.target = target
        self.model_name = model_name
        # path -> (byte offset of the next unread record, its record index)
        self.positions: dict[Path, tuple[int, int]] = {}

    def read(self) -> Iterator[LoggedRequest]:
        """The records appended since the last `read()` (all of them the first time).

        Raises:
            ValueError: no log files (yet), a damaged record before a file's end, or a record that
                is not a PredictionLog.
        """
        paths = log_paths(self.target)
        current = set(paths)
        for gone in [p for p in self.positions if p not in current]:
            del self.positions[gone]
        for path in paths:
            offset, index = self.positions.get(path, (0, 0))
            try:
                size = path.stat().st_size
            except OSError:  # deleted between listing and reading (disk cap)
                self.positions.pop(path, None)
                continue
            if size < offset:
                logger.warning("%s is shorter than the %d bytes already read: reading it again from its start.", path, offset)
                offset, index = 0, 0
            if size == offset:
                self.positions[path] = (offset, index)
                continue
            scan = _RecordFile(path)
            for record, end in scan.records(offset):
                log = _parse(record, path, index)
                self.positions[path] = (end, index + 1)
                if self.model_name is None or log.log_metadata.model_spec.name == self.model_name:
                    yield LoggedRequest(log=log, path=path, index=index)
                index += 1
            self.positions.setdefault(path, (offset, index))


class LogCoverage:
    """What a stream of logged requests covers, accumulated one record at a time (`log_range`)."""

    def __init__(self) -> None:
        self.records = 0
        self._files: set[str] = set()
        self._versions: set[int] = set()
        self._first_timestamp: int | None = None
        self._last_timestamp: int | None = None
        self._first_request_id = ""
        self._last_request_id = ""

    def add(self, entry: LoggedRequest) -> None:
        self.records += 1
        self._files.add(str(entry.path.absolute()))
        timestamp = entry.timestamp
        if self._first_timestamp is None or timestamp < self._first_timestamp:
            self._first_timestamp = timestamp
        if self._last_timestamp is None or timestamp > self._last_timestamp:
            self._last_timestamp = timestamp
        if self.records == 1:
            self._first_request_id = entry.request_id
        self._last_request_id = entry.request_id
        version = entry.version
        if version is not None:
            self._versions.add(version)

    def to_json(self) -> dict[str, Any]:
        if not self.records:
            return {"records": 0, "files": []}
        return {
            "files": sorted(self._files),
            "records": self.records,
            "first_timestamp": self._first_timestamp,
            "last_timestamp": self._last_timestamp,
            "first_request_id": self._first_request_id,
            "last_request_id": self._last_request_id,
            "versions": sorted(self._versions),
        }


def log_range(logs: Iterable[LoggedRequest]) -> dict[str, Any]:
    """What a set of logs covers (for reports and lineage): files, records, time and request-id range."""
    coverage = LogCoverage()
    for entry in logs:
        coverage.add(entry)
    return coverage.to_json()


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


def logged_predictions(logs: Iterable[LoggedRequest], *, task: str, class_names: Sequence[str] = ()) -> np.ndarray:
    """The served outputs, one per row: class indices (classification) or values (regression)."""
    index = {name: i for i, name in enumerate(class_names)}
    values: list[Any] = []
    for entry in logs:
        values.extend(request_predictions(entry, task=task, class_index=index))
    if task == "classification":
        return np.asarray([v for v in values if v >= 0], dtype=np.int64)
    return np.asarray(values, dtype=np.float64)


def request_predictions(entry: LoggedRequest, *, task: str, class_index: Mapping[str, int]) -> list[Any]:
    """The served outputs of one logged request: class indices (-1: a label not in `class_index`)
    for classification, values for regression."""
    import tensorflow as tf

    kind = entry.kind
    if kind == "predict_log":
        outputs = entry.log.predict_log.response.outputs
        if task == "classification":
            if "class_id" in outputs:
                return tf.make_ndarray(outputs["class_id"]).reshape(-1).tolist()
            if "probabilities" in outputs:
                return tf.make_ndarray(outputs["probabilities"]).argmax(-1).reshape(-1).tolist()
            return []
        for name in ("prediction", "outputs"):
            if name in outputs:
                return tf.make_ndarray(outputs[name]).reshape(-1).tolist()
        return []
    if kind == "classify_log" and task == "classification":
        values = []
        for row in entry.log.classify_log.response.result.classifications:
            if row.classes:
                best = max(row.classes, key=lambda c: c.score)
                values.append(class_index.get(best.label, -1))
        return values
    if kind == "regress_log" and task == "regression":
        return [r.value for r in entry.log.regress_log.response.result.regressions]
    return []


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
