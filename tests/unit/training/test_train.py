"""train(): real (tiny) fits. Each test trains for 1-3 epochs, so the file stays a few seconds per test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfstack.training import ModelError, TrainConfig, train


def _fit(tmp_path: Path, **kwargs):
    kwargs.setdefault("run_dir", str(tmp_path / "run"))
    return train(TrainConfig(**kwargs), progress=False)


def test_csv_with_string_and_numeric_columns_end_to_end(tmp_path: Path, people_csv: Path) -> None:
    from tfstack import export

    result = _fit(tmp_path, csv_path=str(people_csv), target="label", epochs=3, hidden=(8,))
    assert result.model_name == "people_data"
    assert set(result.metrics) >= {"accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "per_class"}
    assert set(result.metrics["per_class"]) == {"no", "yes"}
    # The model takes RAW values by column name, strings included; an unseen city goes to the OOV slot.
    raw = {
        "Age_years": np.array([25.0, 70.0], np.float32),
        "city": np.array(["oslo", "tokyo"]),
        "income": np.array([10.0, 99.0], np.float32),
    }
    import tensorflow as tf

    probabilities = result.model({k: tf.constant(v) for k, v in raw.items()}).numpy()
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    spec = result.export_spec()
    assert isinstance(spec, export.ExportSpec)
    assert [(f.name, f.dtype, f.shape) for f in spec.features] == [
        ("Age_years", "float32", ()),
        ("city", "string", ()),
        ("income", "float32", ()),
    ]
    assert spec.task == "classification" and spec.class_names == ("no", "yes")
    assert spec.num_samples == min(16, len(result.dataset.test))
    # Samples are the real raw test rows, not normalised ones.
    np.testing.assert_array_equal(spec.sample_inputs["Age_years"], result.dataset.test.inputs["Age_years"][:16])
    assert spec.training_config["model"] == "mlp" and spec.training_config["hidden"] == [8]
    assert spec.training_config["model_name"] == "people_data"
    assert spec.training_config["run_dir"] == str(tmp_path / "run")
    assert spec.dataset["fingerprint"] == result.dataset.fingerprint
    assert len(spec.history["loss"]) == result.metrics["epochs_trained"]
    assert np.asarray(spec.confusion_matrix).sum() == len(result.dataset.test)
    json.dumps({"m": dict(spec.metrics), "c": dict(spec.training_config), "d": dict(spec.dataset)})


def test_same_seed_same_metrics_and_a_different_seed_differs(tmp_path: Path) -> None:
    config = dict(model="cnn", hidden=(16,), epochs=2, batch_size=64)
    first = _fit(tmp_path, run_dir=str(tmp_path / "a"), seed=3, **config)
    second = _fit(tmp_path, run_dir=str(tmp_path / "b"), seed=3, **config)
    for key in ("accuracy", "f1_macro", "roc_auc"):
        assert abs(first.metrics[key] - second.metrics[key]) <= 1e-6
    np.testing.assert_allclose(first.history["loss"], second.history["loss"], atol=1e-6)
    pixels = first.dataset.test.inputs["pixels"][:32]
    np.testing.assert_allclose(
        first.model.predict({"pixels": pixels}, verbose=0), second.model.predict({"pixels": pixels}, verbose=0), atol=1e-6
    )
    other = _fit(tmp_path, run_dir=str(tmp_path / "c"), seed=4, **config)
    assert other.history["loss"] != first.history["loss"]


def test_digits_model_normalises_raw_pixels_inside(tmp_path: Path) -> None:
    result = _fit(tmp_path, model="perceptron", epochs=1)
    model = result.model
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    assert len(dense) == 1 and dense[0].units == 10
    norm = model.get_layer("normalize")
    train_pixels = result.dataset.train.inputs["pixels"]
    assert float(np.asarray(norm.mean).reshape(-1)[0]) == pytest.approx(float(train_pixels.mean()), rel=1e-4)
    probabilities = model.predict({"pixels": result.dataset.test.inputs["pixels"][:5]}, verbose=0)
    assert probabilities.shape == (5, 10)
    assert (run := result.run_dir / "logs").is_dir() and any(run.rglob("events.out.tfevents.*"))
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["metrics"]["accuracy"] == result.metrics["accuracy"]


def test_mlp_uses_hidden_sizes_and_activation(tmp_path: Path) -> None:
    result = _fit(
        tmp_path, dataset="wine", model="mlp", hidden=(16, 8), activation="tanh", optimizer="sgd", momentum=0.9,
        epochs=2,
    )
    dense = [layer for layer in result.model.layers if type(layer).__name__ == "Dense"]
    assert [d.units for d in dense] == [16, 8, 3]
    assert [d.activation.__name__ for d in dense[:2]] == ["tanh", "tanh"]
    assert type(result.model.optimizer).__name__ == "SGD"
    assert float(result.model.optimizer.momentum) == pytest.approx(0.9)


def test_regression_predicts_in_target_units(tmp_path: Path) -> None:
    result = _fit(tmp_path, dataset="diabetes", epochs=2, optimizer="rmsprop")
    assert set(result.metrics) >= {"mae", "rmse", "r2"}
    assert result.confusion_matrix is None
    predictions = result.model.predict({"features": result.dataset.test.inputs["features"]}, verbose=0)
    assert predictions.shape == (len(result.dataset.test), 1)
    # Raw targets are 25..346; an untrained-ish model still predicts in that range, not near 0.
    assert 50 < float(predictions.mean()) < 300
    spec = result.export_spec()
    assert spec.task == "regression" and spec.class_names == () and spec.confusion_matrix is None


def test_rgb_image_folder_cnn(tmp_path: Path, image_dir: Path) -> None:
    result = _fit(
        tmp_path, image_dir=str(image_dir), image_size=(12, 12), color_mode="rgb", epochs=1, strategy="mirrored",
        validation_split=0.2, test_split=0.25,
    )
    assert result.config.model == "cnn"
    assert result.export_spec().features[0].shape == (12, 12, 3)
    assert result.model.predict({"pixels": result.dataset.test.inputs["pixels"]}, verbose=0).shape[1] == 2


def test_cnn_on_a_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="A cnn needs image data .* 'iris' is a table.*Received: model='cnn'"):
        _fit(tmp_path, dataset="iris", model="cnn")
