"""`export_model`: publish a model the user brings (a Keras model, a `.keras` file or a SavedModel).

Everything goes through the repository's one publish path, so a user's model gets what a
trained one gets: the next version number, staging + Session-loader verification + fsync +
atomic rename, warmup records and sample_request.json from sample rows, and a manifest.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfstack.export._errors import ExportError
from tfstack.export._spec import MAX_SAMPLE_ROWS, ExportSpec, FeatureSpec, PublishedVersion, check_model_name

# Rows of zeros used for verification and warmup when no sample is given.
_DEFAULT_SAMPLE_ROWS = 2
_INPUT_SPEC = re.compile(r"^(?P<name>[^:]+)(?::(?P<dtype>[a-z0-9]+))?(?::(?P<shape>[0-9]+(?:[x,][0-9]+)*|scalar))?$")


def export_model(
    model: Any,
    base_path: str | os.PathLike[str],
    *,
    model_name: str,
    inputs: Sequence[FeatureSpec | str] | None = None,
    class_names: Sequence[str] = (),
    task: str | None = None,
    sample: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    version: int | None = None,
    tags: Sequence[str] = ("serve",),
    warmup_from: Sequence[str | os.PathLike[str]] = (),
    allow_schema_change: bool = False,
) -> PublishedVersion:
    """Publish your own model as a new version of `model_name` under `base_path`, TF Serving-ready.

    Args:
        model: a `keras.Model`, a path to a `.keras` (or `.h5`) file, or a SavedModel directory.
        base_path: the model repository root (`<base_path>/<model_name>/<version>/`).
        model_name: the served model's name.
        inputs: Keras models only: the signature inputs, in the model's input order, as
            FeatureSpec or "name[:dtype][:shape]" strings (e.g. "pixels:float32:8x8"). Default:
            the model's own input names, dtypes and shapes.
        class_names: classification: label of output column i (implies classification).
        task: "classification" (the model outputs probabilities [N, C]) or "regression"
            ([N] or [N, 1]); default: regression when the output has one column, else classification.
        sample: real rows for verification and warmup: a mapping name -> array, or a .npy, .npz,
            .json (REST body or name -> list) or .csv file. At most 32 rows are used. Default for
            Keras models: 2 rows of zeros; for a SavedModel: keep its own warmup records, if any.
        version: an explicit version number; default max(existing)+1.
        tags: SavedModel sources: the MetaGraph tags TF Serving will load.
        warmup_from: request logs (files, directories or logging_config prefixes); up to 100 of
            their requests join the warmup records.
        allow_schema_change: publish even if the signatures break the latest version's clients.

    Returns:
        The PublishedVersion.

    Raises:
        ExportError: the model cannot be loaded or exported; VerificationError (a subclass) if
            TF Serving's loader would not load it or it predicts differently from Keras;
            SchemaChangeError if `model_name` exists and its clients would break.
        TypeError, ValueError: bad arguments (before anything is written).

    Example:
        >>> export.export_model("my_model.keras", "./models", model_name="churn",
        ...                     class_names=["stays", "leaves"], sample="rows.csv")
    """
    check_model_name(model_name)
    if task not in (None, "classification", "regression"):
        raise ValueError(f"task must be 'classification', 'regression' or None. Received: task={task!r}")
    if task == "regression" and class_names:
        raise ValueError(f"class_names is for classification only. Received: class_names={list(class_names)!r}")
    from tfstack.export._repository import ModelRepository

    repository = ModelRepository(base_path)
    if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        source = Path(model)
        if inputs is not None or class_names or task is not None:
            raise ValueError(
                "inputs, class_names and task describe a Keras model; a SavedModel already has its signatures. "
                f"Received: model={str(source)!r} (a directory)"
            )
        sample_inputs = data_profile = None
        if sample is not None:
            features = _saved_model_features(source, tuple(tags))
            rows = load_sample(sample, features, limit=None)
            sample_inputs = {name: array[:MAX_SAMPLE_ROWS] for name, array in rows.items()}
            data_profile = _sample_profile(features, rows, task=None, class_names=(), sample=sample)
        return repository.publish_saved_model(
            source, model_name, version=version, sample_inputs=sample_inputs, tags=tuple(tags),
            manifest_updates={"published_from": str(source.absolute())}, data_profile=data_profile,
            warmup_from=tuple(str(p) for p in warmup_from), allow_schema_change=allow_schema_change,
        )
    keras_model, source_text = _load_keras(model)
    spec = keras_export_spec(
        keras_model, model_name=model_name, inputs=inputs, class_names=class_names, task=task, sample=sample,
        source=source_text,
    )
    if warmup_from:
        import dataclasses

        spec = dataclasses.replace(spec, warmup_from=tuple(str(p) for p in warmup_from))
    return repository.publish(spec, version=version, allow_schema_change=allow_schema_change)


def keras_export_spec(
    keras_model: Any,
    *,
    model_name: str,
    inputs: Sequence[FeatureSpec | str] | None = None,
    class_names: Sequence[str] = (),
    task: str | None = None,
    sample: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    source: str = "keras.Model",
) -> ExportSpec:
    """The ExportSpec for a user's Keras model: named raw inputs, task, class names, sample rows."""
    import keras

    structure = _input_structure(keras_model)
    if structure is None:
        raise ExportError(
            f"Cannot read the inputs of {source}: it has no symbolic inputs (a subclassed model never called "
            "on keras.Input). Build it as a functional or Sequential model, or call it once on keras.Input tensors."
        )
    if isinstance(structure, Mapping):
        keys = list(structure)
        tensors = [structure[k] for k in keys]
    elif isinstance(structure, (list, tuple)):
        keys, tensors = None, list(structure)
    else:
        keys, tensors = None, [structure]
    features = _features(tensors, keys, inputs)
    model_dtypes = [str(getattr(t, "dtype", "float32")) for t in tensors]

    raw = {f.name: keras.Input(shape=f.shape, dtype=f.dtype, name=f.name) for f in features}
    fed = []
    for feature, dtype in zip(features, model_dtypes):
        tensor = raw[feature.name]
        # Signatures carry float32/int64/string; cast to what the model was built for (int32, float64...).
        fed.append(tensor if dtype in (feature.dtype, "string") else keras.ops.cast(tensor, dtype))
    if keys is not None:
        call_arg: Any = dict(zip(keys, fed))
    elif isinstance(structure, (list, tuple)):
        call_arg = list(fed)
    else:
        call_arg = fed[0]
    outputs = keras_model(call_arg)
    if isinstance(outputs, Mapping) and len(outputs) == 1:
        outputs = next(iter(outputs.values()))
    elif isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        outputs = outputs[0]
    if isinstance(outputs, (Mapping, list, tuple)):
        raise ExportError(
            f"{source} has {len(outputs)} outputs; tfstack serves one (probabilities or a regression value). "
            "Wrap the model so it returns the one to serve."
        )
    wrapper = keras.Model(raw, outputs, name=f"{model_name.replace('-', '_').replace('.', '_')}_serving")
    width = outputs.shape[-1] if len(outputs.shape) > 1 else 1
    if task is None:
        task = "classification" if class_names or (width is not None and width > 1) else "regression"
    data_profile = None
    if sample is not None:
        rows = load_sample(sample, features, limit=None)
        sample_inputs = {name: array[:MAX_SAMPLE_ROWS] for name, array in rows.items()}
        data_profile = _sample_profile(features, rows, task=task, class_names=class_names, sample=sample,
                                       predictions=_predict_rows(wrapper, rows))
    else:
        sample_inputs = {f.name: _zeros(f, _DEFAULT_SAMPLE_ROWS) for f in features}
    return ExportSpec(
        model_name=model_name,
        task=task,
        keras_model=wrapper,
        features=features,
        class_names=tuple(str(c) for c in class_names),
        sample_inputs=sample_inputs,
        training_config={"exported_from": source},
        dataset={"sample": "given" if sample is not None else f"{_DEFAULT_SAMPLE_ROWS} rows of zeros"},
        data_profile=data_profile,
    )


