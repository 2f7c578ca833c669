"""Inputs that do not match the signature, over both transports against a real server (issue 18, items 3 and 4).

The model takes `pixels` float32 [-1, 8, 8] (normalised per pixel, as the digits CNN does) and
`count` int64 [-1]. TF Serving itself fails a float64 tensor for a float32 input over gRPC
inside the Session (`Expects arg[0] to be float but double is provided`) while REST parses
JSON into the signature's dtype (spec §2.5); and a wrongly shaped input fails wherever the
graph first trips on it. The client casts safely on both transports and names the input whose
shape does not match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfstack.client import InvalidInputError, ServingClient
from tests.support.server import start_server

pytestmark = pytest.mark.slow

MODEL = "pixels"


def _publish_model(base: Path) -> None:
    import keras

    from tfstack import export

    keras.utils.set_random_seed(3)
    pixels = keras.Input((8, 8), name="pixels", dtype="float32")
    count = keras.Input((), name="count", dtype="int64")
    normalised = keras.layers.Normalization(axis=(1, 2), mean=np.full((8, 8), 4.0), variance=np.full((8, 8), 9.0))(pixels)
    counted = keras.layers.Reshape((1,))(keras.ops.cast(count, "float32"))
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(normalised), counted])
    out = keras.layers.Dense(3, activation="softmax")(joined)
    model = keras.Model({"pixels": pixels, "count": count}, out)
    rng = np.random.default_rng(0)
    spec = export.ExportSpec(
        model_name=MODEL, task="classification", keras_model=model,
        features=(export.FeatureSpec(name="pixels", dtype="float32", shape=(8, 8)),
                  export.FeatureSpec(name="count", dtype="int64", shape=())),
        class_names=("a", "b", "c"),
        sample_inputs={"pixels": rng.uniform(0, 16, (4, 8, 8)).astype(np.float32), "count": np.arange(4, dtype=np.int64)},
        metrics={"accuracy": 1.0}, training_config={}, dataset={"name": "synthetic"},
    )
    export.publish(spec, base)


@pytest.fixture(scope="module")
def pixels_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("pixels-models")
    _publish_model(base)
    with start_server(tmp_path_factory.mktemp("pixels-server"), model_name=MODEL, model_base_path=base / MODEL) as running:
        yield running


@pytest.fixture(params=["rest", "grpc"])
def client(request, pixels_server):
    if request.param == "rest":
        made = ServingClient.rest(pixels_server.rest_url)
    else:
        made = ServingClient.grpc(pixels_server.grpc_target)
    with made:
        yield made


def test_float64_and_whole_floats_are_cast_to_the_signature_dtypes_on_both_transports(client):
    pixels = np.random.default_rng(1).uniform(0, 16, (2, 8, 8))  # float64, as np.load gives it
    reference = client.predict(MODEL, {"pixels": pixels.astype(np.float32), "count": np.array([1, 2], np.int64)})
    outputs = client.predict(MODEL, {"pixels": pixels, "count": np.array([1.0, 2.0])})
    np.testing.assert_allclose(outputs["probabilities"], reference["probabilities"], rtol=1e-6)


@pytest.mark.parametrize(
    "count, received",
    [(np.array([1.5, 2.0]), "float64 values that are not whole numbers (e.g. 1.5)"),
     (np.array([np.inf, 1.0]), "float64 values that are not whole numbers (e.g. inf)"),
     (np.array([1e20, 1.0]), "1e+20, outside int64's range [-9223372036854775808, 9223372036854775807]")],
    ids=["fraction", "infinite", "out-of-range"],
)
def test_lossy_casts_are_refused_before_sending_with_what_was_received_and_expected(client, count, received):
    with pytest.raises(InvalidInputError) as info:
        client.predict(MODEL, {"pixels": np.zeros((2, 8, 8), np.float32), "count": count})
    assert info.value.code == "INVALID_ARGUMENT"
    assert f"count: received {received}, but signature 'serving_default' of model 'pixels' expects int64" in str(info.value)


def test_a_wrongly_shaped_input_is_named_with_both_shapes(client):
    with pytest.raises(InvalidInputError) as info:
        client.predict(MODEL, {"pixels": np.zeros((2, 64), np.float32), "count": np.array([1, 2])})
    message = str(info.value)
    assert message.startswith("INVALID_ARGUMENT: pixels: received shape [2, 64], expected [-1, 8, 8]"), message
    assert "The server said:" in message and "\n" not in message
