"""Run `tfstack serve` as a real subprocess on loopback, for integration tests and benchmarks.

    with start_server(tmp_path, model_name="half_plus_two", model_base_path=base) as server:
        channel = grpc.insecure_channel(server.grpc_target)
        httpx.get(f"{server.rest_url}/v1/models/half_plus_two")

`start_server` picks free ports, waits (with a deadline, by polling) until the server logs that
gRPC (and REST) are up, which TF Serving's startup order only allows once every initial
model is AVAILABLE, and on exit sends SIGTERM and checks the exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tfstack.serving.testing._harness import _sigterm_when_parent_dies

_REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rest_available() -> bool:
    """Whether the REST front end (tfstack.serving.server.rest._app) exists in this checkout."""
    return importlib.util.find_spec("tfstack.serving.server.rest._app") is not None


@dataclasses.dataclass
class RunningServer:
    """A live server subprocess and where to reach it."""

    grpc_target: str            # "127.0.0.1:<port>", for grpc.insecure_channel
    rest_url: str | None        # "http://127.0.0.1:<port>", None when REST is off
    process: subprocess.Popen
    log: Path                   # combined stdout+stderr of the server
    grpc_port: int = 0
    rest_port: int = 0

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, text: str, *, timeout: float = 60.0, count: int = 1) -> str:
        """Poll the log until `text` appears `count` times; returns the log. Fails on deadline or exit."""
        deadline = time.monotonic() + timeout
        while True:
            content = self.log_text()
            if content.count(text) >= count:
                return content
            if self.process.poll() is not None:
                raise AssertionError(f"server exited ({self.process.returncode}) before logging {text!r}:\n{content[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not log {text!r} within {timeout}s:\n{content[-4000:]}")
            time.sleep(0.05)

    def stop(self, *, timeout: float = 30.0) -> int:
        """SIGTERM, wait, and return the exit code (killing it if it does not stop in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"server ignored SIGTERM for {timeout}s:\n{self.log_text()[-4000:]}") from None
        return self.process.returncode


def launch(tmp_path: Path, *args: str, rest: bool | None = None, grpc_port: int | None = None,
           rest_port: int | None = None, env: dict[str, str] | None = None) -> RunningServer:
    """Start the server without waiting for it (for startup-failure tests)."""
    rest = rest_available() if rest is None else rest
    grpc_port = grpc_port or free_port()
    rest_port = (rest_port or free_port()) if rest else 0
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / f"server-{grpc_port}.log"
    command = [sys.executable, "-m", "tfstack", "serve", f"--port={grpc_port}"]
    if rest:
        command.append(f"--rest_api_port={rest_port}")
    command += list(args)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    with open(log, "wb") as sink:
        # no server outlives a killed test run
        process = subprocess.Popen(_sigterm_when_parent_dies(command), stdout=sink, stderr=subprocess.STDOUT,
                                   cwd=_REPO_ROOT, env=environment)
    return RunningServer(
        grpc_target=f"127.0.0.1:{grpc_port}",
        rest_url=f"http://127.0.0.1:{rest_port}" if rest else None,
        process=process,
        log=log,
        grpc_port=grpc_port,
        rest_port=rest_port,
    )


@contextlib.contextmanager
def start_server(
    tmp_path: Path,
    *args: str,
    model_name: str | None = "default",
    model_base_path: str | os.PathLike[str] | None = None,
    rest: bool | None = None,
    timeout: float = 120.0,
    expected_exit_code: int | None = 0,
) -> Iterator[RunningServer]:
    """Run a server until the with-block ends; it is ready (models AVAILABLE) on entry.

    Args:
        tmp_path: where the server log goes.
        *args: extra tensorflow_model_server flags, e.g. "--model_config_file=/abs/models.config".
        model_name, model_base_path: passed as --model_name/--model_base_path when the base path is given.
        rest: serve REST too (default: whenever tfstack.serving.server.rest._app exists).
        expected_exit_code: checked after SIGTERM on exit (None: do not check).
    """
    flags = list(args)
    if model_base_path is not None:
        flags += [f"--model_name={model_name}", f"--model_base_path={os.fspath(model_base_path)}"]
    server = launch(tmp_path, *flags, rest=rest)
    try:
        server.wait_for_log("Running gRPC ModelServer at", timeout=timeout)
        if server.rest_url:
            server.wait_for_log("Exporting HTTP/REST API at:", timeout=timeout)
        yield server
    finally:
        code = server.stop()
    if expected_exit_code is not None and code != expected_exit_code:
        raise AssertionError(f"server exited {code}, expected {expected_exit_code}:\n{server.log_text()[-4000:]}")


def logged_models_config(models: dict[str, tuple[os.PathLike[str] | str, os.PathLike[str] | str]], *,
                         extra: str = "") -> str:
    """A text-format models.config serving each name -> (base_path, filename_prefix) with TF
    Serving's `logging_config` (tfrecord collector, sampling rate 1.0); `extra` goes into every
    entry (e.g. a model_version_policy)."""
    entries = "".join(
        f'  config {{\n    name: "{name}"\n    base_path: "{base}"\n    model_platform: "tensorflow"\n'
        f"{'    ' + extra + chr(10) if extra else ''}"
        f'    logging_config {{\n      log_collector_config {{ type: "tfrecord" filename_prefix: "{prefix}" }}\n'
        "      sampling_config { sampling_rate: 1.0 }\n    }\n  }\n"
        for name, (base, prefix) in models.items()
    )
    return f"model_config_list {{\n{entries}}}\n"
