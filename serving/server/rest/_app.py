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
import json
import logging
import re
import time
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from tfstack.serving.server.rest import _json_tensor as jt
from tfstack.serving._errors import Code, StatusError

__all__ = ["build_rest_app", "RUNNER_KWARGS", "PING_PATH", "DEFAULT_METRICS_PATH", "RequestObserver"]

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
        version = int(version_text)
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
    ) -> None:
        self._core = core
        self._timeout = timeout
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
        try:
            body = await request.read()
        except RequestPayloadError:
            # aiohttp itself failed to decode Content-Encoding (a runner without
            # RUNNER_KWARGS); TF Serving answers an undecodable gzip body as an empty one.
            body = b""
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
            except Exception as exc:  # a bug here must not take the connection down silently
                _log.exception("REST request %s %s failed", method, path)
                code = Code.INTERNAL
                response = _json_response(500, jt.error_json(f"{type(exc).__name__}: {exc}"))
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
    api = _RestApi(core, timeout, cors=cors, metrics_path=metrics_path, metrics_page=metrics_page, on_request=on_request)
    # TF Serving takes bodies up to its own (much larger) limits; aiohttp's default is 1 MiB.
    app = web.Application(client_max_size=2**31 - 1)
    app.router.add_route("*", "/{tail:.*}", api.handle)
    return app
