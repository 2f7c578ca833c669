"""The client's error hierarchy: one root, one class per thing a caller reacts to differently.

Both transports raise these classes with the same normalised `code`. REST cannot tell
INVALID_ARGUMENT from FAILED_PRECONDITION or OUT_OF_RANGE (all are HTTP 400), so codes are
normalised to what both protocols can express: each gRPC code is mapped through its HTTP status
and back (the table TF Serving itself uses, spec §1.8). The code as the wire carried it stays
available as `grpc_code` / `http_status`.
"""

from __future__ import annotations

__all__ = [
    "ServingError",
    "ServerUnavailableError",
    "RequestTimeoutError",
    "ModelNotFoundError",
    "VersionLabelNotFoundError",
    "InvalidInputError",
    "InternalServerError",
    "BadResponseError",
]

# Canonical code -> HTTP status (TF Serving's http_server.cc ToHTTPStatusCode).
CODE_TO_HTTP: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

# HTTP status -> the one code every transport reports for it.
HTTP_TO_CODE: dict[int, str] = {
    200: "OK",
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_LABEL_NOT_FOUND_TEXT = "Unrecognized servable version label"


class ServingError(Exception):
    """Root of every error the client raises for a failed request.

    Attributes:
        code: normalised canonical status name, identical over REST and gRPC
            (e.g. "NOT_FOUND", "INVALID_ARGUMENT", "UNAVAILABLE", "DEADLINE_EXCEEDED").
        message: the server's message (or the client's, for local failures).
        grpc_code: the gRPC status name as received, if the error came over gRPC.
        http_status: the HTTP status as received, if the error came over REST.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "UNKNOWN",
        grpc_code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.grpc_code = grpc_code
        self.http_status = http_status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ServerUnavailableError(ServingError, ConnectionError):
    """The server could not be reached or said it is unavailable (UNAVAILABLE)."""


class RequestTimeoutError(ServingError, TimeoutError):
    """The call's deadline passed, on the client or on the server (DEADLINE_EXCEEDED)."""


class ModelNotFoundError(ServingError):
    """The model, the version or the version label is not served (NOT_FOUND)."""


class VersionLabelNotFoundError(ModelNotFoundError):
    """The version label is unknown. TF Serving reports this as INVALID_ARGUMENT."""


class InvalidInputError(ServingError):
    """The server rejected the request's content: inputs, signature, examples (INVALID_ARGUMENT)."""


class InternalServerError(ServingError):
    """The server failed while handling a valid request (INTERNAL, UNKNOWN, DATA_LOSS)."""


class BadResponseError(ServingError):
    """The server answered with something that is not a valid TF Serving response."""


def normalise_code(code: str) -> str:
    """Map a canonical code name to the name both REST and gRPC can carry."""
    return HTTP_TO_CODE.get(CODE_TO_HTTP.get(code, 500), "INTERNAL")


def error_for(
    code: str,
    message: str,
    *,
    grpc_code: str | None = None,
    http_status: int | None = None,
) -> ServingError:
    """Build the right ServingError subclass for a normalised code and server message."""
    if code == "INVALID_ARGUMENT" and _LABEL_NOT_FOUND_TEXT in message:
        cls: type[ServingError] = VersionLabelNotFoundError
    else:
        cls = _CLASS_FOR_CODE.get(code, ServingError)
    return cls(message, code=code, grpc_code=grpc_code, http_status=http_status)


_CLASS_FOR_CODE: dict[str, type[ServingError]] = {
    "UNAVAILABLE": ServerUnavailableError,
    "DEADLINE_EXCEEDED": RequestTimeoutError,
    "NOT_FOUND": ModelNotFoundError,
    "INVALID_ARGUMENT": InvalidInputError,
    "UNIMPLEMENTED": InvalidInputError,
    "INTERNAL": InternalServerError,
}
