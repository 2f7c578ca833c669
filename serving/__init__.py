"""The TF-Serving-compatible server: `tfstack serve`, its core, model config and rollout.

Importing this package is cheap; TensorFlow loads only when a model does.
"""

from tfstack.serving.server._batching import BatchingParameters, BatchScheduler, parse_batching_parameters, read_batching_parameters
from tfstack.serving.server._core import ServerCore, State, VersionStatus
from tfstack.serving.server._inference import Classifications, InferenceTask
from tfstack.serving.server._servable import BundleOptions, Servable, load_servable
from tfstack.serving._errors import Code, RolloutError, ServerError, StatusError
from tfstack.serving.server._flags import FlagError, ServerOptions, parse_flags
from tfstack.serving.server._manager import ManagerOptions, ModelManager
from tfstack.serving.server._model_config import read_model_config_file, single_model_config
from tfstack.serving.server._monitoring import (
    MonitoringConfig,
    PrometheusConfig,
    ServerMetrics,
    parse_monitoring_config,
    read_monitoring_config,
)
from tfstack.serving.testing._harness import (
    BackendUnavailableError,
    DockerBackend,
    EmbeddedBackend,
    ExternalBackend,
    HarnessError,
    ServeRequest,
    ServingEndpoint,
    serve_models,
)
from tfstack.serving.rollout._rollout import LiveServer, Rollout, RolloutPolicy, WatchThresholds
from tfstack.serving.server._server import run_server

__all__ = [
    "BackendUnavailableError",
    "BatchScheduler",
    "BatchingParameters",
    "BundleOptions",
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
    "MonitoringConfig",
    "PrometheusConfig",
    "Rollout",
    "RolloutError",
    "RolloutPolicy",
    "Servable",
    "ServeRequest",
    "ServerCore",
    "ServerError",
    "ServerMetrics",
    "ServerOptions",
    "ServingEndpoint",
    "State",
    "StatusError",
    "VersionStatus",
    "WatchThresholds",
    "load_servable",
    "parse_batching_parameters",
    "parse_flags",
    "parse_monitoring_config",
    "read_batching_parameters",
    "read_model_config_file",
    "read_monitoring_config",
    "run_server",
    "serve_models",
    "single_model_config",
]
