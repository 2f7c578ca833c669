"""tfstack's client for TF-Serving-compatible servers, over REST or gRPC, without TensorFlow.

    from tfstack.client import ServingClient

    with ServingClient.grpc("localhost:8500") as c:          # or ServingClient.rest("http://localhost:8501")
        c.wait_until_available("half_plus_two")
        c.predict("half_plus_two", {"x": [1.0, 2.0]})        # {"y": array([2.5, 3.], dtype=float32)}

`AsyncServingClient` has the same constructors and methods for asyncio. Every failure is a
`ServingError` with a normalised `code` that does not depend on the protocol.
Importing this package loads numpy only; httpx, grpc and protobuf load with the first client.
"""

from tfstack.client._client import AsyncServingClient, ServingClient
from tfstack.client._errors import (
    BadResponseError,
    InternalServerError,
    InvalidInputError,
    ModelNotFoundError,
    RequestTimeoutError,
    ServerUnavailableError,
    ServingError,
    VersionLabelNotFoundError,
)
from tfstack.client._options import RetryPolicy, TlsConfig
from tfstack.client._traffic import CANARY as CANARY_LABEL
from tfstack.client._traffic import STABLE as STABLE_LABEL
from tfstack.client._traffic import AsyncCanarySplit, CanarySplit, LabelStats, ShadowReport, TrafficStats
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

__all__ = [
    "CANARY_LABEL",
    "STABLE_LABEL",
    "AsyncCanarySplit",
    "AsyncServingClient",
    "BadResponseError",
    "CanarySplit",
    "Classification",
    "ClassifyResult",
    "InternalServerError",
    "InvalidInputError",
    "LabelStats",
    "ModelMetadata",
    "ModelNotFoundError",
    "ModelStatus",
    "RegressResult",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerUnavailableError",
    "ServingClient",
    "ServingError",
    "ShadowReport",
    "SignatureInfo",
    "TensorInfo",
    "TlsConfig",
    "TrafficStats",
    "VersionLabelNotFoundError",
    "VersionStatus",
]
