"""Predict inputs against the signature the server published: safe dtype casts, clear shape errors.

Shared by both wire protocols, so the same array behaves the same over REST and gRPC. TF Serving
itself does neither: over gRPC a float64 tensor for a float32 input fails inside the Session
(`Expects arg[0] to be float but double is provided`), over REST the JSON is parsed into the
signature's dtype (spec §2.5); a wrongly shaped input fails wherever the graph first trips on
it, in TensorFlow's words. The client knows the signature (cached `GetModelMetadata`), so it

- casts an ndarray to the signature's dtype when no value changes meaning (float64 -> float32,
  int64 -> float32, int64 -> int32 within range, whole floats -> ints), and refuses a lossy
  cast (1.5 -> int, 300 -> int8, 1e300 -> float32) before sending, with what it received and
  what the signature expects;
- leaves shapes alone (TF Serving accepts any shape the graph can run, e.g. half_plus_two's
  `x` is declared [-1, 1] and takes [2]), but when the server rejects a request it says which
  input does not match the signature: `pixels: received shape [2, 64], expected [-1, 8, 8]`.
"""

from __future__ import annotations

import numpy as np

from tfstack.client._arguments import ModelSelector
from tfstack.client._errors import InvalidInputError, ServingError
from tfstack.client._results import SignatureInfo, TensorInfo

__all__ = ["conform_inputs", "explain_rejection"]


def _target_dtype(info: TensorInfo) -> np.dtype | None:
    if info.dtype in ("string", "bfloat16"):
        return None
    try:
        dtype = np.dtype(info.dtype)
    except TypeError:
        return None
    return dtype if dtype.kind in "fiub" else None


def _refuse(name: str, received: str, info: TensorInfo, sel: ModelSelector, advice: str) -> InvalidInputError:
    return InvalidInputError(
        f"{name}: received {received}, but signature {sel.signature_name!r} of model {sel.model_name!r} "
        f"expects {info.dtype}; {advice}",
        code="INVALID_ARGUMENT",
    )


def _cast(name: str, array: np.ndarray, info: TensorInfo, sel: ModelSelector) -> np.ndarray:
    target = _target_dtype(info)
    source = array.dtype
    if target is None or source == target or source.kind not in "fiub":
        return array  # strings, unknown dtypes: the server's rules apply unchanged
    if target.kind == "b":
        return array  # only booleans mean booleans; the server reports anything else
    if target.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            cast = array.astype(target)
        if source.kind == "f":
            overflow = np.isinf(cast) & np.isfinite(array)
            if overflow.any():
                value = array[overflow].flat[0].item()
                raise _refuse(name, f"{source} values such as {value!r} beyond {target}'s range", info, sel,
                                      "scale them or change the model's input dtype")
        return cast
    # integer target
    if source.kind == "f":
        bad = ~np.isfinite(array) | (array != np.trunc(array))
        if bad.any():
            value = array[bad].flat[0].item()
            raise _refuse(name, f"{source} values that are not whole numbers (e.g. {value!r})", info, sel,
                                  f"round them first if that is intended, e.g. np.rint(x).astype(np.{target.name})")
    if array.size and source.kind != "b":
        limits = np.iinfo(target)
        low, high = array.min(), array.max()
        if low < limits.min or high > limits.max:
            value = (low if low < limits.min else high).item()
            raise _refuse(name, f"{value!r}, outside {target}'s range [{limits.min}, {limits.max}]", info, sel,
                                  "the value would wrap around")
    return array.astype(target)


def conform_inputs(
    signature: SignatureInfo | None, inputs: dict[str, np.ndarray] | np.ndarray, sel: ModelSelector
) -> dict[str, np.ndarray] | np.ndarray:
    """Cast each input to its signature dtype where that loses nothing; raise InvalidInputError where it would.

    A bare array (single-input signature) stays bare; inputs the signature does not name are
    left for the server to reject in its own words.
    """
    if signature is None:
        return inputs
    if isinstance(inputs, np.ndarray):
        if len(signature.inputs) != 1:
            return inputs
        name, info = next(iter(signature.inputs.items()))
        return _cast(name, inputs, info, sel)
    return {
        name: _cast(name, array, signature.inputs[name], sel) if name in signature.inputs else array
        for name, array in inputs.items()
    }


def _shape_text(shape: tuple[int | None, ...] | tuple[int, ...]) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def shape_mismatches(signature: SignatureInfo, inputs: dict[str, np.ndarray] | np.ndarray) -> list[str]:
    """`name: received shape [..], expected [..]` for each input whose shape the signature does not allow."""
    if isinstance(inputs, np.ndarray):
        if len(signature.inputs) != 1:
            return []
        inputs = {next(iter(signature.inputs)): inputs}
    problems = []
    for name, array in inputs.items():
        info = signature.inputs.get(name)
        if info is None or info.shape is None:
            continue
        expected = info.shape
        fits = len(expected) == array.ndim and all(d is None or d == n for d, n in zip(expected, array.shape))
        if not fits:
            problems.append(f"{name}: received shape {_shape_text(array.shape)}, expected {_shape_text(expected)}")
    return problems


def explain_rejection(
    error: ServingError, signature: SignatureInfo | None, inputs: dict[str, np.ndarray] | np.ndarray, sel: ModelSelector
) -> ServingError:
    """The server's rejection, led by the inputs that do not match the signature (if any)."""
    if signature is None or not isinstance(error, InvalidInputError):
        return error
    problems = shape_mismatches(signature, inputs)
    if not problems:
        return error
    first_line = (error.message.strip().splitlines() or [""])[0]
    return InvalidInputError(
        f"{'; '.join(problems)} (signature {sel.signature_name!r} of model {sel.model_name!r}). "
        f"The server said: {first_line}",
        code=error.code,
        grpc_code=error.grpc_code,
        http_status=error.http_status,
    )
