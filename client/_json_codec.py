"""TF Serving's REST JSON <-> numpy (spec §2): columnar and row formats, b64, NaN/Infinity.

orjson does the work when it can (it serialises numpy arrays natively); the stdlib json module
is the fallback for the cases orjson refuses: NaN/Infinity tokens, which TF Serving both
accepts and emits, and which orjson neither writes nor reads.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from tfstack.client._arguments import Feature
from tfstack.client._errors import BadResponseError
from tfstack.client._dtypes import DTYPE_BY_NAME

_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def dumps(document: Any, *, finite: bool = True) -> bytes:
    """Serialise a request document.

    finite=False sends it through the stdlib json module, which writes NaN/Infinity as the
    bare tokens TF Serving parses (orjson would silently write null).
    """
    if finite:
        try:
            return orjson.dumps(document, option=_ORJSON_OPTIONS)
        except (TypeError, orjson.JSONEncodeError):
            pass
    try:
        return json.dumps(_plain(document), separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Cannot encode the request as JSON: {exc}") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def loads(body: bytes) -> Any:
    """Parse a response body, accepting TF Serving's NaN/Infinity/-Infinity tokens."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        snippet = body[:200].decode("utf-8", "replace")
        raise BadResponseError(
            f"The server's response is not valid JSON ({exc}). Received: {snippet!r}", code="INTERNAL"
        ) from exc


def _b64(item: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(item).decode("ascii")}


def tensor_value(array: np.ndarray) -> Any:
    """One tensor as a JSON-able value: numeric arrays stay ndarrays (orjson writes them
    natively); strings become str, bytes become {"b64": ...}."""
    kind = array.dtype.kind
    if kind == "c":
        raise TypeError(f"TF Serving's REST API cannot carry complex tensors. Received dtype {array.dtype}.")
    if kind in "fiub":
        if array.ndim == 0:
            return array.item()  # a bare scalar: a rank-0 tensor on the server
        native = array.astype(array.dtype.newbyteorder("="), copy=False)
        return native if native.flags.c_contiguous else native.copy()
    if kind == "U":
        return array.tolist()
    return _map_nested(array.tolist(), lambda item: item if isinstance(item, str) else _b64(item))


def _map_nested(value: Any, fn: Any) -> Any:
    if isinstance(value, list):
        return [_map_nested(v, fn) for v in value]
    return fn(value)


def _finite(array: np.ndarray) -> bool:
    return array.dtype.kind != "f" or bool(np.isfinite(array).all())


def predict_body(
    signature_name: str, inputs: dict[str, np.ndarray] | np.ndarray, *, row_format: bool
) -> bytes:
    """The body of POST ...:predict, columnar ("inputs") or row ("instances") format."""
    document: dict[str, Any] = {"signature_name": signature_name}
    arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs.values())
    finite = all(_finite(array) for array in arrays)
    if not row_format:
        if isinstance(inputs, np.ndarray):
            document["inputs"] = tensor_value(inputs)
        else:
            document["inputs"] = {name: tensor_value(array) for name, array in inputs.items()}
        return dumps(document, finite=finite)
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 0:
            raise ValueError("The row format needs a batch dimension; received a scalar input. Use columnar.")
        document["instances"] = list(tensor_value(inputs))
        return dumps(document, finite=finite)
    sizes = {name: (array.shape[0] if array.ndim else None) for name, array in inputs.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(
            "The row format needs every input to share its first (batch) dimension. "
            f"Received batch sizes: {sizes}"
        )
    columns = {name: list(tensor_value(array)) for name, array in inputs.items()}
    document["instances"] = [dict(zip(columns, row)) for row in zip(*columns.values())]
    return dumps(document, finite=finite)


def to_array(value: Any, dt_name: str | None, name: str) -> np.ndarray:
    """A JSON tensor (nested lists / scalar) as an ndarray of the signature's dtype."""
    if dt_name == "DT_STRING" or (dt_name is None and _is_textual(value)):
        array = np.array(value, dtype=object)
        flat = array.reshape(-1)
        for i, item in enumerate(flat):
            flat[i] = _string_item(item, name)
        return array
    dtype = DTYPE_BY_NAME.get(dt_name) if dt_name else None
    try:
        if dtype is None:
            array = np.asarray(value)
            return array.astype(np.float32) if array.dtype == np.float64 else array
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise BadResponseError(
            f"Output {name!r} is not a rectangular {dt_name or 'numeric'} tensor: {exc}", code="INTERNAL"
        ) from exc


def _is_textual(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, (str, dict))


def _string_item(item: Any, name: str) -> bytes:
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, dict) and set(item) == {"b64"}:
        try:
            return base64.b64decode(item["b64"], validate=True)
        except ValueError as exc:
            raise BadResponseError(f"Output {name!r} has invalid base64 data.", code="INTERNAL") from exc
    raise BadResponseError(f"Output {name!r} has a non-string element: {item!r}", code="INTERNAL")


