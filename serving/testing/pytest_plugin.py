"""pytest fixtures that serve models through the embedded server, real TF Serving, or an external one.

Installed with tfstack (entry point `pytest11: tfstack`), so any project that has tfstack
installed can use it on its own models. The same test runs unchanged on every backend:

    def test_my_model(serving_factory, tmp_path):
        endpoint = serving_factory("/abs/path/models/my_model", model_name="my_model")
        for protocol in ("rest", "grpc"):
            out = endpoint.client(protocol).predict("my_model", {"x": [[1.0, 2.0]]})

    def test_configured_model(serving):          # uses --serving-model-base-path/--serving-model-name
        serving.client("grpc").get_model_status(serving.model_name)

Choose the backend on the command line (or with the environment variable in brackets):

    --serving-backend=embedded|docker|external   [TFSTACK_SERVING_BACKEND]   default: embedded
    --serving-rest=http://host:8501              [TFSTACK_SERVING_REST]      external backend
    --serving-grpc=host:8500                     [TFSTACK_SERVING_GRPC]      external backend
    --serving-model-base-path=/abs/models/NAME   [TFSTACK_SERVING_MODEL_BASE_PATH]  for `serving`
    --serving-model-name=NAME                    [TFSTACK_SERVING_MODEL_NAME]       default: base path's name
    --serving-timeout=SECONDS                    [TFSTACK_SERVING_TIMEOUT]   wait for AVAILABLE (default 180)

`--serving-backend=docker` runs the pinned `tensorflow/serving:2.21.0` image with the model
base paths mounted read-only. When no Docker engine answers, the run stops before any test
with a clear message; it never falls back to another backend.
The external backend serves whatever that server has loaded: tests only wait for their model.

Fixtures:
    serving_backend (session): the chosen `ServingBackend`.
    serving_factory (session): `serving_factory(base_path, model_name=None, *, models=None,
        flags=(), timeout=None) -> ServingEndpoint`. Servers are shared per distinct request
        for the whole session and stopped at its end.
    serving (session): the endpoint for --serving-model-base-path / --serving-model-name.

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

_FIXTURES = ("serving", "serving_factory", "serving_backend")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tfstack-serving", "tfstack serving harness (embedded / docker / external)")
    group.addoption(
        "--serving-backend", choices=BACKENDS, default=None,
        help="server behind the `serving` fixtures (env TFSTACK_SERVING_BACKEND; default embedded)",
    )
    group.addoption("--serving-rest", default=None, help="REST URL of an external server (env TFSTACK_SERVING_REST)")
    group.addoption("--serving-grpc", default=None, help="gRPC host:port of an external server (env TFSTACK_SERVING_GRPC)")
    group.addoption(
        "--serving-model-base-path", default=None,
        help="model base path served by the `serving` fixture (env TFSTACK_SERVING_MODEL_BASE_PATH)",
    )
    group.addoption(
        "--serving-model-name", default=None,
        help="model name for the `serving` fixture (env TFSTACK_SERVING_MODEL_NAME; default: base path's name)",
    )
    group.addoption(
        "--serving-timeout", default=None, type=float,
        help=f"seconds to wait until models are AVAILABLE (env TFSTACK_SERVING_TIMEOUT; default {DEFAULT_TIMEOUT:g})",
    )


def _setting(config: pytest.Config, option: str, env: str) -> Any:
    value = config.getoption(option)
    return value if value is not None else os.environ.get(env) or None


def backend_name(config: pytest.Config) -> str:
    """The backend chosen by --serving-backend or TFSTACK_SERVING_BACKEND (default embedded)."""
    name = _setting(config, "serving_backend", "TFSTACK_SERVING_BACKEND") or "embedded"
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
            rest_url=_setting(config, "serving_rest", "TFSTACK_SERVING_REST"),
            grpc_target=_setting(config, "serving_grpc", "TFSTACK_SERVING_GRPC"),
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
    value = _setting(config, "serving_timeout", "TFSTACK_SERVING_TIMEOUT")
    try:
        seconds = float(value) if value is not None else DEFAULT_TIMEOUT
    except ValueError as exc:
        raise pytest.UsageError(f"TFSTACK_SERVING_TIMEOUT must be a number of seconds. Received: {value!r}") from exc
    return seconds


@pytest.fixture(scope="session")
def serving_backend(pytestconfig: pytest.Config) -> ServingBackend:
    """The ServingBackend chosen with --serving-backend (embedded, docker or external)."""
    try:
        return make_backend(pytestconfig)
    except BackendUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def serving_factory(serving_backend: ServingBackend, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory):
    """Start (or reuse) a server for some models and return its ServingEndpoint once AVAILABLE.

    Call it as `serving_factory(base_path, model_name=None, *, models=None, flags=(), timeout=None)`:
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
                models = {model_name or Path(base_path).name: base_path}
            request = ServeRequest(
                models=models, flags=tuple(flags), timeout=default_timeout if timeout is None else timeout
            )
            key = (tuple(request.models.items()), request.flags)
            if key not in started:
                workdir = tmp_path_factory.mktemp(f"serving-{serving_backend.name}")
                started[key] = stack.enter_context(serve_models(serving_backend, request, workdir=workdir))
            return started[key]

        yield factory


@pytest.fixture(scope="session")
def serving(serving_factory, serving_backend: ServingBackend, pytestconfig: pytest.Config) -> ServingEndpoint:
    """The endpoint serving --serving-model-base-path as --serving-model-name, AVAILABLE."""
    base_path = _setting(pytestconfig, "serving_model_base_path", "TFSTACK_SERVING_MODEL_BASE_PATH")
    model_name = _setting(pytestconfig, "serving_model_name", "TFSTACK_SERVING_MODEL_NAME")
    if base_path is None and not (serving_backend.name == "external" and model_name):
        pytest.fail(
            "The `serving` fixture needs --serving-model-base-path=/abs/models/NAME (or, with "
            "--serving-backend=external, --serving-model-name=NAME); or call serving_factory(base_path) "
            f"in your own fixture. Received: base_path={base_path!r}, model_name={model_name!r}",
            pytrace=False,
        )
    # An external server is not told where models live; the path only names the model.
    return serving_factory(base_path or model_name, model_name=model_name)
