"""The serving harness end to end: the plugin's fixtures on the selected backend (embedded by
default), the embedded backend's failure reporting and teardown, and the external backend
attached to a server this test starts."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tfstack.serving.testing._harness import (
    EmbeddedBackend,
    ExternalBackend,
    HarnessError,
    ServeRequest,
    serve_models,
)
from tests.support.models import build_half_plus

pytestmark = pytest.mark.slow


def shared_half_plus_two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One half_plus_two base path (version 1) per session, so harness tests share one server."""
    base = tmp_path_factory.getbasetemp() / "harness-shared" / "half_plus_two"
    if not (base / "1").is_dir():
        build_half_plus(base / "1")
    return base


@pytest.fixture(scope="module")
def half_plus_two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_half_plus_two(tmp_path_factory)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_serving_factory_yields_an_available_model_and_clients(tfstack_serving_factory, half_plus_two, protocol):
    endpoint = tfstack_serving_factory(half_plus_two)

    assert endpoint.model_name == "half_plus_two"
    assert endpoint.versions == {"half_plus_two": 1}
    client = endpoint.client(protocol)
    assert client.get_model_status("half_plus_two").available_versions == (1,)
    outputs = client.predict("half_plus_two", {"x": np.array([1.0, 2.0, 5.0], np.float32)})
    np.testing.assert_allclose(outputs["y"], [2.5, 3.0, 4.5])


def test_identical_requests_share_one_server(tfstack_serving_factory, half_plus_two):
    first = tfstack_serving_factory(half_plus_two)
    again = tfstack_serving_factory(half_plus_two, model_name="half_plus_two")

    assert again is first
    assert first.rest_url.startswith("http://127.0.0.1:") and first.grpc_target.startswith("127.0.0.1:")


def test_a_server_that_exits_is_reported_at_once_with_its_log(tmp_path, half_plus_two):
    # A later --port wins (TF Serving's flag rules), so the server rejects it and exits 255.
    request = ServeRequest(models={"half_plus_two": half_plus_two}, flags=("--port=abc",), timeout=120)
    started = time.monotonic()

    with pytest.raises(HarnessError) as caught:
        with serve_models(EmbeddedBackend(), request, workdir=tmp_path):
            pytest.fail("the server should not have become ready")

    message = str(caught.value)
    assert "exited with code 255" in message
    assert "Couldn't interpret value abc for flag port" in message  # from the server log tail
    assert time.monotonic() - started < 60, "a dead server must not be waited for until the deadline"


def test_external_backend_attaches_without_owning_the_server(tmp_path, half_plus_two):
    request = ServeRequest(models={"half_plus_two": half_plus_two}, timeout=180)
    with serve_models(EmbeddedBackend(), request, workdir=tmp_path / "embedded") as embedded:
        external = ExternalBackend(rest_url=embedded.rest_url, grpc_target=embedded.grpc_target)
        # The external backend never reads the base path: the server already has the model.
        unused = ServeRequest(models={"half_plus_two": tmp_path / "not-used"}, timeout=30)
        with serve_models(external, unused, workdir=tmp_path / "external") as attached:
            assert attached.backend == "external"
            assert attached.versions == {"half_plus_two": 1}
            out = attached.client("grpc").predict("half_plus_two", {"x": [4.0]})
            np.testing.assert_allclose(out["y"], [4.0])
        # Leaving the external endpoint must not stop a server it does not own.
        assert httpx.get(f"{embedded.rest_url}/v1/models/half_plus_two").status_code == 200
        process = embedded.running.process

    assert process.poll() is not None, "the embedded server must be stopped at teardown"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{embedded.rest_url}/v1/models/half_plus_two", timeout=2)


def test_waiting_for_a_model_the_server_does_not_have_names_it(tmp_path, tfstack_serving_factory, half_plus_two):
    endpoint = tfstack_serving_factory(half_plus_two)
    external = ExternalBackend(rest_url=endpoint.rest_url, grpc_target=endpoint.grpc_target)
    request = ServeRequest(models={"nope": tmp_path}, timeout=1.5)

    with pytest.raises(HarnessError, match=r"Model 'nope' was not AVAILABLE over rest .* within 1.5s .*NOT_FOUND"):
        with serve_models(external, request, workdir=tmp_path):
            pass


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"rest_url": "localhost:8501", "grpc_target": "localhost:8500"}, "REST address as http"),
        ({"rest_url": "http://localhost:8501", "grpc_target": "http://localhost:8500"}, "gRPC address as host:port"),
        ({"rest_url": None, "grpc_target": "localhost:8500"}, "Received: rest_url=None"),
    ],
)
def test_external_backend_rejects_bad_addresses_before_any_io(kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        ExternalBackend(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"models": {}}, "non-empty mapping"),
        ({"models": {"bad name": "/tmp/x"}}, "Received: model_name='bad name'"),
        ({"models": {"m": 3}}, "Received: base_path=3"),
        ({"models": {"m": "/tmp/m"}, "flags": "--enable_batching"}, "Received: flags="),
        ({"models": {"m": "/tmp/m"}, "timeout": 0}, "Received: timeout=0"),
    ],
)
def test_serve_request_rejects_bad_arguments(kwargs, expected):
    with pytest.raises((ValueError, TypeError), match=expected):
        ServeRequest(**kwargs)


