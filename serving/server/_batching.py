"""Dynamic batching as TF Serving does it (`--enable_batching`, spec §6).

One `BatchScheduler` is shared by every model, version and signature (TF's SharedBatchScheduler):
each (version, feed tensor names, fetch tensor names) has its own queue of batches, as TF's
batching session keys its queues by TensorSignature, and one pool of `num_batch_threads`
threads runs whichever batch is ready. Concurrent requests are merged along dim 0 (their other
dims padded when `pad_variable_length_inputs`), padded up to the next `allowed_batch_sizes` entry,
run once, and the outputs are split back per request, so clients see the same responses as without
batching. Large requests are split across batches with `enable_large_batch_splitting`, and each
version may bring its own parameters (`--enable_per_model_batching_parameters`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tfstack.serving._errors import Code, StatusError
from tfstack.serving.server._threads import InferenceThreads

if TYPE_CHECKING:
    from tfstack.serving.server._inference import Prepared

logger = logging.getLogger("tfstack.serving")

DEFAULT_THREAD_POOL_NAME = "model_server_batch_threads"  # the model server's name when there is no file
QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"

# (seconds waited in the queue, thread_pool_name) after each task leaves its queue.
QueuingObserver = Callable[[float, str], None]
# (tasks' total size, size after padding) for each batch that starts running.
BatchObserver = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchingParameters:
    """`tensorflow.serving.BatchingParameters` with TF Serving's defaults (spec §6 table).

    Build it with `read_batching_parameters` / `parse_batching_parameters`, or directly in tests.
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None

    def __post_init__(self) -> None:
        validate_batching_parameters(self)

    @property
    def execution_limit(self) -> int:
        """The largest batch that runs: max_execution_batch_size when splitting, else max_batch_size."""
        return self.max_execution_batch_size or self.max_batch_size


def validate_batching_parameters(params: BatchingParameters) -> None:
    """Raise `StatusError(INVALID_ARGUMENT)` with TF's texts when the parameters cannot schedule."""
    checks = (
        # TF's scheduler names max_batch_size by its own option name in this text.
        ("input_batch_size_limit", params.max_batch_size, "must be positive", params.max_batch_size > 0),
        ("batch_timeout_micros", params.batch_timeout_micros, "must be non-negative", params.batch_timeout_micros >= 0),
        ("max_enqueued_batches", params.max_enqueued_batches, "must be positive", params.max_enqueued_batches > 0),
        ("num_batch_threads", params.num_batch_threads, "must be positive", params.num_batch_threads > 0),
    )
    for name, value, rule, ok in checks:
        if not ok:
            raise StatusError(Code.INVALID_ARGUMENT, f"{name} {rule}; was {value}")
    sizes = params.allowed_batch_sizes
    if not sizes:
        return
    # batching_session.cc: without splitting only the last entry is checked (order is a TODO there).
    if not params.enable_large_batch_splitting:
        if sizes[-1] != params.max_batch_size:
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"Last entry in allowed_batch_sizes must match max_batch_size; last entry was {sizes[-1]}; "
                f"expected {params.max_batch_size}",
            )
        return
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise StatusError(Code.INVALID_ARGUMENT, "allowed_batch_sizes entries must be monotonically increasing")
    if sizes[-1] > params.max_batch_size:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"Last entry in allowed_batch_sizes must be less than or equal to max_batch_size; last entry was "
            f"{sizes[-1]}; expected {params.max_batch_size}",
        )
    if sizes[-1] != params.execution_limit:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"Last entry in allowed_batch_sizes must be equal to max_execution_batch_size; last entry was "
            f"{sizes[-1]}; expected {params.execution_limit}",
        )


_PROTO_CLASS: Any = None


