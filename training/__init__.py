"""tfstack training: bundled/CSV/image datasets, Keras models with built-in preprocessing, fit, evaluate.

Typical use:

    >>> from tfstack.training import TrainConfig, train
    >>> result = train(TrainConfig(dataset="iris", epochs=30))
    >>> result.metrics["accuracy"]
    >>> export.publish(result.export_spec(), "models")
"""

from tfstack.training._config import TrainConfig
from tfstack.training._datasets import Dataset, Feature, Split, fingerprint, load_dataset
from tfstack.training._errors import ConfigError, DatasetError, ModelError, TrainingError
from tfstack.training._metrics import classification_metrics, regression_metrics
from tfstack.training._models import build_model
from tfstack.training._train import TrainResult, train

__all__ = [
    "ConfigError",
    "Dataset",
    "DatasetError",
    "Feature",
    "ModelError",
    "Split",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "build_model",
    "classification_metrics",
    "fingerprint",
    "load_dataset",
    "regression_metrics",
    "train",
]
