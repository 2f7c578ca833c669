"""The serving package's errors: one root, and a status error that carries TF Serving's codes.

Every failure a front end reports to a client is a `StatusError`: the canonical (absl/gRPC)
code plus the exact message TF Serving would send. The REST and gRPC front ends only map the
code to their wire (HTTP status, grpc.StatusCode); they never invent texts of their own.
"""

from __future__ import annotations

import enum


class ServerError(Exception):
    """Root of every error raised by the `serving` package."""


class RolloutError(ServerError):
    """A rollout step (publish, label move, wait for a version) failed."""


class Code(enum.IntEnum):
    """Canonical status codes, numbered and named as `tensorflow.error.Code` (and gRPC)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @property
    def http_status(self) -> int:
        """The HTTP status TF Serving's REST server answers with (`http_server.cc` ToHTTPStatusCode)."""
        return _HTTP_STATUS.get(self, 500)


_HTTP_STATUS: dict[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


class StatusError(ServerError):
    """A request failed with a canonical status code and TF Serving's message text.

    `str(err)` renders like absl's `Status::ToString()`: `"INVALID_ARGUMENT: <message>"`;
    `err.message` is the bare text that goes on the wire.

    Example:
        >>> raise StatusError(Code.NOT_FOUND, "Servable not found for request: Latest(m)")
    """

    def __init__(self, code: Code | int, message: str) -> None:
        try:
            code = Code(code)
        except ValueError as exc:
            raise ValueError(f"StatusError code must be a canonical code 0..16. Received: code={code!r}") from exc
        if code is Code.OK:
            raise ValueError("StatusError cannot carry Code.OK; it describes a failure. Received: code=OK")
        super().__init__(f"{code.name}: {message}")
        self.code: Code = code
        self.message: str = message

    def __reduce__(self):  # keep the two-argument constructor picklable across processes
        return (type(self), (self.code, self.message))


def status_from_tf_error(exc: BaseException) -> StatusError:
    """Map a TensorFlow runtime error (`tf.errors.OpError`) to a `StatusError`, keeping its text.

    TF Serving passes TF runtime errors through unchanged (code and message), so do we. Anything
    that is not an OpError becomes INTERNAL with its message.
    """
    code = getattr(exc, "error_code", None)
    message = _runtime_message(getattr(exc, "message", None) or str(exc))
    if isinstance(code, int) and 0 < code <= 16:
        return StatusError(Code(code), message)
    return StatusError(Code.INTERNAL, message)


def _runtime_message(message: str) -> str:
    # Eager function calls wrap the runtime's text in "Graph execution error: Detected at node
    # ... <stack>" and append " [Op:...]"; a TF Serving session reports the runtime text alone.
    if message.startswith("Graph execution error:"):
        marker = "<stack traces unavailable>\n"
        if marker in message:
            message = message.split(marker, 1)[1]
    op_suffix = message.rfind(" [Op:")
    if op_suffix != -1 and message.endswith("]"):
        message = message[:op_suffix]
    return message