def _sample_profile(features, rows, *, task, class_names, sample, predictions=None) -> dict[str, Any]:
    """The data profile of the sample rows: the only view of the model's data an export has."""
    from tfstack.export._profile import build_profile

    where = "mapping" if isinstance(sample, Mapping) else Path(sample).name
    return build_profile(features, rows, task=task or "regression", class_names=tuple(str(c) for c in class_names),
                         source=f"sample {where}", predictions=predictions)


def _predict_rows(keras_model: Any, rows: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The model's outputs on the sample rows (for the profile's prediction distribution)."""
    from tfstack.export._spec import _to_bytes

    try:
        feeds = {k: (np.vectorize(_to_bytes, otypes=[object])(v) if v.dtype == object else v) for k, v in rows.items()}
        return np.asarray(keras_model.predict(feeds, batch_size=256, verbose=0))
    except Exception:  # the verification after export reports a model that cannot run; the profile just goes without
        return None


def _input_structure(keras_model: Any) -> Any:
    """The model's symbolic inputs as it is called: a dict, a list or one tensor (None if unknown)."""
    listed = list(getattr(keras_model, "inputs", None) or [])
    try:
        # Functional models keep their call structure here (a dict for named inputs);
        # Sequential models return None and have exactly one input.
        structure = keras_model.input
    except (AttributeError, ValueError):
        structure = None
    if structure is not None:
        return structure
    if not listed:
        return None
    return listed[0] if len(listed) == 1 else listed


