"""The Session loader (TF's cc/saved_model/loader.cc, TF Serving's bundle factory) and its lifetime."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pytest

from tfstack.serving import BundleOptions, Code, StatusError, load_servable
from tfstack.serving.server._servable import read_meta_graph, session_config_from_flags
from tests.support.models import build_half_plus_two_tf1, build_vocab_classifier_tf1
from tests.support.tfserving_testdata import tfserving_testdata


@pytest.fixture(scope="module")
def vocab_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vocab")
    return {c: build_vocab_classifier_tf1(root / c / "1", init_collection=c) for c in ("legacy_init_op", "saved_model_main_op")}


def _fetch(servable, signature: str, aliases: tuple[str, ...], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sig = servable.signature_defs[signature]
    names = [sig.outputs[a].name for a in aliases]
    outputs = servable.run({sig.inputs[k].name: v for k, v in feeds.items()}, names)
    return {alias: outputs[name] for alias, name in zip(aliases, names)}


@pytest.mark.parametrize("collection", ["legacy_init_op", "saved_model_main_op"])
def test_the_init_op_runs_with_the_asset_paths_fed(vocab_models, collection):
    # loader.cc RunInitOp: the init op from either collection runs with each asset placeholder fed
    # with <version>/assets/<file>, so tables read the labels the version ships.
    path = vocab_models[collection]
    servable = load_servable("vocab", 1, path)
    try:
        out = _fetch(servable, "serving_default", ("classes", "label_path"), {"x": np.array([1.0], np.float32)})
    finally:
        servable.retire()
    assert out["classes"].tolist() == [[b"cat", b"dog", b"fish"]]
    assert out["label_path"].dtype == object and out["label_path"].item() == str(path / "assets" / "labels.txt").encode()


def test_more_than_one_main_op_is_refused(vocab_models, tmp_path: Path):
    from tensorflow.core.protobuf import saved_model_pb2

    path = tmp_path / "1"
    shutil.copytree(vocab_models["saved_model_main_op"], path)
    saved_model = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    saved_model.meta_graphs[0].collection_def["saved_model_main_op"].node_list.value.append("init_all")
    (path / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    with pytest.raises(StatusError) as info:
        load_servable("vocab", 1, path)
    assert info.value.code is Code.FAILED_PRECONDITION and info.value.message == f"Expected exactly one main op in : {path}"


def test_variables_are_restored_from_the_checkpoint(tmp_path: Path):
    # Different b per version: the values come from variables/, not from the graph's initializers.
    servable = load_servable("m", 1, build_half_plus_two_tf1(tmp_path / "1", b=7.0))
    try:
        assert servable.run({"x:0": np.array([[2.0]], np.float32)}, ["y:0"])["y:0"].tolist() == [[8.0]]
    finally:
        servable.retire()


def test_load_errors_use_tf_servings_texts(tmp_path: Path):
    testdata = tfserving_testdata()
    cases = [
        # session_bundle/oss/session_bundle_util.cc LoadSessionBundleOrSavedModelBundle.
        (testdata / "bad_half_plus_two" / "00000123", Code.UNIMPLEMENTED, "Session Bundle is deprecated and removed."),
        (tmp_path / "empty", Code.NOT_FOUND,
         "Specified file path does not appear to contain a SavedModel bundle (should have a file called "
         f"`saved_model.pb`)\nSpecified file path: {tmp_path / 'empty'}"),
    ]
    (tmp_path / "empty").mkdir()
    for path, code, text in cases:
        with pytest.raises(StatusError) as info:
            load_servable("m", 1, path)
        assert (info.value.code, info.value.message) == (code, text)
    # cc/saved_model/reader.cc FindMetaGraphDef.
    with pytest.raises(StatusError) as info:
        load_servable("m", 1, testdata / "saved_model_half_plus_three" / "00000123",
                      options=BundleOptions(saved_model_tags=("serve", "gpu")))
    assert info.value.code is Code.NOT_FOUND
    assert info.value.message == (
        "Could not find meta graph def matching supplied tags: { serve gpu }. To inspect available tag-sets in the "
        "SavedModel, please use the SavedModel CLI: `saved_model_cli`"
    )


def test_saved_model_config_session_overrides_become_grappler_options(tmp_path: Path):
    # saved_model_bundle_factory.cc + saved_model_config_util.cc UpdateRewriterConfig: each
    # optimizer config is passed base64-encoded under TF Serving's names; an empty or broken
    # file leaves the session options alone.
    from tfstack.serving.server._servable import _saved_model_config_classes, _session_config

    testdata = tfserving_testdata()
    with_config = testdata / "saved_model_half_plus_two_cpu_with_saved_model_config" / "00000123"
    stored = _saved_model_config_classes().FromString((with_config / "assets.extra" / "saved_model_config.pb").read_bytes())
    rewrite = _session_config(with_config, BundleOptions()).graph_options.rewrite_options
    optimizers = {o.name: dict(o.parameter_map) for o in rewrite.custom_optimizers}
    assert set(optimizers) == {"remote_op_config_rewrite", "batch_op_rewriter"}
    assert base64.b64decode(optimizers["remote_op_config_rewrite"]["remote_op_rewrite_config"].s) == (
        stored.session_overrides.remote_op_remap_config)
    assert base64.b64decode(optimizers["batch_op_rewriter"]["batch_op_rewrite_config"].s) == (
        stored.session_overrides.batch_op_rewriter_config)
    assert rewrite.disable_meta_optimizer is False
    empty = testdata / "saved_model_half_plus_two_cpu_with_empty_saved_model_config" / "00000123"
    assert not _session_config(empty, BundleOptions()).graph_options.rewrite_options.custom_optimizers
    broken = tmp_path / "1"
    shutil.copytree(empty, broken)
    (broken / "assets.extra" / "saved_model_config.pb").chmod(0o644)
    (broken / "assets.extra" / "saved_model_config.pb").write_bytes(b"\xff\xff\xff")
    assert not _session_config(broken, BundleOptions()).graph_options.rewrite_options.custom_optimizers


def test_session_config_from_flags_follows_server_cc(tmp_path: Path):
    from tensorflow.core.protobuf import config_pb2

    def threads(**flags) -> tuple[int, int]:
        config = config_pb2.ConfigProto.FromString(session_config_from_flags(**flags))
        return config.intra_op_parallelism_threads, config.inter_op_parallelism_threads

    assert threads(session_parallelism=3) == (3, 3)
    assert threads(intra_op_parallelism=2) == (2, 0)  # the other pool left to TensorFlow, as server.cc
    assert threads(session_parallelism=3, intra_op_parallelism=2) == (2, 0)
    assert threads() == (1, 1)  # tfstack's default for "nothing set" (TF Serving: 0, 0)
    assert threads(threads_when_unset=0) == (0, 0)
    with pytest.raises(StatusError) as info:
        session_config_from_flags(session_parallelism=1, intra_op_parallelism=1, inter_op_parallelism=1)
    assert info.value.code is Code.INVALID_ARGUMENT and info.value.message.endswith("You cannot configure all.")
    config_file = tmp_path / "session.config"
    config_file.write_text("allow_soft_placement: true intra_op_parallelism_threads: 5")
    loaded = config_pb2.ConfigProto.FromString(session_config_from_flags(session_config_file=str(config_file)))
    assert loaded.allow_soft_placement and loaded.intra_op_parallelism_threads == 1  # thread flags win
    config_file.write_text("not a ConfigProto")
    with pytest.raises(StatusError) as info:
        session_config_from_flags(session_config_file=str(config_file))
    assert info.value.message == f"Invalid protobuf file: '{config_file}'"


def test_a_retired_version_closes_once_its_last_run_ends(tmp_path: Path):
    servable = load_servable("m", 1, build_half_plus_two_tf1(tmp_path / "1"))
    servable.acquire()  # a request in flight
    servable.retire()   # the version is unloaded meanwhile
    assert not servable.closed
    assert servable.run({"x:0": np.array([[2.0]], np.float32)}, ["y:0"])["y:0"].tolist() == [[3.0]]
    servable.release()  # the request ends: now the Session is freed
    assert servable.closed
    with pytest.raises(StatusError) as info:
        servable.run({"x:0": np.array([[2.0]], np.float32)}, ["y:0"])
    assert (info.value.code, info.value.message) == (Code.NOT_FOUND, "Servable not found for request: Specific(m, 1)")


def test_callables_are_cached_per_feed_and_fetch_names(tmp_path: Path):
    servable = load_servable("m", 1, build_half_plus_two_tf1(tmp_path / "1"))
    try:
        for _ in range(3):
            servable.run({"x:0": np.array([[2.0]], np.float32)}, ["y:0"])
        servable.run({"x:0": np.array([[2.0]], np.float32)}, ["y:0", "y2:0"])
        assert len(servable._runner._callables) == 2
    finally:
        servable.retire()


def test_feed_dtypes_come_from_the_graph_not_the_signature():
    # half_plus_three's regress signature declares its input DT_FLOAT, but the tensor it names
    # (tf_example:0) is a string placeholder: what the Session checks is the graph's dtype.
    servable = load_servable("three", 123, tfserving_testdata() / "saved_model_half_plus_three" / "00000123")
    try:
        signature = servable.signature_defs["tensorflow/serving/regress"]
        assert signature.inputs["inputs"].dtype == 1
        assert servable.feed_dtype(signature.inputs["inputs"].name) == 7
    finally:
        servable.retire()


def test_tflite_models_get_the_signatures_tf_serving_derives():
    testdata = tfserving_testdata()
    options = BundleOptions(prefer_tflite_model=True, num_tflite_pools=2)
    plain = load_servable("t", 123, testdata / "saved_model_half_plus_two_tflite" / "00000123", options=options)
    with_sigdef = load_servable("t", 123, testdata / "saved_model_half_plus_two_tflite_with_sigdef" / "00000123",
                                options=options)
    try:
        assert plain.platform == "tflite"
        (name, signature), = plain.signature_defs.items()
        assert name == "serving_default" and signature.method_name == "tensorflow/serving/predict"
        assert (signature.inputs["x"].name, signature.outputs["y"].name) == ("x", "y")
        # The stored SignatureDef names tflite_input:0; TF Serving maps it to the TF Lite tensor.
        assert with_sigdef.signature_defs["serving_default"].inputs["x"].name == "tflite_input"
        for servable, feed in ((plain, "x"), (with_sigdef, "tflite_input")):
            assert servable.run({feed: np.array([[2.0], [4.0]], np.float32)}, ["y"])["y"].tolist() == [[3.0], [4.0]]
        with pytest.raises(StatusError) as info:
            plain.run({"nope": np.array([1.0], np.float32)}, ["y"])
        assert info.value.code is Code.INTERNAL and "Missing input TFLite tensor: nope" in info.value.message
    finally:
        plain.retire()
        with_sigdef.retire()
    # Without the flag, the SavedModel loader runs (and there is no saved_model.pb here).
    with pytest.raises(StatusError) as info:
        load_servable("t", 123, testdata / "saved_model_half_plus_two_tflite" / "00000123")
    assert info.value.code is Code.NOT_FOUND


def test_read_meta_graph_keeps_signature_defs_as_stored():
    path = tfserving_testdata() / "saved_model_half_plus_two_tf2_cpu" / "00000123"
    signatures = read_meta_graph(path, ["serve"]).signature_def
    servable = load_servable("tf2", 123, path)
    try:
        assert {k: v.SerializeToString(deterministic=True) for k, v in servable.signature_defs.items()} == {
            k: v.SerializeToString(deterministic=True) for k, v in signatures.items()}
    finally:
        servable.retire()


def test_only_the_servers_default_threads_run_graphs_on_the_calling_thread(tmp_path: Path):
    # The server's own default (one inter-op thread, no flag) runs each call on the calling thread;
    # a user's explicit --tensorflow_inter_op_parallelism=1 keeps TensorFlow's one-thread pool, as in
    # TF Serving. Same answers either way.
    path = build_half_plus_two_tf1(tmp_path / "hp" / "1")
    explicit = session_config_from_flags(intra_op_parallelism=1, inter_op_parallelism=1)
    servables = {
        "default": load_servable("hp", 1, path),
        "explicit flags": load_servable("hp", 1, path, options=BundleOptions(session_config=explicit)),
        "server, no flags": load_servable("hp", 1, path, options=BundleOptions(session_config=session_config_from_flags(),
                                                                              run_in_caller_thread=True)),
    }
    try:
        inline = {name: s._runner._run_in_caller_thread for name, s in servables.items()}
        assert inline == {"default": True, "explicit flags": False, "server, no flags": True}
        answers = {name: _fetch(s, "serving_default", ("y",), {"x": np.array([[1.0], [4.0]], np.float32)})["y"].tolist()
                   for name, s in servables.items()}
        assert answers == {name: [[2.5], [4.0]] for name in servables}
    finally:
        for servable in servables.values():
            servable.retire()
