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
from serving._flags import FlagError, ServerOptions, parse_flags
from serving._manager import ManagerOptions, ModelManager
from serving._model_config import read_model_config_file, single_model_config
from serving._harness import (
    BackendUnavailableError,
    DockerBackend,
    EmbeddedBackend,
    ExternalBackend,
    HarnessError,
    ServeRequest,
    ServingEndpoint,
    serve_models,
)
from serving._rollout import LiveServer, Rollout, RolloutPolicy, WatchThresholds
from serving._server import run_server

__all__ = [
    "BackendUnavailableError",
    "Classifications",
    "Code",
    "DockerBackend",
    "EmbeddedBackend",
    "ExternalBackend",
    "FlagError",
    "HarnessError",
    "InferenceTask",
    "LiveServer",
    "ManagerOptions",
    "ModelManager",
    "Rollout",
    "RolloutError",
    "RolloutPolicy",
    "Servable",
    "ServeRequest",
    "ServerCore",
    "ServerError",
    "ServerOptions",
    "ServingEndpoint",
    "State",
    "StatusError",
    "VersionStatus",
    "WatchThresholds",
    "load_servable",
    "parse_flags",
    "read_model_config_file",
    "run_server",
    "serve_models",
    "single_model_config",
]
