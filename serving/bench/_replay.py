"""Replay load for `tfstack bench --replay LOGS`: logged Predict requests as prebuilt request bytes.

`tfstack serve` logs sampled requests as `tensorflow.serving.PredictionLog` records (logging_config);
`tfstack.export.read_prediction_logs` reads them. Here each logged PredictRequest for the benched
model becomes one `ReplayRequest`: the PredictRequest itself for gRPC, and the columnar JSON body
a client sends for it over REST (`{"signature_name": ..., "inputs": {...}}`, strings as
`{"b64": ...}` as tfstack's client sends them). The load cycles through them in log order, so the
server sees production's real inputs and batch sizes instead of one sample repeated.

A request keeps its signature name and inputs; its version or version label is dropped, so the
replay reaches the version the server serves now (logs outlive the version that answered them).
Records of other models, and classify/regress/multi-inference records (other RPCs), are left out
and counted.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_SIGNATURE = "serving_default"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReplayRequest:
    """One logged Predict request, ready to send."""

    batch_size: int  # examples in the request (dim 0 of its inputs; 1 for scalar inputs)
    signature_name: str  # as logged; "" means serving_default
    rest_body: bytes  # the columnar REST predict body
    grpc_request: bytes  # the serialized PredictRequest


@dataclasses.dataclass(frozen=True, kw_only=True)
class Replay:
    """The requests to replay, in log order, and what was left out of the logs.

    Attributes:
        other_models: records of other models, per model name.
        other_kinds: records of this model that are not Predict requests, per log type.
        input_shapes: per input, "dtype[shape]" (batch dimension included) -> requests.
    """

    model_name: str
    requests: tuple[ReplayRequest, ...]
    files: tuple[str, ...]
    other_models: dict[str, int]
    other_kinds: dict[str, int]
    input_shapes: dict[str, dict[str, int]]

    @property
    def batch_sizes(self) -> dict[int, int]:
        """Batch size -> number of logged requests with it."""
        return dict(sorted(collections.Counter(r.batch_size for r in self.requests).items()))

    @property
    def signature_names(self) -> tuple[str, ...]:
        """The signatures the requests name (an empty name counted as serving_default)."""
        return tuple(sorted({r.signature_name or DEFAULT_SIGNATURE for r in self.requests}))

    def summary(self) -> dict[str, Any]:
        """What is replayed, for bench.json."""
        return {
            "files": list(self.files),
            "requests": len(self.requests),
            "examples": sum(r.batch_size for r in self.requests),
            "batch_sizes": {str(size): count for size, count in self.batch_sizes.items()},
            "input_shapes": self.input_shapes,
            "signature_names": list(self.signature_names),
            "left_out_other_models": self.other_models,
            "left_out_other_kinds": self.other_kinds,
        }


def _json_value(array: np.ndarray) -> Any:
    """A tensor as the JSON value tfstack's client would send: numbers as numbers, strings as b64."""
    if array.dtype.kind == "c":
        raise ValueError(f"TF Serving's REST API cannot carry complex tensors. Received dtype {array.dtype}.")
    if array.dtype == object or array.dtype.kind in "SU":
        def leaf(item: Any) -> Any:
            data = item if isinstance(item, bytes) else str(item).encode("utf-8")
            return {"b64": base64.b64encode(data).decode("ascii")}

        return np.vectorize(leaf, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


def replay_request(request: Any, *, model_name: str) -> ReplayRequest:
    """One logged `tensorflow.serving.PredictRequest` as a ReplayRequest for `model_name`.

    Raises:
        ValueError: the request has no inputs, inputs whose first dimensions differ, or a tensor
            that REST cannot carry.
    """
    import tensorflow as tf

    replayed = type(request)()
    replayed.CopyFrom(request)
    replayed.model_spec.name = model_name
    # The version that answered may be gone; the replay goes to whatever the server serves now.
    replayed.model_spec.ClearField("version")
    replayed.model_spec.ClearField("version_label")
    if not replayed.inputs:
        raise ValueError("A logged Predict request has no inputs.")
    arrays = {name: tf.make_ndarray(proto) for name, proto in sorted(replayed.inputs.items())}
    sizes = {name: (array.shape[0] if array.ndim else 1) for name, array in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"A logged Predict request has inputs with different batch sizes: {sizes}")
    body: dict[str, Any] = {"inputs": {name: _json_value(array) for name, array in arrays.items()}}
    if replayed.model_spec.signature_name:
        body = {"signature_name": replayed.model_spec.signature_name, **body}
    return ReplayRequest(
        batch_size=next(iter(sizes.values())),
        signature_name=replayed.model_spec.signature_name,
        rest_body=json.dumps(body, allow_nan=True).encode("utf-8"),
        grpc_request=replayed.SerializeToString(),
    )


def build_replay(logs: Sequence[Any], *, model_name: str) -> Replay:
    """The Predict requests for `model_name` in `logs` (`tfstack.export.LoggedRequest`s), in order.

    Raises:
        ValueError: no Predict request for `model_name` in the logs (the message says what the
            logs hold instead), or a logged request that cannot be replayed.
    """
    requests: list[ReplayRequest] = []
    files: dict[str, None] = {}
    other_models: collections.Counter[str] = collections.Counter()
    other_kinds: collections.Counter[str] = collections.Counter()
    shapes: dict[str, collections.Counter[str]] = {}
    for entry in logs:
        if entry.model_name != model_name:
            other_models[entry.model_name or "(no model name)"] += 1
            continue
        if entry.kind != "predict_log":
            other_kinds[entry.kind or "(no log type)"] += 1
            continue
        request = entry.log.predict_log.request
        try:
            replayed = replay_request(request, model_name=model_name)
        except ValueError as exc:
            raise ValueError(f"Record {entry.index} of {entry.path} cannot be replayed: {exc}") from exc
        requests.append(replayed)
        files[str(entry.path.absolute())] = None
        for name, proto in request.inputs.items():
            dims = "x".join(str(d.size) for d in proto.tensor_shape.dim)
            shapes.setdefault(name, collections.Counter())[f"{_dtype_name(proto.dtype)}[{dims}]"] += 1
    if not requests:
        total = sum(other_models.values()) + sum(other_kinds.values())
        raise ValueError(f"Expected logged Predict requests for model {model_name!r}. Received: logs with "
                         f"{total} other records ({_counts(other_models, other_kinds)})")
    return Replay(
        model_name=model_name, requests=tuple(requests), files=tuple(files),
        other_models=dict(sorted(other_models.items())), other_kinds=dict(sorted(other_kinds.items())),
        input_shapes={name: dict(counter.most_common()) for name, counter in sorted(shapes.items())},
    )


def _dtype_name(enum: int) -> str:
    import tensorflow as tf

    try:
        return tf.dtypes.as_dtype(enum).name
    except TypeError:
        return f"dtype{enum}"


def _counts(other_models: collections.Counter[str], other_kinds: collections.Counter[str]) -> str:
    parts = [f"{count} for model {name!r}" for name, count in sorted(other_models.items())]
    parts += [f"{count} {kind} records of this model" for kind, count in sorted(other_kinds.items())]
    return ", ".join(parts) or "none"
