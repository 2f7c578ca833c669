"""Validation and normalisation of user arguments, shared by every transport.

Everything here runs before any I/O and raises TypeError/ValueError for bad arguments, so a
mistake is reported the same way whichever transport or client flavour is in use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True, kw_only=True)
class ModelSelector:
    """Which model, version (latest, a number or a label) and signature a call addresses."""

    model_name: str
    version: int | None = None
    version_label: str | None = None
    signature_name: str = DEFAULT_SIGNATURE


def selector(
    model_name: Any,
    version: Any = None,
    version_label: Any = None,
    signature_name: Any = DEFAULT_SIGNATURE,
) -> ModelSelector:
    """Validate the model selector arguments common to every method."""
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str. Received: model_name={model_name!r}")
    if not model_name:
        raise ValueError("model_name must not be empty. Received: model_name=''")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, (int, np.integer)):
            raise TypeError(f"version must be an int. Received: version={version!r}")
        if version < 0:
            raise ValueError(f"version must be >= 0. Received: version={version!r}")
        version = int(version)
    if version_label is not None:
        if not isinstance(version_label, str):
            raise TypeError(f"version_label must be a str. Received: version_label={version_label!r}")
        if not version_label or "/" in version_label or ":" in version_label:
            raise ValueError(
                "version_label must be a non-empty name without '/' or ':'. "
                f"Received: version_label={version_label!r}"
            )
    if version is not None and version_label is not None:
        raise ValueError(
            "Pass either version or version_label, not both. "
            f"Received: version={version!r}, version_label={version_label!r}"
        )
    if not isinstance(signature_name, str):
        raise TypeError(f"signature_name must be a str. Received: signature_name={signature_name!r}")
    return ModelSelector(
        model_name=model_name,
        version=version,
        version_label=version_label,
        signature_name=signature_name or DEFAULT_SIGNATURE,
    )


def timeout_seconds(timeout: Any) -> float | None:
    """Validate a timeout in seconds (None: no deadline)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None. Received: timeout={timeout!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds. Received: timeout={timeout!r}")
    return float(timeout)


def output_filter(names: Any) -> tuple[str, ...]:
    """Validate output_filter: a sequence of output aliases (empty: all outputs)."""
    if names is None:
        return ()
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"output_filter must be a list of output names. Received: output_filter={names!r}")
    for name in names:
        if not isinstance(name, str) or not name:
            raise TypeError(f"output_filter entries must be non-empty str. Received: output_filter={names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"output_filter has duplicate names. Received: output_filter={names!r}")
    return tuple(names)


_SUPPORTED_KINDS = "fiubcSUO"


def _array(name: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value)
        except ValueError as exc:
            raise ValueError(
                f"Input {name!r} is not a rectangular array (ragged lists?). Received: {_short(value)}"
            ) from exc
        # Python floats become float64 in numpy, but models almost always take float32, and
        # TF Serving's gRPC side rejects a float64 tensor for a float32 input.
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        # numpy's fixed-width bytes dtype drops trailing NUL bytes; binary data must survive.
        elif array.dtype.kind == "S":
            array = np.array(value, dtype=object)
    if array.dtype.kind not in _SUPPORTED_KINDS:
        raise TypeError(f"Input {name!r} has unsupported dtype {array.dtype}. Received: {_short(value)}")
    if array.dtype.kind == "O":
        for item in array.flat:
            if not isinstance(item, (str, bytes)):
                raise TypeError(
                    f"Input {name!r} holds Python objects; only str and bytes are supported. "
                    f"Received an element of type {type(item).__name__}: {_short(item)}"
                )
    return array


def inputs(value: Any) -> dict[str, np.ndarray] | np.ndarray:
    """Normalise predict inputs.

    A mapping becomes {name: ndarray}. A single array, list or scalar (for a signature with
    one input) comes back as a bare ndarray; the transport supplies the input name.
    Python float lists become float32; ndarrays keep their dtype.
    """
    if isinstance(value, Mapping):
        if not value:
            raise ValueError("inputs must not be empty. Received: inputs={}")
        result = {}
        for name, item in value.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"Input names must be non-empty str. Received key: {name!r}")
            result[name] = _array(name, item)
        return result
    if isinstance(value, (np.ndarray, list, tuple, int, float, bool, str, bytes, np.generic)):
        return _array("<single input>", value)
    raise TypeError(
        "inputs must be a dict of arrays, or one array/list/scalar for a single-input signature. "
        f"Received: inputs of type {type(value).__name__}"
    )


# A feature value normalised for both wire formats: ("float" | "int64" | "bytes" | "", values).
Feature = tuple[str, list]


def _feature(example_index: int, name: str, value: Any) -> Feature:
    where = f"examples[{example_index}][{name!r}]" if example_index >= 0 else f"context[{name!r}]"
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        kind = flat.dtype.kind
        if kind == "f":
            return ("float", [float(v) for v in flat])
        if kind in "iub":
            return ("int64", [int(v) for v in flat])
        items = flat.tolist()
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    kinds = set()
    values: list = []
    for item in items:
        if isinstance(item, (bool, np.bool_)):
            kinds.add("int64")
            values.append(int(item))
        elif isinstance(item, (int, np.integer)):
            kinds.add("int64")
            values.append(int(item))
        elif isinstance(item, (float, np.floating)):
            kinds.add("float")
            values.append(float(item))
        elif isinstance(item, str):
            kinds.add("bytes")
            values.append(item.encode("utf-8"))
        elif isinstance(item, bytes):
            kinds.add("bytes")
            values.append(item)
        else:
            raise TypeError(
                f"Feature {where} must hold numbers, str or bytes (or a flat list of them). "
                f"Received an element of type {type(item).__name__}: {_short(item)}"
            )
    if kinds == {"int64", "float"}:
        # Mixed ints and floats are meant as floats; TF Serving would reject the mix.
        return ("float", [float(v) for v in values])
    if len(kinds) > 1:
        raise TypeError(f"Feature {where} mixes strings and numbers. Received: {_short(value)}")
    return (kinds.pop() if kinds else "", values)


def examples(value: Any, *, context: Any = None) -> tuple[list[dict[str, Feature]], dict[str, Feature] | None]:
    """Normalise classify/regress examples (a list of {feature: value}) and optional context.

    Python ints become int64 features and floats float features, on both transports. Note that
    a model parsing a float feature rejects an int64 one, so send 2.0, not 2, for float features.
    """
    if isinstance(value, Mapping) or not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise TypeError(
            f"examples must be a list of dicts mapping feature names to values. Received: {_short(value)}"
        )
    if not value:
        raise ValueError("examples must not be empty. Received: examples=[]")
    result = []
    for index, example in enumerate(value):
        if not isinstance(example, Mapping):
            raise TypeError(f"examples[{index}] must be a dict of features. Received: {_short(example)}")
        result.append({_name(k, index): _feature(index, k, v) for k, v in example.items()})
    ctx = None
    if context is not None:
        if not isinstance(context, Mapping):
            raise TypeError(f"context must be a dict of features. Received: {_short(context)}")
        ctx = {_name(k, -1): _feature(-1, k, v) for k, v in context.items()}
    return result, ctx


def _name(key: Any, index: int) -> str:
    if not isinstance(key, str) or not key:
        where = f"examples[{index}]" if index >= 0 else "context"
        raise TypeError(f"Feature names in {where} must be non-empty str. Received key: {key!r}")
    return key


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
