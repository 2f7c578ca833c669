"""gRPC transport: TF Serving's PredictionService/ModelService with tfstack's own messages.

The messages come from client/_proto (wire-compatible, no TensorFlow). `GrpcCodec` builds
operations; `GrpcTransport` (grpc, thread-safe channel) and `AsyncGrpcTransport` (grpc.aio)
send them. `_error_from_rpc` is the one place gRPC failures become ServingErrors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tfstack.client._arguments import Feature, ModelSelector
from tfstack.client._errors import BadResponseError, ServingError, error_for, normalise_code
from tfstack.client._options import DEFAULT_MAX_MESSAGE_SIZE, TlsConfig
from tfstack.client._proto import tfstack_serving_pb2 as pb
from tfstack.client._conform import conform_inputs, explain_rejection
from tfstack.client._protocol import Operation, SignatureCache, signature_for_inputs, single_input_name
if TYPE_CHECKING:
    from google.protobuf.message import Message

from tfstack.client._results import (
    Classification,
    ClassifyResult,
    ModelMetadata,
    ModelStatus,
    RegressResult,
    SignatureInfo,
    TensorInfo,
    VersionStatus,
)
from tfstack.client._dtypes import friendly_dtype
from tfstack.client._tensors import to_ndarray, to_tensor_proto

PREDICT = "/tensorflow.serving.PredictionService/Predict"
CLASSIFY = "/tensorflow.serving.PredictionService/Classify"
REGRESS = "/tensorflow.serving.PredictionService/Regress"
GET_MODEL_METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
GET_MODEL_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"


@dataclass(frozen=True)
class GrpcCall:
    method: str
    request: Any
    response_type: type[Message]


def _model_spec(spec: pb.ModelSpec, sel: ModelSelector, *, with_signature: bool = True) -> None:
    spec.name = sel.model_name
    if sel.version is not None:
        spec.version.value = sel.version
    elif sel.version_label is not None:
        spec.version_label = sel.version_label
    if with_signature:
        spec.signature_name = sel.signature_name


def _served_version(spec: pb.ModelSpec) -> int | None:
    return spec.version.value if spec.HasField("version") else None


def _fill_example(example: pb.Example, features: Mapping[str, Feature]) -> None:
    feature_map = example.features.feature
    for name, (kind, values) in features.items():
        feature = feature_map[name]
        if kind == "float":
            feature.float_list.value.extend(values)
        elif kind == "int64":
            feature.int64_list.value.extend(values)
        elif kind == "bytes":
            feature.bytes_list.value.extend(values)
        # kind "": an empty Feature, as TF Serving's REST side makes for [].


def _fill_input(message: Any, examples: list[dict[str, Feature]], context: dict[str, Feature] | None) -> None:
    if context is None:
        target = message.input.example_list
    else:
        target = message.input.example_list_with_context
        _fill_example(target.context, context)
    for features in examples:
        _fill_example(target.examples.add(), features)


def _tensor_info(info: pb.TensorInfo) -> TensorInfo:
    shape_proto = info.tensor_shape
    shape = None if shape_proto.unknown_rank else tuple(None if d.size < 0 else d.size for d in shape_proto.dim)
    try:
        dtype = pb.DataType.Name(info.dtype)
    except ValueError:
        dtype = f"DT_ENUM_{info.dtype}"
    return TensorInfo(name=info.name, dtype=friendly_dtype(dtype), shape=shape)


class GrpcCodec:
    """Operations of the gRPC protocol."""

    def __init__(self) -> None:
        self._signatures = SignatureCache()

    def predict(
        self, sel: ModelSelector, inputs: dict[str, np.ndarray] | np.ndarray, output_filter: tuple[str, ...]
    ) -> Operation[dict[str, np.ndarray]]:
        signature = yield from signature_for_inputs(self._signatures, self, sel)
        inputs = conform_inputs(signature, inputs, sel)
        if isinstance(inputs, np.ndarray):
            if signature is None:  # the name is needed; let the lookup's own error say why it failed
                signature = yield from self._signatures.lookup(self, sel)
            inputs = {single_input_name(signature, sel): inputs}
        request = pb.PredictRequest()
        _model_spec(request.model_spec, sel)
        for name, array in inputs.items():
            to_tensor_proto(array, request.inputs[name])
        request.output_filter.extend(output_filter)
        try:
            response = yield GrpcCall(PREDICT, request, pb.PredictResponse)
        except ServingError as exc:
            explained = explain_rejection(exc, signature, inputs, sel)
            if explained is exc:
                raise
            raise explained from exc
        return {name: to_ndarray(tensor, name) for name, tensor in response.outputs.items()}

    def classify(
        self, sel: ModelSelector, examples: list[dict[str, Feature]], context: dict[str, Feature] | None
    ) -> Operation[ClassifyResult]:
        request = pb.ClassificationRequest()
        _model_spec(request.model_spec, sel)
        _fill_input(request, examples, context)
        response = yield GrpcCall(CLASSIFY, request, pb.ClassificationResponse)
        classifications = tuple(
            Classification(labels=tuple(c.label for c in item.classes), scores=tuple(c.score for c in item.classes))
            for item in response.result.classifications
        )
        return ClassifyResult(classifications=classifications, version=_served_version(response.model_spec))

    def regress(
        self, sel: ModelSelector, examples: list[dict[str, Feature]], context: dict[str, Feature] | None
    ) -> Operation[RegressResult]:
        request = pb.RegressionRequest()
        _model_spec(request.model_spec, sel)
        _fill_input(request, examples, context)
        response = yield GrpcCall(REGRESS, request, pb.RegressionResponse)
        values = tuple(r.value for r in response.result.regressions)
        return RegressResult(values=values, version=_served_version(response.model_spec))

    def get_model_metadata(self, sel: ModelSelector) -> Operation[ModelMetadata]:
        request = pb.GetModelMetadataRequest(metadata_field=["signature_def"])
        _model_spec(request.model_spec, sel, with_signature=False)
        response = yield GrpcCall(GET_MODEL_METADATA, request, pb.GetModelMetadataResponse)
        packed = response.metadata.get("signature_def")
        if packed is None or not packed.type_url.endswith("SignatureDefMap"):
            raise BadResponseError(
                "GetModelMetadata returned no signature_def entry "
                f"(keys: {sorted(response.metadata)}).",
                code="INTERNAL",
            )
        try:
            sig_map = pb.SignatureDefMap.FromString(packed.value)
        except Exception as exc:  # protobuf raises DecodeError, a plain Exception subclass
            raise BadResponseError(f"Cannot parse the SignatureDefMap: {exc}", code="INTERNAL") from exc
        signatures = {
            name: SignatureInfo(
                method_name=sig.method_name,
                inputs={k: _tensor_info(v) for k, v in sig.inputs.items()},
                outputs={k: _tensor_info(v) for k, v in sig.outputs.items()},
            )
            for name, sig in sig_map.signature_def.items()
            if not name.startswith("__")
        }
        version = _served_version(response.model_spec)
        return ModelMetadata(
            model_name=response.model_spec.name or sel.model_name,
            version=version if version is not None else -1,
            signatures=signatures,
        )

    def get_model_status(self, sel: ModelSelector) -> Operation[ModelStatus]:
        request = pb.GetModelStatusRequest()
        # Status ignores labels on the server (spec §1.4), so only the version is sent.
        _model_spec(request.model_spec, ModelSelector(model_name=sel.model_name, version=sel.version), with_signature=False)
        response = yield GrpcCall(GET_MODEL_STATUS, request, pb.GetModelStatusResponse)
        versions = tuple(
            VersionStatus(
                version=entry.version,
                state=_enum_name(pb.ModelVersionStatus.State, entry.state),
                error_code=_enum_name(pb.Code, entry.status.error_code),
                error_message=entry.status.error_message,
            )
            for entry in response.model_version_status
        )
        return ModelStatus(model_name=sel.model_name, versions=versions)


def _enum_name(enum: Any, value: int) -> str:
    try:
        return enum.Name(value)
    except ValueError:
        return str(value)


# ---- I/O ------------------------------------------------------------------------------------


def _error_from_rpc(exc: Any, target: str) -> ServingError:
    """The one place gRPC failures become ServingErrors."""
    status = exc.code()
    name = status.name if status is not None else "UNKNOWN"
    details = exc.details() or ""
    if name == "INTERNAL" and "deserializ" in details.lower():
        return BadResponseError(f"Cannot parse the response from {target}: {details}", code="INTERNAL", grpc_code=name)
    if name == "UNAVAILABLE":
        details = f"{details} (target {target})"
    return error_for(normalise_code(name), details, grpc_code=name)


def validate_target(target: Any) -> str:
    if not isinstance(target, str):
        raise TypeError(f"target must be a str like 'host:8500'. Received: target={target!r}")
    if "://" in target and not target.startswith(("dns:", "unix:", "ipv4:", "ipv6:")):
        raise ValueError(
            "A gRPC target is 'host:port' (no http:// scheme; use ServingClient.rest for URLs). "
            f"Received: target={target!r}"
        )
    if not target:
        raise ValueError("target must not be empty. Received: target=''")
    return target


def _channel_setup(
    target: str,
    tls: TlsConfig | None,
    max_message_size: int,
    options: Sequence[tuple[str, Any]],
) -> tuple[list[tuple[str, Any]], Any]:
    import grpc

    if isinstance(max_message_size, bool) or not isinstance(max_message_size, int) or max_message_size <= 0:
        raise ValueError(f"max_message_size must be a positive int. Received: max_message_size={max_message_size!r}")
    defaults: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", max_message_size),
        ("grpc.max_receive_message_length", max_message_size),
        # gRPC's reconnect backoff grows to 120 s; after a server restart the client's own
        # retries and wait_until_available should see it back within seconds.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    given = {key for key, _ in options}
    channel_options = [item for item in defaults if item[0] not in given] + list(options)
    credentials = None
    if tls is not None:
        root, chain, key = tls.pem()
        credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
        if tls.server_name:
            channel_options.append(("grpc.ssl_target_name_override", tls.server_name))
    return channel_options, credentials


class _GrpcSender:
    def __init__(
        self,
        target: str,
        *,
        tls: TlsConfig | None,
        max_message_size: int,
        options: Sequence[tuple[str, Any]],
        metadata: Mapping[str, str] | None,
    ) -> None:
        self.target = validate_target(target)
        self.codec = GrpcCodec()
        self._options, self._credentials = _channel_setup(self.target, tls, max_message_size, options)
        self._metadata = tuple((k.lower(), v) for k, v in (metadata or {}).items()) or None
        self._calls: dict[str, Any] = {}

    def _callable(self, channel: Any, call: GrpcCall) -> Any:
        stub = self._calls.get(call.method)
        if stub is None:
            stub = channel.unary_unary(
                call.method,
                request_serializer=type(call.request).SerializeToString,
                response_deserializer=call.response_type.FromString,
            )
            self._calls[call.method] = stub
        return stub


class GrpcTransport(_GrpcSender):
    """Blocking gRPC transport over one channel (thread-safe)."""

    def __init__(
        self,
        target: str,
        *,
        tls: TlsConfig | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        options: Sequence[tuple[str, Any]] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        import grpc

        super().__init__(target, tls=tls, max_message_size=max_message_size, options=options, metadata=metadata)
        if self._credentials is None:
            self._channel = grpc.insecure_channel(self.target, options=self._options)
        else:
            self._channel = grpc.secure_channel(self.target, self._credentials, options=self._options)

    def send(self, call: GrpcCall, timeout: float | None) -> Any:
        import grpc

        try:
            return self._callable(self._channel, call)(call.request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _error_from_rpc(exc, self.target) from exc

    def close(self) -> None:
        self._channel.close()


class AsyncGrpcTransport(_GrpcSender):
    """asyncio gRPC transport (grpc.aio); the channel is opened on first use, inside the loop."""

    def __init__(
        self,
        target: str,
        *,
        tls: TlsConfig | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        options: Sequence[tuple[str, Any]] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(target, tls=tls, max_message_size=max_message_size, options=options, metadata=metadata)
        self._channel: Any = None

    def _open(self) -> Any:
        from grpc import aio

        if self._channel is None:
            if self._credentials is None:
                self._channel = aio.insecure_channel(self.target, options=self._options)
            else:
                self._channel = aio.secure_channel(self.target, self._credentials, options=self._options)
        return self._channel

    async def send(self, call: GrpcCall, timeout: float | None) -> Any:
        import grpc

        try:
            return await self._callable(self._open(), call)(call.request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _error_from_rpc(exc, self.target) from exc

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._calls = {}
