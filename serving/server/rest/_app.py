"""TF Serving's REST API (spec §1) as an aiohttp application over a `ServerCore`.

One catch-all route: TF Serving matches its regexes against the raw, still percent-encoded
path *including the query string*, and its quirks (case-insensitive URLs but case-sensitive
verbs, `?x=1` breaking routing, version overflow answered with an empty 400) only reproduce
if we dispatch on exactly that string ourselves instead of using aiohttp's router.

Besides `/v1/...` there is one route TF Serving lacks: `GET /tfstack/ping` answers `{}` without
touching any model; the benchmark uses it to measure the transport floor.

The runner should be created with `auto_decompress=False` (see `RUNNER_KWARGS`) so gzip
bodies are decoded here with TF Serving's rules; if aiohttp already decoded them, we notice
(no gzip magic) and use the body as is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_server import Server

from tfstack.serving.server.rest import _json_tensor as jt
from tfstack.serving._errors import Code, StatusError

__all__ = [
    "build_rest_app", "RUNNER_KWARGS", "PING_PATH", "DEFAULT_METRICS_PATH", "RequestObserver", "RestLimits", "RestRunner",
]

_log = logging.getLogger(__name__)

PING_PATH = "/tfstack/ping"
# Pass to aiohttp.web.AppRunner: request bodies must reach us undecoded (TF Serving decodes
# gzip itself and turns a broken gzip body into an empty one).
RUNNER_KWARGS: Mapping[str, Any] = {"auto_decompress": False}

_V1_PATH = re.compile(r"(?i)/v1/.*")
_PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)
_ORIGIN = re.compile(r"https?://")
# libevent only lets these methods through (evhttp_set_allowed_methods in evhttp_server.cc).
_ALLOWED_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})
_JSON_HEADERS = {"Content-Type": "application/json"}
_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}
DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"
# on_request(model_name, api, code, latency_seconds)
RequestObserver = Callable[[str, str, Code, float], None]
_MAX_GUNZIP_BYTES = 100 * 1024 * 1024
# Bodies/outputs above this are converted on a worker thread so the loop keeps serving.
_OFFLOAD_BYTES = 256 * 1024
_INT64_MAX = 2**63 - 1
_MAX_VERSION_DIGITS = 19  # int64; longer digit strings are never parsed (Python caps int() at 4300 digits)
# After a request body this large, glibc is asked to give the freed heap back (see _trim_soon).
_TRIM_AFTER_BYTES = 4 * 1024 * 1024
_STATES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}


class _EmptyBadRequest(Exception):
    """A URL failure TF Serving reports as HTTP 400 with an empty body (spec §1.2 quirk)."""


def _libevent_error(status: int, reason: str) -> web.Response:
    body = f"<HTML><HEAD>\n<TITLE>{status} {reason}</TITLE>\n</HEAD><BODY>\n<H1>{reason}</H1>\n</BODY></HTML>\n"
    return web.Response(
        status=status,
        body=body.encode("latin-1"),
        headers={"Content-Type": "text/html; charset=ISO-8859-1", "Connection": "close"},
    )


def _json_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, headers=_JSON_HEADERS)


def _unescape(text: str) -> str:
    # curl_easy_unescape: %XX decoded, '+' kept, malformed escapes left as they are.
    return urllib.parse.unquote_to_bytes(text).decode("utf-8", "surrogateescape")


def _gunzip(body: bytes) -> bytes:
    """TF Serving's gzip handling: at most 100 MiB out, and any failure gives an empty body."""
    try:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = inflater.decompress(body, _MAX_GUNZIP_BYTES + 1)
        if len(out) > _MAX_GUNZIP_BYTES or not inflater.eof:
            return b""
        return out
    except zlib.error:
        return b""


class _ModelPath:
    """ParseModelInfo: what the URL names, or None when it matches no API regex."""

    __slots__ = ("name", "version", "label", "verb")

    def __init__(self, name: str, version: int | None, label: str | None, verb: str) -> None:
        self.name = name
        self.version = version
        self.label = label
        self.verb = verb


