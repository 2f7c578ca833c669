"""pytest fixtures that serve models through the embedded server, real TF Serving, or an external one.

Installed with tfstack (entry point `pytest11: tfstack`), so any project that has tfstack
installed can use it on its own models. The same test runs unchanged on every backend:

    def test_my_model(tfstack_serving_factory, tmp_path):
        endpoint = tfstack_serving_factory("/abs/path/models/my_model", model_name="my_model")
        for protocol in ("rest", "grpc"):
            out = endpoint.client(protocol).predict("my_model", {"x": [[1.0, 2.0]]})

    def test_configured_model(tfstack_serving):          # uses --tfstack-serving-model-base-path/--tfstack-serving-model-name
        tfstack_serving.client("grpc").get_model_status(tfstack_serving.model_name)

Choose the backend on the command line (or with the environment variable in brackets):

    --tfstack-serving-backend=embedded|docker|external   [TFSTACK_SERVING_BACKEND]   default: embedded
    --tfstack-serving-rest=http://host:8501              [TFSTACK_SERVING_REST]      external backend
    --tfstack-serving-grpc=host:8500                     [TFSTACK_SERVING_GRPC]      external backend
    --tfstack-serving-model-base-path=/abs/models/NAME   [TFSTACK_SERVING_MODEL_BASE_PATH]  for `serving`
    --tfstack-serving-model-name=NAME                    [TFSTACK_SERVING_MODEL_NAME]       default: base path's name
    --tfstack-serving-timeout=SECONDS                    [TFSTACK_SERVING_TIMEOUT]   wait for AVAILABLE (default 180)

`--tfstack-serving-backend=docker` runs the pinned `tensorflow/serving:2.21.0` image with the model
base paths mounted read-only. When no Docker engine answers, the run stops before any test
with a clear message; it never falls back to another backend.
The external backend serves whatever that server has loaded: tests only wait for their model.

Fixtures:
    tfstack_serving_backend (session): the chosen `ServingBackend`.
    tfstack_serving_factory (session): `tfstack_serving_factory(base_path, model_name=None, *, models=None,
        flags=(), timeout=None) -> ServingEndpoint`. Servers are shared per distinct request
        for the whole session and stopped at its end.
    serving (session): the endpoint for --tfstack-serving-model-base-path / --tfstack-serving-model-name.

A `ServingEndpoint` has `rest_url`, `grpc_target`, `model_name`, `model_names`, `versions`,
`backend`, `client("rest" | "grpc")` (a `client.ServingClient`) and `log_tail()`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

# The harness is stdlib-only at import (clients, docker and the server load when a backend
# starts), and `tfstack.serving` resolves its names lazily: the plugin, which pytest loads in
# every run of the environment, costs a few milliseconds when no fixture is used.
from tfstack.serving.testing._harness import (
    BACKENDS,
    DEFAULT_TIMEOUT,
    BackendUnavailableError,
    DockerBackend,
    EmbeddedBackend,
    ExternalBackend,
    ServeRequest,
    ServingBackend,
    ServingEndpoint,
    serve_models,
)

_FIXTURES = ("tfstack_serving", "tfstack_serving_factory", "tfstack_serving_backend")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tfstack-serving", "tfstack serving harness (embedded / docker / external)")
    group.addoption(
        "--tfstack-serving-backend", choices=BACKENDS, default=None,
        help="server behind the `tfstack_serving` fixtures (env TFSTACK_SERVING_BACKEND; default embedded)",
    )
    group.addoption("--tfstack-serving-rest", default=None, help="REST URL of an external server (env TFSTACK_SERVING_REST)")
    group.addoption("--tfstack-serving-grpc", default=None, help="gRPC host:port of an external server (env TFSTACK_SERVING_GRPC)")
    group.addoption(
        "--tfstack-serving-model-base-path", default=None,
        help="model base path served by the `tfstack_serving` fixture (env TFSTACK_SERVING_MODEL_BASE_PATH)",
    )
    group.addoption(
        "--tfstack-serving-model-name", default=None,
        help="model name for the `tfstack_serving` fixture (env TFSTACK_SERVING_MODEL_NAME; default: base path's name)",
    )
    group.addoption(
        "--tfstack-serving-timeout", default=None, type=float,
        help=f"seconds to wait until models are AVAILABLE (env TFSTACK_SERVING_TIMEOUT; default {DEFAULT_TIMEOUT:g})",
    )


def _setting(config: pytest.Config, option: str, env: str) -> Any:
    value = config.getoption(option)
    return value if value is not None else os.environ.get(env) or None


def backend_name(config: pytest.Config) -> str:
    """The backend chosen by --tfstack-serving-backend or TFSTACK_SERVING_BACKEND (default embedded)."""
    name = _setting(config, "tfstack_serving_backend", "TFSTACK_SERVING_BACKEND") or "embedded"
    if name not in BACKENDS:
        raise pytest.UsageError(
            f"TFSTACK_SERVING_BACKEND must be one of {', '.join(BACKENDS)}. Received: TFSTACK_SERVING_BACKEND={name!r}"
        )
    return name


def make_backend(config: pytest.Config) -> ServingBackend:
    """Build the backend the options ask for; the docker engine is pinged here (fail fast)."""
    name = backend_name(config)
    if name == "embedded":
        return EmbeddedBackend()
    if name == "docker":
        backend = DockerBackend(docker_host=os.environ.get("DOCKER_HOST") or None)
        backend.ensure_engine()
        return backend
    try:
        return ExternalBackend(
            rest_url=_setting(config, "tfstack_serving_rest", "TFSTACK_SERVING_REST"),
            grpc_target=_setting(config, "tfstack_serving_grpc", "TFSTACK_SERVING_GRPC"),
        )
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_configure(config: pytest.Config) -> None:
    backend_name(config)  # a bad TFSTACK_SERVING_BACKEND is a usage error before collection


def pytest_collection_finish(session: pytest.Session) -> None:
    # Fail the whole run before the first test, with one message, when a selected test needs a
    # backend that cannot run here. Runs that select no serving test (-k, unit suites) are not affected.
    config = session.config
    if not any(set(_FIXTURES) & set(getattr(item, "fixturenames", ())) for item in session.items):
        return
    if backend_name(config) in ("docker", "external"):
        try:
            make_backend(config)
        except BackendUnavailableError as exc:
            raise pytest.UsageError(str(exc)) from exc


def _timeout(config: pytest.Config) -> float:
    value = _setting(config, "tfstack_serving_timeout", "TFSTACK_SERVING_TIMEOUT")
    try:
        seconds = float(value) if value is not None else DEFAULT_TIMEOUT
    except ValueError as exc:
        raise pytest.UsageError(f"TFSTACK_SERVING_TIMEOUT must be a number of seconds. Received: {value!r}") from exc
    return seconds


@pytest.fixture(scope="session")
def tfstack_serving_backend(pytestconfig: pytest.Config) -> ServingBackend:
    """The ServingBackend chosen with --tfstack-serving-backend (embedded, docker or external)."""
    try:
        return make_backend(pytestconfig)
    except BackendUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def tfstack_serving_factory(tfstack_serving_backend: ServingBackend, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory):
    """Start (or reuse) a server for some models and return its ServingEndpoint once AVAILABLE.

    Call it as `tfstack_serving_factory(base_path, model_name=None, *, models=None, flags=(), timeout=None)`:
    `base_path` is one model's directory of versions (its name is the default model_name), or
    pass `models={name: base_path, ...}` for several. Identical requests share one server.
    """
    default_timeout = _timeout(pytestconfig)
    started: dict[tuple[tuple[tuple[str, Path], ...], tuple[str, ...]], ServingEndpoint] = {}
    with contextlib.ExitStack() as stack:

        def factory(
            base_path: str | os.PathLike[str] | None = None,
            model_name: str | None = None,
            *,
            models: Mapping[str, str | os.PathLike[str]] | None = None,
            flags: tuple[str, ...] = (),
            timeout: float | None = None,
        ) -> ServingEndpoint:
            if (base_path is None) == (models is None):
                raise ValueError(
                    "Pass either a base_path (one model) or models={model_name: base_path}. "
                    f"Received: base_path={base_path!r}, models={models!r}"
                )
            if models is None:
                assert base_path is not None  # checked above: exactly one of the two
                models = {model_name or Path(base_path).name: base_path}
            request = ServeRequest(
                models={name: Path(path) for name, path in models.items()}, flags=tuple(flags), timeout=default_timeout if timeout is None else timeout
            )
            key = (tuple(request.models.items()), request.flags)
            if key not in started:
                workdir = tmp_path_factory.mktemp(f"serving-{tfstack_serving_backend.name}")
                started[key] = stack.enter_context(serve_models(tfstack_serving_backend, request, workdir=workdir))
            return started[key]

        yield factory


@pytest.fixture(scope="session")
def tfstack_serving(tfstack_serving_factory, tfstack_serving_backend: ServingBackend, pytestconfig: pytest.Config) -> ServingEndpoint:
    """The endpoint serving --tfstack-serving-model-base-path as --tfstack-serving-model-name, AVAILABLE."""
    base_path = _setting(pytestconfig, "tfstack_serving_model_base_path", "TFSTACK_SERVING_MODEL_BASE_PATH")
    model_name = _setting(pytestconfig, "tfstack_serving_model_name", "TFSTACK_SERVING_MODEL_NAME")
    if base_path is None and not (tfstack_serving_backend.name == "external" and model_name):
        pytest.fail(
            "The `tfstack_serving` fixture needs --tfstack-serving-model-base-path=/abs/models/NAME (or, with "
            "--tfstack-serving-backend=external, --tfstack-serving-model-name=NAME); or call tfstack_serving_factory(base_path) "
            f"in your own fixture. Received: base_path={base_path!r}, model_name={model_name!r}",
            pytrace=False,
        )
    # An external server is not told where models live; the path only names the model.
    return tfstack_serving_factory(base_path or model_name, model_name=model_name)
