"""The `tfstack` command: one entry point that lazily loads each package's own commands.

Each package owns its subcommands (training: train; export: models, export, monitor; serving: serve, rollout,
bench; client: predict, status). Loading them lazily keeps `tfstack predict` free of
TensorFlow, which matters for the client-only install.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

import click

# command name -> (module, attribute, one-line help); the module is imported only when the
# command runs, so `tfstack --help` and the client commands never import TensorFlow.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("tfstack.training.cli", "train", "Train a model and publish it as a new version."),
    "models": ("tfstack.export.cli", "models", "List, inspect and check versions in a model repository."),
    "export": ("tfstack.export.cli", "export_command", "Publish your own .keras model or SavedModel as a TF Serving version."),
    "monitor": ("tfstack.export.cli", "monitor_command", "Check logged requests for drift against a version's data profile."),
    "serve": ("tfstack.serving.server.cli", "serve", "Run the TF-Serving-compatible server (tensorflow_model_server flags)."),
    "rollout": ("tfstack.serving.rollout.cli", "rollout", "Publish, canary, promote, rollback and retire model versions."),
    "bench": ("tfstack.serving.bench.cli", "bench", "Load-test a server over REST and gRPC and report latency/throughput."),
    "predict": ("tfstack.client.cli", "predict", "Send a Predict request over REST or gRPC."),
    "status": ("tfstack.client.cli", "status", "Show a served model's version status."),
}


# The extra that installs what each command needs (pyproject's optional dependencies).
_EXTRA_FOR_COMMAND = {"train": "train", "models": "train", "export": "train", "serve": "serve", "rollout": "serve", "bench": "bench"}


def _install_hint(command: str | None) -> str:
    extra = _EXTRA_FOR_COMMAND.get(command or "", "full")
    also = "" if extra == "full" else " (or 'tfstack[full]' for every command)"
    return f"pip install 'tfstack[{extra}]'{also}"


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute, _ = target
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise click.ClickException(
                f"`tfstack {cmd_name}` needs a dependency that is not installed ({exc.name}). "
                f"Install it with: {_install_hint(cmd_name)}"
            ) from exc
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tfstack")
def cli() -> None:
    """tfstack: train Keras models, export them for TF Serving, serve, query and roll out."""


# Top-level modules that only the 'full' extra installs; a missing one means a light install.
_FULL_EXTRA_MODULES = frozenset(
    {"tensorflow", "keras", "tensorflow_serving", "sklearn", "matplotlib", "filelock", "aiohttp",
     "prometheus_client", "grpc_health", "tensorboard", "PIL"}
)


# Commands that load TensorFlow anyway; main() imports it first, quietly (see _tensorflow_quietly).
_TENSORFLOW_COMMANDS = frozenset({"train", "export", "serve", "bench"})
# TF_CPP_MIN_LOG_LEVEL per command (0 all, 1 no INFO, 2 no WARNING, 3 no ERROR); a value the user
# set wins. Training hides C++ errors too: TF 2.21's tf.data logs an ERROR about an attribute
# (`use_unbounded_threadpool`) its own Python adds; real failures still raise in Python.
# The server keeps TF's warnings, as tensorflow_model_server does.
_TF_LOG_LEVEL = {"train": "3", "serve": "1"}
# Lines TensorFlow's C++ prints while it loads, before it reads TF_CPP_MIN_LOG_LEVEL, and the
# CUDA probe on a machine without a GPU: nothing a user can act on.
_NATIVE_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|cudart_stub\.cc"
    r"|Could not find cuda drivers|failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation_placer\.cc|TF-TRT Warning|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions"
)


@contextlib.contextmanager
def _native_stderr_filtered() -> Iterator[None]:
    """Send file descriptor 2 to a file for the block, then replay every line that is not noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().decode("utf-8", "replace").splitlines() if not _NATIVE_NOISE.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


def _tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices (the CUDA probe logs an error without a GPU) with the noise dropped."""
    with _native_stderr_filtered():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")


def _prepare_environment(args: list[str]) -> None:
    """Settings that must exist before TensorFlow loads (so here, not at import time)."""
    command = next((a for a in args if not a.startswith("-")), "")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _TF_LOG_LEVEL.get(command, "2"))
    if not sys.stdout.isatty():
        # rich falls back to 80 columns without a terminal and cuts tables; piped output has no
        # width to fit, so let tables take their natural width.
        os.environ.setdefault("COLUMNS", "200")
    asks_for_help = any(a in ("-h", "--help", "--helpfull", "--version") for a in args)
    if command in _TENSORFLOW_COMMANDS and not asks_for_help:
        _tensorflow_quietly()


def main() -> None:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    try:
        _prepare_environment(sys.argv[1:])
        cli()
    except ModuleNotFoundError as exc:
        # Commands import their heavy dependencies lazily, so this can surface mid-command.
        if (exc.name or "").split(".")[0] not in _FULL_EXTRA_MODULES:
            raise
        click.echo(
            f"Error: this command needs {exc.name!r}, which the light client install does not include. "
            f"Install it with: {_install_hint(command)}",
            err=True,
        )
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
