"""Warmup replay (spec §5): supported log types, limits, and a bad file failing only that version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tfstack.serving import Code, ServerCore, State, StatusError, load_servable
from tfstack.serving.server._manager import ManagerOptions, ModelManager
from tfstack.serving.server._model_config import single_model_config
from tfstack.serving.server._warmup import read_version_warmup, replay_warmup, warmup_path


def _example(x: float) -> tf.train.Example:
    example = tf.train.Example()
    example.features.feature["x"].float_list.value.append(x)
    return example


def _logs() -> list:
    predict = prediction_log_pb2.PredictionLog()
    predict.predict_log.request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
    regress = prediction_log_pb2.PredictionLog()
    regress.regress_log.request.model_spec.signature_name = "regress_x_to_y"
    regress.regress_log.request.input.example_list.examples.append(_example(2.0))
    classify = prediction_log_pb2.PredictionLog()
    classify.classify_log.request.model_spec.signature_name = "classify_x_to_y"
    classify.classify_log.request.input.example_list.examples.append(_example(2.0))
    multi = prediction_log_pb2.PredictionLog()
    task = multi.multi_inference_log.request.tasks.add(method_name="tensorflow/serving/regress")
    task.model_spec.name = "m"
    task.model_spec.signature_name = "regress_x_to_y"
    multi.multi_inference_log.request.input.example_list.examples.append(_example(2.0))
    return [predict, regress, classify, multi, prediction_log_pb2.PredictionLog()]  # the empty one is skipped


@pytest.fixture
def version_dir(tmp_path: Path, half_plus_two_base: Path) -> Path:
    target = tmp_path / "m" / "1"
    shutil.copytree(half_plus_two_base / "123", target)
    return target


def _write(path: Path, records: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


async def _warm(version_dir: Path, *, iterations: int = 1) -> int | None:
    """Read and replay a version's warmup file as the manager does (None: no file)."""
    servable = load_servable("m", 1, version_dir)
    core = ServerCore(inference_threads=1)
    try:
        logs = read_version_warmup(version_dir)
        if logs is None:
            return None
        return await replay_warmup(servable, logs, core.executor_for(servable), iterations=iterations)
    finally:
        core.close()
        servable.retire()


async def test_all_supported_log_types_replay(version_dir: Path):
    _write(warmup_path(version_dir), [log.SerializeToString() for log in _logs()])
    assert await _warm(version_dir, iterations=2) == 5


async def test_no_file_is_fine(version_dir: Path):
    assert await _warm(version_dir) is None


