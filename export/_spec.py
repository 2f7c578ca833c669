"""What export needs from training (`ExportSpec`, `FeatureSpec`) and what publishing returns."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TASKS = ("classification", "regression")
DTYPES = ("float32", "int64", "string")
MAX_SAMPLE_ROWS = 32

# A model name becomes one directory under base_path. It must start with a letter, digit or
# underscore (a leading "." would hide it and collide with our staging/lock names) and must not be
# purely numeric: TF Serving would mistake `<base_path>/7` for a version if someone pointed it one
# level too high.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
# Feature names become signature input keys and TensorFlow op names.
_FEATURE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")


def check_model_name(model_name: object) -> str:
    """Return `model_name` if it is a valid single path component, else raise TypeError/ValueError."""
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str. Received: model_name={model_name!r} ({type(model_name).__name__})")
    if not _MODEL_NAME.match(model_name) or model_name.isdigit():
        raise ValueError(
            "model_name must be one path component of letters, digits, '_', '.', '-' (at most 128 characters, "
            f"not starting with '.' or '-', not purely numeric). Received: model_name={model_name!r}"
        )
    return model_name


def check_version(version: object, *, name: str = "version") -> int:
    """Return `version` if it is a positive int (bools rejected), else raise TypeError/ValueError."""
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)):
        raise TypeError(f"{name} must be an int. Received: {name}={version!r} ({type(version).__name__})")
    if version < 1:
        raise ValueError(f"{name} must be >= 1. Received: {name}={version!r}")
    return int(version)


@dataclass(frozen=True, kw_only=True)
class FeatureSpec:
    """One raw input of the exported model.

    Args:
        name: the signature input name, e.g. "pixels", "features" or a CSV column.
        dtype: "float32", "int64" or "string".
        shape: the per-example shape, batch dimension excluded: (8, 8), (64,), ().
    """

    name: str
    dtype: str
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _FEATURE_NAME.match(self.name):
            raise ValueError(
                "FeatureSpec.name must start with a letter or '_' and contain only letters, digits, '_', '.', '-'. "
                f"Received: name={self.name!r}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"FeatureSpec.dtype must be one of {DTYPES}. Received: dtype={self.dtype!r}")
        if isinstance(self.shape, (str, bytes)) or not isinstance(self.shape, Sequence):
            raise TypeError(f"FeatureSpec.shape must be a tuple of ints. Received: shape={self.shape!r}")
        shape = tuple(self.shape)
        if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in shape):
            raise ValueError(
                f"FeatureSpec.shape must hold positive ints (batch dimension excluded). Received: shape={self.shape!r}"
            )
        object.__setattr__(self, "shape", tuple(int(d) for d in shape))

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(object) if self.dtype == "string" else np.dtype(self.dtype)


@dataclass(frozen=True, kw_only=True)
class ExportSpec:
    """Everything `publish` needs to export one trained model; built by training.

    Args:
        model_name: directory name under base_path (see `check_model_name`).
        task: "classification" or "regression".
        keras_model: called as `keras_model({name: tensor})` on raw features; returns
            probabilities [N, C] (classification) or predictions [N] / [N, 1] (regression).
        features: the raw inputs, in signature order.
        class_names: classification: label of class i (defaults to "0".."C-1").
        sample_inputs: 1..32 real test rows per feature, used for warmup and verification.
        metrics: test metrics (JSON-able; numpy scalars and arrays are converted).
        training_config: the run's settings (JSON-able).
        dataset: {"name": ..., "fingerprint": "sha256:...", ...}.
        history: Keras `History.history` (metric -> per-epoch values) for the training-curve plot.
        confusion_matrix: classification: counts [C][C], rows = true class.
        parent_version: the version this one was fine-tuned from, if any.
        data_profile: the training data's profile (`export.build_profile`), written to
            `assets.extra/data_profile.json` for `tfstack models show` and `tfstack monitor`.
        lineage: where the training rows came from when they were not a dataset, e.g. logged
            requests (`{"logs": ..., "labels": ...}`); recorded in the manifest.
        warmup_from: request logs (files, directories or logging_config prefixes) whose requests
            join the warmup records (at most 100 of them, spread over the logs).
    """

    model_name: str
    task: str
    keras_model: Any
    features: tuple[FeatureSpec, ...]
    class_names: tuple[str, ...] = ()
    sample_inputs: Mapping[str, np.ndarray]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    training_config: Mapping[str, Any] = field(default_factory=dict)
    dataset: Mapping[str, Any] = field(default_factory=dict)
    history: Mapping[str, Sequence[float]] = field(default_factory=dict)
    confusion_matrix: Sequence[Sequence[int]] | None = None
    parent_version: int | None = None
    data_profile: Mapping[str, Any] | None = None
    lineage: Mapping[str, Any] | None = None
    warmup_from: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_model_name(self.model_name)
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}. Received: task={self.task!r}")
        if not callable(self.keras_model) or not hasattr(self.keras_model, "variables"):
            raise TypeError(
                "keras_model must be a keras.Model (callable, with variables). "
                f"Received: keras_model={type(self.keras_model).__name__}"
            )
        features = self._check_features(self.features)
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "class_names", self._check_class_names(self.class_names))
        object.__setattr__(self, "sample_inputs", self._check_sample_inputs(self.sample_inputs, features))
        for name in ("metrics", "training_config", "dataset", "history", "data_profile", "lineage"):
            value = getattr(self, name)
            if value is None and name in ("data_profile", "lineage"):
                continue
            if not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a mapping. Received: {name}={type(value).__name__}")
            # Fail now, not after the SavedModel is written: these go into manifest.json.
            try:
                to_jsonable(value)
            except TypeError as exc:
                raise TypeError(f"{name} must be JSON-able. {exc}") from exc
        for key, values in self.history.items():
            try:
                np.asarray(values, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"history[{key!r}] must be a sequence of numbers (one per epoch). Received: {values!r}"
                ) from exc
        if self.confusion_matrix is not None:
            matrix = np.asarray(self.confusion_matrix)
            if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
                raise ValueError(
                    f"confusion_matrix must be square [C][C]. Received: shape={list(matrix.shape)}"
                )
        if self.parent_version is not None:
            check_version(self.parent_version, name="parent_version")
        if isinstance(self.warmup_from, (str, bytes)) or not all(isinstance(p, (str, Path)) for p in self.warmup_from):
            raise TypeError(f"warmup_from must be a tuple of paths. Received: warmup_from={self.warmup_from!r}")
        object.__setattr__(self, "warmup_from", tuple(str(p) for p in self.warmup_from))

    @staticmethod
    def _check_features(features: object) -> tuple[FeatureSpec, ...]:
        if isinstance(features, FeatureSpec) or not isinstance(features, Sequence) or not features:
            raise TypeError(f"features must be a non-empty tuple of FeatureSpec. Received: features={features!r}")
        for feature in features:
            if not isinstance(feature, FeatureSpec):
                raise TypeError(f"features must hold FeatureSpec objects. Received: {feature!r}")
        names = [f.name for f in features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"feature names must be unique. Received duplicates: {duplicates}")
        return tuple(features)

    def _check_class_names(self, class_names: object) -> tuple[str, ...]:
        if isinstance(class_names, str) or not isinstance(class_names, Sequence):
            raise TypeError(f"class_names must be a tuple of str. Received: class_names={class_names!r}")
        if self.task == "regression" and class_names:
            raise ValueError(f"class_names is for classification only. Received: class_names={class_names!r}")
        names = tuple(str(c) for c in class_names)
        if len(set(names)) != len(names):
            raise ValueError(f"class_names must be unique. Received: class_names={class_names!r}")
        return names

    @staticmethod
    def _check_sample_inputs(sample_inputs: object, features: tuple[FeatureSpec, ...]) -> dict[str, np.ndarray]:
        if not isinstance(sample_inputs, Mapping):
            raise TypeError(f"sample_inputs must map feature name -> array. Received: {type(sample_inputs).__name__}")
        expected = sorted(f.name for f in features)
        if sorted(sample_inputs) != expected:
            raise ValueError(
                f"sample_inputs must have exactly the feature names {expected}. Received: {sorted(sample_inputs)}"
            )
        arrays: dict[str, np.ndarray] = {}
        rows = set()
        for feature in features:
            array = np.asarray(sample_inputs[feature.name])
            if feature.dtype == "string":
                if array.dtype.kind not in "USO":
                    raise ValueError(
                        f"sample_inputs[{feature.name!r}] must hold strings. Received: dtype={array.dtype}"
                    )
                array = np.vectorize(_to_bytes, otypes=[object])(array) if array.size else array.astype(object)
            else:
                if array.dtype.kind not in "biuf":
                    raise ValueError(
                        f"sample_inputs[{feature.name!r}] must be numeric ({feature.dtype}). Received: dtype={array.dtype}"
                    )
                array = array.astype(feature.dtype)
            if array.shape[1:] != feature.shape or array.ndim == 0:
                raise ValueError(
                    f"sample_inputs[{feature.name!r}] must have shape [N, {', '.join(map(str, feature.shape))}]"
                    f" (N = 1..{MAX_SAMPLE_ROWS}). Received: shape={list(array.shape)}"
                )
            rows.add(array.shape[0])
            arrays[feature.name] = array
        if len(rows) != 1 or not 1 <= next(iter(rows)) <= MAX_SAMPLE_ROWS:
            raise ValueError(
                f"sample_inputs must have the same number of rows (1..{MAX_SAMPLE_ROWS}) for every feature. "
                f"Received: rows={sorted(rows)}"
            )
        return arrays

    @property
    def num_samples(self) -> int:
        return next(iter(self.sample_inputs.values())).shape[0]


def _to_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


@dataclass(frozen=True, kw_only=True)
class PublishedVersion:
    """One version now visible in the repository."""

    model_name: str
    version: int
    path: Path
    manifest: dict[str, Any]


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and paths into plain JSON types; non-finite floats -> None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        # str() gives the shortest repr of a float32 (0.9, not 0.8999999761581421).
        return to_jsonable(float(str(value)))
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, type(None))):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"value is not JSON-able. Received: {value!r} ({type(value).__name__})")
