"""TF Serving's wire messages without TensorFlow: the protobuf classes tfstack's client is built on.

For code that speaks TF Serving's protocols at a lower level than `ServingClient`: tfstack's
rollout (models.config and the reload RPC) and load tool (prebuilt request bytes). The messages
are wire-compatible with tensorflow-serving-api's (same field numbers; tested byte for byte) but
live in their own protobuf package, so they coexist with TensorFlow's classes.

Example:
    >>> from tfstack.client import wire
    >>> request = wire.PredictRequest()
    >>> request.model_spec.name = "digits"
    >>> wire.to_tensor_proto(np.zeros((1, 8, 8), np.float32), request.inputs["pixels"])
"""

from __future__ import annotations

from tfstack.client._proto.tfstack_serving_pb2 import (
    Code,
    GetModelStatusRequest,
    ModelConfig,
    ModelServerConfig,
    PredictRequest,
    ReloadConfigRequest,
    ReloadConfigResponse,
    TensorProto,
)
from tfstack.client._tensors import to_tensor_proto

__all__ = [
    "Code",
    "GetModelStatusRequest",
    "ModelConfig",
    "ModelServerConfig",
    "PredictRequest",
    "ReloadConfigRequest",
    "ReloadConfigResponse",
    "TensorProto",
    "to_tensor_proto",
]
