"""ExportSpec/FeatureSpec reject bad input at construction, with what was received."""

from __future__ import annotations

import numpy as np
import pytest

from tfstack import export
from tfstack.export import ExportSpec, FeatureSpec


class _FakeModel:
    variables: list = []

    def __call__(self, inputs):  # pragma: no cover - never called by validation
        raise AssertionError


def _spec(**overrides):
    fields = dict(
        model_name="m",
        task="classification",
        keras_model=_FakeModel(),
        features=(FeatureSpec(name="x", dtype="float32", shape=(2,)),),
        sample_inputs={"x": np.zeros((3, 2))},
    )
    fields.update(overrides)
    return ExportSpec(**fields)


def test_public_api_is_explicit():
    assert sorted(export.__all__) == [
        "CheckReport",
        "CorruptVersionError",
        "DriftAccumulator",
        "DriftThresholds",
        "ExportError",
        "ExportSpec",
        "FeatureSpec",
        "LoggedRequest",
        "LogsNotFoundError",
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
    for name in ("RepositoryError", "VerificationError", "VersionExistsError", "VersionNotFoundError", "CorruptVersionError"):
        assert issubclass(getattr(export, name), export.ExportError)


def test_valid_spec_normalises_inputs():
    spec = _spec(features=[FeatureSpec(name="x", dtype="float32", shape=[2])], class_names=["a", "b"])
    assert spec.features == (FeatureSpec(name="x", dtype="float32", shape=(2,)),)
    assert spec.class_names == ("a", "b")
    assert spec.sample_inputs["x"].dtype == np.float32
    assert spec.num_samples == 3


@pytest.mark.parametrize(
    "model_name",
    ["", "a/b", "..", ".hidden", "-x", "12", "x" * 129, "with space", "tab\t"],
)
def test_model_name_must_be_one_safe_path_component(model_name):
    with pytest.raises(ValueError, match="model_name must be one path component") as info:
        _spec(model_name=model_name)
    assert str(info.value).endswith(f"Received: model_name={model_name!r}")


def test_model_name_must_be_a_string():
    with pytest.raises(TypeError, match=r"model_name must be a str. Received: model_name=3 \(int\)"):
        _spec(model_name=3)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"task": "ranking"}, ValueError, r"task must be one of \('classification', 'regression'\). Received: task='ranking'"),
        ({"keras_model": "model.keras"}, TypeError, r"keras_model must be a keras.Model .* Received: keras_model=str"),
        ({"features": ()}, TypeError, r"features must be a non-empty tuple of FeatureSpec"),
        ({"features": ("x",)}, TypeError, r"features must hold FeatureSpec objects. Received: 'x'"),
        (
            {"features": (FeatureSpec(name="x", dtype="float32"), FeatureSpec(name="x", dtype="int64"))},
            ValueError,
            r"feature names must be unique. Received duplicates: \['x'\]",
        ),
        ({"sample_inputs": {"y": np.zeros((3, 2))}}, ValueError, r"exactly the feature names \['x'\]. Received: \['y'\]"),
        ({"sample_inputs": {"x": np.zeros((3, 5))}}, ValueError, r"must have shape \[N, 2\].*Received: shape=\[3, 5\]"),
        ({"sample_inputs": {"x": np.zeros((33, 2))}}, ValueError, r"rows \(1..32\).*Received: rows=\[33\]"),
        ({"sample_inputs": {"x": np.array([["a", "b"]])}}, ValueError, r"must be numeric \(float32\). Received: dtype=<U1"),
        ({"class_names": ("a", "a")}, ValueError, r"class_names must be unique"),
        ({"task": "regression", "class_names": ("a",)}, ValueError, r"class_names is for classification only"),
        ({"metrics": [("accuracy", 1.0)]}, TypeError, r"metrics must be a mapping. Received: metrics=list"),
        ({"confusion_matrix": [[1, 2, 3]]}, ValueError, r"confusion_matrix must be square \[C\]\[C\]. Received: shape=\[1, 3\]"),
        ({"parent_version": "1"}, TypeError, r"parent_version must be an int. Received: parent_version='1'"),
        ({"metrics": {"when": object()}}, TypeError, r"metrics must be JSON-able. value is not JSON-able. Received: <object"),
        ({"history": {"loss": [1.0, "x"]}}, ValueError, r"history\['loss'\] must be a sequence of numbers .*Received: \[1.0, 'x'\]"),
    ],
)
def test_bad_spec_fields_are_rejected(overrides, error, message):
    with pytest.raises(error, match=message):
        _spec(**overrides)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "1x", "dtype": "float32"}, r"FeatureSpec.name must start with a letter.*Received: name='1x'"),
        ({"name": "x", "dtype": "float64"}, r"FeatureSpec.dtype must be one of .*Received: dtype='float64'"),
        ({"name": "x", "dtype": "float32", "shape": (0,)}, r"positive ints .*Received: shape=\(0,\)"),
    ],
)
def test_bad_feature_specs_are_rejected(fields, message):
    with pytest.raises(ValueError, match=message):
        FeatureSpec(**fields)


def test_string_samples_become_bytes():
    spec = _spec(features=(FeatureSpec(name="color", dtype="string"),), sample_inputs={"color": np.array(["red", "blue"])})
    assert spec.sample_inputs["color"].tolist() == [b"red", b"blue"]


def test_repository_rejects_bad_arguments_before_io(tmp_path):
    with pytest.raises(TypeError, match=r"base_path must be a str or path. Received: base_path=None"):
        export.ModelRepository(None)
    repo = export.ModelRepository(tmp_path / "absent")
    assert repo.models() == []
    assert repo.versions("m") == [] and repo.latest("m") is None
    with pytest.raises(ValueError, match="model_name must be one path component"):
        repo.versions("../etc")
    with pytest.raises(export.VersionNotFoundError, match=r"Version 1 of model 'm' not found .* Available versions: none"):
        repo.manifest("m", 1)
    assert not (tmp_path / "absent").exists()
