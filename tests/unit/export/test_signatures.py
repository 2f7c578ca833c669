"""A reloaded version predicts exactly like the in-memory Keras model, through every signature."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.export.conftest import build_spec


def _load(published, kind):
    import tensorflow as tf

    return tf.saved_model.load(str(published[kind].path))


def _keras(kind, inputs):
    return np.asarray(build_spec(kind).keras_model({k: _tensor(v) for k, v in inputs.items()}))


def _tensor(array):
    import tensorflow as tf

    return tf.constant(array.astype(np.bytes_) if array.dtype == object else array)


@pytest.mark.parametrize("kind", ["classification", "mixed"])
def test_serving_default_classification_matches_keras(published, test_rows, kind):
    inputs = test_rows(kind)
    outputs = _load(published, kind).signatures["serving_default"](**{k: _tensor(v) for k, v in inputs.items()})
    expected = _keras(kind, inputs)
    class_names = build_spec(kind).class_names

    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5, rtol=1e-5)
    assert outputs["probabilities"].dtype.name == "float32"
    np.testing.assert_array_equal(outputs["class_id"].numpy(), expected.argmax(axis=1))
    assert outputs["class_id"].dtype.name == "int64"
    assert [b.decode() for b in outputs["class_label"].numpy()] == [class_names[i] for i in expected.argmax(axis=1)]


def test_serving_default_regression_is_flat_and_matches_keras(published, test_rows):
    inputs = test_rows("regression")
    outputs = _load(published, "regression").signatures["serving_default"](**{k: _tensor(v) for k, v in inputs.items()})

    assert set(outputs) == {"prediction"}
    assert outputs["prediction"].shape == (16,)
    np.testing.assert_allclose(outputs["prediction"].numpy(), _keras("regression", inputs).reshape(-1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["classification", "mixed"])
def test_classify_signature_gives_same_classes_and_scores(published, test_rows, kind):
    import tensorflow as tf

    from tfstack.export._signatures import serialize_examples

    spec = build_spec(kind)
    inputs = test_rows(kind)
    examples = tf.constant(serialize_examples(spec.features, spec._check_sample_inputs(inputs, spec.features)))
    outputs = _load(published, kind).signatures["classify"](inputs=examples)

    assert set(outputs) == {"classes", "scores"}
    np.testing.assert_allclose(outputs["scores"].numpy(), _keras(kind, inputs), atol=1e-5, rtol=1e-5)
    classes = outputs["classes"].numpy().astype(str)
    assert classes.shape == (16, len(spec.class_names))
    assert (classes == np.array(spec.class_names)).all()


def test_regress_signature_gives_same_values(published, test_rows):
    import tensorflow as tf

    from tfstack.export._signatures import serialize_examples

    spec = build_spec("regression")
    inputs = test_rows("regression")
    outputs = _load(published, "regression").signatures["regress"](inputs=tf.constant(serialize_examples(spec.features, inputs)))

    assert set(outputs) == {"outputs"}
    np.testing.assert_allclose(outputs["outputs"].numpy(), _keras("regression", inputs).reshape(-1), atol=1e-5, rtol=1e-5)


def test_signature_defs_are_what_tf_serving_expects(published):
    from tfstack.export._signatures import read_signature_summary

    classification = read_signature_summary(published["classification"].path)
    regression = read_signature_summary(published["regression"].path)
    mixed = read_signature_summary(published["mixed"].path)

    assert set(classification) == {"serving_default", "classify"}
    assert set(regression) == {"serving_default", "regress"}
    # TF Serving's classifier: exactly one input `inputs` (DT_STRING [N]); classes/scores [N, C].
    assert classification["classify"]["inputs"] == {"inputs": {"dtype": "string", "shape": [-1]}}
    assert classification["classify"]["outputs"] == {
        "classes": {"dtype": "string", "shape": [-1, 3]},
        "scores": {"dtype": "float32", "shape": [-1, 3]},
    }
    assert regression["regress"]["outputs"] == {"outputs": {"dtype": "float32", "shape": [-1]}}
    # TF Serving's method names, so --enable_signature_method_name_check=true accepts them too.
    assert classification["classify"]["method_name"] == "tensorflow/serving/classify"
    assert regression["regress"]["method_name"] == "tensorflow/serving/regress"
    assert classification["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert classification["serving_default"]["outputs"] == {
        "probabilities": {"dtype": "float32", "shape": [-1, 3]},
        "class_id": {"dtype": "int64", "shape": [-1]},
        "class_label": {"dtype": "string", "shape": [-1]},
    }
    assert mixed["serving_default"]["inputs"] == {
        "age": {"dtype": "float32", "shape": [-1]},
        "color": {"dtype": "string", "shape": [-1]},
        "visits": {"dtype": "int64", "shape": [-1]},
    }


def test_fingerprint_matches_the_rewritten_saved_model(published):
    """saved_model.pb is edited after saving (method names); fingerprint.pb must describe the final file."""
    import tensorflow as tf
    from tensorflow.core.protobuf import fingerprint_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    path = str(published["classification"].path)
    fresh = fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(path))

    assert tf.saved_model.experimental.read_fingerprint(path).saved_model_checksum == fresh.saved_model_checksum


@pytest.mark.parametrize("kind", ["classification", "regression", "mixed"])
def test_every_signature_runs_by_tensor_name_in_a_tf1_session_like_tf_serving(published, test_rows, kind):
    """TF Serving restores variables by name into a Session and runs SignatureDef tensor names
    (tensorflow/cc/saved_model/loader.cc LoadSavedModel; servables/tensorflow/predict_util.cc).
    The mixed model's StringLookup table must be initialised by the init op, not by TF2's loader."""
    from tfstack.export._session import SessionModel
    from tfstack.export._signatures import serialize_examples

    spec = build_spec(kind)
    inputs = test_rows(kind)
    expected = _keras(kind, inputs)
    examples = np.array(serialize_examples(spec.features, spec._check_sample_inputs(inputs, spec.features)), dtype=object)

    with SessionModel(published[kind].path) as model:
        served = model.run("serving_default", inputs)
        if kind == "regression":
            np.testing.assert_allclose(served["prediction"], expected.reshape(-1), atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(model.run("regress", {"inputs": examples})["outputs"], expected.reshape(-1), atol=1e-5, rtol=1e-5)
        else:
            np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5, rtol=1e-5)
            assert [b.decode() for b in served["class_label"]] == [spec.class_names[i] for i in expected.argmax(axis=1)]
            np.testing.assert_allclose(model.run("classify", {"inputs": examples})["scores"], expected, atol=1e-5, rtol=1e-5)


def test_each_weight_is_stored_once_and_no_optimizer_state(published):
    """keras.Model.export would list every weight twice (the tracked model and the traced graphs);
    TF Serving then restores both copies. The optimizer is never part of a serving export."""
    import tensorflow as tf

    keys = [name for name, _ in tf.train.list_variables(str(published["classification"].path / "variables" / "variables"))]
    weights = [k for k in keys if k != "_CHECKPOINTABLE_OBJECT_GRAPH"]

    assert len(weights) == len(build_spec("classification").keras_model.weights)
    assert not [k for k in keys if "optimizer" in k.lower()]


def test_a_resource_the_walk_misses_falls_back_to_tracking_the_whole_model(tmp_path, monkeypatch, test_rows):
    """If a lookup table is not found by the walk, saving reports an untracked resource; the export
    then tracks the whole model (as keras.Model.export does) and still serves under a Session."""
    from tfstack import export
    from tfstack.export import _signatures
    from tfstack.export._session import SessionModel

    monkeypatch.setattr(_signatures, "_resources", lambda model: [])
    inputs = test_rows("mixed")
    published = export.publish(build_spec("mixed"), tmp_path)

    with SessionModel(published.path) as model:
        served = model.run("serving_default", inputs)
    np.testing.assert_allclose(served["probabilities"], _keras("mixed", inputs), atol=1e-5, rtol=1e-5)
    import tensorflow as tf

    stored = [n for n, _ in tf.train.list_variables(str(published.path / "variables" / "variables"))]
    assert len(stored) - 1 > len(build_spec("mixed").keras_model.weights), "the fallback tracks the whole model"
