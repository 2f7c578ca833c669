"""The docker backend without a Docker engine: what it asks the engine to run (a stand-in engine
records it), how it reports a container that exits, and that it cleans up. The real image runs
with `pytest --serving-backend=docker` where an engine exists."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tfstack.serving.testing._harness import (
    TF_SERVING_IMAGE,
    BackendUnavailableError,
    DockerBackend,
    HarnessError,
    ServeRequest,
    serve_models,
)


class FakeContainer:
    short_id = "c0ffee"

    def __init__(self) -> None:
        self.status = "created"
        self.attrs = {"State": {"ExitCode": 1}}
        self.calls: list[str] = []

    def reload(self) -> None:
        self.status = "exited"  # TF Serving refused to start

    def logs(self, tail: int) -> bytes:
        return b"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file\n"

    def stop(self, timeout: int) -> None:
        self.calls.append("stop")

    def remove(self, force: bool) -> None:
        self.calls.append("remove")


class FakeEngine:
    def __init__(self) -> None:
        self.container = FakeContainer()
        self.runs: list[tuple[str, dict]] = []
        self.containers = self

    def ping(self) -> bool:
        return True

    def run(self, image: str, **kwargs) -> FakeContainer:
        self.runs.append((image, kwargs))
        return self.container


@pytest.fixture
def attempt(tmp_path: Path):
    engine = FakeEngine()
    models = {"digits": tmp_path / "repo" / "digits", "iris": tmp_path / "elsewhere" / "iris_v2"}
    request = ServeRequest(models=models, flags=("--enable_batching=true",), timeout=60)
    started = time.monotonic()
    with pytest.raises(HarnessError) as caught:
        with serve_models(DockerBackend(engine=engine), request, workdir=tmp_path / "work"):
            pytest.fail("an exited container must not be reported ready")
    return engine, models, str(caught.value), time.monotonic() - started, tmp_path / "work"


def test_runs_the_pinned_image_with_read_only_models_on_loopback_ports(attempt):
    engine, models, _, _, _ = attempt
    ((image, spec),) = engine.runs

    assert image == TF_SERVING_IMAGE
    assert spec["detach"] is True
    assert spec["volumes"][str(models["digits"])] == {"bind": "/models/digits", "mode": "ro"}
    assert spec["volumes"][str(models["iris"])] == {"bind": "/models/iris", "mode": "ro"}
    assert all(volume["mode"] == "ro" for volume in spec["volumes"].values())
    assert set(spec["ports"]) == {"8500/tcp", "8501/tcp"}
    assert all(host == "127.0.0.1" and port > 0 for host, port in spec["ports"].values())
    assert spec["command"] == ["--model_config_file=/etc/tfserving/models.config", "--enable_batching=true"]


def test_generated_config_uses_container_paths(attempt):
    engine, models, _, _, _ = attempt
    ((_, spec),) = engine.runs
    config_dir = next(host for host, volume in spec["volumes"].items() if volume["bind"] == "/etc/tfserving")

    text = (Path(config_dir) / "models.config").read_text()

    assert "base_path: '/models/digits'" in text and "base_path: '/models/iris'" in text
    assert not any(str(host) in text for host in models.values()), "host paths mean nothing in the container"


def test_an_exited_container_is_reported_at_once_with_its_log_and_removed(attempt):
    engine, _, message, seconds, _ = attempt

    assert "exited with code 1" in message and TF_SERVING_IMAGE in message
    assert "Invalid protobuf file" in message
    assert seconds < 30
    assert engine.container.calls == ["stop", "remove"]


def test_no_engine_is_a_clear_error_naming_the_address(tmp_path):
    backend = DockerBackend(docker_host="unix:///nonexistent/tfstack/docker.sock")

    expected = r"needs a running Docker engine; none answered at unix:///nonexistent/tfstack/docker.sock: "
    with pytest.raises(BackendUnavailableError, match=expected):
        with serve_models(backend, ServeRequest(models={"m": tmp_path}), workdir=tmp_path):
            pass
