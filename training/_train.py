"""`train(config)`: load data, build and fit the model, evaluate it on the test split."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from tfstack.training._config import TrainConfig
from tfstack.training._datasets import Dataset, load_dataset, tensor_inputs
from tfstack.training._errors import TrainingError
from tfstack.training._metrics import classification_metrics, regression_metrics
from tfstack.training._models import build_model, resolve_model
from tfstack.training._multiworker import WorkerRole, multi_worker_strategy, worker_role
from tfstack.training._multiworker import fit as fit_multi_worker

# Rows of the test split that travel with the export (warmup records and load-time verification).
SAMPLE_ROWS = 16


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What a run produced. `config` is the resolved config (concrete model and hidden sizes)."""

    config: TrainConfig
    model_name: str
    model: Any  # keras.Model; typed loosely so importing training stays free of Keras
    dataset: Dataset
    metrics: dict[str, Any]
    confusion_matrix: list[list[int]] | None
    history: dict[str, list[float]]
    run_dir: Path
    # False on the non-chief workers of a multi-worker run: only the chief evaluates and publishes.
    is_chief: bool = True
    worker_index: int = 0
    workers: int = 1
    # The chief's model outputs on the test split (for the data profile's prediction distribution).
    test_predictions: Any = None
    # Training from logs: where the added rows came from (recorded in the manifest), and the
    # version that served them.
    lineage: dict[str, Any] | None = None
    logged_parent_version: int | None = None

    def data_profile(self) -> dict[str, Any]:
        """The training split's data profile, with the test split's label and prediction distributions."""
        from tfstack import export

        return export.build_profile(
            export_features(self.dataset),
            self.dataset.train.inputs,
            task=self.dataset.task,
            class_names=tuple(str(c) for c in self.dataset.class_names),
            source="training split",
            labels=self.dataset.test.labels,
            predictions=self.test_predictions,
        )

    def export_spec(self, *, parent_version: int | None = None, warmup_from: tuple[str, ...] = ()):
        """The `export.ExportSpec` that publishes this model (raw-feature signature, test metrics).

        Raises:
            TrainingError: on a worker that is not the chief (it has no test metrics).

        Example:
            >>> export.publish(result.export_spec(), "models")
        """
        if not self.is_chief:
            raise TrainingError(
                f"Only the chief publishes a multi-worker run; this is worker {self.worker_index} of {self.workers}."
            )
        from tfstack import export

        return export.ExportSpec(
            model_name=self.model_name,
            task=self.dataset.task,
            keras_model=self.model,
            features=export_features(self.dataset),
            class_names=tuple(str(c) for c in self.dataset.class_names),
            sample_inputs={k: np.asarray(v[:SAMPLE_ROWS]) for k, v in self.dataset.test.inputs.items()},
            metrics=self.metrics,
            training_config=self.config.to_dict(),
            dataset=self.dataset.info(),
            history=self.history,
            confusion_matrix=self.confusion_matrix,
            parent_version=parent_version if parent_version is not None else self.logged_parent_version,
            data_profile=self.data_profile(),
            lineage=self.lineage,
            warmup_from=tuple(warmup_from),
        )


def export_features(dataset: Dataset) -> tuple[Any, ...]:
    """The dataset's raw inputs as `export.FeatureSpec`s: the exported signature's inputs."""
    from tfstack import export

    return tuple(export.FeatureSpec(name=f.name, dtype=f.dtype, shape=tuple(f.shape)) for f in dataset.features)


