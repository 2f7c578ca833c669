"""ServerCore: the loaded models, their version states and labels, and inference.

The REST and gRPC front ends only convert wire formats; every rule about which servable
answers a request, and every error text a client sees, lives here (spec §1.4, §1.7, §3.3).
TensorFlow runs in a thread pool, never on the event loop. Model discovery and the version
lifecycle are driven by `serving._manager.ModelManager`, which writes states into the
table this module owns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import enum
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving._errors import Code, StatusError, status_from_tf_error

if TYPE_CHECKING:  # the protos import TensorFlow; keep `import serving` cheap
    from tensorflow.core.protobuf.meta_graph_pb2 import SignatureDef

logger = logging.getLogger("tfstack.serving")

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
PREDICT_METHOD = "tensorflow/serving/predict"
_INIT_OP_KEY = "__saved_model_init_op"

# One classification per example: (label, score) per class; label is "" without a classes output.
Classifications = list[list[tuple[str, float]]]


class State(enum.IntEnum):
    """A version's lifecycle state, numbered as `ModelVersionStatus.State`."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclasses.dataclass(frozen=True, kw_only=True)
class VersionStatus:
    """One row of GetModelStatus: a version, its state, and the error that ended it (if any)."""

    version: int
    state: State
    error_code: Code = Code.OK
    error_message: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class InferenceTask:
    """One task of a MultiInference request."""

    model_name: str
    signature_name: str
    method_name: str


def _dtype_name(enum_value: int) -> str:
    # TF prints dtypes as DataTypeString does: DT_FLOAT -> "float", DT_INT64 -> "int64".
    from tensorflow.core.framework import types_pb2

    try:
        return types_pb2.DataType.Name(enum_value)[3:].lower()
    except ValueError:
        return f"unknown dtype {enum_value}"


def _array_dtype_enum(array: np.ndarray) -> int:
    import tensorflow as tf

    if array.dtype.kind in ("O", "S", "U"):
        return tf.string.as_datatype_enum
    return tf.as_dtype(array.dtype).as_datatype_enum