def parse_input_spec(text: str) -> tuple[str, str | None, tuple[int, ...] | None]:
    """'name[:dtype][:shape]' -> (name, dtype or None, shape or None); shape like 8x8, 64 or scalar."""
    match = _INPUT_SPEC.match(text.strip())
    if not match:
        raise ValueError(f"An input is written name[:dtype][:shape], e.g. pixels:float32:8x8. Received: {text!r}")
    shape_text = match.group("shape")
    shape = None
    if shape_text is not None:
        shape = () if shape_text == "scalar" else tuple(int(d) for d in re.split(r"[x,]", shape_text))
    return match.group("name"), match.group("dtype"), shape


def _features(tensors: list[Any], keys: list[str] | None, inputs: Sequence[FeatureSpec | str] | None) -> tuple[FeatureSpec, ...]:
    if inputs is not None:
        if isinstance(inputs, (str, FeatureSpec)):
            inputs = [inputs]
        if len(inputs) != len(tensors):
            raise ValueError(f"The model has {len(tensors)} input(s); inputs names {len(inputs)}. Received: inputs={list(inputs)!r}")
    features = []
    for index, tensor in enumerate(tensors):
        name = keys[index] if keys is not None else str(getattr(tensor, "name", f"input_{index}")).split(":")[0]
        dtype = _signature_dtype(str(getattr(tensor, "dtype", "float32")))
        dims = tuple(tensor.shape[1:])
        given = inputs[index] if inputs is not None else None
        if isinstance(given, FeatureSpec):
            features.append(given)
            continue
        shape: tuple[int, ...] | None = None
        if isinstance(given, str):
            name, given_dtype, shape = parse_input_spec(given)
            dtype = given_dtype or dtype
        if shape is None:
            if any(d is None for d in dims):
                raise ValueError(
                    f"Input {name!r} has shape {list(dims)} with unknown dimensions; give its per-example shape, "
                    f"e.g. inputs=['{name}:{dtype}:{'x'.join(str(d or 8) for d in dims)}']."
                )
            shape = tuple(int(d) for d in dims)
        features.append(FeatureSpec(name=name, dtype=dtype, shape=shape))
    return tuple(features)


def _signature_dtype(dtype: str) -> str:
    if dtype == "string":
        return "string"
    if dtype.startswith(("int", "uint")) or dtype == "bool":
        return "int64"
    return "float32"


def _zeros(feature: FeatureSpec, rows: int) -> np.ndarray:
    if feature.dtype == "string":
        return np.full((rows, *feature.shape), b"", dtype=object)
    return np.zeros((rows, *feature.shape), dtype=feature.dtype)


def _load_keras(model: Any) -> tuple[Any, str]:
    if not isinstance(model, (str, os.PathLike)):
        if not callable(model) or not hasattr(model, "variables"):
            raise TypeError(
                "model must be a keras.Model, a .keras/.h5 file or a SavedModel directory. "
                f"Received: model={type(model).__name__}"
            )
        return model, f"keras.Model {getattr(model, 'name', '')}".strip()
    path = Path(model)
    if not path.exists():
        raise ValueError(f"model must be an existing .keras/.h5 file or SavedModel directory. Received: {str(path)!r} (not found)")
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ValueError(
            f"model must be a .keras or .h5 file, or a SavedModel directory. Received: {str(path)!r}"
        )
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False), str(path.absolute())
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(
            f"Cannot load the Keras model {str(path)!r}: {type(exc).__name__}: {first} "
            "(custom layers must be importable and registered with keras.saving.register_keras_serializable)"
        ) from exc


def _saved_model_features(source: Path, tags: tuple[str, ...]) -> tuple[FeatureSpec, ...]:
    """serving_default's inputs as FeatureSpecs, to decode a sample file for a SavedModel."""
    from tfstack.export._manifest import read_signature_summary

    if not (source / "saved_model.pb").is_file():
        raise ExportError(f"Cannot export {source}: expected a SavedModel directory (with saved_model.pb).")
    summary = read_signature_summary(source)
    signature = summary.get("serving_default")
    if signature is None:
        raise ExportError(
            f"{source} has no serving_default signature, so a sample file has nothing to feed. "
            f"Signatures: {sorted(summary)}"
        )
    features = []
    for name, info in signature["inputs"].items():
        dtype = _signature_dtype(info["dtype"])
        shape = info["shape"]
        if shape is None or any(d < 0 for d in shape[1:]):
            raise ExportError(
                f"serving_default input {name!r} of {source} has shape {shape}; a sample file needs known per-example shapes."
            )
        try:
            features.append(FeatureSpec(name=name, dtype=dtype, shape=tuple(shape[1:])))
        except ValueError as exc:
            raise ExportError(f"serving_default input {name!r} of {source} cannot take a sample file: {exc}") from exc
    return tuple(features)


