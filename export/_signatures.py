"""The tfstack SavedModel: `serving_default` on raw features plus TF Serving's classify/regress.

`classify` and `regress` follow TF Serving's classifier/regressor contract (spec §1.7): exactly
one input `inputs` (DT_STRING [N] serialized tf.Example) and outputs `classes`+`scores` or `outputs`.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfstack.export._errors import ExportError
from tfstack.export._spec import ExportSpec, FeatureSpec

SERVING_DEFAULT = "serving_default"
CLASSIFY = "classify"
REGRESS = "regress"
EXAMPLES_INPUT = "inputs"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
# TF Serving's method names (signature_constants); tf.saved_model.save writes "predict" for every
# signature, which only works while --enable_signature_method_name_check is off.
METHOD_NAMES = {SERVING_DEFAULT: PREDICT_METHOD, CLASSIFY: CLASSIFY_METHOD, REGRESS: REGRESS_METHOD}

_TF_DTYPES = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}


def signature_names(task: str) -> tuple[str, ...]:
    """The signature keys every tfstack SavedModel of `task` has."""
    return (SERVING_DEFAULT, CLASSIFY if task == "classification" else REGRESS)


def example_features(features: tuple[FeatureSpec, ...]) -> dict[str, tf.io.FixedLenFeature]:
    """The tf.io.parse_example spec that the classify/regress signatures use."""
    return {f.name: tf.io.FixedLenFeature(f.shape, _TF_DTYPES[f.dtype]) for f in features}


def resolve_class_names(spec: ExportSpec) -> tuple[str, ...]:
    """`spec.class_names`, or "0".."C-1" read from the model's output width when none were given."""
    if spec.class_names:
        return spec.class_names
    probabilities = np.asarray(spec.keras_model(dict(sample_tensors(spec))))
    return tuple(str(i) for i in range(probabilities.shape[-1]))


def sample_tensors(spec: ExportSpec) -> dict[str, tf.Tensor]:
    return {f.name: tf.constant(spec.sample_inputs[f.name], dtype=_TF_DTYPES[f.dtype]) for f in spec.features}