def _batching_parameters_proto_class():
    """`tensorflow.serving.BatchingParameters`, built from its field list (the pip package lacks it)."""
    global _PROTO_CLASS
    if _PROTO_CLASS is not None:
        return _PROTO_CLASS
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tfstack/batching_parameters.proto",
        package="tensorflow.serving",
        dependency=["google/protobuf/wrappers.proto"],
        syntax="proto3",
    )
    message = file_proto.message_type.add(name="BatchingParameters")
    wrappers = {
        "max_batch_size": (1, "Int64Value"), "batch_timeout_micros": (2, "Int64Value"),
        "max_enqueued_batches": (3, "Int64Value"), "num_batch_threads": (4, "Int64Value"),
        "thread_pool_name": (5, "StringValue"), "enable_large_batch_splitting": (8, "BoolValue"),
        "max_execution_batch_size": (9, "Int64Value"),
    }
    for name, (number, kind) in wrappers.items():
        message.field.add(name=name, number=number, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE,
                          type_name=f".google.protobuf.{kind}")
    message.field.add(name="allowed_batch_sizes", number=6, label=F.LABEL_REPEATED, type=F.TYPE_INT64)
    message.field.add(name="pad_variable_length_inputs", number=7, label=F.LABEL_OPTIONAL, type=F.TYPE_BOOL)
    pool.Add(file_proto)
    _PROTO_CLASS = message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))
    return _PROTO_CLASS