def train(
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
    console: Any = None,
    before_fit: Callable[[str, Dataset], None] | None = None,
) -> TrainResult:
    """Train a model as `config` says and evaluate it on the held-out test split.

    With `strategy="multi-worker"` every worker of the cluster in TF_CONFIG calls this. All of them
    train; only the chief (`result.is_chief`) evaluates, writes the run summary and TensorBoard
    logs, and should publish. The others write to temporary directories only.

    Args:
        config: the run's settings; defaults train a CNN on digits.
        progress: show a progress bar on `console` (or stderr); one line per epoch for
            multi-worker runs, whose output is usually a log.
        console: a `rich.console.Console` for the progress bar.
        before_fit: called with the model name and the loaded dataset before any training, so a
            caller can refuse early what would fail at publish time (`tfstack train` checks the
            repository's schema there); what it raises propagates.

    Raises:
        TrainingError: bad data (`DatasetError`), a model that does not fit the data
            (`ModelError`), or a failure inside TensorFlow during training.

    Example:
        >>> result = train(TrainConfig(dataset="iris", epochs=30))
        >>> result.metrics["accuracy"]
    """
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig. Received: config={config!r}")
    requested = config
    dataset = load_dataset(config)
    lineage = logged_parent = None
    if config.from_logs:
        assert config.labels is not None  # TrainConfig requires --labels with --from-logs
        from tfstack.training._datasets import dataset_name
        from tfstack.training._feedback import add_logged_rows

        dataset, lineage, logged_parent = add_logged_rows(
            dataset, config.from_logs, config.labels, model_name=config.model_name or dataset_name(config)
        )
    model_kind, hidden = resolve_model(config.model, config.hidden, dataset)
    config = dataclasses.replace(
        config,
        model=model_kind,
        hidden=hidden,
        task=dataset.task,
        dataset=config.dataset if config.csv_path or config.image_dir else config.source_name,
    )
    model_name = config.model_name or dataset.name
    if before_fit is not None:
        before_fit(model_name, dataset)

    import keras
    import tensorflow as tf

    # MultiWorkerMirroredStrategy has to exist before TensorFlow runs anything (it configures the
    # runtime's cluster), so it comes before the seed and the first op.
    strategy = multi_worker_strategy(tf) if config.strategy == "multi-worker" else _strategy(config.strategy, tf)
    role = worker_role(strategy) if config.strategy == "multi-worker" else WorkerRole(index=0, count=1, is_chief=True)
    chosen_dir: Path | None
    if config.strategy == "multi-worker" and config.run_dir is None:
        # The same command on the same cluster finds the same directory, so a restarted worker
        # finds the run's backup.
        chosen_dir = multi_worker_run_dir(requested, model_name, workers=role.count)
    else:
        chosen_dir = Path(config.run_dir) if config.run_dir is not None else None
    # Only the chief writes into the run directory; the other workers only read its backup.
    if role.is_chief:
        run_dir = _make_run_dir(None if chosen_dir is None else str(chosen_dir), model_name)
    else:
        assert chosen_dir is not None  # other workers exist only in a multi-worker run, which names the directory
        run_dir = chosen_dir
    config = dataclasses.replace(config, model_name=model_name, run_dir=str(run_dir))

    keras.utils.set_random_seed(config.seed)
    # Same seed, same metrics: deterministic kernels cost a little speed on CPU, which is fine here.
    tf.config.experimental.enable_op_determinism()

    def build():
        return build_model(dataset, model=model_kind, hidden=hidden, activation=config.activation, seed=config.seed)

    def compile_model(model) -> None:
        if dataset.task == "classification":
            loss, metric = "sparse_categorical_crossentropy", "accuracy"
        else:
            loss, metric = "mse", "mae"
        options = {}
        if config.strategy == "multi-worker":
            # Keras turns XLA off by itself only for models constructed under a strategy's scope.
            options["jit_compile"] = False
        model.compile(optimizer=_optimizer(config, keras), loss=loss, metrics=[metric], **options)

    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True
    )
    initial_epoch = 0
    progress_callback = None
    try:
        if config.strategy == "multi-worker":
            log = _line_writer(console) if progress else (lambda line: None)
            callbacks = [early_stopping]
            if progress:
                callbacks.append(_epoch_log_callback(config.epochs, role, log))
            fitted = fit_multi_worker(
                strategy, role, dataset=dataset, config=config, run_dir=run_dir, build=build,
                compile_model=compile_model, callbacks=callbacks, log=log,
            )
            model, history, initial_epoch = fitted.model, fitted.history, fitted.initial_epoch
        else:
            with strategy.scope():
                model = build()
                compile_model(model)
            callbacks = [early_stopping, keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), profile_batch=0)]
            progress_callback = _progress_callback(config.epochs, console) if progress else None
            if progress_callback is not None:
                callbacks.append(progress_callback)
            fitted_history = model.fit(
                x=tensor_inputs(dataset.train.inputs),
                y=dataset.train.labels,
                validation_data=(tensor_inputs(dataset.validation.inputs), dataset.validation.labels),
                epochs=config.epochs,
                batch_size=config.batch_size,
                shuffle=True,
                verbose=0,
                callbacks=callbacks,
            )
            history = {k: [float(v) for v in values] for k, values in fitted_history.history.items()}
        # The chief evaluates on the whole test split; the other workers hold the same weights.
        predictions = (
            model.predict(tensor_inputs(dataset.test.inputs), batch_size=256, verbose=0) if role.is_chief else None
        )
    except (tf.errors.OpError, ValueError) as exc:
        raise TrainingError(f"Training {model_name!r} failed inside TensorFlow: {_tf_error_text(exc)}") from exc
    finally:
        if progress_callback is not None:
            progress_callback.close()

    metrics: dict[str, Any] = {}
    confusion = None
    if predictions is not None:
        if dataset.task == "classification":
            metrics, confusion = classification_metrics(dataset.test.labels, predictions, dataset.class_names)
        else:
            metrics = regression_metrics(dataset.test.labels, predictions)
    metrics["epochs_trained"] = initial_epoch + len(history.get("loss", []))
    if config.strategy == "multi-worker":
        metrics["resumed_from_epoch"] = initial_epoch
    result = TrainResult(
        config=config,
        model_name=model_name,
        model=model,
        dataset=dataset,
        metrics=metrics,
        confusion_matrix=confusion,
        history=history,
        run_dir=run_dir,
        is_chief=role.is_chief,
        worker_index=role.index,
        workers=role.count,
        test_predictions=predictions,
        lineage=lineage,
        logged_parent_version=logged_parent,
    )
    if role.is_chief:
        _write_run_summary(result)
    return result


