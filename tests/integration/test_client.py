"""The client against a real `tfstack serve` subprocess, every method over both transports.

The module's server serves half_plus_two with two versions (1: y = 0.5x + 2, 2: y = 0.5x + 3)
and the labels stable -> 1 and canary -> 2 from a model config file (labels at startup need
--allow_version_labels_for_unavailable_models, as in TF Serving, spec §4.5).
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tfstack.client import (
    AsyncServingClient,
    BadResponseError,
    ClassifyResult,
    InvalidInputError,
    ModelNotFoundError,
    RegressResult,
    RequestTimeoutError,
    RetryPolicy,
    ServerUnavailableError,
    ServingClient,
    ServingError,
    VersionLabelNotFoundError,
)
from tests.support.models import build_half_plus
from tests.support.server import launch, start_server

pytestmark = pytest.mark.slow

MODEL = "half_plus_two"
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.2)


DOUBLE_REGRESSOR = "double_regressor"


def _build_double_regressor(path: Path) -> None:
    """A regress signature whose output is float64: TF Serving answers INVALID_ARGUMENT
    ("Expected output Tensor of DT_FLOAT.  Got: DT_DOUBLE", regressor.cc PostProcessRegressionResult)."""
    import tensorflow as tf

    class DoubleRegressor(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs):
            features = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([1], tf.float32)})
            return {"outputs": tf.cast(features["x"], tf.float64)}

    module = DoubleRegressor()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.regress})


@pytest.fixture(scope="module")
def model_base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("client-models")
    base = root / MODEL
    build_half_plus(base / "1", b=2.0)
    build_half_plus(base / "2", b=3.0)
    _build_double_regressor(root / DOUBLE_REGRESSOR / "1")
    return base


def _config(path: Path, base: Path) -> Path:
    path.write_text(
        "model_config_list {\n"
        "  config {\n"
        f"    name: '{MODEL}'\n"
        f"    base_path: '{base}'\n"
        "    model_platform: 'tensorflow'\n"
        "    model_version_policy { all {} }\n"
        "    version_labels { key: 'stable' value: 1 }\n"
        "    version_labels { key: 'canary' value: 2 }\n"
        "  }\n"
        "  config {\n"
        f"    name: '{DOUBLE_REGRESSOR}'\n"
        f"    base_path: '{base.parent / DOUBLE_REGRESSOR}'\n"
        "    model_platform: 'tensorflow'\n"
        "  }\n"
        "}\n"
    )
    return path


@pytest.fixture(scope="module")
def labelled_server(tmp_path_factory, model_base):
    tmp = tmp_path_factory.mktemp("client-server")
    config = _config(tmp / "models.config", model_base)
    with start_server(
        tmp, f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models=true", model_name=None
    ) as running:
        yield running


@pytest.fixture(params=["rest", "grpc"])
def protocol(request) -> str:
    return request.param


def _connect(server, protocol: str, **kwargs) -> ServingClient:
    kwargs.setdefault("retry", FAST_RETRY)
    if protocol == "rest":
        return ServingClient.rest(server.rest_url, **kwargs)
    return ServingClient.grpc(server.grpc_target, **kwargs)


@pytest.fixture
def client(labelled_server, protocol):
    with _connect(labelled_server, protocol) as made:
        made.wait_until_available(MODEL, version=2, timeout=60)
        yield made


# ---- methods ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "selector, offset",
    [({}, 3.0), ({"version": 1}, 2.0), ({"version": 2}, 3.0), ({"version_label": "stable"}, 2.0), ({"version_label": "canary"}, 3.0)],
    ids=["latest", "v1", "v2", "stable", "canary"],
)
def test_predict_selects_versions_and_labels(client, selector, offset):
    outputs = client.predict(MODEL, {"x": np.array([1.0, 2.0, 5.0], np.float32)}, **selector)
    assert list(outputs) == ["y"]
    assert outputs["y"].dtype == np.float32
    np.testing.assert_allclose(outputs["y"], 0.5 * np.array([1.0, 2.0, 5.0]) + offset)


def test_predict_shapes_single_input_and_output_filter(client):
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert client.predict(MODEL, {"x": x}, version=1)["y"].shape == (3, 2)
    np.testing.assert_allclose(client.predict(MODEL, [2.0], version=1)["y"], [3.0])  # bare list, one input
    np.testing.assert_allclose(client.predict(MODEL, {"x": [2.0]}, version=1, output_filter=["y"])["y"], [3.0])
    scalar = client.predict(MODEL, {"x": np.float32(2.0)}, version=1)["y"]
    assert scalar.shape == () and float(scalar) == 3.0


def test_predict_non_finite_values(client):
    y = client.predict(MODEL, {"x": np.array([np.nan, np.inf], np.float32)}, version=1)["y"]
    assert np.isnan(y[0]) and y[1] == np.inf


def test_classify_and_regress(client, protocol):
    result = client.classify(MODEL, [{"x": 2.0}, {"x": 4.0}], signature_name="classify_x_to_y", version=1)
    assert isinstance(result, ClassifyResult)
    np.testing.assert_allclose(result.scores, [[3.0], [4.0]])
    assert result.version == (1 if protocol == "grpc" else None)  # REST does not say
    regress = client.regress(MODEL, [{"x": 2.0}], signature_name="regress_x_to_y", version_label="canary")
    assert isinstance(regress, RegressResult) and regress.values == (4.0,)
    with_context = client.regress(MODEL, [{"x": 0.0}], context={"x2": 4.0}, signature_name="regress_x2_to_y3", version=1)
    assert with_context.values == (5.0,)


def test_metadata(client):
    metadata = client.get_model_metadata(MODEL, version_label="stable")
    assert metadata.model_name == MODEL and metadata.version == 1
    assert {"serving_default", "classify_x_to_y", "regress_x_to_y"} <= set(metadata.signatures)
    x = metadata.signatures["serving_default"].inputs["x"]
    assert x.dtype == "float32"
    assert metadata.signatures["classify_x_to_y"].inputs["inputs"].dtype == "string"
    assert client.get_model_metadata(MODEL).version == 2


def test_status(client):
    status = client.get_model_status(MODEL)
    assert [(v.version, v.state, v.error_code) for v in status.versions] == [(2, "AVAILABLE", "OK"), (1, "AVAILABLE", "OK")]
    assert [v.version for v in client.get_model_status(MODEL, version=1).versions] == [1]
    assert [v.version for v in client.get_model_status(MODEL, version_label="canary").versions] == [2]


def test_wait_until_available(client):
    assert client.wait_until_available(MODEL, timeout=10) == 2
    assert client.wait_until_available(MODEL, version=1, timeout=10) == 1
    assert client.wait_until_available(MODEL, version_label="stable", timeout=10) == 1
    with pytest.raises(RequestTimeoutError, match="did not become available"):
        client.wait_until_available(MODEL, version=7, timeout=0.5)


def test_rest_row_format_and_gzip(labelled_server):
    with ServingClient.rest(labelled_server.rest_url, json_format="row", gzip=True) as rest:
        np.testing.assert_allclose(rest.predict(MODEL, {"x": [[1.0], [2.0]]}, version=1)["y"], [[2.5], [3.0]])


# ---- errors -----------------------------------------------------------------------------------

ERROR_CASES = {
    "unknown model": (lambda c: c.predict("nope", {"x": [1.0]}), ModelNotFoundError, "NOT_FOUND", "Servable not found for request: Latest(nope)"),
    "unknown version": (lambda c: c.predict(MODEL, {"x": [1.0]}, version=9), ModelNotFoundError, "NOT_FOUND", f"Specific({MODEL}, 9)"),
    "unknown label": (lambda c: c.predict(MODEL, {"x": [1.0]}, version_label="gone"), VersionLabelNotFoundError, "INVALID_ARGUMENT", "Unrecognized servable version label: gone"),
    "status unknown model": (lambda c: c.get_model_status("nope"), ModelNotFoundError, "NOT_FOUND", "Could not find any versions of model nope"),
    "status unknown version": (lambda c: c.get_model_status(MODEL, version=9), ModelNotFoundError, "NOT_FOUND", f"Could not find version 9 of model {MODEL}"),
    "metadata unknown model": (lambda c: c.get_model_metadata("nope"), ModelNotFoundError, "NOT_FOUND", "Servable not found for request: Latest(nope)"),
    "classify unknown model": (lambda c: c.classify("nope", [{"x": 1.0}], signature_name="classify_x_to_y"), ModelNotFoundError, "NOT_FOUND", "Latest(nope)"),
    "wrong input name": (lambda c: c.predict(MODEL, {"wrong": [1.0]}), InvalidInputError, "INVALID_ARGUMENT", ""),
    "unknown signature": (lambda c: c.predict(MODEL, {"x": [1.0]}, signature_name="nope"), InvalidInputError, "INVALID_ARGUMENT", "nope"),
    "int feature for float": (lambda c: c.regress(MODEL, [{"x": 2}], signature_name="regress_x_to_y"), InvalidInputError, "INVALID_ARGUMENT", ""),
    "unknown output": (lambda c: c.predict(MODEL, {"x": [1.0]}, output_filter=["nope"]), InvalidInputError, "INVALID_ARGUMENT", "nope"),
    "string for float": (lambda c: c.predict(MODEL, {"x": ["a"]}), InvalidInputError, "INVALID_ARGUMENT", ""),
    "float64 regression output": (lambda c: c.regress(DOUBLE_REGRESSOR, [{"x": 1.0}]), InvalidInputError, "INVALID_ARGUMENT", "Expected output Tensor of DT_FLOAT.  Got: DT_DOUBLE"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors(client, case):
    call, error, code, text = ERROR_CASES[case]
    with pytest.raises(error) as info:
        call(client)
    assert isinstance(info.value, ServingError)
    assert info.value.code == code
    assert text in info.value.message


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_are_the_same_over_both_transports(labelled_server, case):
    call, _, _, _ = ERROR_CASES[case]
    seen = []
    for protocol in ("rest", "grpc"):
        with _connect(labelled_server, protocol) as c, pytest.raises(ServingError) as info:
            call(c)
        seen.append((type(info.value), info.value.code))
    assert seen[0] == seen[1]


def test_timeout(client):
    big = np.ones(4 * 1024 * 1024, np.float32)
    with pytest.raises(RequestTimeoutError) as info:
        client.predict(MODEL, {"x": big}, timeout=0.001)
    assert isinstance(info.value, TimeoutError) and info.value.code == "DEADLINE_EXCEEDED"


def test_large_tensor_over_grpc(labelled_server):
    x = np.random.default_rng(0).random(16 * 1024 * 1024 + 1, dtype=np.float32)  # > 64 MiB each way
    with ServingClient.grpc(labelled_server.grpc_target, timeout=120) as c:
        y = c.predict(MODEL, {"x": x}, version=1)["y"]
    assert y.nbytes > 64 * 1024 * 1024
    np.testing.assert_allclose(y, 0.5 * x + 2.0, rtol=1e-6)


def test_bad_response_from_something_that_is_not_tf_serving():
    class Garbage(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>not TF Serving</html>")

        do_GET = do_POST  # noqa: N815

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with ServingClient.rest(f"http://127.0.0.1:{httpd.server_address[1]}") as c:
            with pytest.raises(BadResponseError, match="not valid JSON"):
                c.predict(MODEL, {"x": [1.0]})
            with pytest.raises(BadResponseError):
                c.get_model_status(MODEL)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_refused_connection_is_unavailable(protocol):
    from tests.support.server import free_port

    port = free_port()
    address = f"http://127.0.0.1:{port}" if protocol == "rest" else f"127.0.0.1:{port}"
    c = ServingClient.rest(address, retry=FAST_RETRY) if protocol == "rest" else ServingClient.grpc(address, retry=FAST_RETRY)
    with c:
        with pytest.raises(ServerUnavailableError, match="gave up after 3 attempts") as info:
            c.get_model_status(MODEL)
        assert isinstance(info.value, ConnectionError) and info.value.code == "UNAVAILABLE"


def test_server_going_away_mid_run(tmp_path, model_base):
    """Both transports: working, then the server stops (retries, then a clear error), then it
    comes back on the same ports and the same clients recover."""
    config = _config(tmp_path / "models.config", model_base)
    flags = (f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models=true")
    first = launch(tmp_path / "a", *flags)
    try:
        first.wait_for_log("Exporting HTTP/REST API at:", timeout=120)
        clients = [_connect(first, "rest"), _connect(first, "grpc")]
        for c in clients:
            assert c.predict(MODEL, {"x": [2.0]}, version=1)["y"].tolist() == [3.0]
    finally:
        assert first.stop() == 0
    for c in clients:
        with pytest.raises(ServerUnavailableError, match="gave up after 3 attempts"):
            c.get_model_status(MODEL)
        with pytest.raises(ServerUnavailableError) as info:  # inference is not retried by default
            c.predict(MODEL, {"x": [2.0]})
        assert "gave up" not in info.value.message
    second = launch(tmp_path / "b", *flags, grpc_port=first.grpc_port, rest_port=first.rest_port)
    try:
        for c in clients:
            assert c.wait_until_available(MODEL, version_label="canary", timeout=120) == 2
            assert c.predict(MODEL, {"x": [2.0]}, version=1)["y"].tolist() == [3.0]
            c.close()
    finally:
        second.stop()


# ---- asyncio ------------------------------------------------------------------------------------


async def test_async_client(labelled_server, protocol):
    if protocol == "rest":
        made = AsyncServingClient.rest(labelled_server.rest_url, retry=FAST_RETRY)
    else:
        made = AsyncServingClient.grpc(labelled_server.grpc_target, retry=FAST_RETRY)
    async with made as c:
        assert await c.wait_until_available(MODEL, version_label="canary", timeout=30) == 2
        np.testing.assert_allclose((await c.predict(MODEL, {"x": [2.0]}, version=1))["y"], [3.0])
        assert (await c.classify(MODEL, [{"x": 2.0}], signature_name="classify_x_to_y")).classifications[0].scores == (4.0,)
        assert (await c.regress(MODEL, [{"x": 2.0}], signature_name="regress_x_to_y", version=1)).values == (3.0,)
        assert (await c.get_model_metadata(MODEL)).version == 2
        assert (await c.get_model_status(MODEL)).available_versions == (2, 1)
        with pytest.raises(ModelNotFoundError):
            await c.predict("nope", {"x": [1.0]})
        with pytest.raises(RequestTimeoutError):
            await c.predict(MODEL, {"x": np.ones(4 * 1024 * 1024, np.float32)}, timeout=0.001)


# ---- CLI ----------------------------------------------------------------------------------------


def test_cli_predict_and_status(labelled_server, protocol, tmp_path):
    from tfstack.client.cli import predict, status

    where = ["--rest", labelled_server.rest_url] if protocol == "rest" else ["--grpc", labelled_server.grpc_target]
    body = tmp_path / "body.json"
    body.write_text('{"signature_name": "serving_default", "instances": [1.0, 2.0]}')
    result = CliRunner().invoke(predict, [MODEL, *where, "--label", "stable", "--input", str(body), "--json"])
    assert result.exit_code == 0, result.output
    assert '"y": [\n      2.5,\n      3.0\n    ]' in result.output
    table = CliRunner().invoke(status, [MODEL, *where, "--wait", "30"])
    assert table.exit_code == 0 and "AVAILABLE" in table.output


def test_tfstack_status_command_runs_without_tensorflow(labelled_server):
    import subprocess
    import sys

    code = (
        "import sys\nfrom tfstack import cli as tfstack_cli\n"
        "try:\n"
        f"    tfstack_cli.cli(['status', '{MODEL}', '--grpc', '{labelled_server.grpc_target}', '--json'])\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code, 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert '"state": "AVAILABLE"' in out.stdout
    assert out.stdout.strip().endswith("exit 0 False")
