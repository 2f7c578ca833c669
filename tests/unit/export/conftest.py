"""Tiny Keras models and ExportSpecs for the export tests (built here, never committed).

Fixtures:
  make_spec (function): factory `make_spec(kind, **overrides) -> ExportSpec` for kind
      "classification" (one "features" input [4]), "regression" (one "features" input [3],
      output [N, 1]) or "mixed" (CSV-like scalar columns: age float32, color string via
      StringLookup, visits int64; 2 classes).
  test_rows (function): `test_rows(kind, n) -> dict[str, np.ndarray]`, raw rows that are NOT
      the sample inputs, to check predictions beyond what publish verified.
  published (session): {kind: PublishedVersion} for the three kinds in one repository.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

COLORS = ["red", "green", "blue"]


def _build_model(kind: str):
    import keras

    keras.utils.set_random_seed(7)
    if kind == "classification":
        x = keras.Input((4,), name="features", dtype="float32")
        h = keras.layers.Dense(8, activation="relu")(x)
        out = keras.layers.Dense(3, activation="softmax")(h)
        return keras.Model({"features": x}, out)
    if kind == "regression":
        x = keras.Input((3,), name="features", dtype="float32")
        h = keras.layers.Dense(8, activation="tanh")(x)
        out = keras.layers.Dense(1)(h)
        return keras.Model({"features": x}, out)
    if kind == "mixed":
        age = keras.Input((), name="age", dtype="float32")
        color = keras.Input((), name="color", dtype="string")
        visits = keras.Input((), name="visits", dtype="int64")
        one_hot = keras.layers.StringLookup(vocabulary=COLORS, output_mode="one_hot")(color)
        numeric = keras.layers.Concatenate()(
            [keras.ops.expand_dims(age, -1), keras.ops.expand_dims(keras.ops.cast(visits, "float32"), -1)]
        )
        # Scaled so the probabilities are not saturated at 0/1, which would make comparisons trivial.
        numeric = keras.layers.Rescaling(0.02)(numeric)
        h = keras.layers.Dense(6, activation="relu")(keras.layers.Concatenate()([numeric, one_hot]))
        out = keras.layers.Dense(2, activation="softmax")(h)
        return keras.Model({"age": age, "color": color, "visits": visits}, out)
    raise ValueError(kind)


def rows(kind: str, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "classification":
        return {"features": rng.normal(size=(n, 4)).astype(np.float32)}
    if kind == "regression":
        return {"features": rng.normal(size=(n, 3)).astype(np.float32)}
    return {
        "age": rng.uniform(18, 90, size=n).astype(np.float32),
        # "purple" is out of vocabulary: the exported lookup must map it like the in-memory one.
        "color": np.array(rng.choice(COLORS + ["purple"], size=n), dtype=object),
        "visits": rng.integers(0, 20, size=n).astype(np.int64),
    }


def _features(kind: str):
    from tfstack.export import FeatureSpec

    if kind == "classification":
        return (FeatureSpec(name="features", dtype="float32", shape=(4,)),)
    if kind == "regression":
        return (FeatureSpec(name="features", dtype="float32", shape=(3,)),)
    return (
        FeatureSpec(name="age", dtype="float32", shape=()),
        FeatureSpec(name="color", dtype="string", shape=()),
        FeatureSpec(name="visits", dtype="int64", shape=()),
    )


_MODELS: dict[str, Any] = {}


def build_spec(kind: str, **overrides: Any):
    from tfstack.export import ExportSpec

    if kind not in _MODELS:
        _MODELS[kind] = _build_model(kind)
    task = "regression" if kind == "regression" else "classification"
    fields: dict[str, Any] = dict(
        model_name=f"tiny-{kind}",
        task=task,
        keras_model=_MODELS[kind],
        features=_features(kind),
        sample_inputs=rows(kind, 5, seed=1),
        metrics={"accuracy": 0.875, "macro_f1": 0.8} if task == "classification" else {"mae": 1.5, "rmse": 2.25, "r2": 0.5},
        training_config={"epochs": 2, "optimizer": "adam", "learning_rate": 0.01},
        dataset={"name": f"synthetic-{kind}", "fingerprint": "sha256:" + "ab" * 32, "n_train": 100},
        history={"loss": [1.0, 0.6], "val_loss": [1.1, 0.7]},
    )
    if kind == "classification":
        fields.update(class_names=("setosa", "versicolor", "virginica"), confusion_matrix=[[5, 0, 0], [0, 4, 1], [0, 2, 3]])
    if kind == "mixed":
        fields.update(class_names=("no", "yes"))
    fields.update(overrides)
    return ExportSpec(**fields)


@pytest.fixture
def make_spec():
    return build_spec


@pytest.fixture
def test_rows():
    return lambda kind, n=16: rows(kind, n, seed=2)


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tfstack import export

    base = tmp_path_factory.mktemp("models")
    return {kind: export.publish(build_spec(kind), base) for kind in ("classification", "regression", "mixed")}


@pytest.fixture
def base_path(tmp_path: Path) -> Path:
    return tmp_path / "models"
