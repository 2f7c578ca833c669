"""ServingClient (blocking, thread-safe) and AsyncServingClient (asyncio): one API, two protocols.

Both classes build the same I/O-free operations (client/_protocol.py) through `_ClientBase`;
the only code that differs is the small driver loop that performs each request with
`transport.send` or `await transport.send`.

Constructors: `ServingClient.rest("http://host:8501")` (https:// too) and
`ServingClient.grpc("host:8500", tls=...)`. The protocol is always named explicitly rather than
guessed from the address: "host:8500" is a valid REST authority as well.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfstack.client import _arguments as args
from tfstack.client._errors import RequestTimeoutError, ServingError
from tfstack.client._options import DEFAULT_MAX_MESSAGE_SIZE, NO_RETRY, RetryPolicy, TlsConfig
from tfstack.client._protocol import Codec, Operation, Sleep, wait_until_available, with_retries
from tfstack.client._results import ClassifyResult, ModelMetadata, ModelStatus, RegressResult

__all__ = ["ServingClient", "AsyncServingClient"]


class _Unset:
    def __repr__(self) -> str:
        return "<client default>"


UNSET: Any = _Unset()

DEFAULT_TIMEOUT = 30.0
DEFAULT_WAIT_TIMEOUT = 60.0


def _status_op(codec: Codec, sel: args.ModelSelector) -> Operation[ModelStatus]:
    """Status of a model; a label is resolved to its version first (the server ignores labels)."""
    if sel.version_label is not None:
        metadata = yield from codec.get_model_metadata(sel)
        sel = args.ModelSelector(model_name=sel.model_name, version=metadata.version)
    return (yield from codec.get_model_status(sel))


class _ClientBase:
    def __init__(
        self, transport: Any, *, timeout: float | None = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None
    ) -> None:
        """Wrap a transport (see client/_protocol.py); most code uses the `rest`/`grpc` constructors."""
        self._transport = transport
        self._codec: Codec = transport.codec
        self._timeout = args.timeout_seconds(timeout)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None. Received: retry={retry!r}")
        self._retry = retry if retry is not None else RetryPolicy()

    def __repr__(self) -> str:
        where = getattr(self._transport, "url", None) or getattr(self._transport, "target", "?")
        return f"{type(self).__name__}({where!r})"

    def _prepare(self, op: Operation, timeout: Any, *, inference: bool) -> tuple[Operation, float | None]:
        seconds = self._timeout if timeout is UNSET else args.timeout_seconds(timeout)
        deadline = None if seconds is None else time.monotonic() + seconds
        policy = self._retry if (not inference or self._retry.retry_inference) else NO_RETRY
        return with_retries(op, policy, deadline), deadline

    # Each builder validates every argument now (before any I/O) and returns the operation.

    def _predict(self, model_name, inputs, version, version_label, signature_name, output_filter) -> Operation:
        sel = args.selector(model_name, version, version_label, signature_name)
        return self._codec.predict(sel, args.inputs(inputs), args.output_filter(output_filter))

    def _classify(self, model_name, examples, context, version, version_label, signature_name) -> Operation:
        sel = args.selector(model_name, version, version_label, signature_name)
        return self._codec.classify(sel, *args.examples(examples, context=context))

    def _regress(self, model_name, examples, context, version, version_label, signature_name) -> Operation:
        sel = args.selector(model_name, version, version_label, signature_name)
        return self._codec.regress(sel, *args.examples(examples, context=context))

    def _metadata(self, model_name, version, version_label) -> Operation:
        return self._codec.get_model_metadata(args.selector(model_name, version, version_label))

    def _status(self, model_name, version, version_label) -> Operation:
        return _status_op(self._codec, args.selector(model_name, version, version_label))

    def _wait(self, model_name, version, version_label, timeout) -> tuple[Operation, float | None]:
        sel = args.selector(model_name, version, version_label)
        seconds = args.timeout_seconds(timeout)
        deadline = None if seconds is None else time.monotonic() + seconds
        return wait_until_available(self._codec, sel, deadline), deadline


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise RequestTimeoutError("The call's timeout expired before the request was sent.", code="DEADLINE_EXCEEDED")
    return left


class ServingClient(_ClientBase):
    """Blocking client for a TF-Serving-compatible server, over REST or gRPC. Thread-safe.

    Build it with `ServingClient.rest(url)` or `ServingClient.grpc(target)`; both have the
    same methods, arguments, results and errors (ServingError and subclasses).

    Example:
        >>> with ServingClient.grpc("localhost:8500") as client:
        ...     client.wait_until_available("half_plus_two", timeout=30)
        ...     outputs = client.predict("half_plus_two", {"x": [1.0, 2.0]})
        ...     outputs["y"]
        array([2.5, 3. ], dtype=float32)
    """

    @classmethod
    def rest(
        cls,
        url: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        json_format: str = "columnar",
        gzip: bool = False,
        tls: TlsConfig | None = None,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
    ) -> ServingClient:
        """A client for the REST API at `url` ("http://host:8501" or "https://...").

        Args:
            timeout: default per-call deadline in seconds (None: none); retries included.
            retry: RetryPolicy for UNAVAILABLE / refused connections (default RetryPolicy()).
            json_format: "columnar" ({"inputs": ...}, keeps shapes exact) or "row" ({"instances": ...}).
            gzip: gzip request bodies (Content-Encoding: gzip).
            tls: TlsConfig for https (custom CA, client certificate for mutual TLS).
            headers: extra HTTP headers on every request (e.g. authorization).
            max_connections: size of the keep-alive connection pool.
        """
        from tfstack.client._rest import RestTransport

        transport = RestTransport(
            url, json_format=json_format, gzip=gzip, tls=tls, headers=headers, max_connections=max_connections
        )
        return cls(transport, timeout=timeout, retry=retry)

    @classmethod
    def grpc(
        cls,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        tls: TlsConfig | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        options: Sequence[tuple[str, Any]] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> ServingClient:
        """A client for the gRPC API at `target` ("host:8500").

        Args:
            timeout, retry: as in `rest`.
            tls: TlsConfig for a secure channel (mutual TLS with certificate_chain + private_key);
                None for plaintext.
            max_message_size: send/receive limit in bytes (default 2 GiB - 1, like the server).
            options: extra grpc channel options.
            metadata: gRPC metadata sent with every call.
        """
        from tfstack.client._grpc import GrpcTransport

        transport = GrpcTransport(
            target, tls=tls, max_message_size=max_message_size, options=options, metadata=metadata
        )
        return cls(transport, timeout=timeout, retry=retry)

    def _run(self, op: Operation, deadline: float | None) -> Any:
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = op.throw(error) if error is not None else op.send(reply)
            except StopIteration as stop:
                return stop.value
            reply = error = None
            if isinstance(step, Sleep):
                left = None if deadline is None else deadline - time.monotonic()
                time.sleep(step.seconds if left is None else max(0.0, min(step.seconds, left)))
                continue
            try:
                reply = self._transport.send(step, _remaining(deadline))
            except ServingError as exc:
                error = exc

    def predict(
        self,
        model_name: str,
        inputs: Mapping[str, Any] | np.ndarray | Sequence[Any] | float | int | str | bytes,
        *,
        version: int | None = None,
        version_label: str | None = None,
        signature_name: str = args.DEFAULT_SIGNATURE,
        output_filter: Sequence[str] = (),
        timeout: float | None = UNSET,
    ) -> dict[str, np.ndarray]:
        """Run a Predict signature and return every output as {name: ndarray}.

        Args:
            model_name: the served model.
            inputs: {input name: array/list/scalar}, or one array for a single-input signature.
                Lists of Python floats are sent as float32; ndarrays keep their dtype.
            version / version_label: pick a version (default: the latest available).
            signature_name: the SignatureDef to run.
            output_filter: only these outputs (REST filters on the client side).
            timeout: seconds for the whole call, retries included (default: the client's).

        Returns:
            {output name: ndarray}, always a dict, also for a single output. String outputs are
            object arrays of bytes.

        Raises:
            TypeError, ValueError: bad arguments (before any I/O).
            ServingError: ModelNotFoundError, InvalidInputError, ServerUnavailableError, ...

        Example:
            >>> client.predict("half_plus_two", {"x": np.array([1.0, 2.0], np.float32)})["y"]
            array([2.5, 3. ], dtype=float32)
        """
        op = self._predict(model_name, inputs, version, version_label, signature_name, output_filter)
        return self._run(*self._prepare(op, timeout, inference=True))

    def classify(
        self,
        model_name: str,
        examples: Sequence[Mapping[str, Any]],
        *,
        context: Mapping[str, Any] | None = None,
        version: int | None = None,
        version_label: str | None = None,
        signature_name: str = args.DEFAULT_SIGNATURE,
        timeout: float | None = UNSET,
    ) -> ClassifyResult:
        """Run a Classify signature on examples given as {feature name: value or list}.

        Python floats become float features, ints int64 features, str/bytes bytes features
        (send 2.0, not 2, to a float feature). `context` features are shared by every example.
        """
        op = self._classify(model_name, examples, context, version, version_label, signature_name)
        return self._run(*self._prepare(op, timeout, inference=True))

    def regress(
        self,
        model_name: str,
        examples: Sequence[Mapping[str, Any]],
        *,
        context: Mapping[str, Any] | None = None,
        version: int | None = None,
        version_label: str | None = None,
        signature_name: str = args.DEFAULT_SIGNATURE,
        timeout: float | None = UNSET,
    ) -> RegressResult:
        """Run a Regress signature on examples (same encoding as `classify`)."""
        op = self._regress(model_name, examples, context, version, version_label, signature_name)
        return self._run(*self._prepare(op, timeout, inference=True))

    def get_model_metadata(
        self,
        model_name: str,
        *,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float | None = UNSET,
    ) -> ModelMetadata:
        """Signatures (input/output names, dtypes, shapes) of the selected version."""
        op = self._metadata(model_name, version, version_label)
        return self._run(*self._prepare(op, timeout, inference=False))

    def get_model_status(
        self,
        model_name: str,
        *,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float | None = UNSET,
    ) -> ModelStatus:
        """State and error of every version (or of the selected one; a label is resolved first)."""
        op = self._status(model_name, version, version_label)
        return self._run(*self._prepare(op, timeout, inference=False))

    def wait_until_available(
        self,
        model_name: str,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
    ) -> int:
        """Block until the selected version serves; return its version number.

        Polls with backoff through connection failures and NOT_FOUND (the server may still be
        starting or loading). Raises RequestTimeoutError, saying what it saw last, if the
        version is not AVAILABLE within `timeout` seconds.
        """
        return self._run(*self._wait(model_name, version, version_label, timeout))

    def close(self) -> None:
        """Close connections. The client cannot be used afterwards."""
        self._transport.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncServingClient(_ClientBase):
    """The asyncio twin of ServingClient: same constructors, methods, results and errors.

    Example:
        >>> async with AsyncServingClient.rest("http://localhost:8501") as client:
        ...     outputs = await client.predict("half_plus_two", {"x": [1.0]})
    """

    @classmethod
    def rest(
        cls,
        url: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        json_format: str = "columnar",
        gzip: bool = False,
        tls: TlsConfig | None = None,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
    ) -> AsyncServingClient:
        """A client for the REST API at `url`; arguments as in ServingClient.rest."""
        from tfstack.client._rest import AsyncRestTransport

        transport = AsyncRestTransport(
            url, json_format=json_format, gzip=gzip, tls=tls, headers=headers, max_connections=max_connections
        )
        return cls(transport, timeout=timeout, retry=retry)

    @classmethod
    def grpc(
        cls,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        tls: TlsConfig | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        options: Sequence[tuple[str, Any]] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> AsyncServingClient:
        """A client for the gRPC API at `target`; arguments as in ServingClient.grpc."""
        from tfstack.client._grpc import AsyncGrpcTransport

        transport = AsyncGrpcTransport(
            target, tls=tls, max_message_size=max_message_size, options=options, metadata=metadata
        )
        return cls(transport, timeout=timeout, retry=retry)

    async def _run(self, op: Operation, deadline: float | None) -> Any:
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = op.throw(error) if error is not None else op.send(reply)
            except StopIteration as stop:
                return stop.value
            reply = error = None
            if isinstance(step, Sleep):
                left = None if deadline is None else deadline - time.monotonic()
                import asyncio  # imported here: `from tfstack import client` stays light for sync users

                await asyncio.sleep(step.seconds if left is None else max(0.0, min(step.seconds, left)))
                continue
            try:
                reply = await self._transport.send(step, _remaining(deadline))
            except ServingError as exc:
                error = exc

    async def predict(
        self,
        model_name: str,
        inputs: Mapping[str, Any] | np.ndarray | Sequence[Any] | float | int | str | bytes,
        *,
        version: int | None = None,
        version_label: str | None = None,
        signature_name: str = args.DEFAULT_SIGNATURE,
        output_filter: Sequence[str] = (),
        timeout: float | None = UNSET,
    ) -> dict[str, np.ndarray]:
        """See ServingClient.predict."""
        op = self._predict(model_name, inputs, version, version_label, signature_name, output_filter)
        return await self._run(*self._prepare(op, timeout, inference=True))

    async def classify(
        self,
        model_name: str,
        examples: Sequence[Mapping[str, Any]],
        *,
        context: Mapping[str, Any] | None = None,
        version: int | None = None,
        version_label: str | None = None,
        signature_name: str = args.DEFAULT_SIGNATURE,
        timeout: float | None = UNSET,
    ) -> ClassifyResult:
        """See ServingClient.classify."""
        op = self._classify(model_name, examples, context, version, version_label, signature_name)
        return await self._run(*self._prepare(op, timeout, inference=True))

    async def regress(
        self,
        model_name: str,
        examples: Sequence[Mapping[str, Any]],
        *,
        context: Mapping[str, Any] | None = None,
        version: int | None = None,
        version_label: str | None = None,
        signature_name: str = args.DEFAULT_SIGNATURE,
        timeout: float | None = UNSET,
    ) -> RegressResult:
        """See ServingClient.regress."""
        op = self._regress(model_name, examples, context, version, version_label, signature_name)
        return await self._run(*self._prepare(op, timeout, inference=True))

    async def get_model_metadata(
        self,
        model_name: str,
        *,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float | None = UNSET,
    ) -> ModelMetadata:
        """See ServingClient.get_model_metadata."""
        op = self._metadata(model_name, version, version_label)
        return await self._run(*self._prepare(op, timeout, inference=False))

    async def get_model_status(
        self,
        model_name: str,
        *,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float | None = UNSET,
    ) -> ModelStatus:
        """See ServingClient.get_model_status."""
        op = self._status(model_name, version, version_label)
        return await self._run(*self._prepare(op, timeout, inference=False))

    async def wait_until_available(
        self,
        model_name: str,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
    ) -> int:
        """See ServingClient.wait_until_available."""
        return await self._run(*self._wait(model_name, version, version_label, timeout))

    async def aclose(self) -> None:
        """Close connections."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncServingClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