@pytest.mark.parametrize(
    ("content", "code", "text"),
    [
        ("session_run", Code.UNIMPLEMENTED, "Unsupported log_type for warmup: 5"),
        ("too_many", Code.INVALID_ARGUMENT, "Number of warmup records exceeds the maximum (1000) at "),
        ("garbage", Code.INVALID_ARGUMENT, "Failed to parse warmup record: "),
        ("not_tfrecord", Code.DATA_LOSS, "Please verify your warmup data is in TFRecord format."),
        ("bad_request", Code.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
    ],
)
async def test_bad_warmup_files(version_dir: Path, content, code, text):
    path = warmup_path(version_dir)
    if content == "session_run":
        log = prediction_log_pb2.PredictionLog()
        log.session_run_log.SetInParent()
        _write(path, [log.SerializeToString()])
    elif content == "too_many":
        _write(path, [b""] * 1001)
    elif content == "garbage":
        _write(path, [b"\xff\xff\xff"])
    elif content == "not_tfrecord":
        path.parent.mkdir(parents=True)
        path.write_bytes(b"this is not a tfrecord file at all")
    else:
        log = prediction_log_pb2.PredictionLog()
        log.predict_log.request.model_spec.signature_name = "nope"
        _write(path, [log.SerializeToString()])
    with pytest.raises(StatusError) as info:
        await _warm(version_dir)
    assert info.value.code is code and text in info.value.message


async def test_a_bad_warmup_file_fails_that_version_load(version_dir: Path):
    _write(warmup_path(version_dir), [b"\xff\xff\xff"])
    core = ServerCore(inference_threads=1)
    manager = ModelManager(core, ManagerOptions(file_system_poll_wait_seconds=0, max_num_load_retries=0))
    try:
        with pytest.raises(StatusError, match="did not become available"):
            await manager.apply_config(single_model_config("m", str(version_dir.parent)))
        (row,) = core.model_status("m")
        assert row.state is State.END and row.error_code is Code.INVALID_ARGUMENT
        assert "Failed to parse warmup record" in row.error_message
    finally:
        await manager.close()
        core.close()


async def test_the_manager_reports_load_attempts_and_warmups_to_its_observer(tmp_path: Path, half_plus_two_base: Path):
    from tfstack.serving.server._monitoring import ServerMetrics

    good = tmp_path / "good" / "1"
    shutil.copytree(half_plus_two_base / "123", good)
    _write(warmup_path(good), [log.SerializeToString() for log in _logs()])
    bad = tmp_path / "bad" / "1"
    shutil.copytree(half_plus_two_base / "123", bad)
    _write(warmup_path(bad), [b"\xff\xff\xff"])
    metrics = ServerMetrics()
    core = ServerCore(inference_threads=1)
    manager = ModelManager(core, ManagerOptions(file_system_poll_wait_seconds=0, max_num_load_retries=0), observer=metrics)
    try:
        await manager.apply_config(single_model_config("good", str(good.parent)))
        with pytest.raises(StatusError):
            await manager.apply_config(single_model_config("bad", str(bad.parent)))
    finally:
        await manager.close()
        core.close()
    page = metrics.page()
    assert f':tensorflow:cc:saved_model:load_attempt_count{{model_path="{good}",status="success"}} 1' in page
    assert f':tensorflow:cc:saved_model:load_attempt_count{{model_path="{bad}",status="fail"}} 1' in page
    assert f':tensorflow:serving:model_warmup_records_read{{model_path="{good}",status="OK"}} 5' in page
    assert f'model_warmup_latency_count{{model_path="{bad}",status="INVALID_ARGUMENT"}} 1' in page


async def test_with_batching_warmup_goes_through_the_batch_scheduler(tmp_path: Path, half_plus_two_base: Path):
    # TF Serving warms up through the batching session: the records run as batches, and a record
    # that batching refuses (here one larger than max_batch_size) fails the version's load.
    from tfstack.serving.server._batching import BatchingExecutor, BatchingParameters, BatchScheduler

    fits, too_big = tmp_path / "fits" / "1", tmp_path / "too_big" / "1"
    for target, rows in ((fits, 2), (too_big, 3)):
        shutil.copytree(half_plus_two_base / "123", target)
        log = prediction_log_pb2.PredictionLog()
        log.predict_log.request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0] * rows, dtype=tf.float32))
        _write(warmup_path(target), [log.SerializeToString(), *(entry.SerializeToString() for entry in _logs()[1:4])])
    batching = BatchingExecutor(BatchScheduler(BatchingParameters(max_batch_size=2, num_batch_threads=1)))
    core = ServerCore(inference_threads=1, batching=batching)
    manager = ModelManager(core, ManagerOptions(file_system_poll_wait_seconds=0, max_num_load_retries=0))
    try:
        await manager.apply_config(single_model_config("fits", str(fits.parent)))
        assert batching.scheduler.batches_run == 4  # predict, regress, classify, multi-inference
        with pytest.raises(StatusError):
            await manager.apply_config(single_model_config("too_big", str(too_big.parent)))
        (row,) = core.model_status("too_big")
        assert row.state is State.END and row.error_message == "Task size 3 is larger than maximum input batch size 2"
    finally:
        await manager.close()
        batching.close()
        core.close()