# ---- sample files ----------------------------------------------------------------------------

def load_sample(
    sample: str | os.PathLike[str] | Mapping[str, Any], features: tuple[FeatureSpec, ...], *, limit: int | None = MAX_SAMPLE_ROWS
) -> dict[str, np.ndarray]:
    """Rows for `features` from a mapping or a .npy/.npz/.json/.csv file (the first `limit` rows; None: all)."""
    if isinstance(sample, Mapping):
        arrays = {name: np.asarray(value) for name, value in sample.items()}
        where = "sample"
    else:
        path = Path(sample)
        where = str(path)
        if not path.is_file():
            raise ValueError(f"sample must be a .npy, .npz, .json or .csv file. Received: {where!r} (not found)")
        readers = {".npy": _read_npy, ".npz": _read_npz, ".json": _read_json, ".csv": _read_csv}
        reader = readers.get(path.suffix.lower())
        if reader is None:
            raise ValueError(f"sample must be a .npy, .npz, .json or .csv file. Received: {where!r}")
        try:
            arrays = reader(path, features)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"Cannot read sample rows from {where}: {exc}") from exc
    names = [f.name for f in features]
    if sorted(arrays) != sorted(names):
        raise ValueError(f"The sample must give exactly the inputs {names}. Received: {sorted(arrays)} from {where}")
    result = {}
    for feature in features:
        array = arrays[feature.name]
        if feature.dtype == "string":
            array = np.asarray(array, dtype=object)
        else:
            try:
                array = np.asarray(array).astype(feature.dtype)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"Sample input {feature.name!r} must be numeric ({feature.dtype}). Received from {where}: {exc}") from exc
        if array.shape[1:] != feature.shape and array.size == np.prod((array.shape[0], *feature.shape)):
            array = array.reshape((array.shape[0], *feature.shape))
        result[feature.name] = array if limit is None else array[:limit]
    return result


def _read_npy(path: Path, features: tuple[FeatureSpec, ...]) -> dict[str, np.ndarray]:
    if len(features) != 1:
        raise ValueError(f"a .npy file holds one array but the model has {len(features)} inputs; use .npz with one array per input")
    return {features[0].name: np.load(path, allow_pickle=False)}


def _read_npz(path: Path, features: tuple[FeatureSpec, ...]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    if len(features) == 1 and list(arrays) == ["arr_0"]:
        return {features[0].name: arrays["arr_0"]}
    return arrays


def _read_json(path: Path, features: tuple[FeatureSpec, ...]) -> dict[str, np.ndarray]:
    body = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(body, dict) and isinstance(body.get("inputs"), dict):
        body = body["inputs"]  # a TF Serving REST body, columnar
    elif isinstance(body, dict) and "instances" in body:
        body = body["instances"]
    if isinstance(body, list):  # row format: one value (single input) or one object per row
        if len(features) == 1 and not (body and isinstance(body[0], dict)):
            return {features[0].name: np.asarray(body)}
        return {f.name: np.asarray([row[f.name] for row in body]) for f in features}
    if len(features) == 1 and not isinstance(body, dict):
        return {features[0].name: np.asarray(body)}
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object name -> rows, a REST body with 'inputs'/'instances', or a list of rows")
    return {name: np.asarray(value) for name, value in body.items()}


def _read_csv(path: Path, features: tuple[FeatureSpec, ...]) -> dict[str, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2:
        raise ValueError("expected a header row and at least one data row")
    header, data = rows[0], rows[1:]
    names = [f.name for f in features]
    if all(name in header for name in names):
        columns = {name: [row[header.index(name)] for row in data] for name in names}
        return {f.name: np.asarray(columns[f.name], dtype=object if f.dtype == "string" else np.float64) for f in features}
    if len(features) == 1:  # one vector input: every column is one element
        return {features[0].name: np.asarray(data, dtype=object if features[0].dtype == "string" else np.float64)}
    raise ValueError(f"the CSV header must name the inputs {names}. Received header: {header}")
