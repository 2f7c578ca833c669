"""TF Serving's inference APIs, each described once: prepare -> run -> finish.

`prepare_predict`, `prepare_classify`, `prepare_regress` and `prepare_multi_inference` apply
TF Serving's request rules and texts (predict_util.cc, classifier.cc, regressor.cc,
multi_inference.cc; spec §3.3) and return a `Prepared`: the arrays to feed by tensor name, the
tensor names to fetch, and `finish`, which turns the fetched tensors into the API's result (the
PostProcess* functions). Nothing here runs TensorFlow.

An executor runs a `Prepared`: the plain one (`tfstack.serving.server._core.DirectExecutor`) calls
`run_prepared` on its thread pool; the batching one (`tfstack.serving.server._batching.BatchingExecutor`) merges
the feeds of requests that share (feed names, fetch names), runs the Session once and hands each
request its rows. Warmup replays records through the same prepare functions and executors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tfstack.serving._errors import Code, StatusError

if TYPE_CHECKING:
    from tensorflow.core.protobuf.meta_graph_pb2 import SignatureDef

    from tfstack.serving.server._servable import Servable

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
PREDICT_METHOD = "tensorflow/serving/predict"

# One classification per example: (label, score) per class; label is "" without a classes output.
Classifications = list[list[tuple[str, float]]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class InferenceTask:
    """One task of a MultiInference request."""

    model_name: str
    signature_name: str
    method_name: str


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Prepared:
    """A validated request: what to feed, what to fetch, and how to finish the result.

    Attributes:
        servable: the version that runs it.
        feeds: arrays by graph tensor name, in sorted name order (all sharing dim 0 when the
            request can be batched).
        fetches: graph tensor names to fetch, sorted and unique.
        finish: fetched tensors (by name, this request's rows only) -> the API's result.
    """

    servable: Servable
    feeds: dict[str, np.ndarray]
    fetches: tuple[str, ...]
    finish: Callable[[Mapping[str, np.ndarray]], Any]

    @property
    def tensor_signature(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(feed names, fetch names): TF's batching key and the Session callable's key."""
        return tuple(self.feeds), self.fetches


class Executor(Protocol):
    """Runs prepared requests: the plain executor, or the batching one."""

    async def run(self, prepared: Prepared, timeout: float | None) -> Any:
        """Run `prepared` and return `prepared.finish(...)`; DEADLINE_EXCEEDED after `timeout` s."""
        ...


def run_prepared(prepared: Prepared) -> Any:
    """One request, alone (blocking): a Session run, then finish."""
    return prepared.finish(prepared.servable.run(prepared.feeds, prepared.fetches))


# ------------------------------------------------------------------------------------ predict


def prepare_predict(
    servable: Servable, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
) -> Prepared:
    """Predict (predict_util.cc PreProcessPrediction): feeds by input alias, fetches by output alias.

    Raises:
        StatusError: FAILED_PRECONDITION `Serving signature key "s" not found.`; INVALID_ARGUMENT
            for the input set, an unknown or duplicate output alias, or a dtype the graph does
            not take.
    """
    signature_name = signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_defs.get(signature_name)
    if signature is None:
        raise StatusError(Code.FAILED_PRECONDITION, f"Serving signature key \"{signature_name}\" not found.")
    plan = _predict_plan(servable, signature_name, signature)
    request_names, signature_names = set(inputs), plan.input_set
    count = len(plan.inputs)
    if len(inputs) > count or (len(inputs) < count and not plan.has_defaults):
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"input size does not match signature: {len(inputs)}!={count} "
            f"len({{{','.join(sorted(request_names))}}}) != len({{{','.join(sorted(signature_names))}}}). "
            f"Sent extra: {{{','.join(sorted(request_names - signature_names))}}}. "
            f"Missing but required: {{{','.join(sorted(signature_names - request_names))}}}.",
        )
    feeds: dict[str, np.ndarray] = {}
    # TF's saved_model::GetInputValues: each signature input from the request, else its default.
    for alias, name in plan.inputs.items():  # sorted by alias
        if alias in inputs:
            feeds[name] = np.asarray(inputs[alias])
        elif alias in signature.defaults:
            feeds[name] = _tensor_proto_to_array(signature.defaults[alias])
        else:
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"Signature input alias: {alias}(feed name: {name}) not found in request and no default "
                f"value provided. Inputs expected to be in the request {{{','.join(sorted(request_names))}}}, "
                f"or default input alias set: {','.join(sorted(signature.defaults))}",
            )
    if request_names - signature_names:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            "Request inputs contain aliases not exist in the signature: "
            f"{','.join(sorted(request_names - signature_names))}",
        )
    if output_filter:
        seen: set[str] = set()
        for alias in output_filter:
            if alias not in plan.outputs:
                raise StatusError(
                    Code.INVALID_ARGUMENT,
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                    f"{{{','.join(plan.outputs)}}}.",
                )
            if alias in seen:
                raise StatusError(Code.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        aliases = tuple(output_filter)
        names = tuple(plan.outputs[alias] for alias in aliases)
        fetches = tuple(sorted(set(names)))
    else:
        aliases, names, fetches = plan.output_aliases, plan.output_names, plan.fetches
    feeds = _sorted_feeds(feeds)
    _check_feed_dtypes(servable, feeds)

    def finish(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {alias: outputs[name] for alias, name in zip(aliases, names)}

    return Prepared(servable=servable, feeds=feeds, fetches=fetches, finish=finish)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _PredictPlan:
    """What Predict reads from a SignatureDef, read once per version and signature.

    Reading protobuf map entries (`signature.outputs[alias].name`) builds wrapper objects on every
    access; on the event loop that was ~10% of a batched REST Predict's time.
    """

    inputs: dict[str, str]  # alias -> tensor name, sorted by alias
    input_set: frozenset[str]
    has_defaults: bool
    outputs: dict[str, str]  # alias -> tensor name, sorted by alias
    output_aliases: tuple[str, ...]
    output_names: tuple[str, ...]
    fetches: tuple[str, ...]  # sorted, unique


def _predict_plan(servable: Servable, signature_name: str, signature: SignatureDef) -> _PredictPlan:
    plans = servable.request_plans
    plan = plans.get(("predict", signature_name))
    if plan is None:
        inputs = {alias: signature.inputs[alias].name for alias in sorted(signature.inputs)}
        outputs = {alias: signature.outputs[alias].name for alias in sorted(signature.outputs)}
        plan = _PredictPlan(
            inputs=inputs, input_set=frozenset(inputs), has_defaults=bool(signature.defaults), outputs=outputs,
            output_aliases=tuple(outputs), output_names=tuple(outputs.values()),
            fetches=tuple(sorted(set(outputs.values()))),
        )
        plans[("predict", signature_name)] = plan  # a race only computes it twice
    return plan


# ------------------------------------------------------------------------- classify / regress


def prepare_classify(servable: Servable, signature_name: str, examples: Sequence[bytes], context: bytes = b"") -> Prepared:
    """Classify (classifier.cc): serialized tf.Examples fed to the signature's `inputs` tensor.

    `context` (a serialized Example) is prepended to every example, as TF Serving does for
    ExampleListWithContext. The result is one list of (label, score) per example.
    """
    signature = _signature_for(servable, signature_name or DEFAULT_SIGNATURE)
    input_name, output_names = _classification_tensors(signature)
    serialized = _examples_tensor(examples, context)
    feeds = {input_name: serialized}
    _check_feed_dtypes(servable, feeds)

    def finish(outputs: Mapping[str, np.ndarray]) -> Classifications:
        return _classification_result(signature, len(serialized), outputs)

    return Prepared(servable=servable, feeds=feeds, fetches=tuple(sorted(set(output_names))), finish=finish)


def prepare_regress(servable: Servable, signature_name: str, examples: Sequence[bytes], context: bytes = b"") -> Prepared:
    """Regress (regressor.cc): serialized tf.Examples in, one float per example out."""
    signature = _signature_for(servable, signature_name or DEFAULT_SIGNATURE)
    input_name, output_names = _regression_tensors(signature)
    serialized = _examples_tensor(examples, context)
    feeds = {input_name: serialized}
    _check_feed_dtypes(servable, feeds)

    def finish(outputs: Mapping[str, np.ndarray]) -> list[float]:
        return _regression_result(signature, len(serialized), outputs)

    return Prepared(servable=servable, feeds=feeds, fetches=tuple(output_names), finish=finish)


def prepare_multi_inference(
    servable: Servable, tasks: Sequence[InferenceTask], examples: Sequence[bytes], context: bytes = b""
) -> Prepared:
    """MultiInference (multi_inference.cc): several classify/regress signatures in one Session run.

    As TF Serving 2.x does, the input tensors of all tasks form one set and each is fed the same
    serialized examples, so signatures with their own input placeholders (TF2 exports) combine;
    the output tensors of all tasks are fetched together. The result is one entry per task, in
    order: Classifications for classify tasks, a list of floats for regress tasks.
    """
    model_name = ""
    seen: set[str] = set()
    input_names: set[str] = set()
    output_names: set[str] = set()
    plan: list[tuple[SignatureDef, bool]] = []
    for task in tasks:
        if not task.model_name:
            raise StatusError(Code.INVALID_ARGUMENT, "Found ModelSpec with an empty model name.")
        if model_name and task.model_name != model_name:
            raise StatusError(
                Code.INVALID_ARGUMENT, "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        model_name = task.model_name
        signature_name = task.signature_name or DEFAULT_SIGNATURE
        if signature_name in seen:
            raise StatusError(Code.INVALID_ARGUMENT, f"Duplicate evaluation of signature: {signature_name}")
        seen.add(signature_name)
        signature = servable.signature_defs.get(signature_name)
        if signature is None:
            raise StatusError(Code.INVALID_ARGUMENT, f"Requested signature not found in model graph: {signature_name}")
        if task.method_name == CLASSIFY_METHOD:
            input_name, names = _classification_tensors(signature)
        elif task.method_name == REGRESS_METHOD:
            input_name, names = _regression_tensors(signature)
        else:
            raise StatusError(Code.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}")
        input_names.add(input_name)
        output_names.update(names)
        plan.append((signature, task.method_name == CLASSIFY_METHOD))
    serialized = _examples_tensor(examples, context)
    feeds = {name: serialized for name in sorted(input_names)}
    _check_feed_dtypes(servable, feeds)

    def finish(outputs: Mapping[str, np.ndarray]) -> list[Classifications | list[float]]:
        count = len(serialized)
        return [
            _classification_result(signature, count, outputs) if classify else _regression_result(signature, count, outputs)
            for signature, classify in plan
        ]

    return Prepared(servable=servable, feeds=feeds, fetches=tuple(sorted(output_names)), finish=finish)


def examples_from_input(model_input) -> tuple[list[bytes], bytes]:
    """A `tensorflow.serving.Input` as (serialized examples, serialized context or b"")."""
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in model_input.example_list.examples], b""
    if kind == "example_list_with_context":
        group = model_input.example_list_with_context
        return [e.SerializeToString() for e in group.examples], group.context.SerializeToString()
    return [], b""


# ------------------------------------------------------------------------------------ helpers


def _signature_for(servable: Servable, signature_name: str) -> SignatureDef:
    signature = servable.signature_defs.get(signature_name)
    if signature is None:
        raise StatusError(Code.INVALID_ARGUMENT, f"No signature was found with the name: {signature_name}")
    return signature


def _classification_tensors(signature: SignatureDef) -> tuple[str, list[str]]:
    # classifier.cc PreProcessClassification (method-name check off: TF Serving's default).
    if len(signature.inputs) != 1:
        raise StatusError(Code.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise StatusError(Code.INVALID_ARGUMENT, f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if "inputs" not in signature.inputs:
        raise StatusError(Code.INVALID_ARGUMENT, f"No classification inputs found in SignatureDef: {_debug_string(signature)}")
    if "classes" not in signature.outputs and "scores" not in signature.outputs:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            'Expected classification signature outputs to contain at least one of "classes" or "scores". '
            f"Signature was: {_debug_string(signature)}",
        )
    outputs = [signature.outputs[alias].name for alias in ("classes", "scores") if alias in signature.outputs]
    return signature.inputs["inputs"].name, outputs


def _regression_tensors(signature: SignatureDef) -> tuple[str, list[str]]:
    # regressor.cc PreProcessRegression.
    if len(signature.inputs) != 1:
        raise StatusError(Code.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise StatusError(Code.INVALID_ARGUMENT, "Expected one output Tensor.")
    if "inputs" not in signature.inputs:
        raise StatusError(Code.INVALID_ARGUMENT, f"No regression inputs found in SignatureDef: {_debug_string(signature)}")
    if "outputs" not in signature.outputs:
        raise StatusError(Code.INVALID_ARGUMENT, f"No regression outputs found in SignatureDef: {_debug_string(signature)}")
    return signature.inputs["inputs"].name, [signature.outputs["outputs"].name]


def _classification_result(signature: SignatureDef, num_examples: int, outputs: Mapping[str, np.ndarray]) -> Classifications:
    # classifier.cc PostProcessClassificationResult: a tensor named like the classes output is
    # taken as classes, even when scores names the same tensor.
    classes_name = signature.outputs["classes"].name if "classes" in signature.outputs else None
    scores_name = signature.outputs["scores"].name if "scores" in signature.outputs else None
    classes = outputs.get(classes_name) if classes_name is not None else None
    scores = outputs.get(scores_name) if scores_name is not None and scores_name != classes_name else None
    for name, tensor, expected in (("classes", classes, 7), ("scores", scores, 1)):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise StatusError(
                Code.INVALID_ARGUMENT, f"Expected Tensor shape: [batch_size num_classes] but got {_shape_text(tensor)}"
            )
        if _dtype_enum(tensor) != expected:
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"Expected {name} Tensor of {_dtype_proto_name(expected)}. Got: {_dtype_proto_name(_dtype_enum(tensor))}",
            )
        if tensor.shape[0] != num_examples:
            raise StatusError(
                Code.INVALID_ARGUMENT, f"Expected {name} output batch size of {num_examples}. Got: {tensor.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}",
        )
    reference = classes if classes is not None else scores
    num_classes = reference.shape[1] if reference is not None else 0
    labels = classes.tolist() if classes is not None else None
    values = scores.tolist() if scores is not None else None
    result: Classifications = []
    for i in range(num_examples):
        row = []
        for c in range(num_classes):
            label = labels[i][c] if labels is not None else ""
            if isinstance(label, bytes):
                label = label.decode("utf-8", "replace")
            row.append((str(label), float(values[i][c]) if values is not None else 0.0))
        result.append(row)
    return result


def _regression_result(signature: SignatureDef, num_examples: int, outputs: Mapping[str, np.ndarray]) -> list[float]:
    # regressor.cc PostProcessRegressionResult, checks in its order.
    name = signature.outputs["outputs"].name
    tensor = outputs.get(name)
    if tensor is None:
        raise StatusError(Code.INVALID_ARGUMENT, f"Could not find output tensor '{name}'")
    if not (tensor.ndim == 1 or (tensor.ndim == 2 and tensor.shape[1] == 1)):
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {_shape_text(tensor)}",
        )
    if tensor.shape[0] != num_examples:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"Input batch size did not match output batch size: {num_examples} vs. {tensor.shape[0]}",
        )
    if _dtype_enum(tensor) != 1:
        raise StatusError(
            Code.INVALID_ARGUMENT, f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_proto_name(_dtype_enum(tensor))}"
        )
    if tensor.size != num_examples:
        raise StatusError(Code.INVALID_ARGUMENT, f"Expected output batch size to be {num_examples}.  Got: {tensor.size}")
    return tensor.reshape(-1).tolist()


