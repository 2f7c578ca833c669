"""Batching parameters and the shared batch scheduler, with a fake model (no TensorFlow)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from tfstack.serving.server._batching import (
    DEFAULT_THREAD_POOL_NAME,
    BatchingParameters,
    BatchScheduler,
    parse_batching_parameters,
    read_batching_parameters,
)
from tfstack.serving._errors import Code, StatusError


# ------------------------------------------------------------------ parameters


def test_defaults_are_tf_servings():
    params = parse_batching_parameters("")
    assert (params.max_batch_size, params.batch_timeout_micros, params.max_enqueued_batches) == (1000, 0, 10)
    assert params.thread_pool_name == "batch_threads"
    assert params.num_batch_threads >= 1
    assert read_batching_parameters("").thread_pool_name == DEFAULT_THREAD_POOL_NAME


def test_parses_tf_servings_example_file():
    params = parse_batching_parameters(
        "max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
        "max_enqueued_batches { value: 1000000 }\nnum_batch_threads { value: 8 }\n"
        "allowed_batch_sizes: 32\nallowed_batch_sizes: 128\npad_variable_length_inputs: true\n"
        "thread_pool_name { value: 'pool' }\n"
    )
    assert params.max_batch_size == 128 and params.max_enqueued_batches == 1_000_000
    assert params.num_batch_threads == 8 and params.allowed_batch_sizes == (32, 128)
    assert params.pad_variable_length_inputs and params.thread_pool_name == "pool"


def test_last_allowed_batch_size_must_match_max_batch_size():
    with pytest.raises(StatusError) as info:
        parse_batching_parameters("max_batch_size { value: 16 } allowed_batch_sizes: 4 allowed_batch_sizes: 8")
    assert info.value.code is Code.INVALID_ARGUMENT
    assert info.value.message == (
        "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 8; expected 16"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
         "allowed_batch_sizes: 8 allowed_batch_sizes: 4", "monotonically increasing"),
        ("max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
         "max_execution_batch_size { value: 4 } allowed_batch_sizes: 2",
         "Last entry in allowed_batch_sizes must be equal to max_execution_batch_size; last entry was 2; expected 4"),
        ("max_batch_size { value: 0 }", "input_batch_size_limit must be positive; was 0"),
        ("num_batch_threads { value: 0 }", "num_batch_threads must be positive; was 0"),
        ("max_enqueued_batches { value: 0 }", "max_enqueued_batches must be positive; was 0"),
        ("batch_timeout_micros { value: -1 }", "batch_timeout_micros must be non-negative; was -1"),
    ],
)
def test_invalid_parameters_are_rejected(text, message):
    with pytest.raises(StatusError, match=message):
        parse_batching_parameters(text)


def test_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size: 12\n")  # a wrapper field needs { value: ... }
    with pytest.raises(StatusError) as info:
        read_batching_parameters(path)
    assert info.value.message == f"Invalid protobuf file: '{path}'"


# ------------------------------------------------------------------ scheduler


class FakeModel:
    """y = 2x; records each merged batch it ran. `gate` holds runs until released."""

    def __init__(self, *, gate: threading.Event | None = None) -> None:
        self.batches: list[np.ndarray] = []
        self.gate = gate

    def __call__(self, merged):
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append(merged["x"].copy())
        return {"y": merged["x"] * 2, "n": np.full(len(merged["x"]), len(merged["x"]))}


async def _submit_all(scheduler, model, arrays, key="k"):
    return await asyncio.gather(*(scheduler.submit(key, model, {"x": a}) for a in arrays), return_exceptions=True)


async def test_concurrent_tasks_are_merged_and_split_back():
    gate = threading.Event()
    model = FakeModel(gate=gate)
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, num_batch_threads=1))
    try:
        first = asyncio.ensure_future(scheduler.submit("k", model, {"x": np.array([[100.0]])}))
        await asyncio.sleep(0)  # the first batch starts and holds the only thread
        arrays = [np.array([[float(i)]] * (i % 2 + 1)) for i in range(4)]
        rest = asyncio.ensure_future(_submit_all(scheduler, model, arrays))
        await asyncio.sleep(0)
        gate.set()
        results = await rest
        await first
    finally:
        scheduler.close()
    assert [len(b) for b in model.batches] == [1, 6]  # the four waiting tasks ran as one batch
    for array, result in zip(arrays, results):
        np.testing.assert_array_equal(result["y"], array * 2)
        assert result["n"].tolist() == [6] * len(array)


async def test_batches_are_padded_to_allowed_sizes_with_the_first_row():
    model = FakeModel()
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, allowed_batch_sizes=(4, 8), num_batch_threads=1))
    try:
        result = await scheduler.submit("k", model, {"x": np.array([[3.0], [5.0], [7.0]])})
    finally:
        scheduler.close()
    assert model.batches[0].ravel().tolist() == [3.0, 5.0, 7.0, 3.0]
    assert result["y"].ravel().tolist() == [6.0, 10.0, 14.0]


async def test_task_larger_than_max_batch_size_is_invalid_argument():
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=4))
    try:
        with pytest.raises(StatusError) as info:
            await scheduler.submit("k", FakeModel(), {"x": np.zeros((5, 1))})
    finally:
        scheduler.close()
    assert info.value.code is Code.INVALID_ARGUMENT
    assert info.value.message == "Task size 5 is larger than maximum input batch size 4"


async def test_full_queue_is_unavailable():
    gate = threading.Event()
    model = FakeModel(gate=gate)
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=2, max_enqueued_batches=1, num_batch_threads=1))
    try:
        running = asyncio.ensure_future(scheduler.submit("k", model, {"x": np.zeros((1, 1))}))
        await asyncio.sleep(0)
        # The thread is busy: two tasks fill the one allowed batch, the third needs a second batch.
        results = asyncio.ensure_future(_submit_all(scheduler, model, [np.zeros((1, 1))] * 3))
        await asyncio.sleep(0)
        gate.set()
        outcome = await results
        await running
    finally:
        scheduler.close()
    errors = [r for r in outcome if isinstance(r, StatusError)]
    assert len(errors) == 1 and errors[0].code is Code.UNAVAILABLE
    assert errors[0].message == "The batch scheduling queue to which this task was submitted is full"
    assert Code.UNAVAILABLE.http_status == 503


async def _run_behind_a_busy_thread(scheduler, model, gate, arrays, **options):
    """Hold the only batch thread, queue `arrays` (so they share a batch), then release it."""
    running = asyncio.ensure_future(scheduler.submit("k", model, {"x": np.zeros((1, 1))}, **options))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(
        asyncio.gather(*(scheduler.submit("k", model, {"x": a}, **options) for a in arrays), return_exceptions=True)
    )
    await asyncio.sleep(0)
    gate.set()
    outcome = await queued
    await running
    return outcome


async def test_different_non_batch_shapes_without_padding_fail_the_batch_as_tf_does():
    gate = threading.Event()
    model = FakeModel(gate=gate)
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, num_batch_threads=1))
    try:
        outcome = await _run_behind_a_busy_thread(
            scheduler, model, gate, [np.ones((1, 2)), np.ones((1, 3))], names={"x": "x:0"}
        )
        # The next batch of equal shapes is fine: the failure did not stick.
        again = await scheduler.submit("k", model, {"x": np.ones((2, 3))})
    finally:
        scheduler.close()
    assert all(isinstance(r, StatusError) and r.code is Code.FAILED_PRECONDITION for r in outcome)
    assert outcome[0].message == (
        "Tensors with name 'x:0' from different tasks have different shapes and padding is turned off. "
        "Set pad_variable_length_inputs to true, or ensure that all tensors with the same name have equal "
        "dimensions starting with the first dim."
    )
    assert again["y"].shape == (2, 3)


async def test_padding_pads_each_task_with_its_own_first_value_and_keeps_the_padded_shape():
    gate = threading.Event()
    model = FakeModel(gate=gate)
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, num_batch_threads=1, pad_variable_length_inputs=True))
    short = np.array([[7.0, 1.0]])
    long = np.array([[1.0, 2.0, 3.0, 4.0]])
    try:
        outcome = await _run_behind_a_busy_thread(scheduler, model, gate, [short, long])
    finally:
        scheduler.close()
    assert model.batches[1].tolist() == [[7.0, 1.0, 7.0, 7.0], [1.0, 2.0, 3.0, 4.0]]
    # TF splits outputs along dim 0 only: the short request gets the padded width back.
    assert outcome[0]["y"].tolist() == [[14.0, 2.0, 14.0, 14.0]]
    assert outcome[1]["y"].tolist() == [[2.0, 4.0, 6.0, 8.0]]


async def test_padding_pads_every_non_batch_dimension():
    from tfstack.serving.server._batching import _pad_to_common_shape

    a, b = np.arange(1, 5).reshape(1, 2, 2), np.full((3, 1, 3), 9)
    padded = _pad_to_common_shape([a, b], "x")
    assert [p.shape for p in padded] == [(1, 2, 3), (3, 2, 3)]
    assert padded[0].tolist() == [[[1, 2, 1], [3, 4, 1]]]
    assert padded[1][:, 1].tolist() == [[9, 9, 9]] * 3


@pytest.mark.parametrize(
    "parts, code, message",
    [
        ([np.zeros((1, 0)), np.ones((1, 2))], Code.INVALID_ARGUMENT, "Got empty tensor in batch of non-empty tensors."),
        ([np.zeros((1,) * 7)], Code.INVALID_ARGUMENT, "Only tensors with rank from 1 to 6 can be padded."),
        ([np.zeros((1, 2)), np.zeros((1, 2, 2))], Code.FAILED_PRECONDITION, "different ranks"),
    ],
)
def test_inputs_padding_cannot_merge(parts, code, message):
    from tfstack.serving.server._batching import _pad_to_common_shape

    with pytest.raises(StatusError) as info:
        _pad_to_common_shape(parts, "x:0")
    assert info.value.code is code and message in info.value.message


async def test_allowed_batch_size_padding_copies_the_last_tasks_first_row():
    gate = threading.Event()
    model = FakeModel(gate=gate)
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, allowed_batch_sizes=(4, 8), num_batch_threads=1))
    try:
        await _run_behind_a_busy_thread(scheduler, model, gate, [np.array([[1.0]]), np.array([[5.0], [6.0]])])
    finally:
        scheduler.close()
    assert model.batches[1].ravel().tolist() == [1.0, 5.0, 6.0, 5.0]


async def test_large_batch_splitting_fills_the_open_batch_then_runs_the_rest_and_joins_the_outputs():
    gate = threading.Event()
    model = FakeModel(gate=gate)
    params = BatchingParameters(
        max_batch_size=16, enable_large_batch_splitting=True, max_execution_batch_size=4, num_batch_threads=1
    )
    scheduler = BatchScheduler(params)
    big = np.arange(10.0).reshape(10, 1)
    try:
        outcome = await _run_behind_a_busy_thread(scheduler, model, gate, [np.array([[100.0]]), big])
    finally:
        scheduler.close()
    # The one-row task leaves room for 3 rows of the big one; then 4, then the last 3.
    assert [b.ravel().tolist() for b in model.batches[1:]] == [[100.0, 0.0, 1.0, 2.0], [3.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
    assert outcome[1]["y"].ravel().tolist() == (big * 2).ravel().tolist()
    assert outcome[0]["y"].ravel().tolist() == [200.0]


async def test_large_batch_splitting_still_limits_a_task_to_max_batch_size():
    params = BatchingParameters(max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=4)
    scheduler = BatchScheduler(params)
    try:
        with pytest.raises(StatusError) as info:
            await scheduler.submit("k", FakeModel(), {"x": np.zeros((9, 1))})
        result = await scheduler.submit("k", FakeModel(), {"x": np.ones((8, 1))})
    finally:
        scheduler.close()
    assert info.value.message == "Task size 9 is larger than maximum input batch size 8"
    assert result["y"].shape == (8, 1)


async def test_a_split_task_that_needs_more_batches_than_the_queue_holds_is_unavailable():
    params = BatchingParameters(
        max_batch_size=16, enable_large_batch_splitting=True, max_execution_batch_size=2, max_enqueued_batches=3
    )
    model = FakeModel()
    scheduler = BatchScheduler(params)
    try:
        with pytest.raises(StatusError) as info:
            await scheduler.submit("k", model, {"x": np.zeros((8, 1))})  # 4 batches of 2
    finally:
        scheduler.close()
    assert info.value.code is Code.UNAVAILABLE and model.batches == []


async def test_a_failing_piece_fails_the_whole_split_task():
    calls = []

    def fails_second(merged):
        calls.append(len(merged["x"]))
        if len(calls) == 2:
            raise StatusError(Code.INTERNAL, "piece failed")
        return {"y": merged["x"]}

    params = BatchingParameters(max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=2)
    scheduler = BatchScheduler(params)
    try:
        with pytest.raises(StatusError, match="piece failed"):
            await scheduler.submit("k", fails_second, {"x": np.zeros((6, 1))})
    finally:
        scheduler.close()


async def test_queues_can_have_their_own_parameters():
    model = FakeModel()
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=100, num_batch_threads=1))
    try:
        with pytest.raises(StatusError, match="larger than maximum input batch size 2"):
            await scheduler.submit("small", model, {"x": np.zeros((3, 1))}, params=BatchingParameters(max_batch_size=2))
        await scheduler.submit("big", model, {"x": np.zeros((3, 1))})
    finally:
        scheduler.close()


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"x": np.float32(1.0)}, "Batching Run() input tensors must have at least one dimension"),
        ({"x": np.zeros((2, 1)), "z": np.zeros((3, 1))}, "Batching Run() input tensors must have equal 0th-dimension size"),
    ],
)
async def test_inputs_that_cannot_be_batched_are_rejected(inputs, message):
    scheduler = BatchScheduler(BatchingParameters())
    try:
        with pytest.raises(StatusError) as info:
            await scheduler.submit("k", FakeModel(), inputs)
    finally:
        scheduler.close()
    assert info.value.code is Code.INVALID_ARGUMENT and info.value.message == message


async def test_a_failing_batch_fails_each_of_its_tasks():
    def broken(merged):
        raise StatusError(Code.INVALID_ARGUMENT, "bad input")

    scheduler = BatchScheduler(BatchingParameters(num_batch_threads=1))
    try:
        outcome = await _submit_all(scheduler, broken, [np.zeros((1,))] * 3)
    finally:
        scheduler.close()
    assert all(isinstance(r, StatusError) and r.message == "bad input" for r in outcome)


async def test_batch_timeout_waits_for_more_tasks():
    model = FakeModel()
    observed = []
    scheduler = BatchScheduler(
        BatchingParameters(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=2),
        on_queued=lambda seconds, pool: observed.append((seconds, pool)),
    )
    try:
        first = asyncio.ensure_future(scheduler.submit("k", model, {"x": np.zeros((1,))}))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(scheduler.submit("k", model, {"x": np.ones((1,))}))
        await asyncio.gather(first, second)
    finally:
        scheduler.close()
    assert [len(b) for b in model.batches] == [2]
    assert len(observed) == 2 and observed[0][1] == "batch_threads" and observed[0][0] >= 0.15


async def test_queues_are_per_key():
    gate = threading.Event()
    model = FakeModel(gate=gate)
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, num_batch_threads=1))
    try:
        running = asyncio.ensure_future(scheduler.submit("a", model, {"x": np.zeros((1,))}))
        await asyncio.sleep(0)
        a = asyncio.ensure_future(scheduler.submit("a", model, {"x": np.ones((1,))}))
        b = asyncio.ensure_future(scheduler.submit("b", model, {"x": np.ones((1,)) * 3}))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(running, a, b)
    finally:
        scheduler.close()
    assert sorted(len(x) for x in model.batches) == [1, 1, 1]


async def test_idle_queues_release_their_key():
    # A queue key holds a servable; after an unload nothing may keep it alive.
    scheduler = BatchScheduler(BatchingParameters(num_batch_threads=1))
    try:
        await scheduler.submit(("servable", "sig"), FakeModel(), {"x": np.zeros((1,))})
        assert scheduler._queues == {} and not scheduler._round_robin
        await scheduler.submit(("servable", "sig"), FakeModel(), {"x": np.zeros((2,))})  # and it comes back
    finally:
        scheduler.close()


async def test_inputs_that_cannot_be_concatenated_fail_their_batch_and_free_the_thread(monkeypatch):
    scheduler = BatchScheduler(BatchingParameters(num_batch_threads=1))
    model = FakeModel()
    try:
        def bad_merge(batch, params, names):
            raise ValueError("cannot merge")

        monkeypatch.setattr("tfstack.serving.server._batching._merge", bad_merge)
        with pytest.raises(ValueError, match="cannot merge"):
            await scheduler.submit("k", model, {"x": np.zeros((1,))})
        monkeypatch.undo()
        result = await scheduler.submit("k", model, {"x": np.ones((1,))})
    finally:
        scheduler.close()
    assert result["y"].tolist() == [2.0]


async def test_deadline_while_queued_is_deadline_exceeded():
    from tfstack.serving.server._batching import BatchingExecutor
    from tfstack.serving.server._inference import Prepared

    gate = threading.Event()

    class Servable:
        batching_parameters = None

        def run(self, feeds, fetches):
            gate.wait(10)
            return {"y": feeds["x"]}

    scheduler = BatchScheduler(BatchingParameters(num_batch_threads=1))
    executor = BatchingExecutor(scheduler)
    prepared = Prepared(servable=Servable(), feeds={"x": np.zeros((1,))}, fetches=("y",), finish=dict)
    try:
        with pytest.raises(StatusError) as info:
            await executor.run(prepared, 0.05)
        gate.set()
    finally:
        scheduler.close()
    assert info.value.code is Code.DEADLINE_EXCEEDED and info.value.message == "Deadline Exceeded"


async def test_requests_feeding_and_fetching_the_same_tensors_share_a_batch(tmp_path):
    # TF's batching session keys its queues by TensorSignature (input and output tensor names),
    # not by API or signature name: on the TF1 graph classify_x_to_y and regress_x_to_y both feed
    # tf_example:0 and fetch y:0, so they merge; a Predict fetching other tensors gets its own batch.
    import tensorflow as tf

    from tfstack.serving import ServerCore, load_servable
    from tfstack.serving.server._batching import BatchingExecutor
    from tests.support.models import build_half_plus_two_tf1

    def example(x: float) -> bytes:
        return tf.train.Example(features=tf.train.Features(feature={
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))})).SerializeToString()

    params = BatchingParameters(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1)
    servable = load_servable("m", 1, build_half_plus_two_tf1(tmp_path / "1"), batching_parameters=params)
    executor = BatchingExecutor(BatchScheduler(params))
    core = ServerCore(inference_threads=1, batching=executor)
    try:
        classified, regressed, predicted = await asyncio.gather(
            core.classify(servable, "classify_x_to_y", [example(2.0)]),
            core.regress(servable, "regress_x_to_y", [example(4.0), example(6.0)]),
            core.predict(servable, "serving_default", {"x": np.array([[2.0]], np.float32)}),
        )
    finally:
        executor.close()
        core.close()
        servable.retire()
    assert classified == [[("", 3.0)]] and regressed == [4.0, 5.0] and predicted["y"].tolist() == [[3.0]]
    assert executor.scheduler.batches_run == 2
