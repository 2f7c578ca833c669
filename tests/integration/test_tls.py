"""`--ssl_config_file` on a real `tfstack serve`: TLS and mutual TLS with the official stubs and with
tfstack's client, and a bad TLS config that refuses to start.

TF Serving builds the gRPC port's credentials from the SSLConfig (model_servers/server.cc
BuildServerCredentials: key pair, `custom_ca` as client roots, `client_verify` ->
REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY). The REST port is TLS only with tfstack's own
`--rest_api_enable_ssl` (TF Serving's REST port is always plain text).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfstack import client
from tests.integration.conftest import MODEL_NAME
from tests.support.server import launch, start_server
from tests.support.tls import make_pki

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pki():
    return make_pki()


def _request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([2.0], np.float32)))
    return request


def _stub_predict(target: str, credentials) -> list[float]:
    with grpc.secure_channel(target, credentials) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return list(stub.Predict(_request(), timeout=30).outputs["y"].float_val)


def _client_predict(serving_client) -> list[float]:
    with serving_client as c:
        return c.predict(MODEL_NAME, {"x": np.array([2.0], np.float32)}, timeout=30)["y"].tolist()


def _write(tmp_path: Path, text: str, name: str = "ssl.config") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, half_plus_two_base, pki):
    workdir = tmp_path_factory.mktemp("tls")
    config = _write(workdir, pki.ssl_config_text(client_verify=False))
    with start_server(workdir, f"--ssl_config_file={config}", "--rest_api_enable_ssl",
                      model_name=MODEL_NAME, model_base_path=half_plus_two_base) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, half_plus_two_base, pki):
    workdir = tmp_path_factory.mktemp("mtls")
    config = _write(workdir, pki.ssl_config_text(client_verify=True))
    with start_server(workdir, f"--ssl_config_file={config}", "--rest_api_enable_ssl",
                      model_name=MODEL_NAME, model_base_path=half_plus_two_base) as server:
        yield server


def test_tls_grpc_with_official_stubs_and_plaintext_is_refused(tls_server, pki):
    assert "Using SSL credentials" in tls_server.log_text()
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_cert.encode())
    assert _stub_predict(tls_server.grpc_target, credentials) == [3.0]
    with grpc.insecure_channel(tls_server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(_request(), timeout=10)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    # A server certificate the client does not trust is refused by the client.
    untrusted = grpc.ssl_channel_credentials(root_certificates=pki.stranger_cert.encode())
    with pytest.raises(grpc.RpcError):
        _stub_predict(tls_server.grpc_target, untrusted)


def test_tls_with_tfstack_client_over_grpc_and_rest(tls_server, pki):
    tls = client.TlsConfig(root_certificates=pki.ca_cert.encode())
    assert _client_predict(client.ServingClient.grpc(tls_server.grpc_target, tls=tls)) == [3.0]
    https_url = tls_server.rest_url.replace("http://", "https://")
    assert _client_predict(client.ServingClient.rest(https_url, tls=tls)) == [3.0]
    # Plain HTTP on the TLS port gets no answer.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{tls_server.rest_url}/v1/models/{MODEL_NAME}", timeout=10)


def test_mtls_needs_a_client_certificate_from_the_custom_ca(mtls_server, pki):
    target = mtls_server.grpc_target
    with_cert = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_cert.encode(), private_key=pki.client_key.encode(),
        certificate_chain=pki.client_cert.encode(),
    )
    assert _stub_predict(target, with_cert) == [3.0]
    for credentials in (
        grpc.ssl_channel_credentials(root_certificates=pki.ca_cert.encode()),  # no client certificate
        grpc.ssl_channel_credentials(  # a certificate from a CA the server does not trust
            root_certificates=pki.ca_cert.encode(), private_key=pki.stranger_key.encode(),
            certificate_chain=pki.stranger_cert.encode(),
        ),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            _stub_predict(target, credentials)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE

    tls = client.TlsConfig(
        root_certificates=pki.ca_cert.encode(), certificate_chain=pki.client_cert.encode(),
        private_key=pki.client_key.encode(),
    )
    https_url = mtls_server.rest_url.replace("http://", "https://")
    assert _client_predict(client.ServingClient.grpc(target, tls=tls)) == [3.0]
    assert _client_predict(client.ServingClient.rest(https_url, tls=tls)) == [3.0]
    without_cert = client.TlsConfig(root_certificates=pki.ca_cert.encode())
    for make in (lambda: client.ServingClient.grpc(target, tls=without_cert),
                 lambda: client.ServingClient.rest(https_url, tls=without_cert)):
        with pytest.raises(client.ServingError):
            _client_predict(make())


def test_bad_tls_settings_refuse_to_start_with_one_line(tmp_path, half_plus_two_base, pki):
    # Each field's checks are unit tests (tests/unit/serving/test_tls.py); here the process.
    key_file = _write(tmp_path, pki.server_key, "server.key")
    config = _write(tmp_path, pki.ssl_config_text(key=str(key_file)), "bad.config")
    for flags, expected in (
        ([f"--ssl_config_file={config}"], f"--ssl_config_file={config}: server_key is not a PEM private key (a file name?"),
        (["--use_alts_credentials"], "--use_alts_credentials is not supported"),
    ):
        server = launch(tmp_path / flags[0][2:12], *flags, f"--model_name={MODEL_NAME}",
                        f"--model_base_path={half_plus_two_base}")
        assert server.process.wait(120) == 255, flags
        log = server.log_text()
        failure = [line for line in log.splitlines() if line.startswith("Failed to start server. Error:")]
        assert len(failure) == 1 and expected in failure[0], (flags, log[-2000:])
        assert "Running gRPC ModelServer" not in log and "Traceback" not in log
