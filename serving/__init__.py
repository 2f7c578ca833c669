"""The TF-Serving-compatible server: `tfstack serve`, its core, model config and rollout.

Importing this package is cheap; TensorFlow loads only when a model does.
"""

from serving._core import (
    Classifications,
    InferenceTask,
    Servable,
    ServerCore,
    State,
    VersionStatus,
    load_servable,
)
from serving._errors import Code, RolloutError, ServerError, StatusError

__all__ = [
    "Classifications",
    "Code",
    "InferenceTask",
    "RolloutError",
    "Servable",
    "ServerCore",
    "ServerError",
    "State",
    "StatusError",
    "VersionStatus",
    "load_servable",
]
