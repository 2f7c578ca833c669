"""TrainConfig rejects bad settings up front, with what it received and what it expected."""

from __future__ import annotations

import pytest

from tfstack import training
from tfstack.training import ConfigError, TrainConfig, TrainingError


def test_defaults_train_digits() -> None:
    config = TrainConfig()
    assert config.source_name == "digits"
    assert config.model == "auto"
    assert config.to_dict()["image_size"] == [28, 28]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"dataset": "mnist"}, "Received: dataset='mnist'"),
        ({"dataset": "iris", "csv_path": "x.csv", "target": "y"}, "Use one data source"),
        ({"csv_path": "x.csv"}, "needs the name of its target column"),
        ({"target": "y"}, "only applies to a CSV dataset"),
        ({"model": "transformer"}, "Received: model='transformer'"),
        ({"hidden": (64, 0)}, "Received: hidden=(64, 0)"),
        ({"model": "perceptron", "hidden": (8,)}, "A perceptron has no hidden layers"),
        ({"model": "mlp", "hidden": ()}, "An mlp needs at least one hidden layer"),
        ({"activation": "sparkle"}, "Received: activation='sparkle'"),
        ({"optimizer": "lbfgs"}, "Received: optimizer='lbfgs'"),
        ({"learning_rate": 0}, "Received: learning_rate=0"),
        ({"optimizer": "adam", "momentum": 0.9}, "momentum` applies to sgd and rmsprop"),
        ({"momentum": 1.5, "optimizer": "sgd"}, "Received: momentum=1.5"),
        ({"batch_size": 0}, "Received: batch_size=0"),
        ({"epochs": 2.5}, "Received: epochs=2.5"),
        ({"patience": -1}, "Received: patience=-1"),
        ({"validation_split": 1.0}, "Received: validation_split=1.0"),
        ({"validation_split": 0.5, "test_split": 0.45}, "at least 10% of the data for training"),
        ({"strategy": "tpu"}, "Received: strategy='tpu'"),
        ({"image_size": (2, 2)}, "Received: image_size=(2, 2)"),
        ({"color_mode": "cmyk"}, "Received: color_mode='cmyk'"),
        ({"model_name": "../evil"}, "Received: model_name='../evil'"),
        ({"model_name": "123"}, "not be purely numeric"),
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(**kwargs)
    assert expected in str(info.value)
    # A bad argument is both a ValueError (Python convention) and under the package root.
    assert isinstance(info.value, ValueError) and isinstance(info.value, TrainingError)


def test_config_is_frozen_and_keyword_only() -> None:
    config = TrainConfig(epochs=3)
    with pytest.raises(AttributeError):
        config.epochs = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        TrainConfig("iris")  # type: ignore[misc]


def test_public_api_is_explicit() -> None:
    assert sorted(training.__all__) == sorted(set(training.__all__))
    for name in training.__all__:
        assert getattr(training, name).__module__.startswith("tfstack.training._")
    assert {"TrainConfig", "TrainResult", "train", "load_dataset", "TrainingError", "DatasetError"} <= set(
        training.__all__
    )


def test_importing_training_stays_light() -> None:
    """`tfstack --help` and config errors must not pay for TensorFlow, scikit-learn or PIL."""
    import subprocess
    import sys

    code = "import sys, tfstack.training, tfstack.training.cli; print(sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