def _signature_functions(spec: ExportSpec, class_names: tuple[str, ...]) -> dict[str, tuple[Any, list[Any]]]:
    """Signature name -> (python function, input_signature) for ExportArchive.add_endpoint.

    The functions close over the Keras model; ExportArchive traces them and keeps only what the
    traced graphs use (variables, lookup tables), so nothing else of the model is saved.
    """
    keras_model = spec.keras_model
    task = spec.task
    raw_spec = {f.name: tf.TensorSpec((None, *f.shape), _TF_DTYPES[f.dtype], name=f.name) for f in spec.features}
    parse_spec = example_features(spec.features)
    examples_spec = tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)

    def raw_outputs(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        predictions = tf.cast(keras_model(inputs), tf.float32)
        _check_output_shape(predictions.shape, task, class_names)
        if task == "regression":
            return {"prediction": tf.reshape(predictions, [-1])}
        class_id = tf.argmax(predictions, axis=-1, output_type=tf.int64)
        labels = tf.constant(list(class_names), dtype=tf.string)
        return {"probabilities": predictions, "class_id": class_id, "class_label": tf.gather(labels, class_id)}

    def serving_default(inputs):
        return raw_outputs(inputs)

    def classify(inputs):
        scores = raw_outputs(tf.io.parse_example(inputs, parse_spec))["probabilities"]
        labels = tf.constant(list(class_names), dtype=tf.string)
        classes = tf.tile(tf.expand_dims(labels, 0), [tf.shape(scores)[0], 1])
        return {"classes": classes, "scores": scores}

    def regress(inputs):
        return {"outputs": raw_outputs(tf.io.parse_example(inputs, parse_spec))["prediction"]}

    functions = {SERVING_DEFAULT: (serving_default, [raw_spec])}
    if task == "classification":
        functions[CLASSIFY] = (classify, [examples_spec])
    else:
        functions[REGRESS] = (regress, [examples_spec])
    return functions


def _check_output_shape(shape: tf.TensorShape, task: str, class_names: tuple[str, ...]) -> None:
    # Checked while tracing, so a model that does not fit the task never reaches the repository.
    dims = shape.as_list() if shape.rank is not None else None
    if task == "regression":
        if dims is None or not (len(dims) == 1 or (len(dims) == 2 and dims[1] == 1)):
            raise ExportError(f"A regression keras_model must return [N] or [N, 1]. Received: output shape {dims}")
        return
    if dims is None or len(dims) != 2:
        raise ExportError(f"A classification keras_model must return probabilities [N, C]. Received: output shape {dims}")
    if dims[1] is not None and dims[1] != len(class_names):
        raise ExportError(
            f"class_names has {len(class_names)} names but the model outputs {dims[1]} probabilities. "
            f"Received: class_names={list(class_names)}"
        )


def save_saved_model(spec: ExportSpec, path: Path, class_names: tuple[str, ...]) -> None:
    """Write the SavedModel with tfstack's signatures into `path` (an existing empty directory).

    Built with Keras' ExportArchive, which saves a small root object holding only the variables
    and lookup tables the signature graphs read (no optimizer, no second copy of the layer tree).
    That is what makes the by-name restore of a TF1-style Session loader (TF Serving,
    saved_model_cli) reach every variable handle the signatures use; lookup-table initializers
    end up as control inputs of the `__saved_model_init_op`, which that loader runs after restoring.
    """
    try:
        _write_archive(spec, path, class_names, lean=True)
    except _UntrackedResource:
        # A resource the walk did not find (a custom layer's): track the whole model, as
        # keras.Model.export does, at the price of storing each weight twice.
        for child in Path(path).iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        _write_archive(spec, path, class_names, lean=False)
    _set_method_names(Path(path))


class _UntrackedResource(Exception):
    pass


def _resources(keras_model: Any) -> list[Any]:
    """The TF resources (lookup tables) reachable from the model's tracked attributes."""
    from tensorflow.saved_model.experimental import TrackableResource

    return [r for r in tf.train.TrackableView(keras_model).descendants() if isinstance(r, TrackableResource)]


def _write_archive(spec: ExportSpec, path: Path, class_names: tuple[str, ...], *, lean: bool) -> None:
    import keras

    archive = keras.export.ExportArchive()
    if lean:
        # The variables the signatures read are saved from the traced graphs anyway; only
        # resources (lookup tables) must be tracked explicitly. track(model) would also list
        # every weight again, and TF would store both copies in variables.data.
        try:
            resources = _resources(spec.keras_model)
        except (TypeError, ValueError, AttributeError) as exc:
            raise _UntrackedResource(str(exc)) from exc
        for resource in resources:
            archive.track(resource)
    else:
        archive.track(spec.keras_model)
    for name, (function, input_signature) in _signature_functions(spec, class_names).items():
        archive.add_endpoint(name, function, input_signature=input_signature)
    try:
        archive.write_out(str(path), verbose=False)
    except (ValueError, AssertionError) as exc:
        if lean and "untracked" in str(exc).lower():
            raise _UntrackedResource(str(exc)) from exc
        raise


def _set_method_names(path: Path) -> None:
    """Give classify/regress TF Serving's method names, so the method-name check can be on.

    saved_model.pb changes, so fingerprint.pb is rewritten with TensorFlow's own writer; if that
    internal API is unavailable the original file is kept (consistent, method names "predict").
    """
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = path / "saved_model.pb"
    original = pb_path.read_bytes()
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(original)
    for meta_graph in saved_model.meta_graphs:
        for name, method in METHOD_NAMES.items():
            if name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method
    pb_path.write_bytes(saved_model.SerializeToString())
    try:
        from tensorflow.python.saved_model import fingerprinting_utils

        fingerprinting_utils.write_fingerprint(str(path))
    except (ImportError, AttributeError, ValueError):
        pb_path.write_bytes(original)


def serialize_examples(features: tuple[FeatureSpec, ...], inputs: Mapping[str, np.ndarray]) -> list[bytes]:
    """One serialized tf.Example per row of `inputs`, with one feature per FeatureSpec."""
    return [example.SerializeToString() for example in make_examples(features, inputs)]


def make_examples(features: tuple[FeatureSpec, ...], inputs: Mapping[str, np.ndarray]) -> list[tf.train.Example]:
    rows = next(iter(inputs.values())).shape[0]
    examples = []
    for i in range(rows):
        feature_map = {}
        for f in features:
            values = np.asarray(inputs[f.name][i]).reshape(-1)
            if f.dtype == "float32":
                feature = tf.train.Feature(float_list=tf.train.FloatList(value=values.astype(np.float32).tolist()))
            elif f.dtype == "int64":
                feature = tf.train.Feature(int64_list=tf.train.Int64List(value=values.astype(np.int64).tolist()))
            else:
                feature = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[v if isinstance(v, bytes) else str(v).encode() for v in values])
                )
            feature_map[f.name] = feature
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature_map)))
    return examples
