"""Start (or attach to) a TF-Serving-compatible server and wait until its models are AVAILABLE.

Three backends share one protocol, so the same tests run against the embedded server, the real
TensorFlow Serving image, or a server someone else runs:

- `EmbeddedBackend`: `python -m tfstack serve` as a subprocess on free loopback ports.
- `DockerBackend`: the pinned `tensorflow/serving` image through the docker SDK, every model
  base path mounted read-only under /models, ports published on 127.0.0.1 only.
- `ExternalBackend`: the REST and gRPC addresses of a running server; nothing is started or stopped.

`serve_models` is the one entry point: it starts a backend, runs the shared
`wait_until_available` routine (status over REST *and* gRPC, by polling with a deadline, while
checking that the server is still alive) and yields a `ServingEndpoint`.

    from tfstack.serving.testing._harness import EmbeddedBackend, ServeRequest, serve_models

    request = ServeRequest(models={"digits": Path("models/digits")})
    with serve_models(EmbeddedBackend(), request, workdir=Path("/tmp/h")) as endpoint:
        endpoint.client("grpc").predict("digits", {"pixels": x})

Most users reach this through the pytest plugin (`serving/testing/pytest_plugin.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from tfstack.serving._errors import ServerError

__all__ = [
    "BACKENDS",
    "DEFAULT_TIMEOUT",
    "TF_SERVING_IMAGE",
    "BackendUnavailableError",
    "DockerBackend",
    "EmbeddedBackend",
    "ExternalBackend",
    "HarnessError",
    "RunningBackend",
    "ServeRequest",
    "ServingBackend",
    "ServingEndpoint",
    "serve_models",
    "wait_until_available",
]

# The release whose behaviour the embedded server follows (docs/architecture.md, docker-compose.yml).
TF_SERVING_IMAGE = "tensorflow/serving:2.21.0"
BACKENDS = ("embedded", "docker", "external")
DEFAULT_TIMEOUT = 180.0
PROTOCOLS = ("rest", "grpc")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_LOG_TAIL_LINES = 60
_POLL_INTERVAL = 0.1
# Where docker-py looks when DOCKER_HOST is unset.
_DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"
_CONTAINER_MODELS = "/models"
_CONTAINER_CONFIG = "/etc/tfserving"


class HarnessError(ServerError):
    """A server could not be started, died, or did not make its models AVAILABLE in time."""


class BackendUnavailableError(HarnessError):
    """The requested backend cannot run here (e.g. no Docker engine answers)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServeRequest:
    """What to serve: model names mapped to their base paths (the directory of version dirs).

    Args:
        models: {model_name: base_path}; every base path holds numeric version directories.
        flags: extra tensorflow_model_server flags, e.g. ("--enable_batching=true",).
        timeout: seconds to wait for every model to be AVAILABLE over REST and gRPC.

    Example:
        >>> ServeRequest(models={"half_plus_two": Path("/tmp/models/half_plus_two")})
    """

    models: Mapping[str, Path]
    flags: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not isinstance(self.models, Mapping) or not self.models:
            raise ValueError(
                f"`models` must be a non-empty mapping of model_name -> base_path. Received: models={self.models!r}"
            )
        normalised: dict[str, Path] = {}
        for name, base_path in self.models.items():
            if not isinstance(name, str) or not _MODEL_NAME.match(name):
                raise ValueError(
                    f"A model_name must be letters, digits, '_', '-' or '.'. Received: model_name={name!r}"
                )
            if not isinstance(base_path, (str, os.PathLike)):
                raise TypeError(f"A base_path must be a str or os.PathLike. Received: base_path={base_path!r}")
            normalised[name] = Path(base_path).expanduser().absolute()
        object.__setattr__(self, "models", normalised)
        if isinstance(self.flags, str) or not all(isinstance(f, str) and f.startswith("--") for f in self.flags):
            raise ValueError(f"`flags` must be a tuple of '--name=value' strings. Received: flags={self.flags!r}")
        object.__setattr__(self, "flags", tuple(self.flags))
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or self.timeout <= 0:
            raise ValueError(f"`timeout` must be a number of seconds > 0. Received: timeout={self.timeout!r}")

    def __hash__(self) -> int:
        # The generated hash would fail on the dict; equal requests can share one server.
        return hash((tuple(self.models.items()), self.flags, self.timeout))

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self.models)

    def model_config(self, base_paths: Mapping[str, str] | None = None) -> str:
        """The text-format ModelServerConfig for these models (paths as the server will see them)."""
        paths = base_paths or {name: str(path) for name, path in self.models.items()}
        entries = "".join(
            f"  config {{\n    name: '{name}'\n    base_path: '{_quote(paths[name])}'\n    model_platform: 'tensorflow'\n  }}\n"
            for name in self.models
        )
        return f"model_config_list {{\n{entries}}}\n"


