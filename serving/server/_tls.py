"""`--ssl_config_file`: TF Serving's SSLConfig, for the gRPC port and (tfstack-only) the REST port.

TF Serving (model_servers/server.cc BuildServerCredentials) reads a text-format
`tensorflow.serving.SSLConfig { server_key server_cert custom_ca client_verify }` whose fields
hold the PEM text itself, not file names, and builds `SslServerCredentials` from it: the key and
certificate pair, `custom_ca` as the roots client certificates are checked against, and with
`client_verify` a client certificate is required and verified (mutual TLS). The same
credentials secure the TCP port and the `--grpc_socket_path` socket.

Where TF Serving would crash (CHECK_OK on a file that does not parse) or fail later in gRPC's
handshaker factory (a key or certificate that does not load), startup stops here with one line
saying what was wrong, and nothing listens. Nothing is ever served in plain text when TLS was
asked for.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import tempfile
from typing import Any

from tfstack.serving._errors import Code, StatusError
from tfstack.serving.server._protos import message_class

__all__ = ["SslConfig", "read_ssl_config", "parse_ssl_config", "grpc_server_credentials", "rest_ssl_context"]

def _ssl_config_proto_class():
    """`tensorflow.serving.SSLConfig` (the pip package lacks it)."""
    return message_class(
        "tfstack/ssl_config.proto", "proto3",
        (("SSLConfig", (("server_key", 1, "string"), ("server_cert", 2, "string"), ("custom_ca", 3, "string"),
                        ("client_verify", 4, "bool"))),),
        "SSLConfig",
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class SslConfig:
    """A checked SSLConfig: PEM texts that load, and whether clients must present a certificate."""

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False

    def __repr__(self) -> str:  # never print the private key
        return f"SslConfig(client_verify={self.client_verify}, custom_ca={'set' if self.custom_ca else 'unset'})"


def _fail(path: str, problem: str) -> StatusError:
    return StatusError(Code.INVALID_ARGUMENT, f"--ssl_config_file={path}: {problem}")


def _check_pem(path: str, field: str, text: str, marker: str) -> None:
    if not text.strip():
        raise _fail(path, f"{field} is empty; it must hold the PEM text itself (TF Serving's SSLConfig).")
    if "-----BEGIN" not in text or marker not in text:
        shown = text.strip().splitlines()[0][:80]
        hint = " (a file name? SSLConfig fields hold the PEM text itself, not a path)" if os.path.exists(text.strip()) else ""
        raise _fail(path, f"{field} is not a PEM {marker.lower()}{hint}. Received: {shown!r}")


def _load_into(context: ssl.SSLContext, config: SslConfig) -> None:
    """Load the key pair (and the client CA) into `context`; ssl only reads key pairs from files."""
    with tempfile.TemporaryDirectory(prefix="tfstack-tls-") as directory:
        cert_file = os.path.join(directory, "cert.pem")
        key_file = os.path.join(directory, "key.pem")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(config.server_key)
        with open(cert_file, "w") as handle:
            handle.write(config.server_cert)
        context.load_cert_chain(cert_file, key_file)
    if config.custom_ca:
        context.load_verify_locations(cadata=config.custom_ca)


def parse_ssl_config(text: str, *, path: str = "<text>") -> SslConfig:
    """Parse and check a text-format SSLConfig.

    Raises:
        StatusError: INVALID_ARGUMENT `Invalid protobuf file: '<path>'` when it does not parse
            (TF Serving's ParseProtoTextFile text), or a one-line `--ssl_config_file=<path>: ...`
            naming the field that is empty, not PEM, or does not load (e.g. a key that does not
            match the certificate).
    """
    from google.protobuf import text_format

    proto = _ssl_config_proto_class()()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise StatusError(Code.INVALID_ARGUMENT, f"Invalid protobuf file: '{path}' ({exc})") from exc
    _check_pem(path, "server_key", proto.server_key, "PRIVATE KEY")
    _check_pem(path, "server_cert", proto.server_cert, "CERTIFICATE")
    if proto.custom_ca:
        _check_pem(path, "custom_ca", proto.custom_ca, "CERTIFICATE")
    if proto.client_verify and not proto.custom_ca:
        # grpc C++ would fall back to its bundled public roots, which no private client CA is in.
        raise _fail(path, "client_verify is true but custom_ca is empty; set custom_ca to the PEM of the CA "
                          "that signs client certificates.")
    config = SslConfig(
        server_key=proto.server_key, server_cert=proto.server_cert,
        custom_ca=proto.custom_ca, client_verify=proto.client_verify,
    )
    try:
        _load_into(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), config)
    except ssl.SSLError as exc:
        reason = exc.reason or exc.strerror or "unreadable"
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise _fail(path, "server_key does not match server_cert.") from exc
        raise _fail(path, f"the key, certificate or custom_ca does not load ({reason}).") from exc
    return config


def read_ssl_config(path: str | os.PathLike[str]) -> SslConfig:
    """Read `--ssl_config_file` (unreadable files are reported like unparsable ones)."""
    from tfstack.serving.server._model_config import read_text_proto_file

    path = os.fspath(path)
    return parse_ssl_config(read_text_proto_file(path, what="SSLConfig"), path=path)


def grpc_server_credentials(config: SslConfig):
    """`grpc.ServerCredentials` as server.cc builds them (mutual TLS when `client_verify`)."""
    import grpc

    return grpc.ssl_server_credentials(
        [(config.server_key.encode(), config.server_cert.encode())],
        root_certificates=config.custom_ca.encode() if config.custom_ca else None,
        require_client_auth=config.client_verify,
    )


def rest_ssl_context(config: SslConfig) -> ssl.SSLContext:
    """An `ssl.SSLContext` for the REST port with the same key pair and client rule (tfstack-only)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_into(context, config)
    if config.client_verify:
        context.verify_mode = ssl.CERT_REQUIRED
    return context
