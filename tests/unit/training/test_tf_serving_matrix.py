"""Every dataset x model kind that `tfstack train` supports publishes a version TF Serving can serve.

TF Serving loads a version into a TF1-style Session by tensor name (tensorflow/cc/saved_model/
loader.cc LoadSavedModel), replays its warmup records (servables/tensorflow/
saved_model_warmup_util.cc) and runs signatures with Session::Run on the SignatureDef's tensor
names (servables/tensorflow/predict_util.cc, classifier.cc, regressor.cc). Each case here trains
a tiny model for one epoch, publishes it, then checks on held-out test rows (not the sample rows
publish verified) that the Session loader AND TF2's object loader give Keras' answers to 1e-5
through every signature. One case also runs TensorFlow's own `saved_model_cli run`.
"""

from __future__ import annotations

import csv
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfstack import export
from tfstack.training import TrainConfig, train

TOLERANCE = 1e-5
# (case id, data source, model kind); cnn only where the data are images.
CASES = [
    ("digits-perceptron", "digits", "perceptron"),
    ("digits-mlp", "digits", "mlp"),
    ("digits-cnn", "digits", "cnn"),
    ("iris-perceptron", "iris", "perceptron"),
    ("iris-mlp", "iris", "mlp"),
    ("wine-perceptron", "wine", "perceptron"),
    ("wine-mlp", "wine", "mlp"),
    ("breast_cancer-perceptron", "breast_cancer", "perceptron"),
    ("breast_cancer-mlp", "breast_cancer", "mlp"),
    ("diabetes-perceptron", "diabetes", "perceptron"),
    ("diabetes-mlp", "diabetes", "mlp"),
    ("csv-perceptron", "csv", "perceptron"),
    ("csv-mlp", "csv", "mlp"),
    ("images-perceptron", "images", "perceptron"),
    ("images-mlp", "images", "mlp"),
    ("images-cnn", "images", "cnn"),
]


