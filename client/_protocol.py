"""The transport protocol: operations as I/O-free generators, run by a sync or an async driver.

Every client method is an *operation*: a generator that yields wire requests (a transport's
own request objects) or `Sleep`s, receives the transport's replies, and returns the result.
Conversion, retries, signature caching and `wait_until_available` live here and in the codecs,
written once; `ServingClient` and `AsyncServingClient` differ only in the driver loop that
performs the I/O (transport.send / sleep, or their awaited versions).

A transport is a codec (builds operations) plus a sync or async sender:

    class Transport(Protocol):
        codec: Codec
        def send(self, request, timeout: float | None) -> reply        # raises ServingError
        def close(self) -> None

    class AsyncTransport(Protocol):
        codec: Codec
        async def send(self, request, timeout: float | None) -> reply
        async def aclose(self) -> None

Each transport maps its low-level exceptions to ServingError inside `send`, in one place.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from tfstack.client._arguments import Feature, ModelSelector
from tfstack.client._errors import (
    InvalidInputError,
    ModelNotFoundError,
    RequestTimeoutError,
    ServerUnavailableError,
    ServingError,
)
from tfstack.client._options import RetryPolicy
from tfstack.client._results import ClassifyResult, ModelMetadata, ModelStatus, RegressResult, SignatureInfo

T = TypeVar("T")


@dataclass(frozen=True)
class Sleep:
    """Ask the driver to wait (time.sleep or asyncio.sleep), capped by the call's deadline."""

    seconds: float


Operation = Generator[Any, Any, T]


class Codec(Protocol):
    """Builds the operations of one wire protocol (REST JSON or gRPC protobuf)."""

    def predict(
        self, sel: ModelSelector, inputs: dict[str, np.ndarray] | np.ndarray, output_filter: tuple[str, ...]
    ) -> Operation[dict[str, np.ndarray]]: ...

    def classify(
        self, sel: ModelSelector, examples: list[dict[str, Feature]], context: dict[str, Feature] | None
    ) -> Operation[ClassifyResult]: ...

    def regress(
        self, sel: ModelSelector, examples: list[dict[str, Feature]], context: dict[str, Feature] | None
    ) -> Operation[RegressResult]: ...

    def get_model_metadata(self, sel: ModelSelector) -> Operation[ModelMetadata]: ...

    def get_model_status(self, sel: ModelSelector) -> Operation[ModelStatus]: ...


class SignatureCache:
    """Signatures by (model, version, label, signature), fetched with get_model_metadata.

    Used where the wire format leaves something out: the name of a single input (gRPC needs
    it), and output names and dtypes (REST JSON drops them). A pinned version never changes;
    "latest" and labels can move to a new version, so those entries expire after `ttl` seconds.
    """

    def __init__(self, ttl: float = 30.0) -> None:
        self._entries: dict[tuple, tuple[SignatureInfo, float]] = {}
        self._ttl = ttl

    def lookup(self, codec: Codec, sel: ModelSelector, *, refresh: bool = False) -> Operation[SignatureInfo]:
        key = (sel.model_name, sel.version, sel.version_label, sel.signature_name)
        cached = self._entries.get(key)
        if cached is not None and not refresh and time.monotonic() < cached[1]:
            return cached[0]
        metadata = yield from codec.get_model_metadata(sel)
        signature = metadata.signatures.get(sel.signature_name)
        if signature is None:
            raise InvalidInputError(
                f'Serving signature name: "{sel.signature_name}" not found in signature def. '
                f"Available: {sorted(metadata.signatures)}",
                code="INVALID_ARGUMENT",
            )
        expires = float("inf") if sel.version is not None else time.monotonic() + self._ttl
        self._entries[key] = (signature, expires)
        return signature


def signature_for_inputs(cache: SignatureCache, codec: Codec, sel: ModelSelector) -> Operation[SignatureInfo | None]:
    """The signature to check predict inputs against, or None when the server will not say.

    A metadata failure other than an unreachable server or a spent deadline (an unknown model
    or signature, a server without the metadata API) is left to the Predict call itself, so
    its error is the server's own.
    """
    try:
        return (yield from cache.lookup(codec, sel))
    except (ServerUnavailableError, RequestTimeoutError):
        raise
    except ServingError:
        return None