class RunningBackend(Protocol):
    """A started server: where to reach it, whether it still runs, its log, how to stop it."""

    rest_url: str
    grpc_target: str

    def check_alive(self) -> None:
        """Raise HarnessError (with the log tail) if the server has exited."""

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server's log ("" when there is none)."""

    def stop(self) -> None:
        """Stop the server and release its resources (a no-op for external servers)."""


class ServingBackend(Protocol):
    """Something that can start a TF-Serving-compatible server for a ServeRequest."""

    @property
    def name(self) -> str:
        """embedded, docker or external."""

    def start(self, request: ServeRequest, workdir: Path) -> RunningBackend:
        """Start serving `request` without waiting for the models; files go under `workdir`."""


def _quote(text: str) -> str:
    """Escape a value for a single-quoted protobuf text-format string."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# embedded


@dataclasses.dataclass(kw_only=True)
class _EmbeddedProcess:
    rest_url: str
    grpc_target: str
    process: subprocess.Popen
    log: Path
    command: tuple[str, ...]

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            return _tail(self.log.read_text(errors="replace"), lines)
        except OSError:
            return ""

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise HarnessError(
                f"The embedded server exited with code {code} before its models were AVAILABLE.\n"
                f"command: {' '.join(self.command)}\n--- server log (last lines of {self.log}) ---\n{self.log_tail()}"
            )

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            # A server that ignores SIGTERM must not outlive the test session.
            self.process.kill()
            self.process.wait()


# Run in a fresh interpreter between the test process and the server: ask the kernel for SIGTERM
# when the starting thread dies, give up if it already has, then become the server (execvp keeps
# the request). -I -S: nothing from the environment or site-packages, so it starts in ~10 ms.
_PDEATHSIG_LAUNCHER = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, 15, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGTERM\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def _sigterm_when_parent_dies(command: Sequence[str]) -> list[str]:
    """`command`, prefixed (on Linux) so that the kernel SIGTERMs it when the process that
    starts it dies: a killed test run (CI timeout, kill -9) leaves no server holding ports and
    memory. The kernel ties this to the starting *thread*, so only the main thread asks for it:
    a server started from a short-lived thread would otherwise stop with it.

    Not a `preexec_fn`: that makes subprocess fork() instead of vfork(), and with grpcio >= 1.81
    the forked child of a process with live gRPC channels can abort (SIGABRT, "epoll_wait error:
    Bad file descriptor") before it reaches exec (grpc/grpc#43055). A CI run lost a server so.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return list(command)
    return [sys.executable, "-I", "-S", "-c", _PDEATHSIG_LAUNCHER, str(os.getpid()), *command]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EmbeddedBackend:
    """`tfstack serve` (the embedded server) as a subprocess of this Python, on 127.0.0.1.

    Args:
        python: the interpreter that runs `-m tfstack serve` (default: this one).
        env: extra environment variables for the server process.
        entry: what `python` runs, before the server's flags; another program taking
            `tfstack serve`'s flags may stand in (benchmarks/null_model_server.py does).
    """

    python: str = sys.executable
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    name: str = "embedded"
    entry: tuple[str, ...] = ("-m", "tfstack", "serve")

    def start(self, request: ServeRequest, workdir: Path) -> _EmbeddedProcess:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        grpc_port, rest_port = _free_port(), _free_port()
        while rest_port == grpc_port:
            rest_port = _free_port()
        config = workdir / f"models-{grpc_port}.config"
        config.write_text(request.model_config(), encoding="utf-8")
        command = (
            self.python, *self.entry,
            f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--model_config_file={config}",
            *request.flags,
        )
        log = workdir / f"server-{grpc_port}.log"
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **self.env}
        try:
            with open(log, "wb") as sink:
                process = subprocess.Popen(_sigterm_when_parent_dies(command), stdout=sink, stderr=subprocess.STDOUT,
                                           env=environment)
        except OSError as exc:
            raise HarnessError(f"Could not start the embedded server ({' '.join(command)}): {exc}") from exc
        return _EmbeddedProcess(
            rest_url=f"http://127.0.0.1:{rest_port}",
            grpc_target=f"127.0.0.1:{grpc_port}",
            process=process,
            log=log,
            command=command,
        )


