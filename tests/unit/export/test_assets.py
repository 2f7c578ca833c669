"""assets.extra/: warmup records TF Serving can replay, the manifest, the sample request, plots."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import numpy as np
import pytest

from tests.unit.export.conftest import build_spec


def _warmup_logs(path):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests")):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs


@pytest.mark.parametrize("kind", ["classification", "mixed"])
def test_warmup_file_is_prediction_logs_from_the_samples(published, kind):
    import tensorflow as tf

    spec = build_spec(kind)
    logs = _warmup_logs(published[kind].path)

    kinds = [log.WhichOneof("log_type") for log in logs]
    assert kinds == ["predict_log", "predict_log", "classify_log"]
    batch, single = logs[0].predict_log.request, logs[1].predict_log.request
    assert batch.model_spec.signature_name == "serving_default"
    assert set(batch.inputs) == {f.name for f in spec.features}
    for feature in spec.features:
        sent = tf.make_ndarray(batch.inputs[feature.name])
        expected = spec.sample_inputs[feature.name]
        if feature.dtype == "string":
            assert sent.tolist() == expected.tolist()
        else:
            np.testing.assert_array_equal(sent, expected)
        assert tf.make_ndarray(single.inputs[feature.name]).shape[0] == 1
    classify = logs[2].classify_log.request
    assert classify.model_spec.signature_name == "classify"
    assert len(classify.input.example_list.examples) == spec.num_samples


def test_warmup_has_a_regress_record_for_regression(published):
    logs = _warmup_logs(published["regression"].path)
    regress = [log for log in logs if log.WhichOneof("log_type") == "regress_log"]
    assert len(regress) == 1
    request = regress[0].regress_log.request
    assert request.model_spec.signature_name == "regress"
    example = request.input.example_list.examples[0]
    np.testing.assert_allclose(
        list(example.features.feature["features"].float_list.value), build_spec("regression").sample_inputs["features"][0]
    )


def test_warmup_replays_on_the_reloaded_model(published):
    """Each predict record runs against the SavedModel, as TF Serving does while loading."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(published["mixed"].path))
    for log in _warmup_logs(published["mixed"].path):
        if log.WhichOneof("log_type") == "predict_log":
            request = log.predict_log.request
            inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
            outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
            assert outputs["probabilities"].shape[0] == next(iter(inputs.values())).shape[0]


def test_manifest_describes_the_version(published):
    import keras
    import tensorflow as tf

    version = published["classification"]
    manifest = json.loads((version.path / "assets.extra" / "manifest.json").read_text())

    assert manifest == version.manifest
    assert manifest["model_name"] == "tiny-classification"
    assert manifest["version"] == version.version == int(version.path.name)
    created = datetime.fromisoformat(manifest["created"].replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 600
    assert manifest["library_versions"]["tensorflow"] == tf.__version__
    assert manifest["library_versions"]["keras"] == keras.__version__
    assert manifest["library_versions"]["tfstack"]
    assert manifest["training_config"] == {"epochs": 2, "optimizer": "adam", "learning_rate": 0.01}
    assert manifest["dataset"]["name"] == "synthetic-classification"
    assert manifest["dataset"]["fingerprint"] == "sha256:" + "ab" * 32
    assert manifest["metrics"] == {"accuracy": 0.875, "macro_f1": 0.8}
    assert manifest["class_names"] == ["setosa", "versicolor", "virginica"]
    assert manifest["features"] == [{"name": "features", "dtype": "float32", "shape": [4]}]
    assert manifest["signatures"]["classify"]["inputs"]["inputs"]["dtype"] == "string"
    assert manifest["parent_version"] is None
    assert manifest["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", manifest["git_commit"])
    for name in manifest["files"]:
        assert (version.path / name).is_file(), name


def test_manifest_converts_numpy_metrics_and_keeps_parent(make_spec, base_path):
    from tfstack import export

    spec = make_spec(
        "regression",
        metrics={"mae": np.float32(0.5), "per_target": np.array([1.0, 2.0]), "n": np.int64(3)},
        parent_version=4,
    )
    manifest = export.publish(spec, base_path).manifest
    assert manifest["metrics"] == {"mae": 0.5, "per_target": [1.0, 2.0], "n": 3}
    assert manifest["parent_version"] == 4


@pytest.mark.parametrize("kind", ["classification", "mixed"])
def test_sample_request_is_a_columnar_predict_body_the_model_accepts(published, kind):
    import tensorflow as tf

    path = published[kind].path
    body = json.loads((path / "assets.extra" / "sample_request.json").read_text())
    spec = build_spec(kind)

    assert body["signature_name"] == "serving_default"
    assert set(body["inputs"]) == {f.name for f in spec.features}
    dtypes = {f.name: {"float32": tf.float32, "int64": tf.int64, "string": tf.string}[f.dtype] for f in spec.features}
    inputs = {k: tf.constant(v, dtype=dtypes[k]) for k, v in body["inputs"].items()}
    outputs = tf.saved_model.load(str(path)).signatures["serving_default"](**inputs)
    assert outputs["class_label"].shape == (3,)
    # Same float32 values as the samples, written as their shortest decimal (67.1, not 67.0999984741211).
    name = "age" if kind == "mixed" else "features"
    sent = np.asarray(body["inputs"][name], dtype=np.float64)
    np.testing.assert_array_equal(sent.astype(np.float32), spec.sample_inputs[name][:3])
    assert all(repr(v) == str(np.float32(v)) for v in sent.reshape(-1).tolist())


def test_plots_are_pngs(published):
    extra = published["classification"].path / "assets.extra"
    for name in ("training_curves.png", "confusion_matrix.png"):
        assert (extra / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # No confusion matrix for regression; curves only when there is a history.
    assert not (published["regression"].path / "assets.extra" / "confusion_matrix.png").exists()
    assert (published["regression"].path / "assets.extra" / "training_curves.png").exists()