def single_input_name(signature: SignatureInfo, sel: ModelSelector) -> str:
    """The one input name of a signature, for inputs passed as a bare array."""
    if len(signature.inputs) != 1:
        raise InvalidInputError(
            f"inputs was a single array, but signature {sel.signature_name!r} of model "
            f"{sel.model_name!r} has {len(signature.inputs)} inputs {sorted(signature.inputs)}; "
            "pass a dict {name: array}.",
            code="INVALID_ARGUMENT",
        )
    return next(iter(signature.inputs))


def check_output_filter(signature: SignatureInfo, output_filter: tuple[str, ...]) -> None:
    """Reject unknown output names the way TF Serving's gRPC side does."""
    for name in output_filter:
        if name not in signature.outputs:
            raise InvalidInputError(
                f"output tensor alias not found in signature: {name} Outputs expected to be in the "
                f"set {{{','.join(sorted(signature.outputs))}}}.",
                code="INVALID_ARGUMENT",
            )


def with_retries(op: Operation[T], policy: RetryPolicy, deadline: float | None) -> Operation[T]:
    """Wrap an operation so each request is resent on UNAVAILABLE, with backoff and jitter."""
    try:
        step = next(op)
        while True:
            if isinstance(step, Sleep):
                step = op.send((yield step))
                continue
            attempt = 1
            while True:
                try:
                    reply = yield step
                except ServerUnavailableError as exc:
                    delay = policy.backoff(attempt)
                    out_of_time = deadline is not None and time.monotonic() + delay >= deadline
                    if attempt >= policy.max_attempts or out_of_time:
                        if attempt > 1:
                            exc.message = f"{exc.message} (gave up after {attempt} attempts)"
                            exc.args = (exc.message,)
                        step = op.throw(exc)
                        break
                    attempt += 1
                    yield Sleep(delay)
                    continue
                except ServingError as exc:
                    step = op.throw(exc)
                    break
                step = op.send(reply)
                break
    except StopIteration as stop:
        return stop.value


def wait_until_available(codec: Codec, sel: ModelSelector, deadline: float | None) -> Operation[int]:
    """Poll until the selected version is AVAILABLE; return its number.

    Latest: any version AVAILABLE (the highest is returned). version=N: that version.
    version_label: the label resolves (TF Serving's status API ignores labels, so this asks
    for the label's metadata instead).
    """
    delay = 0.05
    last: str = "no answer yet"
    last_error: ServingError | None = None
    while True:
        try:
            if sel.version_label is not None:
                metadata = yield from codec.get_model_metadata(sel)
                return metadata.version
            status = yield from codec.get_model_status(sel)
            wanted = [v for v in status.versions if sel.version is None or v.version == sel.version]
            ready = [v.version for v in wanted if v.available]
            if ready:
                return max(ready)
            last = ", ".join(f"version {v.version} is {v.state}" for v in wanted) or "no versions"
            failed = [v for v in wanted if v.state == "END" and v.error_code != "OK"]
            if sel.version is not None and failed:
                raise ModelNotFoundError(
                    f"Version {sel.version} of model {sel.model_name!r} failed to load: "
                    f"{failed[0].error_code}: {failed[0].error_message}",
                    code="NOT_FOUND",
                )
            last_error = None
        except (ServerUnavailableError, ModelNotFoundError, RequestTimeoutError) as exc:
            if isinstance(exc, ModelNotFoundError) and "failed to load" in exc.message:
                raise
            out_of_time = deadline is not None and time.monotonic() >= deadline
            if not (isinstance(exc, RequestTimeoutError) and out_of_time):
                last, last_error = str(exc), exc
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            what = _describe(sel)
            raise RequestTimeoutError(
                f"{what} did not become available before the timeout; last seen: {last}",
                code="DEADLINE_EXCEEDED",
            ) from last_error
        wait = delay if deadline is None else min(delay, max(deadline - now, 0.0))
        yield Sleep(wait)
        delay = min(delay * 1.5, 1.0)


def _describe(sel: ModelSelector) -> str:
    if sel.version is not None:
        return f"Version {sel.version} of model {sel.model_name!r}"
    if sel.version_label is not None:
        return f"Label {sel.version_label!r} of model {sel.model_name!r}"
    return f"Model {sel.model_name!r}"
