"""Versions are checked the way tensorflow_model_server loads them, and `tfstack models check` does
the same for any SavedModel.

TF Serving loads the MetaGraph into a TF1-style Session, runs the restore op and the init op, then
serves signatures by tensor name (tensorflow/cc/saved_model/loader.cc LoadSavedModel, used by
tensorflow_serving/servables/tensorflow/saved_model_bundle_factory.cc); warmup records replay
during the load (servables/tensorflow/saved_model_warmup_util.cc).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tfstack import export
from tfstack.export import ModelRepository
from tfstack.export.cli import models

REPO_ROOT = Path(__file__).resolve().parents[3]


def _testdata() -> Path:
    for candidate in (REPO_ROOT.parent / "shared" / "tfserving-testdata", Path(os.environ.get("TFSTACK_TFSERVING_TESTDATA", ""))):
        if str(candidate) and (candidate / "saved_model_half_plus_two_cpu").is_dir():
            return candidate
    pytest.fail("TF Serving's testdata not found: expected ../shared/tfserving-testdata next to the repo "
                "or TFSTACK_TFSERVING_TESTDATA")


# Every SavedModel TF Serving's own tests serve (TF Lite ones only with --prefer_tflite_model).
SERVED = [
    "saved_model_counter",
    "saved_model_half_plus_three",
    "saved_model_half_plus_two_2_versions",
    "saved_model_half_plus_two_cpu",
    "saved_model_half_plus_two_cpu_with_empty_saved_model_config",
    "saved_model_half_plus_two_cpu_with_saved_model_config",
    "saved_model_half_plus_two_mlmd",
    "saved_model_half_plus_two_tf2_cpu",
    "saved_model_half_plus_two_tflite",
    "saved_model_half_plus_two_tflite_with_sigdef",
]


def _check(*args: str):
    return CliRunner().invoke(models, ["check", *args], catch_exceptions=False)


def _old_layout_writer(spec, path, class_names):
    """The export format before issue 12: a tf.Module tracking the Keras model (and so its optimizer)
    plus a second list of its variables. TF2's object loader serves it; a Session's by-name restore
    leaves the handles the signatures read uninitialized."""
    import tensorflow as tf

    from tfstack.export._signatures import _signature_functions, _set_method_names

    module = tf.Module()
    module.keras_model = spec.keras_model
    module.model_variables = list(spec.keras_model.variables)
    signatures = {}
    for name, (function, input_signature) in _signature_functions(spec, class_names).items():
        traced = tf.function(function, input_signature=input_signature, autograph=False)
        setattr(module, name, traced)
        signatures[name] = traced
    tf.saved_model.save(module, str(path), signatures=signatures)
    _set_method_names(Path(path))


# The variables the old layout leaves uninitialized (layer names fixed so the message is stable).
UNINITIALIZED = re.compile(r"variable '(hidden|probabilities)(_\d+)?/(kernel|bias)(_\d+)?' is not initialized after the restore op")


def _named_spec():
    import keras

    keras.utils.set_random_seed(11)
    x = keras.Input((4,), name="features")
    out = keras.layers.Dense(3, activation="softmax", name="probabilities")(keras.layers.Dense(8, name="hidden")(x))
    return export.ExportSpec(
        model_name="named", task="classification", keras_model=keras.Model({"features": x}, out),
        features=(export.FeatureSpec(name="features", dtype="float32", shape=(4,)),),
        class_names=("a", "b", "c"), sample_inputs={"features": np.ones((3, 4), np.float32)},
    )


@pytest.fixture(scope="module")
def old_layout(tmp_path_factory):
    path = tmp_path_factory.mktemp("old") / "1"
    path.mkdir()
    spec = _named_spec()
    _old_layout_writer(spec, path, spec.class_names)
    return path


def test_old_layout_is_served_by_tf2s_loader_but_not_by_a_session(old_layout):
    """Why TF2's loader cannot be the check: it runs this broken export without complaint."""
    import tensorflow as tf

    from tfstack.export._session import SessionModel

    rows = np.ones((2, 4), np.float32)
    assert tf.saved_model.load(str(old_layout)).signatures["serving_default"](features=tf.constant(rows))["probabilities"].shape == (2, 3)
    with SessionModel(old_layout) as model, pytest.raises(export.VerificationError, match="is not initialized after the restore op"):
        model.run("serving_default", {"features": rows})


def test_publish_refuses_the_old_layout_with_one_line_naming_the_variable(base_path, monkeypatch):
    from tfstack.export import _signatures

    monkeypatch.setattr(_signatures, "save_saved_model", _old_layout_writer)
    spec = _named_spec()

    with pytest.raises(export.VerificationError) as info:
        export.publish(spec, base_path)

    message = str(info.value)
    assert "\n" not in message
    assert "'serving_default'" in message
    assert UNINITIALIZED.search(message), message
    assert not (base_path / spec.model_name).exists()


def test_publishing_a_copied_saved_model_with_uninitialized_variables_is_refused(old_layout, base_path):
    with pytest.raises(export.VerificationError) as info:
        ModelRepository(base_path).publish_saved_model(old_layout, "legacy")

    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{old_layout} would not serve in TF Serving, so it was not published:")
    assert UNINITIALIZED.search(message), message
    assert ".staging-" not in message
    assert not (base_path / "legacy").exists()


def test_models_check_fails_the_old_layout_with_exit_1(old_layout):
    result = _check(str(old_layout))

    assert result.exit_code == 1, result.output
    assert "FAILED: signature 'serving_default'" in result.output
    assert UNINITIALIZED.search(result.output), result.output


