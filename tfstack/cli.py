"""The `tfstack` command: one entry point that lazily loads each package's own commands.

Each package owns its subcommands (training: train; export: models, export, monitor; serving: serve, rollout,
bench; client: predict, status). Loading them lazily keeps `tfstack predict` free of
TensorFlow, which matters for the client-only install.
"""

from __future__ import annotations

import importlib

import click

# command name -> (module, attribute, one-line help); the module is imported only when the
# command runs, so `tfstack --help` and the client commands never import TensorFlow.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("tfstack.training._cli", "train", "Train a model and publish it as a new version."),
    "models": ("tfstack.export._cli", "models", "List, inspect and check versions in a model repository."),
    "export": ("tfstack.export._cli", "export_command", "Publish your own .keras model or SavedModel as a TF Serving version."),
    "monitor": ("tfstack.export._cli", "monitor_command", "Check logged requests for drift against a version's data profile."),
    "serve": ("tfstack.serving.server._cli", "serve", "Run the TF-Serving-compatible server (tensorflow_model_server flags)."),
    "rollout": ("tfstack.serving.rollout._cli", "rollout", "Publish, canary, promote, rollback and retire model versions."),
    "bench": ("tfstack.serving.bench._cli", "bench", "Load-test a server over REST and gRPC and report latency/throughput."),
    "predict": ("tfstack.client._cli", "predict", "Send a Predict request over REST or gRPC."),
    "status": ("tfstack.client._cli", "status", "Show a served model's version status."),
}


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
                "Install the full project with: pip install 'tfstack[full]'"
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


def main() -> None:
    try:
        cli()
    except ModuleNotFoundError as exc:
        # Commands import their heavy dependencies lazily, so this can surface mid-command.
        if (exc.name or "").split(".")[0] not in _FULL_EXTRA_MODULES:
            raise
        click.echo(
            f"Error: this command needs {exc.name!r}, which the light client install does not include. "
            "Install the full project with: pip install 'tfstack[full]'",
            err=True,
        )
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
