"""ServerCore: the loaded models, their version states and labels, and inference.

The REST and gRPC front ends only convert wire formats; every rule about which servable
answers a request, and every error text a client sees, lives here and in `tfstack.serving.server._inference`
(spec §1.4, §1.7, §3.3). Each API is prepared on the event loop (`tfstack.serving.server._inference`), run by an
executor (`DirectExecutor` here: one Session call on the inference thread pool; or
`tfstack.serving.server._batching.BatchingExecutor`), and finished there. TensorFlow never runs on the loop.
Model discovery and the version lifecycle are driven by `tfstack.serving.server._manager.ModelManager`, which
writes states into the table this module owns.
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
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tfstack.serving._errors import Code, StatusError
from tfstack.serving.server._inference import (
    Classifications,
    Executor,
    InferenceTask,
    Prepared,
    prepare_classify,
    prepare_multi_inference,
    prepare_predict,
    prepare_regress,
    run_prepared,
)
from tfstack.serving.server._servable import Servable
from tfstack.serving.server._threads import InferenceThreads

if TYPE_CHECKING:
    from tfstack.serving.server._batching import BatchingExecutor, BatchingParameters
    from tfstack.serving.server._request_log import ServerRequestLogger

logger = logging.getLogger("tfstack.serving")

# (model_name, version, api, code, seconds) after each Predict/Classify/Regress that reached a
# loaded version: tfstack.serving.server._monitoring's runtime latency and per-version counts.
InferenceObserver = Callable[[str, int, str, Code, float], None]


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

    def __init__(
        self,
        *,
        inference_threads: int | None = None,
        batching: BatchingExecutor | None = None,
        on_inference: InferenceObserver | None = None,
        request_logger: ServerRequestLogger | None = None,
    ) -> None:
        """Args:
            inference_threads: size of the pool that runs unbatched Session calls.
            batching: the `--enable_batching` executor; it runs the requests of every version
                loaded with batching parameters (see `batching_parameters_for`).
            on_inference: told about each Predict/Classify/Regress (monitoring).
            request_logger: `logging_config`'s loggers; given each answered request of every API.
        """
        if inference_threads is not None and inference_threads < 1:
            raise ValueError(f"inference_threads must be >= 1. Received: inference_threads={inference_threads}")
        workers = inference_threads or max(4, 2 * (os.cpu_count() or 1))
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tfstack-inference")
        self._direct = DirectExecutor(InferenceThreads(workers))
        self._batching = batching
        self._on_inference = on_inference
        self.request_logger = request_logger
        self._models: dict[str, _ModelRecord] = {}
        # States are written from loader threads and read on the loop; a lock keeps each read whole.
        self._lock = threading.Lock()
        self._listeners: list[Any] = []

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

    @property
    def batching(self) -> BatchingExecutor | None:
        """The batching executor (`--enable_batching`), or None."""
        return self._batching

    def batching_parameters_for(self, version_dir: str | os.PathLike[str]) -> BatchingParameters | None:
        """The batching parameters a version loaded from `version_dir` gets (None: not batched).

        Raises:
            StatusError: the version's own `batching_params.pbtxt` is invalid (per-model batching).
        """
        return None if self._batching is None else self._batching.parameters_for_version(version_dir)

    def executor_for(self, servable: Servable) -> Executor:
        """The executor that runs `servable`'s requests (warmup included)."""
        if self._batching is not None and servable.batching_parameters is not None:
            return self._batching
        return self._direct

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
        return await self._infer("Predict", servable, timeout, prepare_predict, signature_name, inputs, output_filter)

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
        return await self._infer("Classify", servable, timeout, prepare_classify, signature_name, examples, context)

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
        return await self._infer("Regress", servable, timeout, prepare_regress, signature_name, examples, context)

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
        floats for regress tasks. Rules and texts follow multi_inference.cc (spec §3.3).
        """
        return await self._infer("MultiInference", servable, timeout, prepare_multi_inference, tasks, examples, context)

    async def _infer(self, api: str, servable: Servable, timeout: float | None,
                     prepare: Callable[..., Prepared], *args: Any) -> Any:
        """The one request path: hold the version, prepare, run on its executor (which finishes)."""
        started, code = time.perf_counter(), Code.OK
        # Taken before the first await: an unload meanwhile keeps the Session until we are done.
        servable.acquire()
        try:
            prepared = prepare(servable, *args)
            result = await self.executor_for(servable).run(prepared, timeout)
            if self.request_logger is not None:
                self.request_logger.log(api, servable, args, result)  # samples and queues; never raises
            return result
        except StatusError as exc:
            code = exc.code
            raise
        except asyncio.CancelledError:
            code = Code.CANCELLED
            raise
        finally:
            servable.release()
            if api != "MultiInference" and self._on_inference is not None:
                try:
                    self._on_inference(servable.model_name, servable.version, api, code, time.perf_counter() - started)
                except Exception:  # metrics must never fail a request
                    logger.exception("Inference observer failed")

    def close(self) -> None:
        """Stop the inference pools (waits for running calls)."""
        self._direct.close()
        self._executor.shutdown(wait=True, cancel_futures=True)


class DirectExecutor:
    """Runs each prepared request alone: one Session call on an inference thread (no batching).

    A request whose `timeout` passes gets DEADLINE_EXCEEDED; its Session call, already started,
    finishes in the background and its result is dropped.
    """

    def __init__(self, threads: InferenceThreads) -> None:
        self._threads = threads

    async def run(self, prepared: Prepared, timeout: float | None) -> Any:
        if timeout is not None and timeout <= 0:
            raise StatusError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
        future = self._threads.submit(run_prepared, prepared)
        if timeout is None:
            return await future
        # A timer on the future itself: cheaper per request than asyncio.wait_for's wrapper.
        expired = False

        def expire() -> None:
            nonlocal expired
            if not future.done():
                expired = True
                future.cancel()  # the TF call keeps running; its result is dropped

        timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            return await future
        except asyncio.CancelledError as exc:
            if expired:
                raise StatusError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded") from exc
            raise
        finally:
            timer.cancel()

    def close(self) -> None:
        self._threads.close()
