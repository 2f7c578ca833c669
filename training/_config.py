"""`TrainConfig`: every setting of a training run, validated before any I/O."""

from __future__ import annotations

import dataclasses
from typing import Any

from tfstack.training._errors import ConfigError

BUILTIN_DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes")
MODELS = ("auto", "perceptron", "mlp", "cnn")
TASKS = ("auto", "classification", "regression")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
STRATEGIES = ("none", "mirrored", "multi-worker")
COLOR_MODES = ("grayscale", "rgb")
# Names Keras resolves with keras.activations.get; a fixed list keeps validation free of imports.
ACTIVATIONS = (
    "relu", "tanh", "sigmoid", "gelu", "elu", "selu", "silu", "swish", "softplus",
    "softsign", "leaky_relu", "relu6", "mish", "hard_sigmoid", "linear",
)


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"`{field}` must be one of {', '.join(allowed)}. Received: {field}={value!r}")


def _positive_int(field: str, value: Any, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"`{field}` must be an integer >= {minimum}. Received: {field}={value!r}")


def _fraction(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ConfigError(f"`{field}` must be a number strictly between 0 and 1. Received: {field}={value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Settings of one training run. Every field has a default that trains a good digits CNN.

    Exactly one data source is used: `csv_path` (with `target`), `image_dir`, or the bundled
    scikit-learn dataset named by `dataset` (default "digits").

    Example:
        >>> TrainConfig(dataset="iris", model="mlp", hidden=(16,), epochs=20)
    """

    dataset: str | None = None
    csv_path: str | None = None
    target: str | None = None
    image_dir: str | None = None
    image_size: tuple[int, int] = (28, 28)
    color_mode: str = "grayscale"
    task: str = "auto"
    model: str = "auto"
    hidden: tuple[int, ...] | None = None
    activation: str = "relu"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.0
    batch_size: int = 32
    epochs: int = 100
    patience: int = 5
    validation_split: float = 0.1
    test_split: float = 0.2
    seed: int = 42
    strategy: str = "none"
    run_dir: str | None = None
    model_name: str | None = None
    # Request logs (files, directories or logging_config prefixes) whose labelled rows join the training split.
    from_logs: tuple[str, ...] = ()
    labels: str | None = None

    def __post_init__(self) -> None:
        sources = {
            "dataset": self.dataset,
            "csv_path": self.csv_path,
            "image_dir": self.image_dir,
        }
        chosen = [name for name, value in sources.items() if value is not None]
        if len(chosen) > 1:
            raise ConfigError(
                "Use one data source: a bundled dataset, a CSV file or an image folder. "
                f"Received: {', '.join(f'{n}={sources[n]!r}' for n in chosen)}"
            )
        if self.dataset is not None:
            _choice("dataset", self.dataset, BUILTIN_DATASETS)
        if self.csv_path is not None and not self.target:
            raise ConfigError(
                f"A CSV dataset needs the name of its target column (--target). Received: target={self.target!r}"
            )
        if self.target is not None and self.csv_path is None:
            raise ConfigError(f"`target` only applies to a CSV dataset (--csv). Received: target={self.target!r}")
        if (
            not isinstance(self.image_size, tuple)
            or len(self.image_size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 4 <= v <= 512 for v in self.image_size)
        ):
            raise ConfigError(
                f"`image_size` must be two integers (height, width) between 4 and 512. Received: image_size={self.image_size!r}"
            )
        _choice("color_mode", self.color_mode, COLOR_MODES)
        _choice("task", self.task, TASKS)
        _choice("model", self.model, MODELS)
        if self.hidden is not None:
            if not isinstance(self.hidden, tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in self.hidden
            ):
                raise ConfigError(
                    f"`hidden` must be a tuple of positive layer sizes, e.g. (64, 32). Received: hidden={self.hidden!r}"
                )
            if self.model == "perceptron" and self.hidden:
                raise ConfigError(
                    f"A perceptron has no hidden layers; use model='mlp' for hidden sizes. Received: hidden={self.hidden!r}"
                )
            if self.model == "mlp" and not self.hidden:
                raise ConfigError("An mlp needs at least one hidden layer size, e.g. (64,). Received: hidden=()")
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float)) or not self.learning_rate > 0:
            raise ConfigError(f"`learning_rate` must be a number > 0. Received: learning_rate={self.learning_rate!r}")
        if isinstance(self.momentum, bool) or not isinstance(self.momentum, (int, float)) or not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"`momentum` must be a number in [0, 1). Received: momentum={self.momentum!r}")
        if self.momentum and self.optimizer == "adam":
            raise ConfigError(
                f"`momentum` applies to sgd and rmsprop, not adam. Received: optimizer='adam', momentum={self.momentum!r}"
            )
        _positive_int("batch_size", self.batch_size)
        _positive_int("epochs", self.epochs)
        _positive_int("patience", self.patience, minimum=0)
        _fraction("validation_split", self.validation_split)
        _fraction("test_split", self.test_split)
        if self.validation_split + self.test_split >= 0.9:
            raise ConfigError(
                "validation_split + test_split must leave at least 10% of the data for training. "
                f"Received: validation_split={self.validation_split!r}, test_split={self.test_split!r}"
            )
        if not isinstance(self.from_logs, tuple) or not all(isinstance(p, str) and p for p in self.from_logs):
            raise ConfigError(f"`from_logs` must be a tuple of paths. Received: from_logs={self.from_logs!r}")
        if bool(self.from_logs) != bool(self.labels):
            raise ConfigError(
                "Training from logs needs both the logs (--from-logs) and their labels (--labels). "
                f"Received: from_logs={list(self.from_logs)!r}, labels={self.labels!r}"
            )
        _positive_int("seed", self.seed, minimum=0)
        _choice("strategy", self.strategy, STRATEGIES)
        if self.model_name is not None and not _valid_model_name(self.model_name):
            raise ConfigError(
                "`model_name` must be letters, digits, '_', '-' or '.' (at most 128), start with a letter, digit "
                "or '_', and not be purely numeric. "
                f"Received: model_name={self.model_name!r}"
            )

    @property
    def source_name(self) -> str:
        """The bundled dataset name in use ("digits" when no source was given)."""
        return self.dataset or "digits"

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-able values (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }


def _valid_model_name(name: str) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= 128
        and (name[0].isalnum() or name[0] == "_")
        and not name.isdigit()
        and all(ch.isascii() and (ch.isalnum() or ch in "_-.") for ch in name)
    )
