"""Text-format parsers for TF Serving's config files, using TF Serving's own messages.

ModelServerConfig ships in tensorflow-serving-api. MonitoringConfig (config/monitoring_config.proto)
and BatchingParameters (servables/tensorflow/session_bundle_config.proto) do not, so their
descriptors are declared here with TF Serving's field names and numbers (spec §6, §7); protobuf's
text parser then rejects exactly what TF Serving's would (unknown fields, wrong types).
"""

from __future__ import annotations

import functools

from google.protobuf import descriptor_pb2, descriptor_pool, text_format, wrappers_pb2
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, type_name: str = "", repeated: bool = False) -> _F:
    field = _F(name=name, number=number, type=kind, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:  # an empty type_name still counts as set and makes the descriptor invalid
        field.type_name = type_name
    return field


@functools.cache
def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    monitoring = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    monitoring.message_type.add(
        name="PrometheusConfig",
        field=[_field("enable", 1, _F.TYPE_BOOL), _field("path", 2, _F.TYPE_STRING)],
    )
    monitoring.message_type.add(
        name="MonitoringConfig",
        field=[_field("prometheus_config", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")],
    )
    pool.Add(monitoring)
    batching = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    int64 = ".google.protobuf.Int64Value"
    batching.message_type.add(
        name="BatchingParameters",
        field=[
            _field("max_batch_size", 1, _F.TYPE_MESSAGE, int64),
            _field("batch_timeout_micros", 2, _F.TYPE_MESSAGE, int64),
            _field("max_enqueued_batches", 3, _F.TYPE_MESSAGE, int64),
            _field("num_batch_threads", 4, _F.TYPE_MESSAGE, int64),
            _field("thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue"),
            _field("allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True),
            _field("pad_variable_length_inputs", 7, _F.TYPE_BOOL),
            _field("enable_large_batch_splitting", 8, _F.TYPE_MESSAGE, ".google.protobuf.BoolValue"),
            _field("max_execution_batch_size", 9, _F.TYPE_MESSAGE, int64),
        ],
    )
    pool.Add(batching)
    return pool


def _parse(full_name: str, text: str) -> Message:
    message = GetMessageClass(_pool().FindMessageTypeByName(full_name))()
    return text_format.Parse(text, message)


def parse_model_server_config(text: str) -> Message:
    """Parse a --model_config_file (tensorflow.serving.ModelServerConfig)."""
    from tensorflow_serving.config import model_server_config_pb2

    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def parse_monitoring_config(text: str) -> Message:
    """Parse a --monitoring_config_file (tensorflow.serving.MonitoringConfig)."""
    return _parse("tensorflow.serving.MonitoringConfig", text)


def parse_batching_parameters(text: str) -> Message:
    """Parse a --batching_parameters_file (tensorflow.serving.BatchingParameters)."""
    return _parse("tensorflow.serving.BatchingParameters", text)
