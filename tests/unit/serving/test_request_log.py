"""Request logging (`logging_config`): what gets written, rotation, the disk cap, drops, torn files.

TF Serving's side of the contract: `core/request_logger.cc` (uniform sampling per request,
LogMetadata with the sampling config and SavedModel tags, request_log_count), and
`apis/prediction_log.proto` (one PredictionLog per request with its response).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import logging_config_pb2

from tfstack import export
from tfstack.serving import ServerCore
from tfstack.serving.server._inference import InferenceTask
from tfstack.serving.server._request_log import (
    LogLimits,
    RequestLogger,
    RotatingRecordWriter,
    ServerRequestLogger,
    build_prediction_log,
    log_files,
    request_id_var,
)
from tfstack.serving.server._warmup import prepare_record


def _config(prefix: Path, rate: float = 1.0):
    config = logging_config_pb2.LoggingConfig()
    config.log_collector_config.type = "tfrecord"
    config.log_collector_config.filename_prefix = str(prefix)
    config.sampling_config.sampling_rate = rate
    return config


def _example(**features: float) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in features.items()
    })).SerializeToString()


def _records(prefix: Path) -> list[prediction_log_pb2.PredictionLog]:
    return [entry.log for entry in export.read_prediction_logs(prefix)]


def test_writer_rotates_by_size_and_keeps_under_the_disk_cap(tmp_path: Path):
    record = b"x" * 984  # 1000 bytes on disk with the TFRecord framing
    writer = RotatingRecordWriter(tmp_path / "logs" / "m", LogLimits(max_file_bytes=3000, max_total_bytes=7000))
    for _ in range(10):
        writer.write_batch([record, record])
    writer.close()
    files = log_files(tmp_path / "logs" / "m")
    assert all(f.stat().st_size <= 3000 for f in files)
    # 20 records make files 1..7 of 3, 3, ..., 2 records. Opening a file deletes the oldest ones
    # until the rest plus one full file fit the cap, so the cap holds even once it fills up.
    assert [int(f.stem.rsplit("-", 1)[1]) for f in files] == [6, 7]
    assert sum(f.stat().st_size for f in files) == 5000
    assert sum(len(list(tf.compat.v1.io.tf_record_iterator(str(f)))) for f in files) == 5


def test_a_torn_last_record_is_skipped_and_damage_elsewhere_is_an_error(tmp_path: Path):
    prefix = tmp_path / "m"
    writer = RotatingRecordWriter(prefix)
    logs = [prediction_log_pb2.PredictionLog() for _ in range(3)]
    for i, log in enumerate(logs):
        log.log_metadata.request_origin = f"r{i}"
    writer.write_batch([log.SerializeToString() for log in logs])
    writer.close()
    (path,) = log_files(prefix)
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # a writer killed in the middle of its last record
    assert [log.log_metadata.request_origin for log in _records(prefix)] == ["r0", "r1"]
    damaged = bytearray(data)
    damaged[14] ^= 0xFF  # inside the first record's data: its CRC no longer matches
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="is damaged or not a TFRecord file: corrupted record at 12"):
        _records(prefix)


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path):
    dropped = []
    logger = RequestLogger(_config(tmp_path / "m"), limits=LogLimits(queue_size=3), on_dropped=dropped.append,
                           start=False)
    entry = ("Predict", "m", 1, ("serving_default", {"x": np.ones(2, np.float32)}, ()), {"y": np.ones(2, np.float32)},
             1.0, "id")
    for _ in range(5):
        logger.submit(entry)
    assert (logger.dropped, dropped) == (2, ["m", "m"])
    logger.start()
    logger.close()
    assert logger.written == 3 and len(_records(tmp_path / "m")) == 3


async def test_every_api_is_logged_as_a_prediction_log_that_replays_as_warmup(tmp_path: Path, core: ServerCore,
                                                                          half_plus_two_servable):
    logged = []
    request_logger = ServerRequestLogger(on_logged=lambda name, status: logged.append((name, status)))
    request_logger.update({"half_plus_two": _config(tmp_path / "hp")})
    core.request_logger = request_logger
    servable = core.resolve("half_plus_two")
    token = request_id_var.set("client-42")
    try:
        await core.predict(servable, "serving_default", {"x": np.array([1.0, 2.0], np.float32)}, ["y"])
    finally:
        request_id_var.reset(token)
    await core.classify(servable, "classify_x_to_y", [_example(x=2.0)])
    await core.regress(servable, "regress_x2_to_y3", [_example(x=1.0)], context=_example(x2=4.0))
    task = InferenceTask(model_name="half_plus_two", signature_name="regress_x_to_y", method_name="tensorflow/serving/regress")
    await core.multi_inference(servable, [task], [_example(x=2.0)])
    with pytest.raises(Exception):  # a failed request has no response: it is not logged
        await core.predict(servable, "nope", {"x": np.array([1.0], np.float32)})
    request_logger.close()

    logs = _records(tmp_path / "hp")
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log", "classify_log", "regress_log", "multi_inference_log"]
    assert logged == [("half_plus_two", "OK")] * 4
    predict = logs[0]
    meta = predict.log_metadata
    assert (meta.model_spec.name, meta.model_spec.version.value, meta.model_spec.signature_name) == ("half_plus_two", 123, "serving_default")
    assert meta.sampling_config.sampling_rate == 1.0 and list(meta.saved_model_tags) == ["serve"]
    assert meta.timestamp_secs > 0 and meta.request_origin == "client-42"
    np.testing.assert_allclose(tf.make_ndarray(predict.predict_log.request.inputs["x"]), [1.0, 2.0])
    assert list(predict.predict_log.request.output_filter) == ["y"]
    np.testing.assert_allclose(tf.make_ndarray(predict.predict_log.response.outputs["y"]), [2.5, 3.0])
    assert logs[1].classify_log.response.result.classifications[0].classes[0].score == pytest.approx(3.0)
    regress = logs[2].regress_log
    assert regress.request.input.HasField("example_list_with_context") and regress.response.result.regressions[0].value == 5.0
    assert logs[3].multi_inference_log.response.results[0].regression_result.regressions[0].value == 3.0
    assert logs[1].log_metadata.request_origin != logs[2].log_metadata.request_origin  # generated ids are unique
    # Every record is a valid warmup record for the same model (serving/server/_warmup.py prepares it like a live request).
    for log in logs:
        assert prepare_record(half_plus_two_servable, log) is not None


def test_sampling_rate_zero_logs_nothing_and_equal_configs_share_one_logger(tmp_path: Path, half_plus_two_servable):
    request_logger = ServerRequestLogger()
    request_logger.update({"a": _config(tmp_path / "x", 0.0), "b": _config(tmp_path / "x", 0.0)})
    first = request_logger._by_model["a"][0]
    assert request_logger._by_model["b"][0] is first  # ServerRequestLogger::FindOrCreateLogger
    request_logger.update({"a": _config(tmp_path / "x", 0.0)})
    assert request_logger._by_model["a"][0] is first and "b" not in request_logger._by_model
    args = ("serving_default", {"x": np.ones(1, np.float32)}, ())
    for _ in range(50):
        request_logger.log("Predict", half_plus_two_servable, args, {"y": np.ones(1, np.float32)})
    request_logger.close()
    assert first.written == 0 and not log_files(tmp_path / "x")


def test_an_unbuildable_record_is_counted_not_raised(tmp_path: Path):
    statuses = []
    logger = RequestLogger(_config(tmp_path / "m"), on_logged=lambda name, status: statuses.append(status))
    logger.submit(("Predict", "m", 1, ("serving_default", None, ()), {}, 1.0, "id"))  # no inputs mapping
    logger.close()
    assert statuses == ["INTERNAL"] and logger.written == 0


def test_build_prediction_log_keeps_string_inputs():
    log = build_prediction_log(
        ("Predict", "m", 3, ("serving_default", {"s": np.array([b"a", "b"], object)}, ()), {"y": np.zeros(2)}, 5.5, "r"),
        logging_config_pb2.SamplingConfig(sampling_rate=0.5), ("serve",),
    )
    assert tf.make_ndarray(log.predict_log.request.inputs["s"]).tolist() == [b"a", b"b"]
    assert log.log_metadata.timestamp_secs == 5 and log.log_metadata.sampling_config.sampling_rate == 0.5


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_total_bytes must be at least max_file_bytes"):
        LogLimits(max_file_bytes=10, max_total_bytes=5)