@pytest.fixture(scope="session")
def matrix_data(tmp_path_factory) -> dict[str, Path]:
    """A CSV with string columns (city, plan) and an RGB image folder, written once."""
    root = tmp_path_factory.mktemp("matrix-data")
    rng = random.Random(0)
    csv_path = root / "customers.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["age", "city", "plan", "spend", "churned"])
        for _ in range(120):
            city, plan, age = rng.choice(["oslo", "rome", "lima"]), rng.choice(["basic", "pro"]), rng.randint(18, 80)
            writer.writerow([age, city, plan, f"{rng.random() * 50:.2f}", "yes" if city == "oslo" or age > 65 else "no"])
    from PIL import Image

    images = root / "shades"
    pixels = np.random.default_rng(0)
    for name, low, high in (("dark", 0, 90), ("light", 160, 255)):
        (images / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(pixels.integers(low, high, size=(12, 10, 3), dtype=np.uint8), mode="RGB").save(images / name / f"{i}.png")
    return {"csv": csv_path, "images": images}


@pytest.fixture(scope="session")
def matrix_repository(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("matrix-models")


_PUBLISHED: dict[str, tuple] = {}


def _published(case: str, source: str, kind: str, data: dict[str, Path], base: Path, tmp: Path):
    """Train (1 epoch, tiny) and publish once per case; later tests reuse it."""
    if case not in _PUBLISHED:
        settings = dict(model=kind, hidden=(8,) if kind != "perceptron" else (), epochs=1, batch_size=64,
                        run_dir=str(tmp / f"run-{case}"), model_name=case)
        if source == "csv":
            settings.update(csv_path=str(data["csv"]), target="churned")
        elif source == "images":
            settings.update(image_dir=str(data["images"]), image_size=(12, 10), color_mode="rgb")
        else:
            settings.update(dataset=source)
        result = train(TrainConfig(**settings), progress=False)
        _PUBLISHED[case] = (result, export.publish(result.export_spec(), base))
    return _PUBLISHED[case]


def _keras_reference(result, rows):
    import tensorflow as tf

    tensors = {k: tf.constant(v.astype(str).tolist()) if v.dtype == object else tf.constant(v) for k, v in rows.items()}
    return np.asarray(result.model(tensors), dtype=np.float32)


@pytest.mark.slow
@pytest.mark.parametrize(("case", "source", "kind"), CASES, ids=[c[0] for c in CASES])
def test_published_version_serves_like_keras_under_both_loaders(case, source, kind, matrix_data, matrix_repository, tmp_path_factory):
    import tensorflow as tf

    from tfstack.export._session import SessionModel
    from tfstack.export._signatures import make_examples

    result, published = _published(case, source, kind, matrix_data, matrix_repository, tmp_path_factory.getbasetemp())
    task = result.dataset.task
    # Held-out rows beyond the 16 sample rows publish verified with.
    rows = {k: np.asarray(v[-24:]) for k, v in result.dataset.test.inputs.items()}
    rows = {k: v.astype(object) if v.dtype.kind in "OU" else v for k, v in rows.items()}
    feeds = {k: np.array([str(x).encode() for x in v], dtype=object) if v.dtype == object else v for k, v in rows.items()}
    expected = _keras_reference(result, rows)
    spec = result.export_spec()
    examples = np.array([e.SerializeToString() for e in make_examples(spec.features, feeds)], dtype=object)

    report = export.check_saved_model(published.path, method_name_check=True)
    assert report.ok, report.failures
    assert all(s.status == "ok" for s in report.signatures), report.signatures

    with SessionModel(published.path) as model:
        served = model.run("serving_default", feeds)
        by_example = model.run("classify" if task == "classification" else "regress", {"inputs": examples})
    loaded = tf.saved_model.load(str(published.path))
    object_served = {k: v.numpy() for k, v in loaded.signatures["serving_default"](
        **{k: tf.constant(v.tolist()) if v.dtype == object else tf.constant(v) for k, v in feeds.items()}).items()}

    if task == "classification":
        for outputs in (served, object_served):
            np.testing.assert_allclose(outputs["probabilities"], expected, atol=TOLERANCE, rtol=TOLERANCE)
            np.testing.assert_array_equal(outputs["class_id"], outputs["probabilities"].argmax(axis=1))
        np.testing.assert_allclose(by_example["scores"], expected, atol=TOLERANCE, rtol=TOLERANCE)
        assert by_example["classes"].shape == expected.shape
    else:
        for outputs in (served, object_served):
            np.testing.assert_allclose(outputs["prediction"], expected.reshape(-1), atol=TOLERANCE, rtol=TOLERANCE)
        np.testing.assert_allclose(by_example["outputs"], expected.reshape(-1), atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.slow
def test_tensorflows_own_saved_model_cli_runs_a_fresh_export(matrix_data, matrix_repository, tmp_path_factory, tmp_path):
    """`saved_model_cli run` loads by tensor name into a Session, like TF Serving (the issue's repro)."""
    result, published = _published("digits-cnn", "digits", "cnn", matrix_data, matrix_repository, tmp_path_factory.getbasetemp())
    pixels = np.asarray(result.dataset.test.inputs["pixels"][:2], dtype=np.float32)
    np.save(tmp_path / "x.npy", pixels)

    run = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run", "--dir", str(published.path),
         "--tag_set", "serve", "--signature_def", "serving_default", "--inputs", f"pixels={tmp_path / 'x.npy'}"],
        capture_output=True, text=True, timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"},
    )

    assert run.returncode == 0, run.stderr[-3000:]
    printed = run.stdout.split("Result for output key probabilities:")[1].split("Result for output key")[0]
    probabilities = np.array([float(v) for v in re.findall(r"[-+]?\d+\.\d*(?:e[-+]?\d+)?", printed)]).reshape(2, -1)
    np.testing.assert_allclose(probabilities, _keras_reference(result, {"pixels": pixels}), atol=TOLERANCE, rtol=1e-4)
    label = run.stdout.split("Result for output key class_label:")[1].splitlines()[1]
    assert label == str([c.encode() for c in np.array(result.dataset.class_names)[probabilities.argmax(1)]]).replace(", ", " ")
