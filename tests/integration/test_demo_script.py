"""`make demo`'s serving half (scripts/demo-serve.sh) as a user runs it (issue 18, item 5).

The script used to wait its full 120 s when its server had already died (a port in use), and
printed a `curl` line only after stopping the server. It now refuses a taken port at once,
notices a dead server within one poll, and runs the curl request while the server is up.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.models import build_half_plus
from tests.support.server import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A repository with `digits` version 1 (half_plus_two standing in) and its sample request."""
    root = tmp_path_factory.mktemp("demo-models")
    version = build_half_plus(root / "digits" / "1")
    (version / "assets.extra").mkdir(exist_ok=True)
    (version / "assets.extra" / "sample_request.json").write_text(json.dumps({"inputs": {"x": [1.0, 2.0]}}))
    return root


def _demo(models: Path, grpc_port: int, rest_port: int, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MODELS": str(models), "GRPC_PORT": str(grpc_port), "REST_PORT": str(rest_port),
                   "BIN": str(BIN)}
    environment.update(env)
    # The timeout is far below the script's 120 s wait: a hang fails the test.
    return subprocess.run(["bash", str(ROOT / "scripts" / "demo-serve.sh")], env=environment, cwd=ROOT,
                          capture_output=True, text=True, timeout=90)


def test_a_port_in_use_is_named_at_once(models):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _demo(models, free_port(), port)
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "DEMO_GRPC_PORT=" in done.stderr


def test_a_server_that_dies_is_reported_with_its_log_at_once(models, tmp_path):
    # A stand-in `tfstack` whose server exits at startup, as it does when it cannot bind.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "tfstack").write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1" = serve ]; then echo "Failed to start server. Error: UNAVAILABLE: Failed to bind"; exit 255; fi\n'
        "exit 1\n"
    )
    (fake_bin / "tfstack").chmod(0o755)
    done = _demo(models, free_port(), free_port(), BIN=str(fake_bin), WAIT_SECONDS="600")
    assert done.returncode == 1
    assert "the server exited (status 255) before digits became available; its log:" in done.stderr
    assert "Failed to start server. Error: UNAVAILABLE: Failed to bind" in done.stderr


def test_the_demo_queries_rest_grpc_and_curl_while_the_server_is_up(models):
    grpc_port, rest_port = free_port(), free_port()
    done = _demo(models, grpc_port, rest_port)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.index("== predict over REST") < out.index("== predict over gRPC") < out.index("curl -s -d @")
    assert '"y"' in out or "'y'" in out or " y " in out
    curl_answer = out.split(f"/v1/models/digits:predict\n", 1)[1]
    assert '"outputs"' in curl_answer and "2.5" in curl_answer  # answered by the live server
