"""Rollouts: canary, promote, rollback, retire through models.config and the reload RPC, with gates.

One module per job: `_rollout` (the `Rollout` steps and their three phases), `_state` (the
rollout state file and the config entry derived from it), `_control` (how a server is reached:
`ServerControl`, `LiveServer`), `_fleet` (several replicas as one server), `_gates` (signature,
quality and infra checks of a candidate), `_watch` (judging a canary against stable),
`_publish` (copying a SavedModel directory in as a version), `_errors`, and `cli`
(`tfstack rollout`). Importing this package is cheap: each public name is imported on first
use (PEP 562), and no step imports TensorFlow except the canary's infra gate.

Example:
    >>> from tfstack.serving.rollout import LiveServer, Rollout
    >>> rollout = Rollout("models.config", "models", server=LiveServer(grpc_target="localhost:8500"))
    >>> rollout.canary("iris", 2)
"""

import typing as _typing

from tfstack.serving._lazy import lazy_exports as _lazy_exports

# public name -> the module that defines it
_EXPORTS = {
    "ConfigLockError": "tfstack.serving.rollout._errors",
    "DriftCheck": "tfstack.serving.rollout._watch",
    "Fleet": "tfstack.serving.rollout._fleet",
    "GateError": "tfstack.serving.rollout._errors",
    "GateResult": "tfstack.serving.rollout._gates",
    "LiveServer": "tfstack.serving.rollout._control",
    "MetricsSource": "tfstack.serving.rollout._watch",
    "ModelState": "tfstack.serving.rollout._state",
    "ProbeMetrics": "tfstack.serving.rollout._watch",
    "QualityPolicy": "tfstack.serving.rollout._gates",
    "ReplicaAddress": "tfstack.serving.rollout._fleet",
    "ReplicaError": "tfstack.serving.rollout._errors",
    "ReplicaStatus": "tfstack.serving.rollout._control",
    "Rollout": "tfstack.serving.rollout._rollout",
    "RolloutError": "tfstack.serving._errors",
    "RolloutPolicy": "tfstack.serving.rollout._rollout",
    "RolloutStatus": "tfstack.serving.rollout._rollout",
    "ServerControl": "tfstack.serving.rollout._control",
    "VersionRow": "tfstack.serving.rollout._rollout",
    "WatchResult": "tfstack.serving.rollout._watch",
    "WatchThresholds": "tfstack.serving.rollout._watch",
    "judge_canary": "tfstack.serving.rollout._watch",
    "publish_saved_model": "tfstack.serving.rollout._publish",
    "read_servers_file": "tfstack.serving.rollout._fleet",
    "resolve_replicas": "tfstack.serving.rollout._fleet",
}

if _typing.TYPE_CHECKING:
    from tfstack.serving._errors import RolloutError
    from tfstack.serving.rollout._control import LiveServer, ReplicaStatus, ServerControl
    from tfstack.serving.rollout._errors import ConfigLockError, GateError, ReplicaError
    from tfstack.serving.rollout._fleet import Fleet, ReplicaAddress, read_servers_file, resolve_replicas
    from tfstack.serving.rollout._gates import GateResult, QualityPolicy
    from tfstack.serving.rollout._publish import publish_saved_model
    from tfstack.serving.rollout._rollout import Rollout, RolloutPolicy, RolloutStatus, VersionRow
    from tfstack.serving.rollout._state import ModelState
    from tfstack.serving.rollout._watch import DriftCheck, MetricsSource, ProbeMetrics, WatchResult, WatchThresholds, judge_canary

__all__ = [
    "ConfigLockError",
    "DriftCheck",
    "Fleet",
    "GateError",
    "GateResult",
    "LiveServer",
    "MetricsSource",
    "ModelState",
    "ProbeMetrics",
    "QualityPolicy",
    "ReplicaAddress",
    "ReplicaError",
    "ReplicaStatus",
    "Rollout",
    "RolloutError",
    "RolloutPolicy",
    "RolloutStatus",
    "ServerControl",
    "VersionRow",
    "WatchResult",
    "WatchThresholds",
    "judge_canary",
    "publish_saved_model",
    "read_servers_file",
    "resolve_replicas",
]


__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals(), __all__)