def parse_batching_parameters(text: str, *, path: str = "<text>") -> BatchingParameters:
    """Parse a text-format BatchingParameters; unset fields take TF Serving's defaults.

    Raises:
        StatusError: INVALID_ARGUMENT `Invalid protobuf file: '<path>'` on a syntax error, or a
            validation text (e.g. the allowed_batch_sizes rule).
    """
    from google.protobuf import text_format

    proto = _batching_parameters_proto_class()()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        logger.error("Failed to parse BatchingParameters file %s: %s", path, exc)
        raise StatusError(Code.INVALID_ARGUMENT, f"Invalid protobuf file: '{path}'") from exc
    values: dict[str, Any] = {}
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
                 "thread_pool_name", "enable_large_batch_splitting", "max_execution_batch_size"):
        if proto.HasField(name):
            values[name] = getattr(proto, name).value
    values["allowed_batch_sizes"] = tuple(proto.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = proto.pad_variable_length_inputs
    return BatchingParameters(**values)


def read_batching_parameters(path: str | os.PathLike[str] | None) -> BatchingParameters:
    """`--batching_parameters_file` as BatchingParameters; None/"" gives the model server's defaults."""
    if not path:
        return BatchingParameters(thread_pool_name=DEFAULT_THREAD_POOL_NAME)
    from tfstack.serving.server._model_config import read_text_proto_file

    path = os.fspath(path)
    return parse_batching_parameters(read_text_proto_file(path, what="BatchingParameters"), path=path)


# ------------------------------------------------------------------------------ scheduling


def task_size(inputs: Mapping[str, np.ndarray]) -> int:
    """A request's batch size: the shared dim 0 of its inputs (TF's batching_session texts)."""
    size: int | None = None
    for array in inputs.values():
        if np.ndim(array) == 0:
            raise StatusError(Code.INVALID_ARGUMENT, "Batching Run() input tensors must have at least one dimension")
        if size is None:
            size = array.shape[0]
        elif array.shape[0] != size:
            raise StatusError(Code.INVALID_ARGUMENT, "Batching Run() input tensors must have equal 0th-dimension size")
    if size is None:
        raise StatusError(Code.INVALID_ARGUMENT, "Batching Run() must have at least one input tensor")
    return size


MAX_PADDED_RANK = 6  # TF pads ranks 1 to 6 only (like its Pad op)


class _Task:
    __slots__ = ("inputs", "size", "future", "enqueued")

    def __init__(self, inputs: Mapping[str, np.ndarray], size: int, future: asyncio.Future) -> None:
        self.inputs = inputs
        self.size = size
        self.future = future
        self.enqueued = time.perf_counter()


class _Batch:
    __slots__ = ("tasks", "size", "closed", "opened")

    def __init__(self, opened: float) -> None:
        self.tasks: list[_Task] = []
        self.size = 0
        self.closed = False
        self.opened = opened


class _Queue:
    __slots__ = ("run", "params", "names", "batches")

    def __init__(
        self,
        run: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
        params: BatchingParameters,
        names: Mapping[str, str],
    ) -> None:
        self.run = run
        self.params = params
        self.names = names  # input alias -> the tensor name TF's merge errors print
        self.batches: deque[_Batch] = deque()


class BatchScheduler:
    """TF's SharedBatchScheduler on an asyncio loop: per-key queues, one pool of batch threads.

    `submit` is called on the event loop; batches run on a thread pool of `num_batch_threads`.
    Each queue may have its own parameters (`--enable_per_model_batching_parameters`); the thread
    pool's size and name always come from the scheduler's own parameters, as in TF Serving.

    Example:
        >>> scheduler = BatchScheduler(BatchingParameters(max_batch_size=8))
        >>> outputs = await scheduler.submit(("m", 1, "serving_default"), run, {"x": np.ones((1, 3))})
    """

    def __init__(
        self, params: BatchingParameters, *, on_queued: QueuingObserver | None = None, on_batch: BatchObserver | None = None
    ) -> None:
        if not isinstance(params, BatchingParameters):
            raise TypeError(f"params must be BatchingParameters. Received: params={params!r}")
        self.params = params
        self._on_queued = on_queued
        self._on_batch = on_batch
        self._threads = InferenceThreads(params.num_batch_threads, name=params.thread_pool_name)
        self._queues: dict[Any, _Queue] = {}
        self._busy = 0
        self._round_robin: deque[Any] = deque()
        self.batches_run = 0  # for tests and the benchmark: how many merged runs happened

    def close(self) -> None:
        """Stop the batch threads (running batches finish; queued tasks fail UNAVAILABLE)."""
        for queue in self._queues.values():
            for batch in queue.batches:
                for task in batch.tasks:
                    if not task.future.done():
                        task.future.set_exception(StatusError(Code.UNAVAILABLE, "Batch scheduler is shutting down"))
        self._queues.clear()
        self._threads.close(wait=False)

    async def submit(
        self,
        key: Any,
        run: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
        inputs: Mapping[str, np.ndarray],
        **options: Any,
    ) -> dict[str, np.ndarray]:
        """Enqueue one request and wait for its slice of the batched outputs (see `enqueue`)."""
        return await self.enqueue(key, run, inputs, **options)

    def enqueue(
        self,
        key: Any,
        run: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
        inputs: Mapping[str, np.ndarray],
        *,
        params: BatchingParameters | None = None,
        names: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
    ) -> asyncio.Future:
        """Enqueue one request (on the loop); the future resolves to its slice of the batched outputs.

        Args:
            key: identifies the queue, e.g. (servable, signature_name); equal keys must share `run`.
            run: blocking function feeding merged inputs (alias -> array) to the model, returning
                outputs whose dim 0 is the merged batch size.
            inputs: this request's inputs, all with the same dim 0 (its size).
            params: this queue's parameters (per-model batching); default: the scheduler's.
            names: input alias -> tensor name (or a function giving it, called when the queue is
                created), for the texts of merge errors; default: the alias.

        Raises:
            StatusError: INVALID_ARGUMENT (scalar inputs, unequal dim 0, task larger than
                max_batch_size), UNAVAILABLE when the queue is full, or whatever `run` raised
                (FAILED_PRECONDITION when tasks of one batch differ in non-batch shape and
                padding is off, as TF's batching session reports).
        """
        size = task_size(inputs)
        queue = self._queues.get(key)
        if queue is None:
            queue = _Queue(run, params or self.params, (names() if callable(names) else names) or {})
        qparams = queue.params
        if size > qparams.max_batch_size:
            raise StatusError(
                Code.INVALID_ARGUMENT, f"Task size {size} is larger than maximum input batch size {qparams.max_batch_size}"
            )
        loop = asyncio.get_running_loop()
        limit = qparams.execution_limit if qparams.enable_large_batch_splitting else qparams.max_batch_size
        open_batch = queue.batches[-1] if queue.batches and not queue.batches[-1].closed else None
        room = limit - open_batch.size if open_batch is not None else 0
        pieces = [size]
        if qparams.enable_large_batch_splitting and size > room:
            # TF's eager split: fill the open batch, then whole execution batches, then the rest.
            first = room or min(limit, size)
            pieces = [first] + [min(limit, size - start) for start in range(first, size, limit)]
        new_batches = len(pieces) - (pieces[0] <= room)  # the first piece may still fit the open batch
        if len(queue.batches) + new_batches > qparams.max_enqueued_batches:
            raise StatusError(Code.UNAVAILABLE, QUEUE_FULL_MESSAGE)
        if key not in self._queues:
            self._queues[key] = queue
            self._round_robin.append(key)

        futures: list[asyncio.Future] = []
        start = 0
        for piece in pieces:
            part = inputs if piece == size else {alias: array[start:start + piece] for alias, array in inputs.items()}
            start += piece
            batch = queue.batches[-1] if queue.batches else None
            if batch is None or batch.closed or batch.size + piece > limit:
                if batch is not None:
                    batch.closed = True
                batch = _Batch(loop.time())
                queue.batches.append(batch)
                if qparams.batch_timeout_micros > 0:
                    loop.call_later(qparams.batch_timeout_micros / 1e6, self._dispatch)
            task = _Task(part, piece, loop.create_future())
            batch.tasks.append(task)
            batch.size += piece
            if batch.size >= limit:
                batch.closed = True
            futures.append(task.future)
        self._dispatch()
        if len(futures) == 1:
            return futures[0]
        return _joined(loop, futures)

    def _ready(self, queue: _Queue, batch: _Batch, now: float) -> bool:
        timeout = queue.params.batch_timeout_micros
        if batch.closed or timeout == 0:
            return True
        return now - batch.opened >= timeout / 1e6 - 1e-4

    def _dispatch(self) -> None:
        """Start ready batches on free threads, visiting queues round-robin."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._busy < self.params.num_batch_threads and self._round_robin:
            started = False
            for _ in range(len(self._round_robin)):
                key = self._round_robin[0]
                self._round_robin.rotate(-1)
                queue = self._queues.get(key)
                if queue is None or not queue.batches:
                    continue
                batch = queue.batches[0]
                if not batch.tasks or not self._ready(queue, batch, now):
                    continue
                queue.batches.popleft()
                if not queue.batches:
                    # Drop idle queues: a key holds its servable, which must not outlive an unload.
                    del self._queues[key]
                    self._round_robin.remove(key)
                batch.closed = True
                self._start(queue, batch)
                started = True
                break
            if not started:
                return

    def _start(self, queue: _Queue, batch: _Batch) -> None:
        self._busy += 1
        self.batches_run += 1
        now = time.perf_counter()
        if self._on_queued is not None:
            for task in batch.tasks:
                self._on_queued(now - task.enqueued, self.params.thread_pool_name)
        loop = asyncio.get_running_loop()
        try:
            merged, padded = _merge(batch, queue.params, queue.names)
            if self._on_batch is not None:
                self._on_batch(batch.size, padded)
            future = self._threads.submit(queue.run, merged)
        except Exception as exc:  # the thread slot must come back whatever went wrong
            failed = loop.create_future()
            failed.set_exception(exc)
            self._finish(batch, batch.size, failed)
            return
        future.add_done_callback(lambda f: self._finish(batch, padded, f))

    def _finish(self, batch: _Batch, padded: int, future: asyncio.Future) -> None:
        self._busy -= 1
        try:
            outputs = future.result()
            pieces = _split(outputs, [task.size for task in batch.tasks], padded)
        except BaseException as exc:  # every task of the batch gets the batch's error
            error = exc if isinstance(exc, Exception) else StatusError(Code.CANCELLED, "Batch was cancelled")
            for task in batch.tasks:
                if not task.future.done():
                    task.future.set_exception(error)
        else:
            for task, piece in zip(batch.tasks, pieces):
                if not task.future.done():
                    task.future.set_result(piece)
        self._dispatch()


def _joined(loop: asyncio.AbstractEventLoop, futures: list[asyncio.Future]) -> asyncio.Future:
    """One future for a split task: its pieces' outputs joined along dim 0, or the first error."""
    joined = loop.create_future()
    remaining = len(futures)

    def piece_done(_: asyncio.Future) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining or joined.done():
            return
        for piece in futures:
            if piece.cancelled():
                joined.set_exception(StatusError(Code.CANCELLED, "Batch was cancelled"))
                return
            failure = piece.exception()
            if failure is not None:
                joined.set_exception(failure)
                return
        results = [piece.result() for piece in futures]
        try:
            joined.set_result({alias: np.concatenate([r[alias] for r in results], axis=0) for alias in results[0]})
        except ValueError as exc:  # pieces padded to different non-batch shapes cannot be joined
            joined.set_exception(StatusError(Code.INTERNAL, f"Tensor concat operation failed: {exc}"))

    def cancel_pieces(_: asyncio.Future) -> None:
        if joined.cancelled() or joined.exception() is not None:
            for piece in futures:  # e.g. the deadline passed: the pieces' results are dropped
                if not piece.done():
                    piece.cancel()

    for future in futures:
        future.add_done_callback(piece_done)
    joined.add_done_callback(cancel_pieces)
    return joined


def _merge(batch: _Batch, params: BatchingParameters, names: Mapping[str, str]) -> tuple[dict[str, np.ndarray], int]:
    """The batch's inputs joined along dim 0 as TF's batching session does (ProcessBatch/MergeInputTensors).

    Non-batch dims must agree unless `pad_variable_length_inputs`: then every task's tensor is
    padded at the end of each dim, with its own first value, to the batch's largest size. The
    batch is then padded to the next `allowed_batch_sizes` entry with the last task's first row.
    """
    padded = batch.size
    for allowed in params.allowed_batch_sizes:
        if allowed >= batch.size:
            padded = allowed
            break
    merged: dict[str, np.ndarray] = {}
    for alias in batch.tasks[0].inputs:
        parts = [np.asarray(task.inputs[alias]) for task in batch.tasks]
        if params.pad_variable_length_inputs:
            parts = _pad_to_common_shape(parts, names.get(alias, alias))
        else:
            reference = parts[0].shape
            for part in parts[1:]:
                if part.shape[1:] != reference[1:]:
                    name = names.get(alias, alias)
                    raise StatusError(
                        Code.FAILED_PRECONDITION,
                        f"Tensors with name '{name}' from different tasks have different shapes and padding is "
                        "turned off. Set pad_variable_length_inputs to true, or ensure that all tensors with the "
                        "same name have equal dimensions starting with the first dim.",
                    )
        if padded > batch.size:
            # TF pads with copies of the last task's first row; the padding rows' outputs are dropped.
            parts.append(np.repeat(parts[-1][:1], padded - batch.size, axis=0))
        merged[alias] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    return merged, padded


def _pad_to_common_shape(parts: list[np.ndarray], name: str) -> list[np.ndarray]:
    """TF's AddPadding: pad each tensor's non-batch dims (at the end) to the batch's largest."""
    ranks = {part.ndim for part in parts}
    if len(ranks) != 1:
        raise StatusError(
            Code.FAILED_PRECONDITION,
            f"Tensors with name '{name}' from different tasks have different ranks ({sorted(ranks)}); padding "
            "can only make sizes equal, not ranks.",
        )
    if max(ranks) > MAX_PADDED_RANK:
        raise StatusError(Code.INVALID_ARGUMENT, f"Only tensors with rank from 1 to {MAX_PADDED_RANK} can be padded.")
    largest = [max(sizes) for sizes in zip(*(part.shape for part in parts))]
    out = []
    for part in parts:
        widths = [(0, 0)] + [(0, want - have) for want, have in zip(largest[1:], part.shape[1:])]
        if not any(after for _, after in widths):
            out.append(part)
            continue
        if part.size == 0:
            raise StatusError(Code.INVALID_ARGUMENT, "Got empty tensor in batch of non-empty tensors.")
        out.append(np.pad(part, widths, mode="constant", constant_values=part.reshape(-1)[0]))
    return out


def _split(outputs: Mapping[str, np.ndarray], sizes: Sequence[int], padded: int) -> list[dict[str, np.ndarray]]:
    pieces: list[dict[str, np.ndarray]] = [{} for _ in sizes]
    for alias, tensor in outputs.items():
        tensor = np.asarray(tensor)
        if tensor.ndim == 0:
            raise StatusError(Code.FAILED_PRECONDITION, "Batched output tensor has 0 dimensions")
        if tensor.shape[0] != padded:
            raise StatusError(
                Code.FAILED_PRECONDITION,
                "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes of "
                "the input tensors",
            )
        start = 0
        for piece, size in zip(pieces, sizes):
            piece[alias] = tensor[start:start + size]
            start += size
    return pieces


# ------------------------------------------------------------------------------ the batching executor


class BatchingExecutor:
    """Runs prepared requests through a shared `BatchScheduler` (TF Serving's batching session).

    Requests are queued by (version, feed tensor names, fetch tensor names), TF's TensorSignature:
    whatever the API, requests that feed and fetch the same tensors of a version share a queue,
    their feeds are merged, the version's Session runs once, and each request gets its rows back
    and finishes on the loop. Validation already happened when the request was prepared, with the
    same rules and texts as without batching.
    """

    def __init__(self, scheduler: BatchScheduler, *, per_model: bool = False) -> None:
        self.scheduler = scheduler
        self.per_model = per_model

    def parameters_for_version(self, version_dir: str | os.PathLike[str]) -> BatchingParameters | None:
        """The parameters a version loaded from `version_dir` gets, or None when it is not batched.

        With `--enable_per_model_batching_parameters` only versions whose directory has a
        `batching_params.pbtxt` are batched, with that file's parameters; otherwise every
        version uses the global parameters (bundle_factory_util.cc GetPerModelBatchingParams).

        Raises:
            StatusError: the version's file does not parse or is invalid (that load fails).
        """
        if not self.per_model:
            return self.scheduler.params
        return read_per_model_batching_parameters(version_dir)

    async def run(self, prepared: Prepared, timeout: float | None) -> Any:
        """Queue `prepared`'s feeds, wait for its rows of the batch's outputs, and finish it."""
        if timeout is not None and timeout <= 0:
            raise StatusError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
        servable = prepared.servable
        fetches = prepared.fetches
        future = self.scheduler.enqueue(
            (servable, *prepared.tensor_signature),
            lambda merged: servable.run(merged, fetches),
            prepared.feeds,
            params=servable.batching_parameters,
        )
        return prepared.finish(await _with_deadline(future, timeout))

    def close(self) -> None:
        """Stop the scheduler's batch threads."""
        self.scheduler.close()


async def _with_deadline(future: asyncio.Future, timeout: float | None) -> Any:
    if timeout is None:
        return await future
    # A timer instead of asyncio.wait_for: no extra Task per request on the loop.
    timer = asyncio.get_running_loop().call_later(timeout, _expire, future)
    try:
        return await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future) -> None:
    if not future.done():  # the batch may still run; its result for this task is dropped
        future.set_exception(StatusError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded"))


def batching_executor_from_flags(
    enable_batching: bool,
    batching_parameters_file: str,
    *,
    on_queued: QueuingObserver | None = None,
    on_batch: BatchObserver | None = None,
    per_model: bool = False,
) -> BatchingExecutor | None:
    """The server's BatchingExecutor for `--enable_batching`/`--batching_parameters_file` (None when off).

    `per_model` is `--enable_per_model_batching_parameters`: then the global file only sizes and
    names the shared thread pool, and each version's own `batching_params.pbtxt` decides.

    Raises:
        StatusError: the file is set without `--enable_batching`, does not parse, or is invalid.
    """
    if batching_parameters_file and not enable_batching:
        raise StatusError(
            Code.FAILED_PRECONDITION,
            "server_options.batching_parameters_file is set without setting server_options.enable_batching to true.",
        )
    if not enable_batching:
        return None
    params = read_batching_parameters(batching_parameters_file)
    logger.info(
        "Batching enabled: max_batch_size=%d batch_timeout_micros=%d max_enqueued_batches=%d num_batch_threads=%d "
        "allowed_batch_sizes=%s thread_pool_name=%s",
        params.max_batch_size, params.batch_timeout_micros, params.max_enqueued_batches, params.num_batch_threads,
        list(params.allowed_batch_sizes), params.thread_pool_name,
    )
    return BatchingExecutor(BatchScheduler(params, on_queued=on_queued, on_batch=on_batch), per_model=per_model)


PER_MODEL_PARAMETERS_FILE = "batching_params.pbtxt"


def read_per_model_batching_parameters(version_dir: str | os.PathLike[str]) -> BatchingParameters | None:
    """`<version_dir>/batching_params.pbtxt` as BatchingParameters, or None when the file is absent.

    Used at load time with `--enable_per_model_batching_parameters`: a version without the file
    is served unbatched, as TF Serving does.

    Raises:
        StatusError: the file does not parse or its parameters are invalid (the load fails).
    """
    path = os.path.join(os.fspath(version_dir), PER_MODEL_PARAMETERS_FILE)
    return read_batching_parameters(path) if os.path.isfile(path) else None
