"""TF Serving messages the pip packages do not ship, built from their field lists.

tensorflow-serving-api has no monitoring_config.proto, ssl_config.proto or
saved_model_config.proto, yet the server parses all three (text or binary). Each is described
here as messages of (name, number, type) fields and built once into a descriptor pool of its own,
in TF Serving's package `tensorflow.serving`, so text and wire formats match TF Serving's.
"""

from __future__ import annotations

import functools
from typing import Any

# (field name, number, "bool" | "string" | "bytes") or (field name, number, "message", message name)
Field = tuple[str, ...] | tuple[str, int, str] | tuple[str, int, str, str]
Messages = tuple[tuple[str, tuple[Field, ...]], ...]

_SCALARS = {"bool": "TYPE_BOOL", "string": "TYPE_STRING", "bytes": "TYPE_BYTES"}


@functools.cache
def message_class(file_name: str, syntax: str, messages: Messages, root: str) -> Any:
    """The class of message `root` among `messages` (declared in order), e.g. "SSLConfig"."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field_proto = descriptor_pb2.FieldDescriptorProto
    file_proto = descriptor_pb2.FileDescriptorProto(name=file_name, package="tensorflow.serving", syntax=syntax)
    for message_name, fields in messages:
        message = file_proto.message_type.add(name=message_name)
        for name, number, kind, *nested in fields:
            if kind == "message":
                message.field.add(name=name, number=number, label=field_proto.LABEL_OPTIONAL,
                                  type=field_proto.TYPE_MESSAGE, type_name=f".tensorflow.serving.{nested[0]}")
            else:
                message.field.add(name=name, number=number, label=field_proto.LABEL_OPTIONAL,
                                  type=getattr(field_proto, _SCALARS[kind]))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{root}"))
