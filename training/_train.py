"""`train(config)`: load data, build and fit the model, evaluate it on the test split."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from training._config import TrainConfig
from training._datasets import Dataset, load_dataset
from training._errors import ConfigError, TrainingError
from training._metrics import classification_metrics, regression_metrics
from training._models import build_model, resolve_model

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
    # False on the non-chief workers of a multi-worker run: only the chief should publish.
    is_chief: bool = True

    def export_spec(self, *, parent_version: int | None = None):
        """The `export.ExportSpec` that publishes this model (raw-feature signature, test metrics).

        Example:
            >>> export.publish(result.export_spec(), "models")
        """
        import export

        return export.ExportSpec(
            model_name=self.model_name,
            task=self.dataset.task,
            keras_model=self.model,
            features=tuple(
                export.FeatureSpec(name=f.name, dtype=f.dtype, shape=tuple(f.shape)) for f in self.dataset.features
            ),
            class_names=tuple(str(c) for c in self.dataset.class_names),
            sample_inputs={k: np.asarray(v[:SAMPLE_ROWS]) for k, v in self.dataset.test.inputs.items()},
            metrics=self.metrics,
            training_config=self.config.to_dict(),
            dataset=self.dataset.info(),
            history=self.history,
            confusion_matrix=self.confusion_matrix,
            parent_version=parent_version,
        )


def train(config: TrainConfig | None = None, *, progress: bool = True, console: Any = None) -> TrainResult:
    """Train a model as `config` says and evaluate it on the held-out test split.

    Args:
        config: the run's settings; defaults train a CNN on digits.
        progress: show a progress bar on `console` (or stderr).
        console: a `rich.console.Console` for the progress bar.

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
    dataset = load_dataset(config)
    model_kind, hidden = resolve_model(config.model, config.hidden, dataset)
    config = dataclasses.replace(
        config,
        model=model_kind,
        hidden=hidden,
        task=dataset.task,
        dataset=config.dataset if config.csv_path or config.image_dir else config.source_name,
    )
    model_name = config.model_name or dataset.name
    run_dir = _make_run_dir(config.run_dir, model_name)
    config = dataclasses.replace(config, model_name=model_name, run_dir=str(run_dir))

    import keras
    import tensorflow as tf

    strategy = _strategy(config.strategy, tf)
    keras.utils.set_random_seed(config.seed)
    # Same seed, same metrics: deterministic kernels cost a little speed on CPU, which is fine here.
    tf.config.experimental.enable_op_determinism()

    with strategy.scope():
        model = build_model(dataset, model=model_kind, hidden=hidden, activation=config.activation, seed=config.seed)
        if dataset.task == "classification":
            loss, metric = "sparse_categorical_crossentropy", "accuracy"
        else:
            loss, metric = "mse", "mae"
        model.compile(optimizer=_optimizer(config, keras), loss=loss, metrics=[metric])

    callbacks: list[Any] = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), profile_batch=0),
    ]
    progress_callback = _progress_callback(config.epochs, console) if progress else None
    if progress_callback is not None:
        callbacks.append(progress_callback)
    try:
        history = model.fit(
            x=_model_inputs(dataset.train.inputs),
            y=dataset.train.labels,
            validation_data=(_model_inputs(dataset.validation.inputs), dataset.validation.labels),
            epochs=config.epochs,
            batch_size=config.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
        predictions = model.predict(_model_inputs(dataset.test.inputs), batch_size=256, verbose=0)
    except (tf.errors.OpError, ValueError) as exc:
        raise TrainingError(f"Training {model_name!r} failed inside TensorFlow: {exc}") from exc
    finally:
        if progress_callback is not None:
            progress_callback.close()

    if dataset.task == "classification":
        metrics, confusion = classification_metrics(dataset.test.labels, predictions, dataset.class_names)
    else:
        metrics, confusion = regression_metrics(dataset.test.labels, predictions), None
    metrics["epochs_trained"] = len(history.history.get("loss", []))
    result = TrainResult(
        config=config,
        model_name=model_name,
        model=model,
        dataset=dataset,
        metrics=metrics,
        confusion_matrix=confusion,
        history={k: [float(v) for v in values] for k, values in history.history.items()},
        run_dir=run_dir,
        is_chief=bool(getattr(strategy.extended, "should_checkpoint", True)),
    )
    _write_run_summary(result)
    return result


def _model_inputs(inputs) -> dict[str, Any]:
    # String columns are object arrays of Python str; Keras wants a tf.string tensor for them.
    import tensorflow as tf

    return {
        k: tf.constant(v.astype(str).tolist(), dtype=tf.string) if v.dtype == object else v
        for k, v in inputs.items()
    }


def _optimizer(config: TrainConfig, keras):
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=config.learning_rate, momentum=config.momentum)
    return keras.optimizers.Adam(learning_rate=config.learning_rate)


def _strategy(name: str, tf):
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        # Reads the cluster from TF_CONFIG itself; without it this is a one-worker cluster.
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"Cannot start a multi-worker strategy (check TF_CONFIG): {exc}. Received: strategy='multi-worker'"
            ) from exc
    return tf.distribute.get_strategy()


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
