"""TensorFlow DataType names <-> numpy dtypes, shared by both wire formats (no protobuf here,
so a REST-only client never loads it)."""

from __future__ import annotations

import numpy as np

# DataType enum name -> numpy dtype (None: strings, kept as object arrays of bytes).
DTYPE_BY_NAME: dict[str, np.dtype | None] = {
    "DT_FLOAT": np.dtype("<f4"),
    "DT_DOUBLE": np.dtype("<f8"),
    "DT_INT32": np.dtype("<i4"),
    "DT_UINT8": np.dtype("u1"),
    "DT_INT16": np.dtype("<i2"),
    "DT_INT8": np.dtype("i1"),
    "DT_STRING": None,
    "DT_COMPLEX64": np.dtype("<c8"),
    "DT_INT64": np.dtype("<i8"),
    "DT_BOOL": np.dtype("?"),
    "DT_UINT16": np.dtype("<u2"),
    "DT_COMPLEX128": np.dtype("<c16"),
    "DT_HALF": np.dtype("<f2"),
    "DT_UINT32": np.dtype("<u4"),
    "DT_UINT64": np.dtype("<u8"),
}

# numpy-style names used in results (TensorInfo.dtype).
FRIENDLY_NAME: dict[str, str] = {
    "DT_STRING": "string",
    "DT_BFLOAT16": "bfloat16",
    **{name: np.dtype(dt).name for name, dt in DTYPE_BY_NAME.items() if dt is not None},
}

DT_NAME_BY_FRIENDLY: dict[str, str] = {friendly: dt for dt, friendly in FRIENDLY_NAME.items()}


def friendly_dtype(dt_name: str) -> str:
    """'DT_FLOAT' -> 'float32'; unknown names are returned unchanged."""
    return FRIENDLY_NAME.get(dt_name, dt_name)
