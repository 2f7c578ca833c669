"""`tfstack export` / `export.export_model`: a model the user brings gets the same guarantees as a
trained one (next version, Session-loader verification, warmup from samples, manifest)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tfstack import export
from tfstack.export.cli import export_command

USER_SCRIPT = """
import numpy as np
import keras

# A user's own model, trained and saved the usual Keras way.
keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input((4,)),
    keras.layers.Dense(8, activation="relu"),
    keras.layers.Dense(3, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)
model.fit(x, y, epochs=2, verbose=0)
model.save("flowers.keras")
np.save("rows.npy", x[:6])
"""


@pytest.fixture(scope="module")
def user_model(tmp_path_factory) -> Path:
    """A .keras file written by a small user script in its own process."""
    workdir = tmp_path_factory.mktemp("user")
    (workdir / "train.py").write_text(textwrap.dedent(USER_SCRIPT))
    result = subprocess.run([sys.executable, "train.py"], cwd=workdir, capture_output=True, text=True, timeout=300,
                            env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    return workdir


def _export(*args: str):
    return CliRunner().invoke(export_command, list(args), catch_exceptions=False)


def test_a_keras_file_from_a_user_script_is_published_and_serves_like_keras(user_model, tmp_path):
    import keras

    from tfstack.export._session import SessionModel

    base = tmp_path / "models"
    result = _export(str(user_model / "flowers.keras"), "--model-name", "flowers", "--base-path", str(base),
                     "--input", "features", "--class-names", "setosa,versicolor,virginica",
                     "--sample", str(user_model / "rows.npy"))

    assert result.exit_code == 0, result.output
    assert f"Published flowers version 1: {base / 'flowers' / '1'}" in result.output
    version = base / "flowers" / "1"
    rows = np.random.default_rng(5).normal(size=(7, 4)).astype(np.float32)
    expected = np.asarray(keras.saving.load_model(user_model / "flowers.keras")(rows))
    with SessionModel(version) as model:
        served = model.run("serving_default", {"features": rows})
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5, rtol=1e-5)
    assert [b.decode() for b in served["class_label"]] == [["setosa", "versicolor", "virginica"][i] for i in expected.argmax(1)]
    manifest = json.loads((version / "assets.extra" / "manifest.json").read_text())
    assert manifest["task"] == "classification" and manifest["class_names"] == ["setosa", "versicolor", "virginica"]
    assert manifest["features"] == [{"name": "features", "dtype": "float32", "shape": [4]}]
    assert manifest["training_config"]["exported_from"] == str((user_model / "flowers.keras").absolute())
    request = json.loads((version / "assets.extra" / "sample_request.json").read_text())
    np.testing.assert_allclose(request["inputs"]["features"], np.load(user_model / "rows.npy")[:3], rtol=1e-6)
    assert export.check_saved_model(version).ok
    # The data profile comes from every sample row (not only those kept for warmup), with the
    # model's own predictions on them as the prediction baseline.
    profile = export.read_profile(version)
    (features,) = profile["features"]
    assert profile["source"] == "sample rows.npy" and profile["rows"] == 6 and features["count"] == 24
    assert features["mean"] == pytest.approx(float(np.load(user_model / "rows.npy").mean()), rel=1e-5)
    assert sum(profile["predictions"]["counts"]) == 6

    # Same inputs and outputs (the input renamed as before): the next version.
    again = _export(str(user_model / "flowers.keras"), "--model-name", "flowers", "--base-path", str(base),
                    "--input", "features")
    assert again.exit_code == 0 and "version 2" in again.output, again.output


def test_a_keras_model_object_with_named_dict_inputs_and_a_string_lookup(tmp_path):
    import keras

    keras.utils.set_random_seed(3)
    size = keras.Input((), name="size", dtype="float32")
    city = keras.Input((), name="city", dtype="string")
    one_hot = keras.layers.StringLookup(vocabulary=["oslo", "rome"], output_mode="one_hot")(city)
    joined = keras.layers.Concatenate()([keras.ops.expand_dims(size, -1), one_hot])
    model = keras.Model({"size": size, "city": city}, keras.layers.Dense(1)(keras.layers.Dense(4, activation="tanh")(joined)))
    sample = tmp_path / "rows.csv"
    sample.write_text("city,size\noslo,1.5\nparis,0.25\nrome,3\n")

    published = export.export_model(model, tmp_path / "models", model_name="houses", sample=sample)

    assert published.manifest["task"] == "regression"
    assert published.manifest["features"] == [
        {"name": "size", "dtype": "float32", "shape": []}, {"name": "city", "dtype": "string", "shape": []}
    ]
    report = export.check_saved_model(published.path, method_name_check=True)
    assert report.ok and {s.signature_name for s in report.signatures} == {"serving_default", "regress"}


def test_a_saved_model_directory_is_copied_in_verified_and_warmed_up_from_a_json_sample(tmp_path):
    from tests.unit.export.test_tf_serving_loader import _testdata

    sample = tmp_path / "request.json"
    sample.write_text(json.dumps({"instances": [[1.0], [2.0], [5.0]]}))
    source = _testdata() / "saved_model_half_plus_two_cpu" / "00000123"

    result = _export(str(source), "--model-name", "half_plus_two", "--base-path", str(tmp_path / "models"),
                     "--sample", str(sample))

    assert result.exit_code == 0, result.output
    version = tmp_path / "models" / "half_plus_two" / "1"
    report = export.check_saved_model(version)
    assert report.ok and report.warmup.startswith("2 warmup record(s) replayed")
    manifest = json.loads((version / "assets.extra" / "manifest.json").read_text())
    assert manifest["published_from"] == str(source.absolute())
    assert "regress_x_to_y" in manifest["signatures"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--input", "a:float32:4", "--input", "b"], "The model has 1 input(s); inputs names 2"),
        (["--input", "x:float32:4:9"], "An input is written name[:dtype][:shape]"),
        (["--regression", "--class-names", "a,b,c"], "--class-names is for classification"),
        (["--class-names", "a,a,b"], "give distinct, non-empty labels"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(user_model, tmp_path, extra, message):
    result = _export(str(user_model / "flowers.keras"), "--model-name", "flowers", "--base-path", str(tmp_path / "m"), *extra)

    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "m" / "flowers").exists()


def test_a_model_that_does_not_fit_the_class_names_is_a_one_line_error(user_model, tmp_path):
    result = _export(str(user_model / "flowers.keras"), "--model-name", "flowers", "--base-path", str(tmp_path / "m"),
                     "--class-names", "a,b")

    assert result.exit_code == 1
    assert "class_names has 2 names but the model outputs 3 probabilities" in result.output
    assert not (tmp_path / "m" / "flowers").exists()
