"""REST against an exported tfstack model (string/int64/float inputs, three outputs), served by a
real `tfstack serve`: row and columnar predict, classify via tf.Examples, metadata."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from tests.integration.test_rest import http
from tests.support.server import start_server

pytestmark = pytest.mark.slow

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
COLORS = ["red", "green", "blue"]
CLASSES = ("no", "yes")
ROWS = [
    {"age": 30.5, "color": "red", "visits": 3},
    {"age": 71.0, "color": "purple", "visits": 0},
    {"age": 18.0, "color": "blue", "visits": 19},
]


def _spec():
    import keras

    from tfstack.export import ExportSpec, FeatureSpec

    keras.utils.set_random_seed(11)
    age = keras.Input((), name="age", dtype="float32")
    color = keras.Input((), name="color", dtype="string")
    visits = keras.Input((), name="visits", dtype="int64")
    one_hot = keras.layers.StringLookup(vocabulary=COLORS, output_mode="one_hot")(color)
    numeric = keras.layers.Concatenate()(
        [keras.ops.expand_dims(age, -1), keras.ops.expand_dims(keras.ops.cast(visits, "float32"), -1)]
    )
    numeric = keras.layers.Rescaling(0.02)(numeric)
    hidden = keras.layers.Dense(6, activation="relu")(keras.layers.Concatenate()([numeric, one_hot]))
    model = keras.Model({"age": age, "color": color, "visits": visits}, keras.layers.Dense(2, activation="softmax")(hidden))
    samples = {
        "age": np.array([r["age"] for r in ROWS], np.float32),
        "color": np.array([r["color"] for r in ROWS], dtype=object),
        "visits": np.array([r["visits"] for r in ROWS], np.int64),
    }
    return ExportSpec(
        model_name="visitors",
        task="classification",
        keras_model=model,
        features=(
            FeatureSpec(name="age", dtype="float32", shape=()),
            FeatureSpec(name="color", dtype="string", shape=()),
            FeatureSpec(name="visits", dtype="int64", shape=()),
        ),
        class_names=CLASSES,
        sample_inputs=samples,
        metrics={"accuracy": 0.5},
        training_config={"epochs": 0},
        dataset={"name": "synthetic", "fingerprint": "sha256:" + "cd" * 32, "n_train": 3},
    ), model, samples


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    from tfstack import export

    spec, model, samples = _spec()
    base = tmp_path_factory.mktemp("tfstack_models")
    published = export.publish(spec, base)
    expected = np.asarray(model({k: np.asarray(v) if k != "color" else v.astype(str) for k, v in samples.items()}))
    with start_server(tmp_path_factory.mktemp("server"), model_name="visitors", model_base_path=base / "visitors") as server:
        yield server.rest_port, published.version, expected


def test_row_predict_returns_every_output_per_instance(served):
    port, _, expected = served
    reply = http(port, "POST", "/v1/models/visitors:predict", json.dumps({"instances": ROWS}).encode())
    assert reply.status == 200, reply.body
    predictions = reply.json()["predictions"]
    assert [set(p) for p in predictions] == [{"probabilities", "class_id", "class_label"}] * 3
    for p, probs in zip(predictions, expected):
        assert np.allclose(p["probabilities"], probs, atol=1e-6)
        assert p["class_id"] == int(np.argmax(probs)) and isinstance(p["class_id"], int)
        assert p["class_label"] == CLASSES[p["class_id"]]


def test_columnar_predict(served):
    port, _, expected = served
    columns = {k: [r[k] for r in ROWS] for k in ("age", "color", "visits")}
    reply = http(port, "POST", "/v1/models/visitors:predict", json.dumps({"inputs": columns}).encode())
    outputs = reply.json()["outputs"]
    assert np.allclose(outputs["probabilities"], expected, atol=1e-6)
    assert outputs["class_label"] == [CLASSES[int(i)] for i in np.argmax(expected, axis=1)]


def test_wrong_types_for_tfstack_inputs(served):
    port, _, _ = served
    bad = dict(ROWS[0], visits=3.0)
    reply = http(port, "POST", "/v1/models/visitors:predict", json.dumps({"instances": [bad]}).encode())
    assert reply.status == 400 and "JSON Value: 3.0 Type: Number is not of expected type: int64" in reply.json()["error"]
    missing = {k: v for k, v in ROWS[0].items() if k != "color"}
    reply = http(port, "POST", "/v1/models/visitors:predict", json.dumps({"instances": [missing]}).encode())
    assert reply.status == 400 and "keys must be equal to: age,color,visits" in reply.json()["error"]


def test_classify_with_examples(served):
    port, _, expected = served
    reply = http(port, "POST", "/v1/models/visitors:classify",
                 json.dumps({"signature_name": "classify", "examples": ROWS}).encode())
    assert reply.status == 200, reply.body
    results = reply.json()["results"]
    assert [[label for label, _ in r] for r in results] == [list(CLASSES)] * 3
    assert np.allclose([[score for _, score in r] for r in results], expected, atol=1e-6)
    assert all(not math.isnan(s) for r in results for _, s in r)


def test_metadata_lists_tfstack_signatures(served):
    port, version, _ = served
    doc = http(port, "GET", "/v1/models/visitors/metadata").json()
    assert doc["model_spec"]["version"] == str(version)
    signatures = doc["metadata"]["signature_def"]["signature_def"]
    assert {k: v["dtype"] for k, v in signatures["serving_default"]["inputs"].items()} == {
        "age": "DT_FLOAT", "color": "DT_STRING", "visits": "DT_INT64"}
    assert signatures["classify"]["method_name"] == "tensorflow/serving/classify"