def is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def check_predict_document(document: Any, *, row_format: bool) -> None:
    key = "predictions" if row_format else "outputs"
    if not isinstance(document, dict) or key not in document:
        raise BadResponseError(
            f"Expected a JSON object with key {key!r} from :predict. Received: {str(document)[:200]}",
            code="INTERNAL",
        )


def named_outputs(document: Any, *, row_format: bool) -> set[str] | None:
    """The output names a :predict response carries (None when it has one unnamed output)."""
    payload = document["predictions" if row_format else "outputs"]
    if row_format:
        payload = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(payload, dict) and not is_b64(payload):
        return set(payload)
    return None


def predict_outputs(
    document: Any, output_dtypes: Mapping[str, str], *, row_format: bool
) -> dict[str, np.ndarray]:
    """Decode {"outputs": ...} or {"predictions": ...} into {name: ndarray}.

    output_dtypes maps each output name of the signature to its DataType name; it also names
    the single output, which TF Serving leaves out of the response.
    """
    check_predict_document(document, row_format=row_format)
    payload = document["predictions" if row_format else "outputs"]

    def single_name() -> str:
        if len(output_dtypes) != 1:
            raise BadResponseError(
                f"The response has one unnamed output, but the signature has outputs {sorted(output_dtypes)}.",
                code="INTERNAL",
            )
        return next(iter(output_dtypes))

    if not row_format:
        if isinstance(payload, dict) and not is_b64(payload):
            return {n: to_array(v, output_dtypes.get(n), n) for n, v in payload.items()}
        name = single_name()
        return {name: to_array(payload, output_dtypes.get(name), name)}
    if not isinstance(payload, list):
        raise BadResponseError(f"'predictions' must be a list. Received: {str(payload)[:200]}", code="INTERNAL")
    if payload and isinstance(payload[0], dict) and not is_b64(payload[0]):
        names = list(payload[0])
        try:
            columns = {n: [row[n] for row in payload] for n in names}
        except (KeyError, TypeError) as exc:
            raise BadResponseError(f"Rows of 'predictions' differ in their keys: {exc}", code="INTERNAL") from exc
        return {n: to_array(v, output_dtypes.get(n), n) for n, v in columns.items()}
    if not payload and len(output_dtypes) > 1:
        return {n: to_array([], dt, n) for n, dt in output_dtypes.items()}
    name = single_name()
    return {name: to_array(payload, output_dtypes.get(name), name)}


def _feature_json(feature: Feature) -> list:
    kind, values = feature
    if kind != "bytes":
        return values
    out = []
    for item in values:
        try:
            out.append(item.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(_b64(item))
    return out


def examples_body(
    signature_name: str, examples: list[dict[str, Feature]], context: dict[str, Feature] | None
) -> bytes:
    """The body of POST ...:classify / ...:regress."""
    document: dict[str, Any] = {
        "signature_name": signature_name,
        "examples": [{k: _feature_json(f) for k, f in ex.items()} for ex in examples],
    }
    if context is not None:
        document["context"] = {k: _feature_json(f) for k, f in context.items()}
    features = [f for ex in examples for f in ex.values()] + list((context or {}).values())
    finite = all(math.isfinite(v) for kind, values in features if kind == "float" for v in values)
    return dumps(document, finite=finite)


def as_float32(value: Any, what: str) -> float:
    """A JSON number as the float32 value gRPC would have carried (so both transports agree)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadResponseError(f"Expected a number for {what}. Received: {value!r}", code="INTERNAL")
    return float(np.float32(value)) if math.isfinite(value) else float(value)
