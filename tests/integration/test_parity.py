"""Parity on exported tfstack models: the trained Keras model in this process, the REST API and
the gRPC API give the same answers, for every signature the export writes.

Two tiny models are trained with `training.train` (iris: classification; diabetes: regression),
published with `export.publish` into one repository, and served through the harness, so the
same test checks the embedded server by default and real TF Serving with
`pytest --serving-backend=docker tests/integration/test_parity.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
PROTOCOLS = ("rest", "grpc")
ROWS = 12
# float32 end to end; REST's JSON carries shortest-repr float32, so differences are rounding only.
RTOL, ATOL = 1e-5, 1e-6
# What every tfstack export promises (docs/architecture.md, "Exported signatures").
EXPECTED_SIGNATURES = {
    "classification": {"serving_default", "classify"},
    "regression": {"serving_default", "regress"},
}


class Trained:
    """One published model and what the in-process Keras model says about some test rows."""

    def __init__(self, result: Any, published: Any) -> None:
        self.model_name: str = result.model_name
        self.task: str = result.dataset.task
        self.version: int = published.version
        self.base_path: Path = Path(published.path).parent
        self.class_names = tuple(str(c) for c in result.dataset.class_names)
        self.inputs = {name: np.asarray(values[:ROWS]) for name, values in result.dataset.test.inputs.items()}
        self.keras = np.asarray(result.model({k: v for k, v in self.inputs.items()}), dtype=np.float32)
        if self.task == "regression":
            self.keras = self.keras.reshape(-1)

    def examples(self) -> list[dict[str, Any]]:
        """The same rows as tf.Example features (one feature per input, as the export parses them)."""
        return [{name: values[i] for name, values in self.inputs.items()} for i in range(ROWS)]


def _train(dataset: str, base: Path, runs: Path) -> Trained:
    from tfstack import export
    from tfstack.training import TrainConfig, train

    config = TrainConfig(
        dataset=dataset, model="mlp", hidden=(8,), epochs=3, patience=1, run_dir=str(runs / dataset), seed=7
    )
    result = train(config, progress=False)
    return Trained(result, export.publish(result.export_spec(), base))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trained]:
    base = tmp_path_factory.mktemp("parity_models")
    runs = tmp_path_factory.mktemp("parity_runs")
    return {t.task: t for t in (_train("iris", base, runs), _train("diabetes", base, runs))}


@pytest.fixture(scope="module")
def endpoint(serving_factory, trained: dict[str, Trained]):
    return serving_factory(models={t.model_name: t.base_path for t in trained.values()})


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_served_signatures_are_exactly_the_exported_ones(endpoint, trained, task, protocol):
    model = trained[task]

    metadata = endpoint.client(protocol).get_model_metadata(model.model_name)

    assert metadata.version == model.version == endpoint.versions[model.model_name]
    assert set(metadata.signatures) == EXPECTED_SIGNATURES[task]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_classification_serving_default_matches_keras(endpoint, trained, protocol):
    model = trained["classification"]

    outputs = endpoint.client(protocol).predict(model.model_name, model.inputs)

    np.testing.assert_allclose(outputs["probabilities"], model.keras, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(outputs["class_id"], model.keras.argmax(axis=1))
    labels = [v.decode() if isinstance(v, bytes) else str(v) for v in outputs["class_label"]]
    assert labels == [model.class_names[i] for i in model.keras.argmax(axis=1)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_classify_signature_matches_keras(endpoint, trained, protocol):
    model = trained["classification"]

    result = endpoint.client(protocol).classify(model.model_name, model.examples(), signature_name="classify")

    np.testing.assert_allclose(result.scores, model.keras, rtol=RTOL, atol=ATOL)
    assert all(c.labels == model.class_names for c in result.classifications)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_regression_serving_default_matches_keras(endpoint, trained, protocol):
    model = trained["regression"]

    outputs = endpoint.client(protocol).predict(model.model_name, model.inputs)

    np.testing.assert_allclose(np.asarray(outputs["prediction"]).reshape(-1), model.keras, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_regress_signature_matches_keras(endpoint, trained, protocol):
    model = trained["regression"]

    result = endpoint.client(protocol).regress(model.model_name, model.examples(), signature_name="regress")

    np.testing.assert_allclose(result.as_array(), model.keras, rtol=RTOL, atol=ATOL)


def test_rest_and_grpc_agree_bit_for_bit_on_every_output(endpoint, trained):
    # Beyond "both close to Keras": the two transports carry the same float32 values.
    for model in trained.values():
        rest = endpoint.client("rest").predict(model.model_name, model.inputs)
        grpc = endpoint.client("grpc").predict(model.model_name, model.inputs)
        assert set(rest) == set(grpc)
        for name in rest:
            np.testing.assert_array_equal(np.asarray(rest[name]), np.asarray(grpc[name]), err_msg=name)