def _read_signature_defs(path: Path, tags: Sequence[str]) -> dict[str, SignatureDef]:
    """The SignatureDef map of the MetaGraph tagged exactly `tags`, as stored in saved_model.pb."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    pb, pbtxt = path / "saved_model.pb", path / "saved_model.pbtxt"
    if pb.is_file():
        saved_model.ParseFromString(pb.read_bytes())
    elif pbtxt.is_file():
        text_format.Parse(pbtxt.read_text(), saved_model)
    else:
        raise StatusError(Code.NOT_FOUND, f"SavedModel file does not exist at: {path}/{{saved_model.pbtxt|saved_model.pb}}")
    wanted = set(tags)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == wanted:
            return dict(meta_graph.signature_def)
    available = [sorted(mg.meta_info_def.tags) for mg in saved_model.meta_graphs]
    raise StatusError(
        Code.NOT_FOUND,
        f"Could not find meta graph def matching supplied tags: {{ {' '.join(sorted(wanted))} }}. "
        f"To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: `saved_model_cli`"
        f" (available tag-sets: {available})",
    )


class Servable:
    """One loaded model version: its SignatureDefs (as in saved_model.pb) and callable signatures.

    Attributes:
        model_name: the served model's name.
        version: the version number (the directory name parsed as int).
        path: the version directory.
        signature_defs: `SignatureDef` protos by signature name, exactly as TF Serving reports them.
    """

    def __init__(self, *, model_name: str, version: int, path: Path, signature_defs: dict[str, SignatureDef], module: Any) -> None:
        self.model_name = model_name
        self.version = version
        self.path = path
        self.signature_defs = signature_defs
        self._module = module  # keeps variables alive as long as any request holds the servable
        # Set by the manager with --enable_per_model_batching_parameters (None: not batched).
        self.batching_parameters: Any = None
        self._functions = dict(module.signatures) if module is not None else {}
        self._flat_args = {name: _flat_argument_names(fn) for name, fn in self._functions.items()}

    def __repr__(self) -> str:
        return f"Servable(model_name={self.model_name!r}, version={self.version})"

    def signature_def_map(self):
        """The `tensorflow.serving.SignatureDefMap` that GetModelMetadata packs under "signature_def"."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in self.signature_defs.items():
            sig_map.signature_def[name].CopyFrom(sig)
        return sig_map

    def _call(self, signature_name: str, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run one signature (blocking; called on the inference pool)."""
        import tensorflow as tf

        function = self._functions.get(signature_name)
        if function is None:
            # A SignatureDef without a callable (e.g. __saved_model_init_op): nothing TF can run.
            raise StatusError(Code.FAILED_PRECONDITION, f"Serving signature key \"{signature_name}\" not found.")
        arg_names = self._flat_args.get(signature_name)
        try:
            if arg_names is not None and set(feeds) == set(arg_names):
                # Like a TF Serving session feed: no check of the SignatureDef's static shapes
                # (spec §1.6: x declared [-1, 1] accepts shape [2]); the graph's own ops decide.
                result = function._call_flat([tf.convert_to_tensor(feeds[n]) for n in arg_names], function.captured_inputs)
            else:
                result = function(**feeds)
        except tf.errors.OpError as exc:
            raise status_from_tf_error(exc) from exc
        except (TypeError, ValueError) as exc:
            # Binding the feeds to the function failed (e.g. a shape the graph cannot take);
            # TF Serving's session would report this as INVALID_ARGUMENT too.
            raise StatusError(Code.INVALID_ARGUMENT, str(exc)) from exc
        return {alias: value.numpy() for alias, value in result.items()}


def _flat_argument_names(function) -> list[str] | None:
    """The signature's argument names in flat-call order, or None to use the structured call."""
    try:
        names = [p.name for p in function.function_type.parameters.values()]
        if not callable(getattr(function, "_call_flat", None)):
            return None
        spec = function.structured_input_signature[1]
        return names if set(names) == set(spec) and len(names) == len(spec) else None
    except Exception:  # a TF without these internals: the structured call still works
        return None


def load_servable(model_name: str, version: int, path: str | os.PathLike[str], *, tags: Sequence[str] = ("serve",)) -> Servable:
    """Load one SavedModel version directory (blocking; run it off the event loop).

    Raises:
        StatusError: the directory is not a loadable SavedModel (the code and text TF gives).
    """
    import tensorflow as tf

    path = Path(path)
    signature_defs = _read_signature_defs(path, tags)
    try:
        module = tf.saved_model.load(str(path), tags=list(tags))
    except tf.errors.OpError as exc:
        raise status_from_tf_error(exc) from exc
    except Exception as exc:  # SavedModel loading raises many kinds; report them with the reason
        raise StatusError(Code.INTERNAL, f"Failed to load SavedModel at {path}: {type(exc).__name__}: {exc}") from exc
    return Servable(model_name=model_name, version=version, path=path, signature_defs=signature_defs, module=module)


@dataclasses.dataclass
class _VersionRecord:
    state: State
    servable: Servable | None = None
    error_code: Code = Code.OK
    error_message: str = ""


@dataclasses.dataclass
class _ModelRecord:
    versions: dict[int, _VersionRecord] = dataclasses.field(default_factory=dict)
    labels: dict[str, int] = dataclasses.field(default_factory=dict)


class ServerCore:
    """Models, versions and inference for one server, shared by the REST and gRPC front ends.

    Every failure is a `StatusError` with TF Serving's code and text. The async methods run
    TensorFlow on a thread pool and honour `timeout` (seconds) with DEADLINE_EXCEEDED.

    Example:
        >>> core = ServerCore()
        >>> core.set_version_state("m", 1, State.AVAILABLE, servable=load_servable("m", 1, "/models/m/1"))
        >>> servable = core.resolve("m")
        >>> outputs = await core.predict(servable, "serving_default", {"x": np.array([1.0], np.float32)})
    """

    def __init__(self, *, inference_threads: int | None = None) -> None:
        if inference_threads is not None and inference_threads < 1:
            raise ValueError(f"inference_threads must be >= 1. Received: inference_threads={inference_threads}")
        workers = inference_threads or max(4, 2 * (os.cpu_count() or 1))
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tfstack-inference")
        self._models: dict[str, _ModelRecord] = {}
        # States are written from loader threads and read on the loop; a lock keeps each read whole.
        self._lock = threading.Lock()
        self._listeners: list[Any] = []
        # Hooks the server sets at startup: `batching` (a serving._batching.BatchingSession) takes
        # Predict/Classify/Regress; `on_inference(model_name, version, api, code, seconds)` is told
        # about each of them (serving._monitoring's runtime latency and per-version counts).
        self.batching: Any = None
        self.on_inference: Any = None

    # ----------------------------------------------------------------- state table (manager side)

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The thread pool that runs TensorFlow (inference and, by default, loads)."""
        return self._executor

    def set_version_state(
        self,
        model_name: str,
        version: int,
        state: State,
        *,
        servable: Servable | None = None,
        error: StatusError | None = None,
    ) -> None:
        """Record a version's state (called by the model manager). AVAILABLE needs a servable."""
        if state is State.AVAILABLE and servable is None:
            raise ValueError(f"An AVAILABLE version needs its servable. Received: servable=None for {model_name} v{version}")
        with self._lock:
            record = self._models.setdefault(model_name, _ModelRecord())
            entry = record.versions.get(version)
            if entry is None:
                entry = record.versions[version] = _VersionRecord(state=state)
            entry.state = state
            # Only an AVAILABLE (or UNLOADING: still finishing requests) version keeps its servable.
            if state is State.AVAILABLE:
                entry.servable = servable
            elif state is not State.UNLOADING:
                entry.servable = None
            if error is not None:
                entry.error_code, entry.error_message = error.code, error.message
            elif state in (State.START, State.LOADING):
                entry.error_code, entry.error_message = Code.OK, ""
        for listener in list(self._listeners):
            listener(model_name, version, state)

    def set_labels(self, model_name: str, labels: Mapping[str, int]) -> None:
        """Replace a model's version labels (validated by the caller, see spec §4.5)."""
        with self._lock:
            self._models.setdefault(model_name, _ModelRecord()).labels = dict(labels)

    def labels(self, model_name: str) -> dict[str, int]:
        """A copy of a model's current version labels."""
        with self._lock:
            record = self._models.get(model_name)
            return dict(record.labels) if record else {}

    def version_states(self, model_name: str) -> dict[int, State]:
        """The current state of every version the server has seen for `model_name`."""
        with self._lock:
            record = self._models.get(model_name)
            return {v: e.state for v, e in record.versions.items()} if record else {}

    def model_names(self) -> list[str]:
        """Every model name the server has seen (including fully unloaded ones)."""
        with self._lock:
            return sorted(self._models)

    def add_state_listener(self, listener) -> None:
        """Call `listener(model_name, version, state)` on every state change (from any thread)."""
        self._listeners.append(listener)

    # ----------------------------------------------------------------- lookups (front-end side)

    def resolve(self, model_name: str, *, version: int | None = None, label: str | None = None) -> Servable:
        """The servable that answers a request for `model_name` (latest, `version`, or `label`).

        Raises:
            StatusError: INVALID_ARGUMENT `ModelSpec has no name specified.` /
                `Unrecognized servable version label: l`; NOT_FOUND
                `Servable not found for request: Latest(m)` / `Specific(m, v)`.
        """
        if not model_name:
            raise StatusError(Code.INVALID_ARGUMENT, "ModelSpec has no name specified.")
        if version is not None and label is not None:
            raise ValueError(f"Pass version or label, not both. Received: version={version!r}, label={label!r}")
        with self._lock:
            record = self._models.get(model_name)
            if label is not None:
                if record is None or label not in record.labels:
                    raise StatusError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
                version = record.labels[label]
            if version is None:
                available = [v for v, e in (record.versions.items() if record else ()) if e.state is State.AVAILABLE]
                if not available:
                    raise StatusError(Code.NOT_FOUND, f"Servable not found for request: Latest({model_name})")
                return record.versions[max(available)].servable  # type: ignore[return-value, union-attr]
            entry = record.versions.get(version) if record else None
            if entry is None or entry.state is not State.AVAILABLE or entry.servable is None:
                raise StatusError(Code.NOT_FOUND, f"Servable not found for request: Specific({model_name}, {version})")
            return entry.servable

    def model_status(self, model_name: str, version: int | None = None) -> list[VersionStatus]:
        """GetModelStatus: every version ever seen (END ones included), highest first.

        Raises:
            StatusError: NOT_FOUND `Could not find any versions of model m` /
                `Could not find version v of model m`.
        """
        with self._lock:
            record = self._models.get(model_name)
            entries = dict(record.versions) if record else {}
            rows = [
                VersionStatus(version=v, state=e.state, error_code=e.error_code, error_message=e.error_message)
                for v, e in sorted(entries.items(), reverse=True)
            ]
        if version is not None:
            rows = [row for row in rows if row.version == version]
            if not rows:
                raise StatusError(Code.NOT_FOUND, f"Could not find version {version} of model {model_name}")
            return rows
        if not rows:
            raise StatusError(Code.NOT_FOUND, f"Could not find any versions of model {model_name}")
        return rows

    # ----------------------------------------------------------------- inference

    async def _run(self, timeout: float | None, fn, *args) -> Any:
        if timeout is not None and timeout <= 0:
            raise StatusError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, fn, *args)
        if timeout is None:
            return await future
        # A timer on the future itself: cheaper per request than asyncio.wait_for's wrapper.
        expired = False

        def expire() -> None:
            nonlocal expired
            if not future.done():
                expired = True
                future.cancel()  # the TF call keeps running; its result is dropped

        timer = loop.call_later(timeout, expire)
        try:
            return await future
        except asyncio.CancelledError as exc:
            if expired:
                raise StatusError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded") from exc
            raise
        finally:
            timer.cancel()

    async def predict(
        self,
        servable: Servable,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Predict: feed `inputs` (alias -> array) to a signature, return its outputs by alias.

        Validation and texts follow TF Serving's predict_util.cc (spec §3.3): unknown signature
        FAILED_PRECONDITION; input count/alias, output_filter and dtype errors INVALID_ARGUMENT.
        """
        if self.is_batched(servable):
            call = self.batching.predict(servable, signature_name, inputs, output_filter, timeout)
        else:
            call = self._run(timeout, run_predict, servable, signature_name, inputs, output_filter)
        return await self._observed("Predict", servable, call)

    async def classify(
        self,
        servable: Servable,
        signature_name: str,
        examples: Sequence[bytes],
        timeout: float | None = None,
        *,
        context: bytes = b"",
    ) -> Classifications:
        """Classify serialized tf.Examples; one list of (label, score) per example (spec §1.7).

        `context` (a serialized Example) is prepended to every example, as TF Serving does for
        ExampleListWithContext.
        """
        if self.is_batched(servable):
            call = self.batching.classify(servable, signature_name, examples, timeout, context=context)
        else:
            call = self._run(timeout, run_classify, servable, signature_name, examples, context)
        return await self._observed("Classify", servable, call)

    async def regress(
        self,
        servable: Servable,
        signature_name: str,
        examples: Sequence[bytes],
        timeout: float | None = None,
        *,
        context: bytes = b"",
    ) -> list[float]:
        """Regress serialized tf.Examples; one float per example (spec §1.7)."""
        if self.is_batched(servable):
            call = self.batching.regress(servable, signature_name, examples, timeout, context=context)
        else:
            call = self._run(timeout, run_regress, servable, signature_name, examples, context)
        return await self._observed("Regress", servable, call)

    def is_batched(self, servable: Servable) -> bool:
        """Whether requests for `servable` go through the batch scheduler (warmup included)."""
        return self.batching is not None and self.batching.parameters_for(servable) is not None

    async def _observed(self, api: str, servable: Servable, call) -> Any:
        observer = self.on_inference
        if observer is None:
            return await call
        started, code = time.perf_counter(), Code.OK
        try:
            return await call
        except StatusError as exc:
            code = exc.code
            raise
        except asyncio.CancelledError:
            code = Code.CANCELLED
            raise
        finally:
            try:
                observer(servable.model_name, servable.version, api, code, time.perf_counter() - started)
            except Exception:  # metrics must never fail a request
                logger.exception("Inference observer failed")

    async def multi_inference(
        self,
        servable: Servable,
        tasks: Sequence[InferenceTask],
        examples: Sequence[bytes],
        timeout: float | None = None,
        *,
        context: bytes = b"",
    ) -> list[Classifications | list[float]]:
        """MultiInference: run several classify/regress signatures on the same examples.

        Returns one result per task, in order: Classifications for classify tasks, a list of
        floats for regress tasks. Validation texts follow multi_inference.cc (spec §3.3).
        """
        if self.is_batched(servable):
            return await self.batching.multi_inference(servable, tasks, examples, timeout, context=context)
        return await self._run(timeout, run_multi_inference, servable, tasks, examples, context)

    def close(self) -> None:
        """Stop the inference pool (waits for running calls)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------- blocking entry points
# These run on the inference pool (or in a loader thread, for warmup): one hop per request.


def run_predict(
    servable: Servable, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """Blocking Predict with TF Serving's validation (see ServerCore.predict)."""
    signature_name = signature_name or DEFAULT_SIGNATURE
    feeds, aliases = _prepare_predict(servable, signature_name, inputs, output_filter)
    outputs = servable._call(signature_name, feeds)
    return {alias: outputs[alias] for alias in aliases}


def run_classify(servable: Servable, signature_name: str, examples: Sequence[bytes], context: bytes = b"") -> Classifications:
    """Blocking Classify (see ServerCore.classify)."""
    signature_name = signature_name or DEFAULT_SIGNATURE
    _check_classification_signature(_signature_for(servable, signature_name))
    serialized = _serialize_examples(examples, context)
    return _classifications(_call_examples(servable, signature_name, "inputs", serialized), len(serialized))


def run_regress(servable: Servable, signature_name: str, examples: Sequence[bytes], context: bytes = b"") -> list[float]:
    """Blocking Regress (see ServerCore.regress)."""
    signature_name = signature_name or DEFAULT_SIGNATURE
    _check_regression_signature(_signature_for(servable, signature_name))
    serialized = _serialize_examples(examples, context)
    return _regressions(_call_examples(servable, signature_name, "inputs", serialized), len(serialized))


def run_multi_inference(
    servable: Servable, tasks: Sequence[InferenceTask], examples: Sequence[bytes], context: bytes = b""
) -> list[Classifications | list[float]]:
    """Blocking MultiInference (see ServerCore.multi_inference)."""
    plan = plan_multi_inference(servable, tasks)
    serialized = _serialize_examples(examples, context)
    return multi_inference_results(plan, run_multi_inference_plan(servable, plan, serialized), len(serialized))


MultiInferencePlan = tuple[tuple[str, str], ...]  # (signature_name, method_name) per task


def plan_multi_inference(servable: Servable, tasks: Sequence[InferenceTask]) -> MultiInferencePlan:
    """Validate a MultiInference request (multi_inference.cc's rules and texts); the signatures to run."""
    model_name = ""
    seen: set[str] = set()
    input_tensor = ""
    plan: list[tuple[str, str]] = []
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
            _check_classification_signature(signature)
        elif task.method_name == REGRESS_METHOD:
            _check_regression_signature(signature)
        else:
            raise StatusError(Code.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}")
        name = signature.inputs["inputs"].name
        if input_tensor and name != input_tensor:
            raise StatusError(Code.INVALID_ARGUMENT, "Input tensor must be the same for all Signatures.")
        input_tensor = name
        plan.append((signature_name, task.method_name))
    return tuple(plan)


def run_multi_inference_plan(servable: Servable, plan: MultiInferencePlan, serialized: list[bytes]) -> dict[str, np.ndarray]:
    """Run every planned signature on the same serialized examples (blocking).

    Outputs are keyed `<task index>/<alias>`, so one merged batch can carry all of them.
    """
    outputs: dict[str, np.ndarray] = {}
    for index, (signature_name, _) in enumerate(plan):
        for alias, tensor in _call_examples(servable, signature_name, "inputs", serialized).items():
            outputs[f"{index}/{alias}"] = tensor
    return outputs


def multi_inference_results(
    plan: MultiInferencePlan, outputs: Mapping[str, np.ndarray], num_examples: int
) -> list[Classifications | list[float]]:
    """Per-task results from `run_multi_inference_plan`'s outputs (classifier/regressor post-processing)."""
    results: list[Classifications | list[float]] = []
    for index, (_, method) in enumerate(plan):
        prefix = f"{index}/"
        task_outputs = {key[len(prefix):]: value for key, value in outputs.items() if key.startswith(prefix)}
        results.append(
            _classifications(task_outputs, num_examples) if method == CLASSIFY_METHOD else _regressions(task_outputs, num_examples)
        )
    return results


def examples_from_input(model_input) -> tuple[list[bytes], bytes]:
    """A `tensorflow.serving.Input` as (serialized examples, serialized context or b"")."""
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in model_input.example_list.examples], b""
    if kind == "example_list_with_context":
        group = model_input.example_list_with_context
        return [e.SerializeToString() for e in group.examples], group.context.SerializeToString()
    return [], b""


def _signature_for(servable: Servable, signature_name: str) -> SignatureDef:
    signature = servable.signature_defs.get(signature_name)
    if signature is None:
        raise StatusError(Code.INVALID_ARGUMENT, f"No signature was found with the name: {signature_name}")
    return signature


def _prepare_predict(servable, signature_name, inputs, output_filter):
    signature = servable.signature_defs.get(signature_name)
    if signature is None:
        raise StatusError(Code.FAILED_PRECONDITION, f"Serving signature key \"{signature_name}\" not found.")
    request_names, signature_names = set(inputs), set(signature.inputs)
    defaults = set(signature.defaults)
    if len(inputs) > len(signature.inputs) or (len(inputs) < len(signature.inputs) and not defaults):
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"input size does not match signature: {len(inputs)}!={len(signature.inputs)} "
            f"len({{{','.join(sorted(request_names))}}}) != len({{{','.join(sorted(signature_names))}}}). "
            f"Sent extra: {{{','.join(sorted(request_names - signature_names))}}}. "
            f"Missing but required: {{{','.join(sorted(signature_names - request_names - defaults))}}}.",
        )
    feeds: dict[str, Any] = {}
    for index, alias in enumerate(sorted(signature.inputs)):
        info = signature.inputs[alias]
        if alias not in inputs:
            if alias in defaults:
                continue  # the graph's own default feeds it
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"Signature input alias: {alias}(feed name: {info.name}) not found in request and no default "
                f"value provided. Inputs expected to be in the request {{{','.join(sorted(request_names))}}}, "
                f"or default input alias set: {','.join(sorted(defaults))}",
            )
        array = np.asarray(inputs[alias])
        got = _array_dtype_enum(array)
        if info.dtype and got != info.dtype:
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"Expects arg[{index}] to be {_dtype_name(info.dtype)} but {_dtype_name(got)} is provided",
            )
        feeds[alias] = array
    if request_names - signature_names:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            "Request inputs contain aliases not exist in the signature: "
            f"{','.join(sorted(request_names - signature_names))}",
        )
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{{{','.join(sorted(signature.outputs))}}}.",
            )
        if alias in seen:
            raise StatusError(Code.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    aliases = list(output_filter) if output_filter else sorted(signature.outputs)
    return feeds, aliases


# --------------------------------------------------------------------- classify / regress rules


def _check_classification_signature(signature: SignatureDef) -> None:
    # classifier.cc PreProcessClassification, method-name check off (TF Serving's default).
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


def _check_regression_signature(signature: SignatureDef) -> None:
    # regressor.cc PreProcessRegression.
    if len(signature.inputs) != 1:
        raise StatusError(Code.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise StatusError(Code.INVALID_ARGUMENT, "Expected one output Tensor.")
    if "inputs" not in signature.inputs:
        raise StatusError(Code.INVALID_ARGUMENT, f"No regression inputs found in SignatureDef: {_debug_string(signature)}")
    if "outputs" not in signature.outputs:
        raise StatusError(Code.INVALID_ARGUMENT, f"No regression outputs found in SignatureDef: {_debug_string(signature)}")


def _debug_string(message) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(message)


def _serialize_examples(examples: Sequence[bytes], context: bytes) -> list[bytes]:
    if not examples:
        raise StatusError(Code.INVALID_ARGUMENT, "Input is empty.")
    # Protobuf merges concatenated messages, and the example's own features win over the context's.
    return [context + bytes(example) for example in examples] if context else [bytes(e) for e in examples]


def _call_examples(servable: Servable, signature_name: str, alias: str, serialized: list[bytes]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    return servable._call(signature_name, {alias: tf.constant(serialized, dtype=tf.string)})


def _classifications(outputs: Mapping[str, np.ndarray], num_examples: int) -> Classifications:
    # classifier.cc PostProcessClassificationResult.
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for name, tensor, kind in (("classes", classes, "OS"), ("scores", scores, "f")):
        if tensor is None:
            continue
        if tensor.dtype.kind not in kind or (name == "scores" and tensor.dtype != np.float32):
            expected = "DT_STRING" if name == "classes" else "DT_FLOAT"
            raise StatusError(Code.INVALID_ARGUMENT, f"Expected {name} Tensor of {expected}.  Got: {tensor.dtype}")
        if tensor.ndim != 2:
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"Expected Tensor shape: [batch_size num_classes] but got {list(tensor.shape)}",
            )
        if tensor.shape[0] != num_examples:
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"Expected {name} output batch size of {num_examples}.  Got: {tensor.shape[0]}",
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}",
        )
    num_classes = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    result: Classifications = []
    for i in range(num_examples):
        row = []
        for c in range(num_classes):
            label = classes[i, c] if classes is not None else b""
            label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            row.append((label, float(scores[i, c]) if scores is not None else 0.0))
        result.append(row)
    return result


def _regressions(outputs: Mapping[str, np.ndarray], num_examples: int) -> list[float]:
    # regressor.cc PostProcessRegressionResult.
    tensor = outputs["outputs"]
    if not (tensor.ndim == 1 or (tensor.ndim == 2 and tensor.shape[1] == 1)):
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {list(tensor.shape)}",
        )
    if tensor.shape[0] != num_examples:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"Input batch size did not match output batch size: {num_examples} vs. {tensor.shape[0]}",
        )
    if tensor.dtype != np.float32:
        raise StatusError(Code.INTERNAL, f"Expected output Tensor of DT_FLOAT.  Got: {tensor.dtype}")
    return [float(v) for v in tensor.reshape(-1)]
