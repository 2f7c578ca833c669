"""REST transport: TF Serving's /v1 JSON API over httpx (pooled, keep-alive connections).

`RestCodec` builds operations (URLs and JSON bodies in, typed results out). `RestTransport`
and `AsyncRestTransport` send them with httpx.Client / httpx.AsyncClient; every httpx
exception and every non-200 answer becomes a ServingError in `_mapped_errors` and
`_reply`, the only two places REST errors are translated.
"""

from __future__ import annotations

import contextlib
import gzip as gzip_module
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from tfstack.client import _json_codec as codec_json
from tfstack.client._arguments import Feature, ModelSelector
from tfstack.client._dtypes import DT_NAME_BY_FRIENDLY, friendly_dtype
from tfstack.client._errors import (
    HTTP_TO_CODE,
    BadResponseError,
    RequestTimeoutError,
    ServerUnavailableError,
    ServingError,
    error_for,
)
from tfstack.client._options import TlsConfig
from tfstack.client._conform import conform_inputs, explain_rejection
from tfstack.client._protocol import Operation, SignatureCache, check_output_filter, signature_for_inputs
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

_JSON_FORMATS = ("columnar", "row")


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    body: bytes | None = None


class RestCodec:
    """Operations of the REST JSON protocol."""

    def __init__(self, *, json_format: str = "columnar", gzip: bool = False) -> None:
        if json_format not in _JSON_FORMATS:
            raise ValueError(f"json_format must be one of {_JSON_FORMATS}. Received: json_format={json_format!r}")
        self.row_format = json_format == "row"
        self.gzip = bool(gzip)
        self._signatures = SignatureCache()
        # Output dtypes by signature key; REST JSON carries no dtypes.
        self._output_dtypes: dict[tuple, dict[str, str]] = {}

    @staticmethod
    def _path(sel: ModelSelector, *, verb: str | None = None, metadata: bool = False) -> str:
        path = f"/v1/models/{quote(sel.model_name, safe='')}"
        if sel.version is not None:
            path += f"/versions/{sel.version}"
        elif sel.version_label is not None:
            path += f"/labels/{quote(sel.version_label, safe='')}"
        if metadata:
            path += "/metadata"
        if verb is not None:
            path += f":{verb}"
        return path

    def predict(
        self, sel: ModelSelector, inputs: dict[str, np.ndarray] | np.ndarray, output_filter: tuple[str, ...]
    ) -> Operation[dict[str, np.ndarray]]:
        signature = yield from signature_for_inputs(self._signatures, self, sel)
        inputs = conform_inputs(signature, inputs, sel)
        body = codec_json.predict_body(sel.signature_name, inputs, row_format=self.row_format)
        try:
            document = yield HttpRequest("POST", self._path(sel, verb="predict"), body)
        except ServingError as exc:
            explained = explain_rejection(exc, signature, inputs, sel)
            if explained is exc:
                raise
            raise explained from exc
        codec_json.check_predict_document(document, row_format=self.row_format)
        signature = yield from self._signatures.lookup(self, sel)
        named = codec_json.named_outputs(document, row_format=self.row_format)
        if named is not None and not named <= set(signature.outputs):
            # The model behind "latest" or a label changed since the signature was cached.
            signature = yield from self._signatures.lookup(self, sel, refresh=True)
        check_output_filter(signature, output_filter)
        dtypes = {name: info.dtype for name, info in signature.outputs.items()}
        outputs = codec_json.predict_outputs(document, _dt_names(dtypes), row_format=self.row_format)
        # REST cannot express output_filter (spec §1.6): the server returns every output.
        if output_filter:
            outputs = {name: outputs[name] for name in output_filter if name in outputs}
        return outputs

    def _examples_call(
        self, verb: str, sel: ModelSelector, examples: list[dict[str, Feature]], context: dict[str, Feature] | None
    ) -> Operation[list]:
        body = codec_json.examples_body(sel.signature_name, examples, context)
        document = yield HttpRequest("POST", self._path(sel, verb=verb), body)
        # TF Serving answers with "results" although its docs say "result" (spec §1.7).
        results = document.get("results") if isinstance(document, dict) else None
        if not isinstance(results, list):
            raise BadResponseError(
                f"Expected {{'results': [...]}} from :{verb}. Received: {str(document)[:200]}", code="INTERNAL"
            )
        return results

    def classify(
        self, sel: ModelSelector, examples: list[dict[str, Feature]], context: dict[str, Feature] | None
    ) -> Operation[ClassifyResult]:
        results = yield from self._examples_call("classify", sel, examples, context)
        try:
            classifications = tuple(
                Classification(
                    labels=tuple(str(label) for label, _ in pairs),
                    scores=tuple(codec_json.as_float32(score, "a class score") for _, score in pairs),
                )
                for pairs in results
            )
        except (TypeError, ValueError) as exc:
            raise BadResponseError(f"Malformed classify results: {str(results)[:200]}", code="INTERNAL") from exc
        return ClassifyResult(classifications=classifications, version=None)

    def regress(
        self, sel: ModelSelector, examples: list[dict[str, Feature]], context: dict[str, Feature] | None
    ) -> Operation[RegressResult]:
        results = yield from self._examples_call("regress", sel, examples, context)
        values = tuple(codec_json.as_float32(v, "a regression value") for v in results)
        return RegressResult(values=values, version=None)

    def get_model_metadata(self, sel: ModelSelector) -> Operation[ModelMetadata]:
        document = yield HttpRequest("GET", self._path(sel, metadata=True))
        try:
            version = int(document["model_spec"]["version"])
            sig_map = document["metadata"]["signature_def"]["signature_def"]
            signatures = {
                name: _signature(sig) for name, sig in sig_map.items() if not name.startswith("__")
            }
            name = document["model_spec"].get("name", sel.model_name)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponseError(
                f"Malformed metadata response ({exc!r}). Received: {str(document)[:200]}", code="INTERNAL"
            ) from exc
        return ModelMetadata(model_name=name, version=version, signatures=signatures)

    def get_model_status(self, sel: ModelSelector) -> Operation[ModelStatus]:
        # Status ignores labels on the server (spec §1.4), so the label is not sent.
        path_sel = ModelSelector(model_name=sel.model_name, version=sel.version)
        document = yield HttpRequest("GET", self._path(path_sel))
        try:
            versions = tuple(
                VersionStatus(
                    version=int(entry["version"]),  # an int64 rendered as a JSON string
                    state=str(entry.get("state", "UNKNOWN")),
                    error_code=str(entry.get("status", {}).get("error_code", "OK")),
                    error_message=str(entry.get("status", {}).get("error_message", "")),
                )
                for entry in document.get("model_version_status", [])
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadResponseError(f"Malformed status response: {str(document)[:200]}", code="INTERNAL") from exc
        return ModelStatus(model_name=sel.model_name, versions=versions)


def _dt_names(friendly: Mapping[str, str]) -> dict[str, str]:
    return {name: DT_NAME_BY_FRIENDLY.get(dt, dt) for name, dt in friendly.items()}


def _tensor_info(info: Mapping[str, Any]) -> TensorInfo:
    shape_doc = info.get("tensor_shape", {})
    if shape_doc.get("unknown_rank"):
        shape = None
    else:
        shape = tuple(None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in shape_doc.get("dim", []))
    return TensorInfo(name=str(info.get("name", "")), dtype=friendly_dtype(str(info.get("dtype", "DT_INVALID"))), shape=shape)


def _signature(sig: Mapping[str, Any]) -> SignatureInfo:
    return SignatureInfo(
        method_name=str(sig.get("method_name", "")),
        inputs={k: _tensor_info(v) for k, v in sig.get("inputs", {}).items()},
        outputs={k: _tensor_info(v) for k, v in sig.get("outputs", {}).items()},
    )


# ---- I/O ------------------------------------------------------------------------------------


def validate_base_url(url: Any) -> str:
    if not isinstance(url, str):
        raise TypeError(f"url must be a str like 'http://host:8501'. Received: url={url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"url must start with http:// or https:// and name a host. Received: url={url!r}")
    return url.rstrip("/")


@contextlib.contextmanager
def _mapped_errors(url: str) -> Iterator[None]:
    """The one place httpx exceptions become ServingErrors."""
    import httpx

    try:
        yield
    except httpx.TimeoutException as exc:
        # Connect timeouts too: the deadline is spent either way, as gRPC reports it.
        raise RequestTimeoutError(f"No answer from {url} before the timeout: {exc!r}", code="DEADLINE_EXCEEDED") from exc
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise ServerUnavailableError(f"Cannot reach {url}: {exc!r}", code="UNAVAILABLE") from exc
    except httpx.HTTPError as exc:
        raise ServingError(f"HTTP failure talking to {url}: {exc!r}", code="UNKNOWN") from exc


def _reply(status: int, body: bytes) -> Any:
    """Parse a response; the one place HTTP statuses become ServingErrors."""
    if status == 200:
        return codec_json.loads(body)
    code = HTTP_TO_CODE.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    message = ""
    try:
        document = codec_json.loads(body) if body.strip() else None
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            message = document["error"]
    except BadResponseError:
        document = None
    if not message:
        text = body[:300].decode("utf-8", "replace").strip()
        message = f"HTTP {status}" + (f": {text}" if text else " with an empty body")
    raise error_for(code, message, http_status=status)


def _ssl_context(tls: TlsConfig | None) -> ssl.SSLContext:
    root, chain, key = tls.pem() if tls is not None else (None, None, None)
    context = ssl.create_default_context(cadata=root.decode("ascii") if root else None)
    if chain is not None and key is not None:
        # ssl only loads client certificates from files.
        with tempfile.TemporaryDirectory() as tmp:
            cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert_path.write_bytes(chain)
            key_path.write_bytes(key)
            context.load_cert_chain(cert_path, key_path)
    return context


def _httpx_kwargs(
    url: str, *, tls: TlsConfig | None, headers: Mapping[str, str] | None, max_connections: int
) -> dict[str, Any]:
    import httpx

    kwargs: dict[str, Any] = {
        "base_url": url,
        "headers": dict(headers or {}),
        "limits": httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        "timeout": None,
    }
    # A plain-http base URL never does TLS; not building httpx's default SSL context (it loads
    # the whole CA bundle) saves a few hundred milliseconds per client.
    kwargs["verify"] = _ssl_context(tls) if url.startswith("https://") else False
    return kwargs


class _RestSender:
    """What the blocking and asyncio REST transports share: settings, pooling and request building."""

    _HTTPX_CLIENT = ""  # the httpx class name a subclass drives: "Client" or "AsyncClient"

    def __init__(
        self,
        url: str,
        *,
        json_format: str = "columnar",
        gzip: bool = False,
        tls: TlsConfig | None = None,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
        http_transport: Any = None,
    ) -> None:
        import httpx

        self.url = validate_base_url(url)
        self.codec = RestCodec(json_format=json_format, gzip=gzip)
        self._extensions = {"sni_hostname": tls.server_name} if tls is not None and tls.server_name else {}
        kwargs = _httpx_kwargs(self.url, tls=tls, headers=headers, max_connections=max_connections)
        # http_transport: an httpx transport such as httpx.MockTransport, for tests.
        self._client = getattr(httpx, self._HTTPX_CLIENT)(**kwargs, transport=http_transport)

    def _request_args(self, request: HttpRequest, timeout: float | None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        body = request.body
        if body is not None:
            headers["Content-Type"] = "application/json"
            if self.codec.gzip:
                body = gzip_module.compress(body, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
        return {
            "method": request.method,
            "url": request.path,
            "content": body,
            "headers": headers,
            "timeout": timeout,
            "extensions": self._extensions,
        }


class RestTransport(_RestSender):
    """Blocking REST transport over one pooled httpx.Client (thread-safe)."""

    _HTTPX_CLIENT = "Client"

    def send(self, request: HttpRequest, timeout: float | None) -> Any:
        with _mapped_errors(self.url):
            response = self._client.request(**self._request_args(request, timeout))
            return _reply(response.status_code, response.content)

    def close(self) -> None:
        self._client.close()


class AsyncRestTransport(_RestSender):
    """asyncio REST transport over one pooled httpx.AsyncClient."""

    _HTTPX_CLIENT = "AsyncClient"

    async def send(self, request: HttpRequest, timeout: float | None) -> Any:
        with _mapped_errors(self.url):
            response = await self._client.request(**self._request_args(request, timeout))
            return _reply(response.status_code, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()
