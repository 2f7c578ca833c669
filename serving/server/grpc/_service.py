"""The gRPC front end: TF Serving's PredictionService and ModelService on grpc.aio (spec §3).

Only wire conversion lives here; rules and texts come from ServerCore. StatusErrors are
mapped to gRPC status in one place (`_rpc`), with TF Serving's 1024-character truncation.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tfstack.serving.server._core import ServerCore
from tfstack.serving._errors import Code, StatusError
from tfstack.serving.server._inference import CLASSIFY_METHOD, DEFAULT_SIGNATURE, InferenceTask, examples_from_input
from tfstack.serving.server._servable import Servable

logger = logging.getLogger("tfstack.serving")

_MAX_MESSAGE = 2**31 - 1  # TF Serving: builder.SetMaxMessageSize(INT32_MAX), no flag
_MAX_ERROR = 1024
# numpy holds at most 64 dimensions; TensorFlow's TensorShape at most 254 (TensorShape::kMaxDims).
_MAX_NUMPY_RANK = 64
_MAX_TF_RANK = 254


def _truncate(message: str) -> str:
    # grpc_status_util.cc: long messages are cut so they fit in trailers.
    return message if len(message) <= _MAX_ERROR else message[:_MAX_ERROR] + "...TRUNCATED"


class Activity:
    """Counts RPCs in progress so shutdown can drain them.

    grpc.aio cancels calls that arrived but were not yet dispatched when `stop()` begins, so
    the server first waits until no RPC is running and none has started for a short while.
    """

    def __init__(self) -> None:
        self.active = 0
        self.last_started = 0.0
        self.draining = False  # set at shutdown (REST answers then close their connection)

    async def quiesce(self, *, quiet: float, deadline: float) -> None:
        """Return once idle for `quiet` seconds, or at loop time `deadline`."""
        import asyncio

        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            if self.active == 0 and loop.time() - self.last_started >= quiet:
                return
            await asyncio.sleep(0.01)


def _rpc(method):
    """Turn StatusError (and any bug) into the gRPC status TF Serving would send."""

    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        activity: Activity = self._activity
        activity.active += 1
        activity.last_started = _now()
        try:
            if request.__class__ is Undecodable:
                await context.abort(grpc.StatusCode.INTERNAL, request.message)
            return await method(self, request, context)
        except StatusError as exc:
            await context.abort(grpc.StatusCode[exc.code.name], _truncate(exc.message))
        except grpc.aio.AbortError:
            raise
        except Exception:
            # A bug of ours, not the client's: the traceback goes to the log, not on the wire.
            logger.exception("Unexpected error in %s", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"Internal error in {method.__name__}; the server log has the details.")
        finally:
            activity.active -= 1

    return wrapper


class Undecodable:
    """What a request deserializer returns for bytes that are not the request message.

    grpc's Python server would answer UNKNOWN with a Python exception in the text and log a
    traceback for each one. C++ gRPC servers, TF Serving among them, answer INTERNAL
    (grpcpp/impl/proto_utils.h GenericDeserialize: `InitializationErrorString()`, empty for
    proto3 messages); we answer the same code with a message saying what was expected.
    """

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def lenient_deserializer(message_class):
    """`message_class.FromString` that returns an `Undecodable` instead of raising."""
    from google.protobuf.message import DecodeError

    full_name = message_class.DESCRIPTOR.full_name
    parse = message_class.FromString

    def deserialize(data: bytes):
        try:
            return parse(data)
        except (DecodeError, RuntimeError, ValueError):
            return Undecodable(f"Failed to parse request: {len(data)} bytes received are not a valid {full_name} message.")

    return deserialize


def _now() -> float:
    import asyncio

    return asyncio.get_running_loop().time()


def _timeout(context: grpc.aio.ServicerContext) -> float | None:
    return context.time_remaining()


def _resolve(core: ServerCore, request) -> Servable:
    if not request.HasField("model_spec"):
        raise StatusError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
    return _resolve_spec(core, request.model_spec)


def _resolve_spec(core: ServerCore, spec) -> Servable:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return core.resolve(spec.name, version=spec.version.value)
    if choice == "version_label":
        return core.resolve(spec.name, label=spec.version_label)
    return core.resolve(spec.name)


def _fill_spec(target, name: str, servable: Servable, signature_name: str | None) -> None:
    target.name = name
    target.version.value = servable.version
    if signature_name is not None:
        target.signature_name = signature_name or DEFAULT_SIGNATURE


# ------------------------------------------------------------------ tensors


_MAX_TENSOR_BYTES = 2**31 - 1  # a request can only carry this much anyway (INT32_MAX messages)


def tensor_proto_to_ndarray(alias: str, proto) -> np.ndarray:
    """A request TensorProto as a numpy array (`tensor parsing error: alias` when malformed)."""
    import tensorflow as tf

    # Typed fields may hold fewer values than the shape (the last one repeats), so a tiny
    # message could ask for a huge tensor: refuse what TF's own allocation would refuse.
    rank = len(proto.tensor_shape.dim)
    if rank > _MAX_NUMPY_RANK:
        if rank > _MAX_TF_RANK:  # TensorShape refuses it too: TF Serving's own text
            raise StatusError(Code.INVALID_ARGUMENT, f"tensor parsing error: {alias}")
        raise StatusError(
            Code.INVALID_ARGUMENT,
            f"tensor parsing error: {alias}: a tensor of rank {rank} was received; this server takes tensors of "
            f"rank at most {_MAX_NUMPY_RANK} (numpy's limit; TensorFlow allows {_MAX_TF_RANK}).",
        )
    elements = 1
    for dim in proto.tensor_shape.dim:
        if dim.size < 0:
            raise StatusError(Code.INVALID_ARGUMENT, f"tensor parsing error: {alias}")
        elements *= dim.size
    if elements * 16 > _MAX_TENSOR_BYTES and elements * 16 > 4 * proto.ByteSize():
        raise StatusError(Code.INVALID_ARGUMENT, f"tensor parsing error: {alias}")
    fast = _fast_ndarray(proto, elements)
    if fast is not None:
        return fast
    try:
        return tf.make_ndarray(proto)
    except Exception as exc:
        raise StatusError(Code.INVALID_ARGUMENT, f"tensor parsing error: {alias}") from exc


# DataType enum -> (numpy dtype, typed field) for the common numeric types the fast decoder takes.
_FAST_DTYPES: dict[int, tuple[np.dtype, str]] = {
    1: (np.dtype("<f4"), "float_val"), 2: (np.dtype("<f8"), "double_val"), 3: (np.dtype("<i4"), "int_val"),
    9: (np.dtype("<i8"), "int64_val"), 4: (np.dtype("u1"), "int_val"), 6: (np.dtype("i1"), "int_val"),
    10: (np.dtype("?"), "bool_val"),
}


def _fast_ndarray(proto, elements: int) -> np.ndarray | None:
    """The common cases of `tf.make_ndarray` without its Python overhead (None: use TF's).

    Only exact encodings: tensor_content of exactly the right length, or a typed field holding
    every element. Short fields (TF repeats the last value), strings and rarer types go to TF.
    """
    known = _FAST_DTYPES.get(proto.dtype)
    if known is None:
        return None
    dtype, field = known
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    content = proto.tensor_content
    if content:
        if len(content) != elements * dtype.itemsize:
            return None
        return np.frombuffer(content, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)
    values = getattr(proto, field)
    if len(values) != elements or elements == 0:
        return None
    return np.array(values, dtype=dtype).reshape(shape)


# numpy dtype -> (DataType enum, TensorProto field, how to turn the flat array into field values).
# TF Serving's default output encoding is these typed fields (Tensor::AsProtoField).
_TYPED_FIELDS: dict[np.dtype, tuple[int, str, Callable[[np.ndarray], np.ndarray] | None]] = {
    np.dtype(np.float32): (1, "float_val", None),
    np.dtype(np.float64): (2, "double_val", None),
    np.dtype(np.int32): (3, "int_val", None),
    np.dtype(np.uint8): (4, "int_val", None),
    np.dtype(np.int16): (5, "int_val", None),
    np.dtype(np.int8): (6, "int_val", None),
    np.dtype(np.int64): (9, "int64_val", None),
    np.dtype(np.bool_): (10, "bool_val", None),
    np.dtype(np.uint16): (17, "int_val", None),
    np.dtype(np.float16): (19, "half_val", lambda flat: flat.view(np.uint16)),
    np.dtype(np.uint32): (22, "uint32_val", None),
    np.dtype(np.uint64): (23, "uint64_val", None),
    np.dtype(np.complex64): (8, "scomplex_val", lambda flat: np.stack([flat.real, flat.imag], -1).reshape(-1)),
    np.dtype(np.complex128): (18, "dcomplex_val", lambda flat: np.stack([flat.real, flat.imag], -1).reshape(-1)),
}
_DT_STRING = 7


def ndarray_to_tensor_proto(array: np.ndarray, *, tensor_content: bool = False):
    """An output as TF Serving sends it: typed repeated fields (default) or tensor_content."""
    from tensorflow.core.framework.tensor_pb2 import TensorProto

    return fill_tensor_proto(TensorProto(), array, tensor_content=tensor_content)


def fill_tensor_proto(proto, array: np.ndarray, *, tensor_content: bool = False):
    """Write `array` into an empty TensorProto in place (no copy into the response map)."""
    array = np.asarray(array)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    flat = array.reshape(-1)
    if array.dtype.kind in ("O", "S", "U"):
        proto.dtype = _DT_STRING
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
        return proto
    typed = _TYPED_FIELDS.get(array.dtype)
    if typed is None:  # bfloat16, quantized types...: let TensorFlow encode them
        import tensorflow as tf

        proto.CopyFrom(tf.make_tensor_proto(array))
        return proto
    dtype_enum, field, convert = typed
    proto.dtype = dtype_enum
    if tensor_content:
        proto.tensor_content = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        return proto
    getattr(proto, field).extend((convert(flat) if convert else flat).tolist())
    return proto


def _examples(request) -> tuple[list[bytes], bytes]:
    return examples_from_input(request.input)


def _fill_classifications(result, classifications) -> None:
    for row in classifications:
        target = result.classifications.add()
        for label, score in row:
            target.classes.add(label=label, score=score)


# ------------------------------------------------------------------ services


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService over a ServerCore."""

    def __init__(self, core: ServerCore, *, tensor_content: bool = False, activity: Activity | None = None) -> None:
        self._core = core
        self._tensor_content = tensor_content
        self._activity = activity or Activity()

    @_rpc
    async def Predict(self, request, context):
        servable = _resolve(self._core, request)
        inputs = {alias: tensor_proto_to_ndarray(alias, proto) for alias, proto in request.inputs.items()}
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        outputs = await self._core.predict(servable, signature, inputs, list(request.output_filter), timeout=_timeout(context))
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, request.model_spec.name, servable, signature)
        for alias, array in outputs.items():
            fill_tensor_proto(response.outputs[alias], array, tensor_content=self._tensor_content)
        return response

    async def _on_examples(self, request, context, api, response):
        """Classify/Regress: resolve, decode the Input, run `api` on the core, fill the model spec."""
        servable = _resolve(self._core, request)
        examples, context_bytes = _examples(request)
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        result = await api(servable, signature, examples, timeout=_timeout(context), context=context_bytes)
        _fill_spec(response.model_spec, request.model_spec.name, servable, signature)
        return result

    @_rpc
    async def Classify(self, request, context):
        response = classification_pb2.ClassificationResponse()
        _fill_classifications(response.result, await self._on_examples(request, context, self._core.classify, response))
        return response

    @_rpc
    async def Regress(self, request, context):
        response = regression_pb2.RegressionResponse()
        result = await self._on_examples(request, context, self._core.regress, response)
        response.result.regressions.extend(regression_pb2.Regression(value=v) for v in result)
        return response

    @_rpc
    async def MultiInference(self, request, context):
        if not request.tasks:
            raise StatusError(Code.INVALID_ARGUMENT, "MultiInferenceRequest must have at least one task")
        servable = _resolve_spec(self._core, request.tasks[0].model_spec)
        tasks = [
            InferenceTask(model_name=t.model_spec.name, signature_name=t.model_spec.signature_name, method_name=t.method_name)
            for t in request.tasks
        ]
        examples, context_bytes = _examples(request)
        results = await self._core.multi_inference(
            servable, tasks, examples, timeout=_timeout(context), context=context_bytes
        )
        response = inference_pb2.MultiInferenceResponse()
        for task, result in zip(request.tasks, results):
            target = response.results.add()
            _fill_spec(target.model_spec, task.model_spec.name, servable, task.model_spec.signature_name)
            if task.method_name == CLASSIFY_METHOD:
                _fill_classifications(target.classification_result, result)
            else:
                target.regression_result.regressions.extend(regression_pb2.Regression(value=v) for v in result)
        return response

    @_rpc
    async def GetModelMetadata(self, request, context):
        if not request.HasField("model_spec"):
            raise StatusError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
        fields = sorted(set(request.metadata_field))
        if not fields:
            raise StatusError(Code.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != "signature_def":
                raise StatusError(Code.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
        servable = _resolve(self._core, request)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_spec(response.model_spec, request.model_spec.name, servable, None)
        response.metadata["signature_def"].Pack(servable.signature_def_map())
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: version status and config reload."""

    def __init__(
        self, core: ServerCore, manager, *, activity: Activity | None = None, reload_enabled: bool = True
    ) -> None:
        self._core = core
        self._manager = manager
        self._activity = activity or Activity()
        self._reload_enabled = reload_enabled

    @_rpc
    async def GetModelStatus(self, request, context):
        if not request.HasField("model_spec"):
            raise StatusError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
        spec = request.model_spec
        # Labels are ignored here, as in TF Serving (spec §1.4 quirk).
        version = spec.version.value if spec.WhichOneof("version_choice") == "version" else None
        rows = self._core.model_status(spec.name, version)
        response = get_model_status_pb2.GetModelStatusResponse()
        for row in rows:
            entry = response.model_version_status.add(version=row.version, state=int(row.state))
            entry.status.error_code = int(row.error_code)
            entry.status.error_message = row.error_message
        return response

    @_rpc
    async def HandleReloadConfigRequest(self, request, context):
        if not self._reload_enabled:
            raise StatusError(
                Code.UNIMPLEMENTED,
                "HandleReloadConfigRequest is disabled on this server (--enable_reload_config_rpc=false); "
                "change the served models through --model_config_file instead.",
            )
        if request.config.WhichOneof("config") != "model_config_list":
            raise StatusError(
                Code.INVALID_ARGUMENT,
                "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is currently supported",
            )
        if self._manager is None:
            raise StatusError(Code.UNIMPLEMENTED, "This server has no model manager to reload.")
        await self._manager.apply_config(request.config)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response


def _add_unary_service(server, service: str, methods: dict) -> None:
    """Register unary-unary `methods` {name: (behaviour, request class, response class)}.

    What the generated `add_*Servicer_to_server` functions do, with a request deserializer
    that never raises (`lenient_deserializer`); the behaviours check for `Undecodable`.
    """
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=lenient_deserializer(request), response_serializer=response.SerializeToString
        )
        for name, (behaviour, request, response) in methods.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))


def _add_health_service(server, servicer, health_pb2) -> None:
    """grpc.health.v1.Health (Check, Watch) with the same undecodable-request rule."""

    async def check(request, context):
        if request.__class__ is Undecodable:
            await context.abort(grpc.StatusCode.INTERNAL, request.message)
        return await servicer.Check(request, context)

    async def watch(request, context):
        if request.__class__ is Undecodable:
            await context.abort(grpc.StatusCode.INTERNAL, request.message)
        async for response in servicer.Watch(request, context):
            yield response

    request, response = health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=lenient_deserializer(request), response_serializer=response.SerializeToString
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(
            watch, request_deserializer=lenient_deserializer(request), response_serializer=response.SerializeToString
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("grpc.health.v1.Health", handlers),))


def parse_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """`--grpc_channel_arguments=k=v,k2=v2` as gRPC options (int when parseable, else str)."""
    options: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--grpc_channel_arguments expects k=v pairs separated by commas. Received: {item!r}")
        try:
            options.append((key, int(value)))
        except ValueError:
            options.append((key, value))
    return options


async def build_grpc_server(
    core: ServerCore,
    manager=None,
    *,
    tensor_content: bool = False,
    channel_arguments: Sequence[tuple[str, int | str]] = (),
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    enable_reload_config_rpc: bool = True,
) -> grpc.aio.Server:
    """A grpc.aio server with PredictionService, ModelService and grpc.health.v1 (not started).

    `interceptors` wrap every RPC (the monitoring request counters use one). With
    `enable_reload_config_rpc=False` (tfstack's `--enable_reload_config_rpc=false`),
    HandleReloadConfigRequest answers UNIMPLEMENTED and changes nothing.
    Request bytes that do not parse as the method's request message get INTERNAL, as from a C++
    gRPC server (see `Undecodable`), without a traceback in the log.
    """
    from grpc_health.v1 import health, health_pb2

    options = [
        ("grpc.max_send_message_length", _MAX_MESSAGE),
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
        ("grpc.so_reuseport", 0),
        *channel_arguments,
    ]
    server = grpc.aio.server(options=options, interceptors=list(interceptors) or None)
    activity = Activity()
    prediction = PredictionService(core, tensor_content=tensor_content, activity=activity)
    _add_unary_service(server, "tensorflow.serving.PredictionService", {
        "Predict": (prediction.Predict, predict_pb2.PredictRequest, predict_pb2.PredictResponse),
        "Classify": (prediction.Classify, classification_pb2.ClassificationRequest, classification_pb2.ClassificationResponse),
        "Regress": (prediction.Regress, regression_pb2.RegressionRequest, regression_pb2.RegressionResponse),
        "MultiInference": (prediction.MultiInference, inference_pb2.MultiInferenceRequest, inference_pb2.MultiInferenceResponse),
        "GetModelMetadata": (prediction.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest,
                             get_model_metadata_pb2.GetModelMetadataResponse),
    })
    models = ModelService(core, manager, activity=activity, reload_enabled=enable_reload_config_rpc)
    _add_unary_service(server, "tensorflow.serving.ModelService", {
        "GetModelStatus": (models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest,
                           get_model_status_pb2.GetModelStatusResponse),
        "HandleReloadConfigRequest": (models.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest,
                                      model_management_pb2.ReloadConfigResponse),
    })
    health_servicer = health.aio.HealthServicer()
    for service in ("", "ModelService", "PredictionService"):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    _add_health_service(server, health_servicer, health_pb2)
    server.health_servicer = health_servicer  # for graceful shutdown
    server.activity = activity
    return server
