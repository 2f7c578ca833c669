"""Export Keras models as TF Serving SavedModels into a versioned, atomically published repository.

Every version is checked the way `tensorflow_model_server` loads it (a TF1-style Session: restore
op, init op, signatures run by tensor name) before it appears. Layout:
`<base_path>/<model_name>/<version>/` (a SavedModel with `serving_default` plus `classify` or
`regress`, and `assets.extra/` with warmup records, manifest.json, sample_request.json and
plots). Beside the versions only hidden names appear (`.staging-<id>`, `.publish.lock`), which
TF Serving ignores. A model name is one path component of letters, digits, `_`, `.`, `-`, not
starting with `.` or `-` and not purely numeric (so it can never be mistaken for a version).

Example:
    >>> from tfstack import export
    >>> spec = export.ExportSpec(model_name="digits", task="classification", keras_model=model,
    ...                          features=(export.FeatureSpec(name="pixels", dtype="float32", shape=(8, 8)),),
    ...                          class_names=tuple("0123456789"), sample_inputs={"pixels": x_test[:8]})
    >>> export.publish(spec, "./models").version
    1
    >>> export.export_model("my_model.keras", "./models", model_name="mine", sample="rows.csv").version
    1
    >>> export.check_saved_model("./models/digits/1").ok   # loads and runs as TF Serving would
    True
"""

from tfstack.export._errors import (
    CorruptVersionError,
    ExportError,
    LogsNotFoundError,
    RepositoryError,
    SchemaChangeError,
    VerificationError,
    VersionExistsError,
    VersionNotFoundError,
)
from tfstack.export._check import CheckReport, SignatureCheck, check_saved_model
from tfstack.export._compat import SignatureComparison, compare_signatures, serving_signature
from tfstack.export._external import export_model
from tfstack.export._manifest import key_metric, read_signature_summary
from tfstack.export._monitor import DriftAccumulator, DriftThresholds, drift_report, read_drift_thresholds
from tfstack.export._prediction_logs import (
    LoggedRequest,
    PredictionLogTail,
    file_fingerprint,
    iter_prediction_logs,
    log_range,
    read_prediction_logs,
    request_inputs,
)
from tfstack.export._profile import build_profile, read_profile
from tfstack.export._repository import ModelRepository, atomic_write_text, publish, version_directories
from tfstack.export._spec import ExportSpec, FeatureSpec, PublishedVersion, check_model_name

__all__ = [
    "CheckReport",
    "CorruptVersionError",
    "DriftAccumulator",
    "DriftThresholds",
    "ExportError",
    "ExportSpec",
    "LoggedRequest",
    "LogsNotFoundError",
    "FeatureSpec",
    "ModelRepository",
    "PredictionLogTail",
    "PublishedVersion",
    "RepositoryError",
    "SchemaChangeError",
    "SignatureCheck",
    "SignatureComparison",
    "VerificationError",
    "VersionExistsError",
    "VersionNotFoundError",
    "atomic_write_text",
    "build_profile",
    "check_model_name",
    "check_saved_model",
    "compare_signatures",
    "drift_report",
    "export_model",
    "file_fingerprint",
    "iter_prediction_logs",
    "key_metric",
    "log_range",
    "publish",
    "read_drift_thresholds",
    "read_prediction_logs",
    "read_profile",
    "read_signature_summary",
    "request_inputs",
    "serving_signature",
    "version_directories",
]
