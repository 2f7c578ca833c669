"""ServerCore behaviour: resolution, status, and TF Serving's predict/classify/regress rules."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tensorflow as tf

from tfstack.serving import Code, InferenceTask, ServerCore, State, StatusError


def _example(**features: float) -> bytes:
    feature = {k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in features.items()}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _raises(code: Code, text: str):
    class _Ctx:
        def __enter__(self):
            self._cm = pytest.raises(StatusError)
            self.info = self._cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self._cm.__exit__(*exc)
            assert self.info.value.code is code, self.info.value
            assert text in self.info.value.message, self.info.value.message
            return handled

    return _Ctx()


def test_resolve_latest_version_and_label(core: ServerCore):
    assert core.resolve("half_plus_two").version == 123
    assert core.resolve("half_plus_two", version=123).version == 123
    assert core.resolve("half_plus_two", label="stable").version == 123


@pytest.mark.parametrize(
    ("kwargs", "code", "text"),
    [
        ({"model_name": "nope"}, Code.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        ({"model_name": "half_plus_two", "version": 7}, Code.NOT_FOUND, "Servable not found for request: Specific(half_plus_two, 7)"),
        ({"model_name": "half_plus_two", "label": "canary"}, Code.INVALID_ARGUMENT, "Unrecognized servable version label: canary"),
        ({"model_name": "nope", "label": "stable"}, Code.INVALID_ARGUMENT, "Unrecognized servable version label: stable"),
        ({"model_name": ""}, Code.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ],
)
def test_resolve_errors(core: ServerCore, kwargs, code, text):
    name = kwargs.pop("model_name")
    with _raises(code, text):
        core.resolve(name, **kwargs)


def test_latest_is_highest_available_and_end_versions_stay_in_status(core: ServerCore, half_plus_two_servable):
    core.set_version_state("half_plus_two", 200, State.LOADING)
    assert core.resolve("half_plus_two").version == 123  # loading versions never answer
    core.set_version_state("half_plus_two", 200, State.END, error=StatusError(Code.NOT_FOUND, "boom"))
    rows = core.model_status("half_plus_two")
    assert [(r.version, r.state) for r in rows] == [(200, State.END), (123, State.AVAILABLE)]
    assert (rows[0].error_code, rows[0].error_message) == (Code.NOT_FOUND, "boom")
    assert rows[1].error_code is Code.OK and rows[1].error_message == ""


def test_model_status_errors(core: ServerCore):
    with _raises(Code.NOT_FOUND, "Could not find any versions of model nope"):
        core.model_status("nope")
    with _raises(Code.NOT_FOUND, "Could not find version 9 of model half_plus_two"):
        core.model_status("half_plus_two", 9)


def test_signature_defs_are_those_of_saved_model_pb(half_plus_two_servable):
    sigs = half_plus_two_servable.signature_defs
    assert {"serving_default", "classify_x_to_y", "regress_x_to_y", "__saved_model_init_op"} <= set(sigs)
    assert sigs["serving_default"].inputs["x"].name == "serving_default_x:0"
    assert sigs["regress_x_to_y"].outputs["outputs"].tensor_shape.dim[1].size == 1
    packed = half_plus_two_servable.signature_def_map()
    assert set(packed.signature_def) == set(sigs)


async def test_predict_half_plus_two(core: ServerCore):
    servable = core.resolve("half_plus_two")
    out = await core.predict(servable, "", {"x": np.array([1.0, 2.0, 5.0], np.float32)})
    np.testing.assert_allclose(out["y"], [2.5, 3.0, 4.5])
    out = await core.predict(servable, "serving_default", {"x": np.array([[2.0]], np.float32)}, output_filter=["y"])
    assert out["y"].shape == (1, 1) and out["y"][0, 0] == 3.0


@pytest.mark.parametrize(
    ("signature", "inputs", "output_filter", "code", "text"),
    [
        ("nope", {"x": [1.0]}, (), Code.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
        ("", {"x": [1.0], "z": [1.0]}, (), Code.INVALID_ARGUMENT,
         "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: {z}. Missing but required: {}."),
        ("", {}, (), Code.INVALID_ARGUMENT,
         "input size does not match signature: 0!=1 len({}) != len({x}). Sent extra: {}. Missing but required: {x}."),
        ("", {"w": [1.0]}, (), Code.INVALID_ARGUMENT,
         "Signature input alias: x(feed name: serving_default_x:0) not found in request and no default value provided."
         " Inputs expected to be in the request {w}, or default input alias set: "),
        ("", {"x": [1.0]}, ("q",), Code.INVALID_ARGUMENT,
         "output tensor alias not found in signature: q Outputs expected to be in the set {y}."),
        ("", {"x": [1.0]}, ("y", "y"), Code.INVALID_ARGUMENT, "duplicate output tensor alias: y"),
        ("", {"x": np.array([b"a"], object)}, (), Code.INVALID_ARGUMENT, "Expects arg[0] to be float but string is provided"),
        ("", {"x": np.array([1.0])}, (), Code.INVALID_ARGUMENT, "Expects arg[0] to be float but double is provided"),
    ],
)
async def test_predict_errors(core: ServerCore, signature, inputs, output_filter, code, text):
    inputs = {k: v if isinstance(v, np.ndarray) else np.asarray(v, np.float32) for k, v in inputs.items()}
    with _raises(code, text):
        await core.predict(core.resolve("half_plus_two"), signature, inputs, output_filter)


async def test_classify_and_regress(core: ServerCore):
    servable = core.resolve("half_plus_two")
    result = await core.classify(servable, "classify_x_to_y", [_example(x=2.0), _example(x=20.0)])
    assert result == [[("", 3.0)], [("", 12.0)]]
    assert await core.regress(servable, "regress_x_to_y", [_example(x=80.0)]) == [42.0]
    # x2 defaults to 0.0; a context feature reaches every example
    assert await core.regress(servable, "regress_x2_to_y3", [_example(x=1.0)]) == [3.0]
    assert await core.regress(servable, "regress_x2_to_y3", [_example(x=1.0)], context=_example(x2=4.0)) == [5.0]


@pytest.mark.parametrize(
    ("method", "signature", "examples", "code", "text"),
    [
        ("regress", "", [b""], Code.INVALID_ARGUMENT, "No regression inputs found in SignatureDef: "),
        ("classify", "nope", [b""], Code.INVALID_ARGUMENT, "No signature was found with the name: nope"),
        ("classify", "regress_x_to_y", [b""], Code.INVALID_ARGUMENT,
         'Expected classification signature outputs to contain at least one of "classes" or "scores".'),
        ("regress", "regress_x_to_y", [], Code.INVALID_ARGUMENT, "Input is empty."),
        ("regress", "regress_x_to_y", ["int"], Code.INVALID_ARGUMENT, "Key: x"),
    ],
)
async def test_classify_regress_errors(core: ServerCore, method, signature, examples, code, text):
    if examples == ["int"]:  # an int64 feature where the model parses float: TF's own error
        examples = [tf.train.Example(features=tf.train.Features(feature={
            "x": tf.train.Feature(int64_list=tf.train.Int64List(value=[2]))})).SerializeToString()]
    with _raises(code, text):
        await getattr(core, method)(core.resolve("half_plus_two"), signature, examples)


async def test_multi_inference_validation(core: ServerCore):
    servable = core.resolve("half_plus_two")
    task = lambda sig, method="tensorflow/serving/regress", name="half_plus_two": InferenceTask(  # noqa: E731
        model_name=name, signature_name=sig, method_name=method)
    assert await core.multi_inference(servable, [task("regress_x_to_y")], [_example(x=2.0)]) == [[3.0]]
    cases = [
        ([task("regress_x_to_y"), task("regress_x_to_y2", name="other")], Code.INVALID_ARGUMENT, "same model name"),
        ([task("regress_x_to_y", name="")], Code.INVALID_ARGUMENT, "Found ModelSpec with an empty model name."),
        ([task("regress_x_to_y"), task("regress_x_to_y")], Code.INVALID_ARGUMENT, "Duplicate evaluation of signature: regress_x_to_y"),
        ([task("nope")], Code.INVALID_ARGUMENT, "Requested signature not found in model graph: nope"),
        ([task("regress_x_to_y", "tensorflow/serving/predict")], Code.UNIMPLEMENTED,
         "Unsupported signature method_name: tensorflow/serving/predict"),
    ]
    for tasks, code, text in cases:
        with _raises(code, text):
            await core.multi_inference(servable, tasks, [_example(x=2.0)])


async def test_timeout_gives_deadline_exceeded(core: ServerCore):
    with _raises(Code.DEADLINE_EXCEEDED, "Deadline Exceeded"):
        await core.predict(core.resolve("half_plus_two"), "", {"x": np.array([1.0], np.float32)}, timeout=0)


async def test_concurrent_predicts_do_not_block_the_loop(core: ServerCore):
    servable = core.resolve("half_plus_two")
    results = await asyncio.gather(
        *(core.predict(servable, "", {"x": np.array([float(i)], np.float32)}) for i in range(20))
    )
    assert [float(r["y"][0]) for r in results] == [0.5 * i + 2 for i in range(20)]
