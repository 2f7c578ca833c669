"""The pytest plugin as a user meets it: `pytest --tfstack-serving-backend=...` on a small test file in a
fresh directory (so only the installed entry point loads the plugin), run as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_harness import shared_half_plus_two

pytestmark = pytest.mark.slow

USES_SERVING = """
def test_uses_a_server(tfstack_serving_factory, tmp_path):
    tfstack_serving_factory(tmp_path, model_name="m")

def test_plain():
    pass
"""

NO_ENGINE = "unix:///nonexistent/tfstack-test/docker.sock"


def run_pytest(directory: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, float]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TFSTACK_SERVING_", "PYTEST_"))}
    environment.update(env or {})
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=directory, env=environment, capture_output=True, text=True, timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "test_user_suite.py").write_text(USES_SERVING)
    return tmp_path


@pytest.mark.parametrize("how", ["option", "environment"])
def test_docker_without_an_engine_fails_fast_with_a_clear_message(suite, how):
    args, env = (["--tfstack-serving-backend=docker"], {}) if how == "option" else ([], {"TFSTACK_SERVING_BACKEND": "docker"})

    code, output, seconds = run_pytest(suite, *args, env={"DOCKER_HOST": NO_ENGINE, **env})

    assert code != 0, output
    assert f"--tfstack-serving-backend=docker needs a running Docker engine; none answered at {NO_ENGINE}" in output
    assert "passed" not in output, "no test may run (and none may silently use another backend)"
    assert seconds < 60, f"took {seconds:.1f}s"


def test_docker_is_not_contacted_when_no_selected_test_needs_a_server(suite):
    code, output, _ = run_pytest(suite, "--tfstack-serving-backend=docker", "-k", "plain", env={"DOCKER_HOST": NO_ENGINE})

    assert code == 0, output
    assert "1 passed" in output


def test_an_unknown_backend_is_a_usage_error(suite):
    code, output, _ = run_pytest(suite, env={"TFSTACK_SERVING_BACKEND": "dockr"})

    assert code == 4, output
    assert "TFSTACK_SERVING_BACKEND must be one of embedded, docker, external. Received: TFSTACK_SERVING_BACKEND='dockr'" in output


def test_external_without_addresses_is_a_usage_error(suite):
    code, output, _ = run_pytest(suite, "--tfstack-serving-backend=external")

    assert code == 4, output
    assert "--tfstack-serving-rest or TFSTACK_SERVING_REST" in output


def test_serving_fixture_on_an_external_server_from_options_and_environment(tmp_path_factory, tfstack_serving_factory):
    endpoint = tfstack_serving_factory(shared_half_plus_two(tmp_path_factory))
    suite = tmp_path_factory.mktemp("external_suite")
    (suite / "test_external.py").write_text(
        "import numpy as np\n"
        "def test_predict(tfstack_serving):\n"
        "    assert tfstack_serving.backend == 'external' and tfstack_serving.model_name == 'half_plus_two'\n"
        "    assert tfstack_serving.versions == {'half_plus_two': 1}\n"
        "    for protocol in ('rest', 'grpc'):\n"
        "        out = tfstack_serving.client(protocol).predict('half_plus_two', {'x': [2.0]})\n"
        "        np.testing.assert_allclose(out['y'], [3.0])\n"
    )

    code, output, _ = run_pytest(
        suite, "--tfstack-serving-backend=external", f"--tfstack-serving-rest={endpoint.rest_url}", "--tfstack-serving-model-name=half_plus_two",
        env={"TFSTACK_SERVING_GRPC": endpoint.grpc_target},
    )

    assert code == 0, output
    assert "1 passed" in output


def test_serving_fixture_without_a_model_says_what_is_missing(tmp_path):
    (tmp_path / "test_needs_model.py").write_text("def test_x(tfstack_serving):\n    pass\n")

    code, output, _ = run_pytest(tmp_path)

    assert code == 1, output
    assert "The `tfstack_serving` fixture needs --tfstack-serving-model-base-path" in output


def test_serving_fixture_starts_the_embedded_server_for_a_users_model(tmp_path_factory):
    base = shared_half_plus_two(tmp_path_factory)
    suite = tmp_path_factory.mktemp("user_suite")
    (suite / "test_user_model.py").write_text(
        "import numpy as np\n"
        "def test_model(tfstack_serving):\n"
        "    assert tfstack_serving.backend == 'embedded' and tfstack_serving.model_name == 'half_plus_two'\n"
        "    assert tfstack_serving.rest_url.startswith('http://127.0.0.1:')\n"
        "    for protocol in ('rest', 'grpc'):\n"
        "        out = tfstack_serving.client(protocol).predict('half_plus_two', {'x': [0.0, 2.0]})\n"
        "        np.testing.assert_allclose(out['y'], [2.0, 3.0])\n"
    )

    code, output, _ = run_pytest(suite, env={"TFSTACK_SERVING_MODEL_BASE_PATH": str(base)}, timeout=300)

    assert code == 0, output
    assert "1 passed" in output
