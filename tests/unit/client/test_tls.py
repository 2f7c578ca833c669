"""TLS and mutual TLS over both transports, with certificates made by the openssl CLI."""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import grpc
import pytest

from tfstack.client import RetryPolicy, ServerUnavailableError, ServingClient, TlsConfig
from tests.unit.client.conftest import FakeServing, start_grpc_server

NO_RETRY = RetryPolicy(max_attempts=1)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=tfstack test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={'localhost' if name == 'server' else 'tfstack client'}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


@pytest.fixture(scope="module")
def mtls_grpc_port(pki):
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    server, port = start_grpc_server(FakeServing(), credentials)
    yield port
    server.stop(None)


def _mtls(pki: Path, **overrides) -> TlsConfig:
    fields = {
        "root_certificates": pki / "ca.pem",
        "certificate_chain": pki / "client.pem",
        "private_key": (pki / "client.key").read_bytes(),  # bytes and paths both work
        "server_name": "localhost",
    }
    return TlsConfig(**{**fields, **overrides})


def test_grpc_mutual_tls(pki, mtls_grpc_port):
    with ServingClient.grpc(f"127.0.0.1:{mtls_grpc_port}", tls=_mtls(pki)) as client:
        assert client.get_model_status("half_plus_two").available_versions == (2, 1)


def test_grpc_without_a_client_certificate_is_refused(pki, mtls_grpc_port):
    tls = TlsConfig(root_certificates=pki / "ca.pem", server_name="localhost")
    with ServingClient.grpc(f"127.0.0.1:{mtls_grpc_port}", tls=tls, retry=NO_RETRY, timeout=5) as client:
        with pytest.raises(ServerUnavailableError):
            client.get_model_status("half_plus_two")


@pytest.fixture(scope="module")
def mtls_https_url(pki):
    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps({"model_version_status": [
                {"version": "7", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Status)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_rest_mutual_tls(pki, mtls_https_url):
    with ServingClient.rest(mtls_https_url, tls=_mtls(pki), retry=NO_RETRY, timeout=5) as client:
        assert client.get_model_status("m").available_versions == (7,)


def test_rest_rejects_an_unknown_server_certificate(pki, mtls_https_url):
    with ServingClient.rest(mtls_https_url, retry=NO_RETRY, timeout=5) as client:  # system roots only
        with pytest.raises(ServerUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get_model_status("m")