def multi_worker_run_dir(config: TrainConfig, model_name: str, *, workers: int) -> Path:
    """`runs/<model_name>-<digest of the settings and cluster size>`: the multi-worker default.

    A timestamp would differ between the hosts of a cluster and between a run and its restart;
    this does not, so every worker and every restart of the same command agree on it.
    """
    settings = {k: v for k, v in config.to_dict().items() if k != "run_dir"}
    text = json.dumps({"settings": settings, "workers": workers}, sort_keys=True)
    return Path("runs") / f"{model_name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _optimizer(config: TrainConfig, keras):
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=config.learning_rate, momentum=config.momentum)
    return keras.optimizers.Adam(learning_rate=config.learning_rate)


def _strategy(name: str, tf):
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _tf_error_text(exc: Exception) -> str:
    """The error's message on one line; without the Python stack TensorFlow embeds in graph errors."""
    message = getattr(exc, "message", None) or str(exc)
    lines = [line for line in message.splitlines() if line.strip()]
    if "Detected at node" in message:
        # "Graph execution error: Detected at node X defined at (most recent call last): <indented stack>"
        lines = [
            line for line in lines
            if not line[:1].isspace() and not re.match(r"(Detected at node|Graph execution error)", line)
        ]
    return " ".join(line.strip() for line in lines) or message


def _line_writer(console: Any):
    """One progress line at a time, for output that goes to a log rather than a terminal."""
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    return lambda line: console.print(line, soft_wrap=True, highlight=False)


def _epoch_log_callback(epochs: int, role: WorkerRole, log):
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            text = "  ".join(f"{k}={float(v):.4f}" for k, v in (logs or {}).items() if k != "learning_rate")
            log(f"worker {role.index}/{role.count} epoch {epoch + 1}/{epochs}  {text}")

    return EpochLog()


def _make_run_dir(run_dir: str | None, model_name: str) -> Path:
    if run_dir is not None:
        path = Path(run_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrainingError(f"Cannot create the run directory. Received: run_dir={run_dir!r} ({exc})") from exc
        return path
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path("runs") / f"{model_name}-{stamp}"
    for attempt in range(1000):
        path = base if attempt == 0 else base.with_name(f"{base.name}-{attempt}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise TrainingError(f"Cannot create the run directory {str(path)!r}: {exc}") from exc
    raise TrainingError(f"Too many runs named {base.name!r} in the same second.")


def _write_run_summary(result: TrainResult) -> None:
    summary = {
        "model_name": result.model_name,
        "config": result.config.to_dict(),
        "dataset": result.dataset.info(),
        "metrics": result.metrics,
        "confusion_matrix": result.confusion_matrix,
        "history": result.history,
    }
    (result.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _progress_callback(epochs: int, console: Any):
    """A Keras callback drawing one rich progress bar over the epochs, with the latest losses."""
    import keras
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    class ProgressCallback(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.bar = Progress(
                TextColumn("[bold]training"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[logs]}"),
                console=console,
            )
            self.task = self.bar.add_task("epochs", total=epochs, logs="")

        def on_train_begin(self, logs=None):
            self.bar.start()

        def on_epoch_end(self, epoch, logs=None):
            text = "  ".join(f"{k}={float(v):.4f}" for k, v in (logs or {}).items() if k != "learning_rate")
            self.bar.update(self.task, completed=epoch + 1, logs=text)

        def close(self) -> None:
            self.bar.stop()

    return ProgressCallback()