def _parse_model_path(method: str, path: str) -> _ModelPath | None:
    if method == "POST":
        match = _PREDICTION_PATH.fullmatch(path)
    elif method == "GET":
        match = _STATUS_PATH.fullmatch(path)
    else:
        return None
    if match is None:
        return None
    name, version_text, label, verb = (group or "" for group in match.groups())
    if name:
        name = _unescape(name)
    version = None
    if version_text:
        version = int(version_text) if len(version_text) <= _MAX_VERSION_DIGITS + 1 else _INT64_MAX + 1
        if version > _INT64_MAX:
            raise _EmptyBadRequest(f"Failed to convert version: {version_text} to numeric.")
    decoded_label = _unescape(label) if label else None
    return _ModelPath(name, version, decoded_label, verb)


def _status_entry(status: Any) -> dict[str, Any]:
    """One ModelVersionStatus as protobuf's JSON printer writes it (int64 version as a string)."""
    state = getattr(status, "state", 0)
    if not isinstance(state, str):
        state = getattr(state, "name", None) or _STATES.get(int(state), str(state))
    code = getattr(status, "error_code", None)
    message = getattr(status, "error_message", None)
    inner = getattr(status, "status", None)
    if inner is not None and code is None:
        code = getattr(inner, "error_code", getattr(inner, "code", 0))
        message = getattr(inner, "error_message", getattr(inner, "message", ""))
    if code is None:
        code = 0
    if not isinstance(code, str):
        code = getattr(code, "name", None) or Code(int(code)).name
    return {
        "version": str(int(status.version)),
        "state": state,
        "status": {"error_code": code, "error_message": message or ""},
    }


