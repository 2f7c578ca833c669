"""`tfstack train`: train a model, print its test metrics, publish it as a new version."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from tfstack.training._config import (
    ACTIVATIONS,
    BUILTIN_DATASETS,
    COLOR_MODES,
    MODELS,
    OPTIMIZERS,
    STRATEGIES,
    TASKS,
    TrainConfig,
)
from tfstack.training._errors import ConfigError, TrainingError

_DEFAULTS = TrainConfig()


def _parse_hidden(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if text.strip() == "" or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(
            f"--hidden must be comma-separated positive layer sizes, e.g. 64,32. Received: hidden={text!r}"
        )
    return tuple(int(p) for p in parts)


def _parse_image_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    if not 1 <= len(parts) <= 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"--image-size must be N or HxW, e.g. 28 or 32x48. Received: image_size={text!r}")
    sizes = [int(p) for p in parts]
    return (sizes[0], sizes[-1])


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dataset", default=None, help=f"Bundled dataset: {', '.join(BUILTIN_DATASETS)}. [default: digits]")
@click.option("--csv", "csv_path", default=None, help="Train on this CSV file (header row; numeric and string columns).")
@click.option("--target", default=None, help="The CSV column to predict.")
@click.option("--image-dir", default=None, help="Train on an image folder with one subfolder per class.")
@click.option("--image-size", default="28", show_default=True, help="Image folder: resize to N or HxW pixels.")
@click.option("--color-mode", default=_DEFAULTS.color_mode, show_default=True, help=f"Image folder: {', '.join(COLOR_MODES)}.")
@click.option("--task", default=_DEFAULTS.task, show_default=True, help=f"{', '.join(TASKS)} (auto: from the target).")
@click.option("--model", default=_DEFAULTS.model, show_default=True,
              help=f"{', '.join(MODELS)} (auto: cnn for images, mlp for tables).")
@click.option("--hidden", default=None, help="Hidden layer sizes, e.g. 64,32 (mlp; cnn: dense head). [default: mlp 64, cnn 128]")
@click.option("--activation", default=_DEFAULTS.activation, show_default=True, help=f"One of {', '.join(ACTIVATIONS)}.")
@click.option("--optimizer", default=_DEFAULTS.optimizer, show_default=True, help=f"{', '.join(OPTIMIZERS)}.")
@click.option("--learning-rate", type=float, default=_DEFAULTS.learning_rate, show_default=True)
@click.option("--momentum", type=float, default=_DEFAULTS.momentum, show_default=True, help="sgd and rmsprop only.")
@click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True)
@click.option("--epochs", type=int, default=_DEFAULTS.epochs, show_default=True, envvar="TFSTACK_TRAIN_EPOCHS",
              show_envvar=True, help="Maximum epochs (a smoke run: TFSTACK_TRAIN_EPOCHS=1).")
@click.option("--patience", type=int, default=_DEFAULTS.patience, show_default=True,
              help="Early stopping: epochs without a better validation loss (best weights are restored).")
@click.option("--validation-split", type=float, default=_DEFAULTS.validation_split, show_default=True)
@click.option("--test-split", type=float, default=_DEFAULTS.test_split, show_default=True)
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True, help="Same seed, same split and metrics.")
@click.option("--strategy", default=_DEFAULTS.strategy, show_default=True,
              help=f"tf.distribute strategy: {', '.join(STRATEGIES)} (multi-worker reads TF_CONFIG).")
@click.option("--local-workers", type=int, default=None,
              help="Run N multi-worker processes on 127.0.0.1 (a whole cluster on this machine); the chief publishes.")
@click.option("--run-dir", default=None,
              help="TensorBoard logs, summary and (multi-worker) backup. "
                   "[default: runs/<model-name>-<UTC time>; multi-worker: runs/<model-name>-<settings digest>]")
@click.option("--base-path", default="./models", show_default=True, help="Model repository root.")
@click.option("--model-name", default=None, help="Name in the repository. [default: the dataset name]")
@click.option("--version", "version", type=int, default=None, help="Publish as this version (must not exist).")
@click.option("--no-export", is_flag=True, help="Train and evaluate only; publish nothing.")
@click.option("--allow-schema-change", is_flag=True,
              help="Publish even if the inputs/outputs differ incompatibly from the model's latest version.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or tables; print only the published path.")
@click.option("--from-logs", "from_logs", multiple=True, metavar="LOGS",
              help="Request logs (file, directory or logging_config prefix) whose labelled rows join the training split.")
@click.option("--labels", default=None, type=click.Path(exists=True, dir_okay=False),
              help="With --from-logs: CSV of request_id,label (optional row) for the logged requests.")
@click.option("--warmup-from", "warmup_from", multiple=True, metavar="LOGS",
              help="Request logs whose requests (up to 100) join the new version's warmup records.")
def train(
    dataset, csv_path, target, image_dir, image_size, color_mode, task, model, hidden, activation, optimizer,
    learning_rate, momentum, batch_size, epochs, patience, validation_split, test_split, seed, strategy,
    local_workers, run_dir, base_path, model_name, version, no_export, allow_schema_change, quiet, from_logs, labels,
    warmup_from,
) -> None:
    """Train a model and publish it as a new version under --base-path.

    With no options: a CNN on scikit-learn's digits, published as models/digits/<next version>.

    Multi-worker: run the same command with --strategy multi-worker on every host, each with its
    TF_CONFIG; or --local-workers N to start N such workers on this machine.
    """
    from rich.console import Console

    # TensorFlow's C++ INFO lines would bury the progress bar; users can still override this.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = Console()
    try:
        config = TrainConfig(
            dataset=dataset, csv_path=csv_path, target=target, image_dir=image_dir,
            image_size=_parse_image_size(image_size), color_mode=color_mode, task=task, model=model,
            hidden=_parse_hidden(hidden), activation=activation, optimizer=optimizer,
            learning_rate=learning_rate, momentum=momentum, batch_size=batch_size, epochs=epochs,
            patience=patience, validation_split=validation_split, test_split=test_split, seed=seed,
            strategy=strategy, run_dir=run_dir, model_name=model_name, from_logs=tuple(from_logs), labels=labels,
        )
        if version is not None and version < 1:
            raise ConfigError(f"--version must be >= 1. Received: version={version}")
        if local_workers is not None:
            _check_local_workers(local_workers, strategy)
        if not no_export:
            _check_repository(config, base_path, version)
        if local_workers is not None:
            _run_local_cluster(click.get_current_context(), config, local_workers, quiet)
            return
        from tfstack.training._metrics import confusion_table, metrics_tables
        from tfstack.training._train import train as run_training

        started = time.monotonic()
        check = None if no_export or allow_schema_change else _schema_check(base_path)
        result = run_training(config, progress=not quiet, console=Console(stderr=True), before_fit=check)
        elapsed = time.monotonic() - started
    except TrainingError as exc:
        raise click.ClickException(str(exc)) from exc

    if not result.is_chief:
        # Every multi-worker process runs this command; the chief alone evaluates and publishes.
        if not quiet:
            out.print(
                f"Worker {result.worker_index} of {result.workers} trained {result.config.model} on "
                f"{result.dataset.name} in {elapsed:.1f}s ({result.metrics['epochs_trained']} epochs); "
                "the chief (worker 0) evaluates and publishes.",
                soft_wrap=True,
            )
        return
    if not quiet:
        out.print(
            f"Trained {result.config.model} on {result.dataset.name} in {elapsed:.1f}s "
            f"({result.metrics['epochs_trained']} epochs); metrics on the held-out test split:",
            soft_wrap=True,
        )
        for table in metrics_tables(result.metrics, title="Test metrics"):
            out.print(table)
        # Wider than a terminal beyond ~15 classes; the manifest and its PNG keep the full matrix.
        if result.confusion_matrix is not None and len(result.confusion_matrix) <= 15:
            out.print(confusion_table(result.confusion_matrix, result.dataset.class_names))
        out.print(f"TensorBoard logs: {result.run_dir / 'logs'}")
    if no_export:
        return
    from tfstack import export

    try:
        published = export.publish(
            result.export_spec(warmup_from=tuple(warmup_from)), base_path, version=version,
            allow_schema_change=allow_schema_change,
        )
    except export.ExportError as exc:
        raise click.ClickException(str(exc)) from exc
    if quiet:
        click.echo(str(published.path))
    else:
        out.print(f"Published {published.model_name} version {published.version}: {published.path}", soft_wrap=True)
        if result.lineage is not None:
            logs = result.lineage["logs"]
            out.print(
                f"Lineage: {result.lineage['logged_rows_added']} labelled logged rows from {logs['records']} requests "
                f"of version {result.lineage['parent_version']} (labels {result.lineage['labels']['fingerprint'][:19]}...)",
                soft_wrap=True,
            )


def _check_local_workers(count: int, strategy: str) -> None:
    if count < 1:
        raise ConfigError(f"--local-workers must be >= 1. Received: local_workers={count}")
    source = click.get_current_context().get_parameter_source("strategy")
    if source is not click.core.ParameterSource.DEFAULT and strategy != "multi-worker":
        raise ConfigError(
            "--local-workers runs a multi-worker cluster; drop --strategy or use --strategy multi-worker. "
            f"Received: strategy={strategy!r}"
        )


def _run_local_cluster(ctx: click.Context, config: TrainConfig, count: int, quiet: bool) -> None:
    """Start `count` copies of this command as one multi-worker cluster on 127.0.0.1 and wait."""
    import dataclasses

    from tfstack.training._datasets import dataset_name
    from tfstack.training._launcher import run_local_workers
    from tfstack.training._train import multi_worker_run_dir

    config = dataclasses.replace(config, strategy="multi-worker")
    if config.run_dir is not None:
        run_dir = Path(config.run_dir)
    else:
        run_dir = multi_worker_run_dir(config, config.model_name or dataset_name(config), workers=count)
    run_dir = run_dir.absolute()
    command = [
        sys.executable, "-m", "tfstack", "train", *_forwarded_options(ctx, skip={"local_workers", "strategy", "run_dir"}),
        "--strategy", "multi-worker", "--run-dir", str(run_dir),
    ]
    if not quiet:
        click.echo(f"Starting {count} workers on 127.0.0.1; run directory {run_dir}", err=True)
    run_local_workers(command, count=count, run_dir=run_dir, quiet=quiet)
    if not quiet:
        click.echo(f"All {count} workers finished; worker logs: {run_dir}/worker-<i>.log", err=True)


def _forwarded_options(ctx: click.Context, *, skip: set[str]) -> list[str]:
    """The options this command was given (not their defaults), as arguments for a worker."""
    args: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in skip:
            continue
        if ctx.get_parameter_source(param.name) is click.core.ParameterSource.DEFAULT:
            continue
        value = ctx.params[param.name]
        if param.is_flag:
            if value:
                args.append(param.opts[0])
        elif param.multiple:
            for item in value:
                args += [param.opts[0], str(item)]
        elif value is not None:
            args += [param.opts[0], str(value)]
    return args


def _schema_check(base_path: str):
    """Before training: refuse a run whose version could not be published onto the model's
    latest version (other inputs or outputs), as publishing would after the training."""

    def check(model_name: str, dataset) -> None:
        from tfstack import export
        from tfstack.training._train import export_features

        planned = export.serving_signature(export_features(dataset), task=dataset.task, class_names=dataset.class_names)
        try:
            export.ModelRepository(base_path).check_compatible(model_name, planned, partial=True)
        except export.ExportError as exc:
            raise click.ClickException(str(exc)) from exc

    return check


def _check_repository(config: TrainConfig, base_path: str, version: int | None) -> None:
    """Fail before training, not after, on a base path that is a file or a version that exists."""
    from tfstack.training._datasets import dataset_name

    path = Path(base_path)
    if path.is_file():
        raise ConfigError(f"--base-path must be a directory, but it is a file. Received: base_path={base_path!r}")
    blocking = next((p for p in path.parents if p.is_file()), None)
    if blocking is not None:
        raise ConfigError(
            f"--base-path cannot be created: {str(blocking)!r} is a file. Received: base_path={base_path!r}"
        )
    if version is None:
        return
    from tfstack import export

    model_name = config.model_name or dataset_name(config)
    try:
        existing = export.ModelRepository(base_path).versions(model_name)
    except export.ExportError as exc:
        raise click.ClickException(str(exc)) from exc
    if version in existing:
        raise ConfigError(
            f"Version {version} of model {model_name!r} already exists under {base_path}; "
            f"choose another --version or omit it. Received: version={version}"
        )