# --------------------------------------------------------------------------------------------
# docker


@dataclasses.dataclass(kw_only=True)
class _DockerContainer:
    rest_url: str
    grpc_target: str
    container: Any  # docker.models.containers.Container

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            return self.container.logs(tail=lines).decode("utf-8", "replace")
        except Exception:  # the engine may be gone too; the caller is already reporting a failure
            return ""

    def check_alive(self) -> None:
        import docker

        try:
            self.container.reload()
        except docker.errors.DockerException as exc:
            raise HarnessError(f"Lost the TF Serving container {self.container.short_id}: {exc}") from exc
        if self.container.status in ("exited", "dead"):
            code = self.container.attrs.get("State", {}).get("ExitCode")
            raise HarnessError(
                f"The TF Serving container {self.container.short_id} ({TF_SERVING_IMAGE}) exited with code {code} "
                f"before its models were AVAILABLE.\n--- container log (last lines) ---\n{self.log_tail()}"
            )

    def stop(self) -> None:
        import docker

        with contextlib.suppress(docker.errors.DockerException):
            self.container.stop(timeout=10)
        with contextlib.suppress(docker.errors.DockerException):
            self.container.remove(force=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DockerBackend:
    """The official TensorFlow Serving image, run through the docker SDK.

    Every model's base path is mounted read-only at /models/<model_name>; the generated
    models.config is mounted read-only at /etc/tfserving. Ports 8500/8501 are published on
    127.0.0.1 only. Construction does no I/O; `ensure_engine()` (called by `start`) pings the
    engine and raises BackendUnavailableError when none answers: never a silent fallback.

    Args:
        image: the image to run (default: the pinned TF_SERVING_IMAGE).
        docker_host: the engine address (DOCKER_HOST); None means docker's own default.
        engine: an already built `docker.DockerClient` (or a stand-in with the same methods)
            to use instead of connecting to `docker_host`.
    """

    image: str = TF_SERVING_IMAGE
    docker_host: str | None = None
    engine: Any = None
    name: str = "docker"

    @property
    def engine_address(self) -> str:
        return self.docker_host or _DEFAULT_DOCKER_SOCKET

    def ensure_engine(self) -> Any:
        """Return a connected `docker.DockerClient`, or raise BackendUnavailableError."""
        try:
            import docker
        except ImportError as exc:
            raise BackendUnavailableError(
                "--tfstack-serving-backend=docker needs the `docker` package (pip install 'tfstack[dev]'). "
                f"Received: ImportError: {exc}"
            ) from exc
        try:
            if self.engine is not None:
                engine = self.engine
            elif self.docker_host:
                engine = docker.DockerClient(base_url=self.docker_host, timeout=10)
            else:
                engine = docker.from_env(timeout=10)
            engine.ping()
        except Exception as exc:  # docker-py raises DockerException, requests' errors or OSError
            raise BackendUnavailableError(
                f"--tfstack-serving-backend=docker needs a running Docker engine; none answered at {self.engine_address}: "
                f"{type(exc).__name__}: {exc}. Start Docker (or set DOCKER_HOST), or use --tfstack-serving-backend=embedded."
            ) from exc
        return engine

    def start(self, request: ServeRequest, workdir: Path) -> _DockerContainer:
        engine = self.ensure_engine()
        workdir = Path(workdir)
        config_dir = workdir / "tfserving-config"
        config_dir.mkdir(parents=True, exist_ok=True)
        config_dir.joinpath("models.config").write_text(
            request.model_config({name: f"{_CONTAINER_MODELS}/{name}" for name in request.models}), encoding="utf-8"
        )
        volumes = {str(path): {"bind": f"{_CONTAINER_MODELS}/{name}", "mode": "ro"} for name, path in request.models.items()}
        volumes[str(config_dir.absolute())] = {"bind": _CONTAINER_CONFIG, "mode": "ro"}
        grpc_port, rest_port = _free_port(), _free_port()
        command = [f"--model_config_file={_CONTAINER_CONFIG}/models.config", *request.flags]
        try:
            container = engine.containers.run(
                self.image,
                command=command,
                detach=True,
                ports={"8500/tcp": ("127.0.0.1", grpc_port), "8501/tcp": ("127.0.0.1", rest_port)},
                volumes=volumes,
                labels={"org.tfstack.harness": "1"},
            )
        except Exception as exc:
            raise HarnessError(f"Could not start {self.image} on the engine at {self.engine_address}: {exc}") from exc
        return _DockerContainer(
            rest_url=f"http://127.0.0.1:{rest_port}", grpc_target=f"127.0.0.1:{grpc_port}", container=container
        )


# --------------------------------------------------------------------------------------------
# external


@dataclasses.dataclass(kw_only=True)
class _ExternalServer:
    rest_url: str
    grpc_target: str

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return ""

    def check_alive(self) -> None:
        return None

    def stop(self) -> None:
        return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExternalBackend:
    """A server someone else runs: only its addresses; models are not deployed, only awaited.

    Args:
        rest_url: "http://host:8501" (https too).
        grpc_target: "host:8500".
    """

    rest_url: str
    grpc_target: str
    name: str = "external"

    def __post_init__(self) -> None:
        if not isinstance(self.rest_url, str) or not re.match(r"^https?://[^/\s]+/?$", self.rest_url):
            raise ValueError(
                "The external backend needs the server's REST address as http(s)://host:port "
                f"(--tfstack-serving-rest or TFSTACK_SERVING_REST). Received: rest_url={self.rest_url!r}"
            )
        if not isinstance(self.grpc_target, str) or not re.match(r"^[^/\s]+:\d+$", self.grpc_target):
            raise ValueError(
                "The external backend needs the server's gRPC address as host:port "
                f"(--tfstack-serving-grpc or TFSTACK_SERVING_GRPC). Received: grpc_target={self.grpc_target!r}"
            )

    def start(self, request: ServeRequest, workdir: Path) -> _ExternalServer:
        return _ExternalServer(rest_url=self.rest_url.rstrip("/"), grpc_target=self.grpc_target)


# --------------------------------------------------------------------------------------------
# the shared wait and the endpoint


@dataclasses.dataclass(kw_only=True, eq=False)
class ServingEndpoint:
    """A server whose models are AVAILABLE: addresses, clients, versions, log.

    Attributes:
        backend: "embedded", "docker" or "external".
        rest_url, grpc_target: where to reach it ("http://127.0.0.1:PORT", "127.0.0.1:PORT").
        model_name: the first model of the request (the usual single-model case).
        model_names: every model of the request.
        versions: {model_name: the highest AVAILABLE version when the wait ended}.
    """

    backend: str
    rest_url: str
    grpc_target: str
    model_name: str
    model_names: tuple[str, ...]
    versions: dict[str, int]
    running: RunningBackend = dataclasses.field(repr=False)
    _clients: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def client(self, protocol: str = "rest") -> Any:
        """The `client.ServingClient` for "rest" or "grpc" (one per protocol, closed at teardown)."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}. Received: protocol={protocol!r}")
        if protocol not in self._clients:
            self._clients[protocol] = _make_client(protocol, self.rest_url, self.grpc_target)
        return self._clients[protocol]

    @property
    def clients(self) -> dict[str, Any]:
        """{"rest": ServingClient, "grpc": ServingClient}."""
        return {protocol: self.client(protocol) for protocol in PROTOCOLS}

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server's log ("" for an external server)."""
        return self.running.log_tail(lines)

    def close_clients(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def _make_client(protocol: str, rest_url: str, grpc_target: str, *, timeout: float = 30.0, retry: bool = True) -> Any:
    from tfstack.client import RetryPolicy, ServingClient

    # The wait loop does its own polling; a client that retried inside would hide a dead server.
    policy = None if retry else RetryPolicy(max_attempts=1)
    if protocol == "rest":
        return ServingClient.rest(rest_url, timeout=timeout, retry=policy)
    return ServingClient.grpc(grpc_target, timeout=timeout, retry=policy)


def _describe(status: Any) -> str:
    error = f" ({status.error_code}: {status.error_message})" if status.error_message else ""
    return f"version {status.version} is {status.state}{error}"


def wait_until_available(
    running: RunningBackend, model_names: Sequence[str], *, timeout: float, backend: str = "server"
) -> dict[str, int]:
    """Poll model status over REST and gRPC until every model has an AVAILABLE version.

    The server is checked for liveness between polls, so a crash is reported at once with its
    log tail instead of after the deadline.

    Returns:
        {model_name: highest AVAILABLE version}.

    Raises:
        HarnessError: the server died, or the deadline passed (the message names the last state
            seen and includes the log tail).
    """
    from tfstack.client import ServingError

    deadline = time.monotonic() + timeout
    versions: dict[str, int] = {}
    clients = {p: _make_client(p, running.rest_url, running.grpc_target, timeout=5.0, retry=False) for p in PROTOCOLS}
    try:
        for protocol, client in clients.items():
            for name in model_names:
                last = "no answer yet"
                while True:
                    running.check_alive()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        where = running.rest_url if protocol == "rest" else running.grpc_target
                        tail = running.log_tail()
                        raise HarnessError(
                            f"Model {name!r} was not AVAILABLE over {protocol} at {where} within {timeout:g}s "
                            f"({backend} backend); last seen: {last}"
                            + (f"\n--- server log (last lines) ---\n{tail}" if tail else "")
                        )
                    try:
                        status = client.get_model_status(name, timeout=min(5.0, max(left, 0.1)))
                    except ServingError as exc:
                        last = f"{exc.code}: {exc.message}"
                    else:
                        ready = [v.version for v in status.versions if v.available]
                        if ready:
                            versions[name] = max(ready)
                            break
                        last = ", ".join(_describe(v) for v in status.versions) or "no versions"
                    # Polling, not synchronisation: the deadline above bounds the loop.
                    time.sleep(min(_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
    finally:
        for client in clients.values():
            client.close()
    return versions


@contextlib.contextmanager
def serve_models(backend: ServingBackend, request: ServeRequest, *, workdir: Path) -> Iterator[ServingEndpoint]:
    """Start `backend` for `request`, wait until every model is AVAILABLE, yield, tear down.

    Raises:
        BackendUnavailableError: the backend cannot run here (no Docker engine).
        HarnessError: the server failed to start or its models did not become AVAILABLE.

    Example:
        >>> with serve_models(EmbeddedBackend(), ServeRequest(models={"m": base}), workdir=tmp) as ep:
        ...     ep.client("rest").predict("m", {"x": [1.0]})
    """
    if not isinstance(request, ServeRequest):
        raise TypeError(f"`request` must be a ServeRequest. Received: request={request!r}")
    running = backend.start(request, Path(workdir))
    endpoint: ServingEndpoint | None = None
    try:
        versions = wait_until_available(running, request.model_names, timeout=request.timeout, backend=backend.name)
        endpoint = ServingEndpoint(
            backend=backend.name,
            rest_url=running.rest_url,
            grpc_target=running.grpc_target,
            model_name=request.model_names[0],
            model_names=request.model_names,
            versions=versions,
            running=running,
        )
        yield endpoint
    finally:
        if endpoint is not None:
            endpoint.close_clients()
        running.stop()
