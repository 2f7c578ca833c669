"""The TF-Serving-compatible server (`tfstack serve`), rollouts, the test harness and the load tool.

Four subpackages, one job each: `server` (loading, the request pipeline, batching, lifecycle, REST
and gRPC front ends), `rollout` (canary/promote/rollback/retire with gates), `testing` (harness and
pytest plugin) and `bench` (`tfstack bench`). Importing this package is cheap: each public name is
imported on first use (PEP 562), and TensorFlow loads only when a model does.
"""

import typing as _typing

from tfstack.serving._lazy import lazy_exports as _lazy_exports

# public name -> the module that defines it
_EXPORTS = {
    "BackendUnavailableError": "tfstack.serving.testing._harness",
    "BatchScheduler": "tfstack.serving.server._batching",
    "BatchingParameters": "tfstack.serving.server._batching",
    "BundleOptions": "tfstack.serving.server._servable",
    "Classifications": "tfstack.serving.server._inference",
    "Code": "tfstack.serving._errors",
    "DockerBackend": "tfstack.serving.testing._harness",
    "EmbeddedBackend": "tfstack.serving.testing._harness",
    "ExternalBackend": "tfstack.serving.testing._harness",
    "FlagError": "tfstack.serving.server._flags",
    "HarnessError": "tfstack.serving.testing._harness",
    "InferenceTask": "tfstack.serving.server._inference",
    "LiveServer": "tfstack.serving.rollout._control",
    "ManagerOptions": "tfstack.serving.server._manager",
    "ModelManager": "tfstack.serving.server._manager",
    "MonitoringConfig": "tfstack.serving.server._monitoring",
    "PrometheusConfig": "tfstack.serving.server._monitoring",
    "Rollout": "tfstack.serving.rollout._rollout",
    "RolloutError": "tfstack.serving._errors",
    "RolloutPolicy": "tfstack.serving.rollout._rollout",
    "Servable": "tfstack.serving.server._servable",
    "ServeRequest": "tfstack.serving.testing._harness",
    "ServerCore": "tfstack.serving.server._core",
    "ServerError": "tfstack.serving._errors",
    "ServerMetrics": "tfstack.serving.server._monitoring",
    "ServerOptions": "tfstack.serving.server._flags",
    "ServingEndpoint": "tfstack.serving.testing._harness",
    "State": "tfstack.serving.server._core",
    "StatusError": "tfstack.serving._errors",
    "VersionStatus": "tfstack.serving.server._core",
    "WatchThresholds": "tfstack.serving.rollout._watch",
    "load_servable": "tfstack.serving.server._servable",
    "parse_batching_parameters": "tfstack.serving.server._batching",
    "parse_flags": "tfstack.serving.server._flags",
    "parse_monitoring_config": "tfstack.serving.server._monitoring",
    "read_batching_parameters": "tfstack.serving.server._batching",
    "read_model_config_file": "tfstack.serving.server._model_config",
    "read_monitoring_config": "tfstack.serving.server._monitoring",
    "run_server": "tfstack.serving.server._server",
    "serve_models": "tfstack.serving.testing._harness",
    "single_model_config": "tfstack.serving.server._model_config",
}

if _typing.TYPE_CHECKING:
    from tfstack.serving._errors import Code, RolloutError, ServerError, StatusError
    from tfstack.serving.rollout._control import LiveServer
    from tfstack.serving.rollout._rollout import Rollout, RolloutPolicy
    from tfstack.serving.rollout._watch import WatchThresholds
    from tfstack.serving.server._batching import BatchScheduler, BatchingParameters, parse_batching_parameters, read_batching_parameters
    from tfstack.serving.server._core import ServerCore, State, VersionStatus
    from tfstack.serving.server._flags import FlagError, ServerOptions, parse_flags
    from tfstack.serving.server._inference import Classifications, InferenceTask
    from tfstack.serving.server._manager import ManagerOptions, ModelManager
    from tfstack.serving.server._model_config import read_model_config_file, single_model_config
    from tfstack.serving.server._monitoring import MonitoringConfig, PrometheusConfig, ServerMetrics, parse_monitoring_config, read_monitoring_config
    from tfstack.serving.server._servable import BundleOptions, Servable, load_servable
    from tfstack.serving.server._server import run_server
    from tfstack.serving.testing._harness import BackendUnavailableError, DockerBackend, EmbeddedBackend, ExternalBackend, HarnessError, ServeRequest, ServingEndpoint, serve_models

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



__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals(), __all__)