@pytest.mark.parametrize("name", SERVED)
def test_models_check_passes_every_model_tf_serving_serves(name):
    result = _check(str(_testdata() / name))

    assert result.exit_code == 0, result.output
    assert "OK: loads and" in result.output
    assert "not exercised" not in result.output


def test_models_check_runs_the_tf_example_signatures_on_examples_from_the_parse_ops():
    result = _check(str(_testdata() / "saved_model_half_plus_two_cpu" / "00000123"), "--json")

    report = json.loads(result.output)
    by_name = {s["signature_name"]: s for s in report["signatures"]}
    assert by_name["classify_x_to_y"]["inputs"] == "synthesised (inputs: 2 tf.Examples)"
    assert by_name["regress_x_to_y"]["status"] == "ok"
    # regress_x2_to_y3 feeds the float x2 tensor directly: Regress could never run it, Predict can.
    assert any("only Predict can run it" in n for n in by_name["regress_x2_to_y3"]["notes"])


def test_models_check_of_a_model_directory_checks_its_latest_version_or_the_one_asked():
    base = _testdata() / "saved_model_half_plus_two_2_versions"

    latest = _check(str(base), "--json")
    asked = _check(str(base), "123", "--json")

    assert json.loads(latest.output)["path"].endswith("00000124")
    assert json.loads(asked.output)["path"].endswith("00000123")


def test_bad_half_plus_two_fails_with_a_clear_message():
    """TF Serving cannot load this pre-SavedModel export (testdata bad_half_plus_two)."""
    result = _check(str(_testdata() / "bad_half_plus_two"))

    assert result.exit_code == 1
    assert "has no saved_model.pb or saved_model.pbtxt" in result.output
    assert "pre-SavedModel SessionBundle export" in result.output


def test_method_name_check_refuses_tf2_signatures_that_only_classify_with_the_check_off():
    """classifier.cc GetClassificationSignatureDef: with --enable_signature_method_name_check the
    method_name must be tensorflow/serving/classify; the TF2 half_plus_two says predict."""
    path = str(_testdata() / "saved_model_half_plus_two_tf2_cpu")

    relaxed = _check(path)
    strict = _check(path, "--enable_signature_method_name_check")

    assert relaxed.exit_code == 0 and "some requests would be refused" in relaxed.output
    assert strict.exit_code == 1
    assert ("FAILED: signature 'classify_x_to_y': Classify accepts it only while --enable_signature_method_name_check "
            "is off: Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/predict") in strict.output


def test_tfstack_versions_pass_the_method_name_check_and_replay_their_warmup(published):
    result = _check(str(published["mixed"].path), "--enable-signature-method-name-check")

    assert result.exit_code == 0, result.output
    assert "3 warmup record(s) replayed" in result.output
    assert "warmup record 3" in result.output  # classify ran on the warmup's tf.Examples


def test_models_check_by_name_under_a_base_path(published):
    base = published["regression"].path.parent.parent

    result = _check("tiny-regression", "--base-path", str(base))

    assert result.exit_code == 0, result.output
    assert "regress" in result.output


def test_a_failing_warmup_record_fails_the_check_as_it_fails_tf_servings_load(published, tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2

    from tfstack.export._warmup import write_warmup_logs

    version = tmp_path / "1"
    shutil.copytree(published["regression"].path, version)
    log = prediction_log_pb2.PredictionLog(session_run_log=prediction_log_pb2.SessionRunLog())
    write_warmup_logs([log], version / "assets.extra" / "tf_serving_warmup_requests")

    result = _check(str(version))

    assert result.exit_code == 1
    assert "Unsupported log_type for warmup: 5" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-model", "--base-path", "/nonexistent"], "neither an existing directory nor a model"),
        (["__SERVED__", "7"], "VERSION is only for a model directory"),
        (["__2VERSIONS__", "9"], "has no version 9. Available: [123, 124]"),
        (["__SERVED__", "--tags", ","], "give at least one tag"),
    ],
)
def test_bad_arguments_exit_2(args, message):
    replacements = {
        "__SERVED__": str(_testdata() / "saved_model_half_plus_two_cpu" / "00000123"),
        "__2VERSIONS__": str(_testdata() / "saved_model_half_plus_two_2_versions"),
    }
    result = _check(*[replacements.get(a, a) for a in args])

    assert result.exit_code == 2
    assert message in result.output


def _sparse_input_model(path: Path) -> Path:
    """A TF1 SavedModel whose only signature takes a SparseTensor (COO encoding): Predict feeds
    and fetches dense tensors by name only (predict_util.cc), so it cannot be exercised."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        sparse = v1.sparse_placeholder(tf.float32, name="ids")
        total = tf.identity(tf.sparse.reduce_sum(sparse), name="total")
        info = v1.saved_model.utils.build_tensor_info
        signature = v1.saved_model.signature_def_utils.build_signature_def(
            {"ids": info(sparse)}, {"total": info(total)}, "tensorflow/serving/predict"
        )
        builder = v1.saved_model.Builder(str(path))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
        builder.save()
    return path


def test_a_signature_that_cannot_be_exercised_is_said_so_and_fails_only_with_strict(tmp_path):
    version = _sparse_input_model(tmp_path / "1")

    relaxed = _check(str(version))
    strict = _check(str(version), "--strict")

    assert relaxed.exit_code == 0, relaxed.output
    assert "NOT EXERCISED" in relaxed.output and "sparse/composite" in relaxed.output
    assert "1 not exercised (see above), so not proven" in relaxed.output
    assert strict.exit_code == 1
    assert "FAILED: signature 'serving_default' was not exercised" in strict.output