def _examples_tensor(examples: Sequence[bytes], context: bytes) -> np.ndarray:
    # util.cc InputToSerializedExampleTensor: the context's bytes go first, so protobuf's merge
    # lets each example's own features win.
    if not examples:
        raise StatusError(Code.INVALID_ARGUMENT, "Input is empty.")
    array = np.empty(len(examples), dtype=object)
    array[:] = [context + bytes(e) for e in examples] if context else [bytes(e) for e in examples]
    return array


def _sorted_feeds(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if len(feeds) < 2:
        return feeds
    return {name: feeds[name] for name in sorted(feeds)}


def _check_feed_dtypes(servable: Servable, feeds: Mapping[str, np.ndarray]) -> None:
    """The check DirectSession::Run makes before running, with its text (spec §3.3 point 5)."""
    for index, (name, array) in enumerate(feeds.items()):
        expected = servable.feed_dtype(name)
        got = _dtype_enum(array)
        if expected is not None and got != expected:
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"Expects arg[{index}] to be {_dtype_name(expected)} but {_dtype_name(got)} is provided",
            )


# numpy dtype -> tensorflow DataType enum, for the types requests and models use.
_DTYPE_ENUMS: dict[np.dtype, int] = {
    np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3, np.dtype(np.uint8): 4,
    np.dtype(np.int16): 5, np.dtype(np.int8): 6, np.dtype(np.complex64): 8, np.dtype(np.int64): 9,
    np.dtype(np.bool_): 10, np.dtype(np.uint16): 17, np.dtype(np.complex128): 18, np.dtype(np.float16): 19,
    np.dtype(np.uint32): 22, np.dtype(np.uint64): 23,
}


def _dtype_enum(array: np.ndarray) -> int:
    dtype = array.dtype
    known = _DTYPE_ENUMS.get(dtype)
    if known is not None:
        return known
    if dtype.kind in ("O", "S", "U"):
        return 7
    import tensorflow as tf

    return tf.as_dtype(dtype).as_datatype_enum


def _dtype_proto_name(enum_value: int) -> str:
    from tensorflow.core.framework import types_pb2

    try:
        return types_pb2.DataType.Name(enum_value)
    except ValueError:
        return str(enum_value)


def _dtype_name(enum_value: int) -> str:
    # TF prints dtypes as DataTypeString does: DT_FLOAT -> "float", DT_INT64 -> "int64".
    name = _dtype_proto_name(enum_value)
    return name[3:].lower() if name.startswith("DT_") else f"unknown dtype {enum_value}"


def _shape_text(tensor: np.ndarray) -> str:
    # TensorShape::DebugString.
    return "[" + ",".join(str(d) for d in tensor.shape) + "]"


def _debug_string(message) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(message)


def _tensor_proto_to_array(proto) -> np.ndarray:
    import tensorflow as tf

    return tf.make_ndarray(proto)