def test_serve_request_normalises_paths_and_writes_a_model_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    request = ServeRequest(models={"a": "models/a", "b": Path("/srv/b")})

    assert request.models == {"a": tmp_path / "models" / "a", "b": Path("/srv/b")}
    assert request == ServeRequest(models={"a": tmp_path / "models" / "a", "b": "/srv/b"})
    assert len({request, ServeRequest(models={"a": tmp_path / "models/a", "b": "/srv/b"})}) == 1
    assert request.model_config({"a": "/models/a", "b": "/models/b"}) == (
        "model_config_list {\n"
        "  config {\n    name: 'a'\n    base_path: '/models/a'\n    model_platform: 'tensorflow'\n  }\n"
        "  config {\n    name: 'b'\n    base_path: '/models/b'\n    model_platform: 'tensorflow'\n  }\n"
        "}\n"
    )


def test_model_config_survives_quotes_in_paths():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    request = ServeRequest(models={"m": "/data/o'brien\\models/m"})

    parsed = text_format.Parse(request.model_config(), model_server_config_pb2.ModelServerConfig())
    assert parsed.model_config_list.config[0].base_path == "/data/o'brien\\models/m"


PARENT = """
import sys
from pathlib import Path
from tfstack.serving import EmbeddedBackend, ServeRequest, serve_models

with serve_models(EmbeddedBackend(), ServeRequest(models={"half_plus_two": Path(sys.argv[1])}), workdir=Path(sys.argv[2])) as ep:
    print(ep.rest_url, flush=True)
    sys.stdin.read()  # until the test kills this process
"""


def test_a_killed_test_run_leaves_no_server_behind(tmp_path, half_plus_two):
    """kill -9 of the process that started the embedded server (a CI timeout, a killed pytest)
    must not leave the server holding its ports and ~800 MB: the kernel sends it SIGTERM."""
    import signal
    import socket
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(half_plus_two), str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        rest_url = parent.stdout.readline().strip()
        assert rest_url.startswith("http://127.0.0.1:"), rest_url
        port = int(rest_url.rsplit(":", 1)[1])
        assert httpx.get(f"{rest_url}/v1/models/half_plus_two", timeout=10).status_code == 200
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

    deadline = time.monotonic() + 60  # the server drains for at most 10 s, then exits
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            break  # nothing listens any more: the server is gone
        assert time.monotonic() < deadline, f"the server on port {port} outlived its killed parent"
        time.sleep(0.1)


LIVE_GRPC_PARENT = """
import subprocess, sys
import grpc
from tfstack.serving.testing._harness import _sigterm_when_parent_dies

channel = grpc.insecure_channel("127.0.0.1:1")  # a live channel: gRPC's poller thread runs
try:
    grpc.channel_ready_future(channel).result(timeout=0.2)
except grpc.FutureTimeoutError:
    pass
failed = [p.returncode for p in (
    subprocess.run(_sigterm_when_parent_dies([sys.executable, "-S", "-c", "print('up')"]), capture_output=True, text=True)
    for _ in range(int(sys.argv[1]))
) if p.returncode != 0 or p.stdout != "up\\n"]
print(failed)
"""


def test_servers_started_beside_live_grpc_channels_always_start():
    """A test process holds gRPC channels while it starts servers. With the orphan guard as a
    `preexec_fn`, subprocess forked and gRPC >= 1.81's fork handler let ~1.5% of children abort
    (SIGABRT, "epoll_wait error: Bad file descriptor") before exec (grpc/grpc#43055): 3 of 200
    here, and a CI run lost a server's whole module of tests. The guard now runs after exec."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", LIVE_GRPC_PARENT, "200"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"children that did not start (exit codes): {result.stdout}"
