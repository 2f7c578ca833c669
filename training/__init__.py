"""tfstack training: bundled/CSV/image datasets, Keras models with built-in preprocessing, fit, evaluate.

Typical use:

    >>> from training import TrainConfig, train
    >>> result = train(TrainConfig(dataset="iris", epochs=30))
    >>> result.metrics["accuracy"]
    >>> export.publish(result.export_spec(), "models")
"""

from training._config import TrainConfig
from training._datasets import Dataset, Feature, Split, fingerprint, load_dataset
from training._errors import ConfigError, DatasetError, ModelError, TrainingError
from training._metrics import classification_metrics, regression_metrics
from training._models import build_model
from training._train import TrainResult, train

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
