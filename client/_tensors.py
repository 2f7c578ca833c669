"""numpy <-> TensorProto without TensorFlow.

Numeric arrays are written as `tensor_content` (one memcpy, no per-element encoding); strings
go to `string_val`. Reading accepts both `tensor_content` and the typed fields (`float_val`,
...), which TF Serving uses for outputs by default.
"""

from __future__ import annotations

import numpy as np

from tfstack.client._dtypes import DTYPE_BY_NAME
from tfstack.client._errors import BadResponseError
from tfstack.client._proto import tfstack_serving_pb2 as pb

_NAME_BY_KIND_SIZE: dict[tuple[str, int], str] = {
    (dt.kind, dt.itemsize): name for name, dt in DTYPE_BY_NAME.items() if dt is not None
}


def _dt_name(array: np.ndarray) -> str:
    kind = array.dtype.kind
    if kind in "SUO":
        return "DT_STRING"
    try:
        return _NAME_BY_KIND_SIZE[(kind, array.dtype.itemsize)]
    except KeyError:
        raise TypeError(f"No TensorFlow dtype for numpy dtype {array.dtype}.") from None


def _as_bytes(item: object) -> bytes:
    return item.encode("utf-8") if isinstance(item, str) else item  # type: ignore[return-value]


def to_tensor_proto(array: np.ndarray, out: pb.TensorProto | None = None) -> pb.TensorProto:
    """Fill (or create) a TensorProto from an ndarray; numeric data goes to tensor_content."""
    proto = pb.TensorProto() if out is None else out
    dt_name = _dt_name(array)
    proto.dtype = pb.DataType.Value(dt_name)
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add().size = size
    if dt_name == "DT_STRING":
        if array.dtype.kind == "S":
            proto.string_val.extend(array.reshape(-1).tolist())
        else:
            proto.string_val.extend([_as_bytes(item) for item in array.reshape(-1).tolist()])
    else:
        wanted = DTYPE_BY_NAME[dt_name]
        proto.tensor_content = np.ascontiguousarray(array, dtype=wanted).tobytes()
    return proto


# Typed field holding each dtype's values when tensor_content is empty.
_FIELD_BY_NAME = {
    "DT_FLOAT": "float_val",
    "DT_DOUBLE": "double_val",
    "DT_INT32": "int_val",
    "DT_INT16": "int_val",
    "DT_INT8": "int_val",
    "DT_UINT8": "int_val",
    "DT_UINT16": "int_val",
    "DT_INT64": "int64_val",
    "DT_BOOL": "bool_val",
    "DT_UINT32": "uint32_val",
    "DT_UINT64": "uint64_val",
    "DT_COMPLEX64": "scomplex_val",
    "DT_COMPLEX128": "dcomplex_val",
    "DT_HALF": "half_val",
}


def to_ndarray(proto: pb.TensorProto, name: str = "") -> np.ndarray:
    """Convert a TensorProto to an ndarray (strings become an object array of bytes).

    Raises:
        BadResponseError: the dtype is unsupported or the data does not match the shape.
    """
    try:
        dt_name = pb.DataType.Name(proto.dtype)
    except ValueError:
        dt_name = f"enum {proto.dtype}"
    if proto.tensor_shape.unknown_rank:
        raise BadResponseError(f"Output {name!r} has an unknown rank.", code="INTERNAL")
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    size = int(np.prod(shape, dtype=np.int64))
    if dt_name == "DT_STRING":
        values = np.empty(len(proto.string_val), dtype=object)
        values[:] = list(proto.string_val)
        return _fill(values, shape, size, name)
    if dt_name == "DT_BFLOAT16":
        # numpy has no bfloat16: widen to float32 (bfloat16 is float32's upper 16 bits).
        bits = np.frombuffer(proto.tensor_content, "<u2") if proto.tensor_content else np.asarray(proto.half_val, "<u2")
        return _fill((bits.astype("<u4") << 16).view("<f4"), shape, size, name)
    dtype = DTYPE_BY_NAME.get(dt_name)
    if dtype is None:
        raise BadResponseError(f"Output {name!r} has unsupported dtype {dt_name}.", code="INTERNAL")
    if proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, dtype=dtype)
        if values.size != size:
            raise BadResponseError(
                f"Output {name!r}: tensor_content holds {values.size} values for shape {list(shape)}.",
                code="INTERNAL",
            )
        return values.reshape(shape).copy()
    field = getattr(proto, _FIELD_BY_NAME[dt_name])
    if dt_name == "DT_HALF":
        values = np.asarray(field, dtype="<u2").view(dtype)
    elif dtype.kind == "c":
        values = np.asarray(field, dtype=dtype.type(0).real.dtype).view(dtype)
    else:
        values = np.asarray(field, dtype=dtype)
    return _fill(values, shape, size, name)


def _fill(values: np.ndarray, shape: tuple[int, ...], size: int, name: str) -> np.ndarray:
    if values.size == size:
        return values.reshape(shape)
    # TF's own convention: fewer values than elements means "repeat the last one".
    if 0 < values.size < size:
        full = np.empty(size, dtype=values.dtype)
        full[: values.size] = values
        full[values.size :] = values[-1]
        return full.reshape(shape)
    if values.size == 0 and values.dtype != object:
        return np.zeros(shape, dtype=values.dtype)
    raise BadResponseError(
        f"Output {name!r} holds {values.size} values for shape {list(shape)}.", code="INTERNAL"
    )