def _proto_json(obj: Any) -> str:
    """protobuf's C++ JSON printer layout: one-space indent, UTF-8, trailing newline."""
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def _signature_def_json(signature_defs: Mapping[str, Any]) -> dict[str, Any]:
    from google.protobuf import json_format

    result = {}
    for key in sorted(signature_defs):
        entry = json_format.MessageToDict(
            signature_defs[key],
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        # Map fields print in key order; message fields keep descriptor order.
        for field in ("inputs", "outputs", "defaults"):
            if isinstance(entry.get(field), dict):
                entry[field] = {k: entry[field][k] for k in sorted(entry[field])}
        ordered = {k: entry[k] for k in ("inputs", "outputs", "method_name", "defaults") if k in entry}
        ordered.update({k: v for k, v in entry.items() if k not in ordered})
        result[key] = ordered
    return {"signature_def": result}


class _RestApi:
    def __init__(
        self,
        core: Any,
        timeout: float | None,
        *,
        cors: bool,
        metrics_path: str,
        metrics_page: Callable[[], str] | None,
        on_request: RequestObserver | None,
        max_body_bytes: int,
    ) -> None:
        self._core = core
        self._timeout = timeout
        self._max_body_bytes = max_body_bytes
        self._trim_pending = False
        self._cors = cors
        self._metrics_path = metrics_path
        self._metrics_page = metrics_page
        self._on_request = on_request

    async def handle(self, request: web.Request) -> web.StreamResponse:
        method = request.method
        path = request.raw_path
        if method not in _ALLOWED_METHODS:
            # libevent knows TRACE and CONNECT but refuses them; any other name is unparsable.
            if method in ("TRACE", "CONNECT"):
                return _libevent_error(501, "Not Implemented")
            return _libevent_error(400, "Bad Request")
        if not _V1_PATH.fullmatch(path):
            if path == PING_PATH and method in ("GET", "HEAD"):
                return _json_response(200, b"{}")
            if self._metrics_page is not None and path.split("?", 1)[0] == self._metrics_path:
                return self._metrics(path)
            return _libevent_error(404, "Not Found")
        start = time.perf_counter()
        announced = request.content_length
        if announced is not None and announced > self._max_body_bytes:
            return self._too_large(f"{announced} bytes announced (Content-Length)")
        try:
            body = await request.read()
        except RequestPayloadError:
            # aiohttp itself failed to decode Content-Encoding (a runner without
            # RUNNER_KWARGS); TF Serving answers an undecodable gzip body as an empty one.
            body = b""
        except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the cap while streaming
            return self._too_large(f"more than {self._max_body_bytes} bytes sent")
        if "gzip" in request.headers.get("Content-Encoding", "") and body[:2] == b"\x1f\x8b":
            body = _gunzip(body)
        model: _ModelPath | None = None
        if method == "OPTIONS":
            origin_ok = _ORIGIN.search(request.headers.get("Origin", "")) is not None
            code = Code.OK if origin_ok else Code.FAILED_PRECONDITION
            response = web.Response(status=code.http_status)
        else:
            code = Code.OK
            try:
                model = _parse_model_path(method, path)
                response = _json_response(200, await self._dispatch(method, path, body, model))
            except _EmptyBadRequest:
                code, response = Code.INVALID_ARGUMENT, _json_response(400, b"")
            except StatusError as exc:
                code = exc.code
                response = _json_response(exc.code.http_status, jt.error_json(exc.message))
            except asyncio.TimeoutError:
                code, response = Code.DEADLINE_EXCEEDED, _json_response(504, jt.error_json("Deadline Exceeded"))
            except Exception:  # a bug of ours: traceback in the log, no Python internals on the wire
                _log.exception("REST request %s %s failed", method, path[:200])
                code = Code.INTERNAL
                response = _json_response(500, jt.error_json("Internal error while handling the request; the server log has the details."))
        if len(body) >= _TRIM_AFTER_BYTES:
            self._trim_soon()
        if self._cors:
            response.headers.update(_CORS_HEADERS)
        if self._on_request is not None:
            name = model.name if model is not None else ""
            api = model.verb if model is not None and method == "POST" else ""
            try:
                self._on_request(name, api, code, time.perf_counter() - start)
            except Exception:  # metrics must never fail a request
                _log.exception("REST request observer failed")
        return response

    def _too_large(self, received: str) -> web.Response:
        """413 before the body is read; the connection closes after it (aiohttp discards what follows)."""
        message = (
            f"Request body too large: {received}; this server accepts at most {self._max_body_bytes} bytes "
            "(tfstack flag --rest_api_max_body_bytes)."
        )
        response = _json_response(413, jt.error_json(message))
        response.force_close()
        if self._cors:
            response.headers.update(_CORS_HEADERS)
        return response

    def _trim_soon(self) -> None:
        """Give a large request's freed memory back to the OS shortly after its answer is sent.

        Called when the answer is ready; the trim runs a moment later on a worker thread, once
        the request's buffers are gone (at most one pending at a time).
        """
        if self._trim_pending:
            return
        self._trim_pending = True
        loop = asyncio.get_running_loop()

        def trim() -> None:
            from tfstack.serving.server._servable import _return_free_memory

            try:
                _return_free_memory()
            finally:
                self._trim_pending = False

        loop.call_later(0.2, lambda: loop.run_in_executor(None, trim))

    def _metrics(self, path: str) -> web.Response:
        # TF Serving registers the bare path but compares it with path+query (spec §7 quirk).
        if path != self._metrics_path:
            text = f"Unexpected path: {path}. Should be {self._metrics_path}"
            return web.Response(status=400, body=text.encode(), headers={"Content-Type": "text/plain"})
        assert self._metrics_page is not None
        return web.Response(status=200, body=self._metrics_page().encode(), headers={"Content-Type": "text/plain"})

    async def _dispatch(self, method: str, path: str, body: bytes, model: _ModelPath | None) -> bytes:
        if model is not None:
            if method == "POST":
                if model.verb == "predict":
                    return await self._predict(model, body)
                if model.verb == "classify":
                    return await self._classify_or_regress(model, body, classify=True)
                if model.verb == "regress":
                    return await self._classify_or_regress(model, body, classify=False)
            elif method == "GET":
                if not model.name:
                    raise StatusError(Code.INVALID_ARGUMENT, "Missing model name in request.")
                if model.verb == "metadata":
                    return self._metadata(model)
                return self._status(model)
        raise StatusError(Code.INVALID_ARGUMENT, f"Malformed request: {method} {path}")

    async def _off_loop(self, size: int, fn: Callable[..., Any], *args: Any) -> Any:
        if size < _OFFLOAD_BYTES:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _predict(self, model: _ModelPath, body: bytes) -> bytes:
        doc = await self._off_loop(len(body), jt.parse_json, body)
        signature_name = jt.signature_name_from_json(doc)
        servable = self._core.resolve(model.name, version=model.version, label=model.label)
        resolved = signature_name or "serving_default"
        signature = servable.signature_defs.get(resolved)
        if signature is None:
            raise StatusError(
                Code.INVALID_ARGUMENT, f'Serving signature name: "{resolved}" not found in signature def'
            )
        input_dtypes = {alias: info.dtype for alias, info in signature.inputs.items()}
        inputs, fmt = await self._off_loop(
            len(body), _convert_inputs, doc, input_dtypes, signature_name, body
        )
        # The core enforces the deadline (DEADLINE_EXCEEDED -> 504) on its inference pool.
        outputs = await self._core.predict(servable, resolved, inputs, timeout=self._timeout)
        out_bytes = sum(getattr(v, "nbytes", 0) for v in outputs.values())
        return await self._off_loop(out_bytes, jt.predict_response_json, outputs, fmt)

    async def _classify_or_regress(self, model: _ModelPath, body: bytes, *, classify: bool) -> bytes:
        def parse() -> tuple[str, list[bytes]]:
            doc = jt.parse_json(body)
            name = jt.signature_name_from_json(doc)
            return name, jt.examples_from_json(doc)

        # Every body error outranks an unknown model here (spec §1.10).
        signature_name, examples = await self._off_loop(len(body), parse)
        servable = self._core.resolve(model.name, version=model.version, label=model.label)
        resolved = signature_name or "serving_default"
        if classify:
            results = await self._core.classify(servable, resolved, examples, timeout=self._timeout)
            return jt.classify_response_json(results)
        values = await self._core.regress(servable, resolved, examples, timeout=self._timeout)
        return jt.regress_response_json(values)

    def _status(self, model: _ModelPath) -> bytes:
        # TF Serving ignores a label here and reports every version (spec §1.4 quirk).
        statuses = self._core.model_status(model.name, model.version)
        return _proto_json({"model_version_status": [_status_entry(s) for s in statuses]}).encode()

    def _metadata(self, model: _ModelPath) -> bytes:
        servable = self._core.resolve(model.name, version=model.version, label=model.label)
        model_spec = {"name": model.name, "signature_name": "", "version": str(int(servable.version))}
        signature_defs = _signature_def_json(servable.signature_defs)
        text = (
            "{\n"
            + '"model_spec":'
            + _proto_json(model_spec)
            + ",\n"
            + '"metadata": {'
            + '"signature_def": '
            + _proto_json(signature_defs)
            + "}\n"
            + "}\n"
        )
        return text.encode("utf-8", "surrogateescape")


def _convert_inputs(doc: dict, input_dtypes: dict[str, int], signature_name: str, body: bytes) -> Any:
    return jt.predict_inputs_from_json(doc, input_dtypes, signature_name=signature_name, body=body)


def build_rest_app(
    core: Any,
    *,
    timeout: float | None,
    cors: bool = False,
    metrics_path: str = DEFAULT_METRICS_PATH,
    metrics_page: Callable[[], str] | None = None,
    on_request: RequestObserver | None = None,
    max_body_bytes: int = 64 * 1024 * 1024,
) -> web.Application:
    """Build the TF-Serving-compatible REST application over `core`.

    Args:
        core: a `ServerCore` (resolve, model_status, predict, classify, regress).
        timeout: per-request inference timeout in seconds (`--rest_api_timeout_in_ms` / 1000);
            None (or <= 0, as in TF Serving) for no timeout. Expiry answers HTTP 504.
        cors: `--rest_api_enable_cors_support`: CORS headers on every /v1 response.
        metrics_path: where `metrics_page` is served (monitoring config `prometheus_config.path`).
        metrics_page: returns the Prometheus text page; None disables the endpoint.
        on_request: called after every /v1 request as
            `on_request(model_name, api, code, latency_seconds)`; `api` is the URL verb
            ("predict"/"classify"/"regress", "" for GET), `model_name` "" for unparsable URLs.
        max_body_bytes: larger request bodies get 413 `{"error": ...}` before they are read
            (an announced Content-Length), or as soon as a chunked body passes the limit
            (tfstack's `--rest_api_max_body_bytes`; TF Serving has no limit).

    Returns:
        An `aiohttp.web.Application`; serve it with `web.AppRunner(app, **RUNNER_KWARGS)`.

    Example:
        >>> app = build_rest_app(core, timeout=30.0)
    """
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise TypeError(f"timeout must be a number of seconds or None. Received: timeout={timeout!r}")
    if timeout is not None and timeout <= 0:
        timeout = None
    if not metrics_path.startswith("/"):
        raise ValueError(f"metrics_path must start with '/'. Received: metrics_path={metrics_path!r}")
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes <= 0:
        raise ValueError(f"max_body_bytes must be a positive int. Received: max_body_bytes={max_body_bytes!r}")
    api = _RestApi(
        core, timeout, cors=cors, metrics_path=metrics_path, metrics_page=metrics_page, on_request=on_request,
        max_body_bytes=max_body_bytes,
    )
    # aiohttp enforces the same cap while reading chunked bodies (its default is 1 MiB).
    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_route("*", "/{tail:.*}", api.handle)
    return app


# ------------------------------------------------------------------ connection limits


@dataclasses.dataclass(frozen=True, kw_only=True)
class RestLimits:
    """What one REST connection may hold (tfstack's own flags; libevent in TF Serving has none).

    header_timeout: seconds a connection gets to deliver a request's complete headers, counted
        from when it opens, or from the first byte of its next request on a kept-alive
        connection (slowloris protection). idle_timeout: seconds a kept-alive connection may sit
        between requests. max_connections: open connections beyond this are answered 503 with a
        JSON error and closed.
    """

    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 1024

    def __post_init__(self) -> None:
        for name in ("header_timeout", "idle_timeout", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number. Received: {name}={value!r}")


class _TimedRequestHandler(RequestHandler):
    """aiohttp's connection handler with a header-read deadline.

    aiohttp closes a connection that is still waiting for a complete request when its
    keep-alive timer fires; that timer starts when the connection opens and after each
    response. Here the first wait is the header timeout, and a kept-alive connection that
    starts sending its next request gets the header timeout from that first byte on.
    """

    __slots__ = ("_header_timeout", "_header_clock_running")

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._header_clock_running = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._close_at(self._loop.time() + self._header_timeout)

    def _close_at(self, when: float) -> None:
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
        self._next_keepalive_close_time = when
        self._keepalive_handle = self._loop.call_at(when, self._process_keepalive)

    def data_received(self, data: bytes) -> None:
        if self._waiter is not None and not self._header_clock_running:
            # The first byte of a new request on a kept-alive connection: headers are due now.
            self._header_clock_running = True
            self._close_at(self._loop.time() + self._header_timeout)
        messages = len(self._messages)
        super().data_received(data)
        if len(self._messages) > messages:  # headers complete: the idle timer applies again later
            self._header_clock_running = False


class _Refusal(asyncio.Protocol):
    """Answers a connection over the cap with 503 and closes it.

    What the client sends is read and dropped for up to a second: closing a socket with unread
    data makes the kernel reset the connection, and the client would lose the answer.
    """

    _LINGER_SECONDS = 1.0

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(self._body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        transport.write(head + self._body)  # type: ignore[attr-defined]
        if transport.can_write_eof():  # type: ignore[attr-defined]
            transport.write_eof()  # type: ignore[attr-defined]
        self._timer = asyncio.get_running_loop().call_later(self._LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


class _BoundedServer(Server):
    """aiohttp's low-level server with a connection cap and `_TimedRequestHandler` connections."""

    def __init__(self, *args: Any, limits: RestLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._refused = 0
        self._last_refusal_log = 0.0
        self._refusal_body = jt.error_json(
            f"Too many connections: this server holds at most {limits.max_connections} open REST connections "
            "(tfstack flag --rest_api_max_connections); retry later or reuse a kept-alive connection."
        )

    def __call__(self) -> asyncio.Protocol:  # type: ignore[override]
        if len(self._connections) >= self._limits.max_connections:
            self._refused += 1
            now = self._loop.time()
            if now - self._last_refusal_log >= 10.0:  # one line per 10 s at most, with the count
                _log.warning(
                    "REST connection limit reached (%d open); refused %d connection(s) with 503 since the last report.",
                    len(self._connections), self._refused,
                )
                self._refused, self._last_refusal_log = 0, now
            return _Refusal(self._refusal_body)
        return _TimedRequestHandler(self, loop=self._loop, header_timeout=self._limits.header_timeout, **self._kwargs)


class RestRunner(web.AppRunner):
    """`web.AppRunner` whose connections obey `RestLimits` (header/idle timeouts, a connection cap)."""

    def __init__(self, app: web.Application, *, limits: RestLimits | None = None, **kwargs: Any) -> None:
        self._limits = limits or RestLimits()
        kwargs.setdefault("keepalive_timeout", self._limits.idle_timeout)
        # What follows a 413 (the rest of an oversized body) is read and dropped for at most this long.
        kwargs.setdefault("lingering_time", 2.0)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> Server:
        plain = await super()._make_server()
        return _BoundedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            limits=self._limits,
            **plain._kwargs,
        )
