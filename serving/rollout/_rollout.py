"""Roll out model versions on a model repository plus a models.config file, safely and under load.

The state of a rollout lives in a small JSON file beside the config (`<config>.rollout.json`):
per model, the `stable` version, the `canary` version (or none), the `previous` stable (for
rollback) and until when it stays loaded (the grace period). The config entry is *derived*
from that state:

- `model_version_policy { specific { versions: ... } }` = stable, canary, and previous while
  its grace period lasts;
- `version_labels` = `stable` -> stable and `canary` -> canary (-> stable when there is no canary,
  so clients that split traffic by label never hit an unknown label).

Every step (canary, promote, rollback, finalize) first records the new state, then moves the
server to it with TF Serving's rules (spec §4.5, "labels only on AVAILABLE versions"):

1. load: the union of old and new versions, labels unchanged; reload; wait until the new
   versions are AVAILABLE (through the client);
2. labels: move the labels; reload; wait until each label resolves to its version;
3. unload: drop versions no longer wanted; reload.

Each phase writes the file atomically (temp + fsync + rename, the old file kept as `.bak`)
under a file lock, then asks the server to reload it with `ModelService/HandleReloadConfigRequest`
(when a gRPC address is known) and otherwise waits for the server's config polling to pick it
up; both work on real TF Serving. A phase whose file is already right writes nothing, so a
step re-run after a crash just finishes the work; a step that fails restores the previous
state (and config).

The server may be a fleet of replicas sharing the config file (`tfstack.serving.rollout._fleet.Fleet`): every
reload goes to each replica and every wait holds until each replica agrees, so a phase ends
only when the whole fleet is in it; a replica that fails makes the step restore the previous
state on the others.

No step imports TensorFlow: the config and the reload request are tfstack's own copies of TF
Serving's messages (client/_proto, the same text and wire format). Only the canary's infra
gate does, to run the candidate in-process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tfstack.export import atomic_write_text  # the one atomic-write path (temp, fsync, rename)
from tfstack.serving._errors import RolloutError
from tfstack.serving.rollout._gates import (
    GateResult,
    QualityPolicy,
    check_infra,
    check_quality,
    check_signatures,
    raise_on_failure,
)

if TYPE_CHECKING:
    from tfstack.client import LabelStats
    from tfstack.client.wire import ModelConfig, ModelServerConfig

logger = logging.getLogger("tfstack.rollout")

STABLE = "stable"
CANARY = "canary"
STATE_SUFFIX = ".rollout.json"
LOCK_SUFFIX = ".lock"
BACKUP_SUFFIX = ".bak"
STATE_FORMAT = 1
GATES = ("signature", "quality", "infra")
# TF Serving's model management RPC, called by path like the client's other methods.
RELOAD_CONFIG = "/tensorflow.serving.ModelService/HandleReloadConfigRequest"


class ConfigLockError(RolloutError):
    """Another rollout step holds the config lock."""


class ReplicaError(RolloutError):
    """One or more replicas of a fleet failed a phase; `replicas` names them."""

    def __init__(self, message: str, replicas: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.replicas = tuple(replicas)


# ================================================================================ settings


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutPolicy:
    """How rollout steps behave.

    Attributes:
        grace_seconds: how long `promote` keeps the previous stable loaded for instant rollback.
        load_timeout: seconds to wait for a version to become AVAILABLE (or a label to resolve).
        unload_timeout: seconds to wait for dropped versions to leave AVAILABLE (only logged).
        quality: the quality gate's metric, margin and floor.
        allow_breaking: let the signature gate pass a breaking change (it is still reported).
        skip_gates: gates not to run ("signature", "quality", "infra").
        infra_tolerance: absolute/relative tolerance of the infra gate's output comparison.
        lock_timeout: seconds to wait for another rollout step to release the config lock.
    """

    grace_seconds: float = 600.0
    load_timeout: float = 300.0
    unload_timeout: float = 30.0
    quality: QualityPolicy = QualityPolicy()
    allow_breaking: bool = False
    skip_gates: tuple[str, ...] = ()
    infra_tolerance: float = 1e-4
    lock_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("grace_seconds", "load_timeout", "unload_timeout", "infra_tolerance", "lock_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0. Received: {name}={value!r}")
        unknown = sorted(set(self.skip_gates) - set(GATES))
        if unknown:
            raise ValueError(f"skip_gates must name gates among {list(GATES)}. Received: skip_gates={self.skip_gates!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelState:
    """The rollout state of one model; `desired()` says what the config must contain."""

    stable: int
    canary: int | None = None
    previous: int | None = None
    previous_until: float | None = None  # epoch seconds; previous stays loaded until then
    pending: str | None = None  # the step that was running; set until its config is in force

    def previous_loaded(self, now: float) -> bool:
        return self.previous is not None and self.previous_until is not None and now < self.previous_until

    def desired(self, now: float) -> tuple[tuple[int, ...], dict[str, int]]:
        """(versions to load, labels) the config entry must hold."""
        versions = {self.stable}
        if self.canary is not None:
            versions.add(self.canary)
        if self.previous_loaded(now):
            versions.add(self.previous)  # type: ignore[arg-type]
        labels = {STABLE: self.stable, CANARY: self.canary if self.canary is not None else self.stable}
        return tuple(sorted(versions)), labels

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ModelState:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in fields})


# ================================================================================ server control


class ServerControl(Protocol):
    """What rollout needs from a server. `LiveServer` talks to a real one; tests pass fakes."""

    def reload(self, config: ModelServerConfig) -> None:
        """Make the server use `config` now (or do nothing and rely on config polling)."""

    def wait_available(self, model_name: str, version: int, timeout: float) -> None:
        """Return when the version is AVAILABLE; raise RolloutError if it failed or timed out."""

    def wait_label(self, model_name: str, label: str, version: int, timeout: float) -> None:
        """Return when requests for `label` reach `version`; raise RolloutError on timeout."""

    def wait_unloaded(self, model_name: str, version: int, timeout: float) -> bool:
        """Return True once the version is no longer AVAILABLE, False on timeout."""

    def version_states(self, model_name: str) -> dict[int, str]:
        """Version -> state name as the server reports it ({} if the model is unknown)."""

    def predictors(self, model_name: str, version: int) -> dict[str, Callable[[str, dict], Mapping[str, Any]]]:
        """Protocol name -> predict(signature_name, inputs) bound to one version (infra gate)."""

    # Optional, used when present: `names` (the replicas, for messages), `restoring()` (a context
    # in which a failed step is undone; see tfstack.serving.rollout._fleet.Fleet), `replica_status(model_name,
    # labels)` (one ReplicaStatus per replica, for `status`) and `control_clients` (probes).


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReplicaStatus:
    """What one replica reports for a model: version states, where the labels lead, or why it did not answer."""

    name: str
    states: dict[int, str] = dataclasses.field(default_factory=dict)
    labels: dict[str, int | None] = dataclasses.field(default_factory=dict)  # None: does not resolve
    error: str | None = None
    differences: tuple[str, ...] = ()  # how it differs from the config (filled by Rollout.status)


class LiveServer:
    """A TF-Serving-compatible server reached over gRPC and/or REST (tfstack's client).

    Config reloads go through gRPC `ModelService/HandleReloadConfigRequest` when `grpc_target`
    is set and `use_reload_rpc` is true; otherwise the server must poll its config file
    (--model_config_file_poll_wait_seconds) and every wait simply lasts until it has.
    """

    def __init__(
        self,
        *,
        grpc_target: str | None = None,
        rest_url: str | None = None,
        use_reload_rpc: bool = True,
        timeout: float = 30.0,
        reload_timeout: float | None = None,
    ) -> None:
        if not grpc_target and not rest_url:
            raise ValueError("LiveServer needs grpc_target and/or rest_url. Received: neither")
        from tfstack.client import ServingClient

        self.grpc_target = grpc_target
        self.rest_url = rest_url
        self.use_reload_rpc = use_reload_rpc and bool(grpc_target)
        self.timeout = timeout
        # TF Serving answers a reload once the new models are loaded, which can take a while.
        self.reload_timeout = max(timeout, 300.0) if reload_timeout is None else reload_timeout
        self._reload_channel: Any = None
        self._reload_call: Any = None
        self._clients: dict[str, Any] = {}
        if grpc_target:
            self._clients["grpc"] = ServingClient.grpc(grpc_target, timeout=timeout)
        if rest_url:
            self._clients["rest"] = ServingClient.rest(rest_url, timeout=timeout)
        self._control = self._clients.get("grpc") or self._clients["rest"]

    def __repr__(self) -> str:
        return f"LiveServer(grpc_target={self.grpc_target!r}, rest_url={self.rest_url!r})"

    @property
    def name(self) -> str:
        """How messages name this server: its gRPC target, else its REST URL."""
        return self.grpc_target or self.rest_url or "?"

    @property
    def client(self) -> Any:
        """The ServingClient used for status and waits (gRPC if given, else REST)."""
        return self._control

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)

    @property
    def control_clients(self) -> tuple[Any, ...]:
        """The client per replica that status, waits and probes use: here just `client`."""
        return (self._control,)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        if self._reload_channel is not None:
            self._reload_channel.close()
            self._reload_channel = self._reload_call = None

    def reload(self, config: ModelServerConfig) -> None:
        if not self.use_reload_rpc:
            return
        import grpc

        from tfstack.client import wire

        request = wire.ReloadConfigRequest()
        # The same bytes whether `config` is tfstack's message or tensorflow_serving's.
        request.config.ParseFromString(config.SerializeToString())
        if self._reload_call is None:
            self._reload_channel = grpc.insecure_channel(self.grpc_target)
            self._reload_call = self._reload_channel.unary_unary(
                RELOAD_CONFIG,
                request_serializer=wire.ReloadConfigRequest.SerializeToString,
                response_deserializer=wire.ReloadConfigResponse.FromString,
            )
        try:
            response = self._reload_call(request, timeout=self.reload_timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            verb = "did not answer" if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) else "rejected"
            hint = ""
            if code == grpc.StatusCode.UNIMPLEMENTED:
                hint = (" (this server does not take reloads over gRPC: use --no-reload-rpc and let it poll the file"
                        " with --model_config_file_poll_wait_seconds)")
            raise RolloutError(
                f"The server at {self.grpc_target} {verb} the config reload: {code.name}: {exc.details()}{hint}"
            ) from exc
        if response.status.error_code:
            try:
                code = wire.Code.Name(response.status.error_code)
            except ValueError:
                code = f"code {response.status.error_code}"
            raise RolloutError(
                f"The server at {self.grpc_target} rejected the config reload: {code}: {response.status.error_message}"
            )

    def wait_available(self, model_name: str, version: int, timeout: float) -> None:
        from tfstack.client import ServingError

        try:
            self._control.wait_until_available(model_name, version=version, timeout=timeout)
        except ServingError as exc:
            raise RolloutError(f"Version {version} of model {model_name!r} did not become AVAILABLE: {exc}") from exc

    def wait_label(self, model_name: str, label: str, version: int, timeout: float) -> None:
        from tfstack.client import ServingError

        deadline = time.monotonic() + timeout
        seen: object = "nothing yet"
        # Every front end resolves labels on its own; a label is moved once both agree.
        for protocol, client in self._clients.items():
            while True:
                try:
                    seen = client.get_model_metadata(model_name, version_label=label).version
                    if seen == version:
                        break
                except ServingError as exc:
                    seen = exc
                if time.monotonic() >= deadline:
                    raise RolloutError(
                        f"Label {label!r} of model {model_name!r} did not reach version {version} over {protocol} "
                        f"within {timeout:g}s; last seen: {seen}"
                    )
                time.sleep(0.05)

    def wait_unloaded(self, model_name: str, version: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.version_states(model_name).get(version) != "AVAILABLE":
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def version_states(self, model_name: str) -> dict[int, str]:
        from tfstack.client import ServingError

        try:
            status = self._control.get_model_status(model_name)
        except ServingError:
            return {}
        return {v.version: v.state for v in status.versions}

    def replica_status(self, model_name: str, labels: Sequence[str]) -> list[ReplicaStatus]:
        """This server's version states and where each of `labels` leads (one line of `status`)."""
        from tfstack.client import ServingError

        try:
            status = self._control.get_model_status(model_name)
        except ServingError as exc:
            return [ReplicaStatus(name=self.name, error=str(exc))]
        resolved: dict[str, int | None] = {}
        for label in labels:
            try:
                resolved[label] = self._control.get_model_metadata(model_name, version_label=label).version
            except ServingError:
                resolved[label] = None
        return [ReplicaStatus(name=self.name, states={v.version: v.state for v in status.versions}, labels=resolved)]

    def predictors(self, model_name: str, version: int) -> dict[str, Callable[[str, dict], Mapping[str, Any]]]:
        def bind(client: Any) -> Callable[[str, dict], Mapping[str, Any]]:
            return lambda signature_name, inputs: client.predict(
                model_name, inputs, version=version, signature_name=signature_name
            )

        return {protocol: bind(client) for protocol, client in self._clients.items()}


# ================================================================================ files

class ConfigFile:
    """A text-format ModelServerConfig on disk, written atomically with a `.bak` of the last version."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, (str, os.PathLike)) or str(path) == "":
            raise ValueError(f"config_file must be a non-empty path. Received: config_file={path!r}")
        self.path = Path(path).absolute()

    @property
    def backup_path(self) -> Path:
        return self.path.with_name(self.path.name + BACKUP_SUFFIX)

    def read(self) -> ModelServerConfig:
        """The config; an empty model_config_list if the file does not exist yet."""
        from google.protobuf import text_format

        from tfstack.client import wire

        config = wire.ModelServerConfig()
        if not self.path.exists():
            config.model_config_list.SetInParent()
            return config
        try:
            text_format.Parse(self.path.read_text(encoding="utf-8"), config)
        except (OSError, UnicodeDecodeError, text_format.ParseError) as exc:
            raise RolloutError(
                f"Cannot read the model config {self.path}: {exc} (expected a text-format ModelServerConfig)"
            ) from exc
        if config.WhichOneof("config") == "custom_model_config":
            raise RolloutError(f"{self.path} holds a custom_model_config; rollout needs a model_config_list.")
        config.model_config_list.SetInParent()
        return config

    @staticmethod
    def render(config: ModelServerConfig) -> str:
        from google.protobuf import text_format

        return text_format.MessageToString(config)

    def write(self, config: ModelServerConfig) -> bool:
        """Write `config` if it differs from the file; keep the old file as `.bak`. Returns whether it wrote."""
        text = self.render(config)
        old = self.path.read_text(encoding="utf-8") if self.path.exists() else None
        if old == text:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if old is not None:
            atomic_write_text(self.backup_path, old)
        atomic_write_text(self.path, text)
        return True


class StateFile:
    """`<config>.rollout.json`: per-model ModelState plus a short history of steps."""

    HISTORY = 50

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"format": STATE_FORMAT, "models": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RolloutError(f"Cannot read the rollout state {self.path}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            raise RolloutError(f"{self.path} is not a rollout state file (expected {{'models': {{...}}}}).")
        return data

    def get(self, model_name: str) -> ModelState | None:
        entry = self._load()["models"].get(model_name)
        return None if entry is None else ModelState.from_json(entry["state"])

    def history(self, model_name: str) -> list[dict[str, Any]]:
        entry = self._load()["models"].get(model_name)
        return [] if entry is None else list(entry.get("history", []))

    def put(self, model_name: str, state: ModelState | None, *, event: str | None = None) -> None:
        data = self._load()
        models = data["models"]
        if state is None:
            models.pop(model_name, None)
        else:
            entry = models.setdefault(model_name, {"history": []})
            entry["state"] = state.to_json()
            if event:
                entry["history"] = (entry.get("history", []) + [{"time": _utc(time.time()), "event": event}])[-self.HISTORY:]
        atomic_write_text(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


# ================================================================================ status


@dataclasses.dataclass(frozen=True, kw_only=True)
class VersionRow:
    """One version in `Rollout.status`."""

    version: int
    on_disk: bool
    in_config: bool
    server_state: str | None
    labels: tuple[str, ...]
    metric: tuple[str, float] | None
    created: str | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutStatus:
    """Everything `tfstack rollout status` shows for one model."""

    model_name: str
    state: ModelState | None
    versions: tuple[VersionRow, ...]
    config_labels: dict[str, int]
    history: tuple[dict[str, Any], ...] = ()
    replicas: tuple[ReplicaStatus, ...] = ()  # one per server replica, when a server is given


# ================================================================================ watch


@dataclasses.dataclass(frozen=True, kw_only=True)
class WatchThresholds:
    """When `watch` rolls a canary back.

    Attributes:
        max_error_rate_increase: canary error rate minus stable's, above which it rolls back (0.01 = 1 point).
        max_p99_ratio: canary p99 over stable p99 above which it rolls back...
        min_p99_increase_ms: ...and only if the p99 difference is also above this (noise floor).
        min_requests: canary requests needed in a window before judging it.
    """

    max_error_rate_increase: float = 0.01
    max_p99_ratio: float = 1.5
    min_p99_increase_ms: float = 5.0
    min_requests: int = 20

    def __post_init__(self) -> None:
        for name in ("max_error_rate_increase", "max_p99_ratio", "min_p99_increase_ms", "min_requests"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0. Received: {name}={value!r}")


class MetricsSource(Protocol):
    """Per-label request statistics for the latest window (e.g. `tfstack.client._traffic.TrafficStats`)."""

    def snapshot(self) -> Mapping[str, LabelStats]: ...


def judge_canary(stable: Any, canary: Any, thresholds: WatchThresholds) -> str | None:
    """Why the canary is worse than stable beyond the thresholds, or None if it is not (or too few requests)."""
    if canary is None or canary.requests < thresholds.min_requests:
        return None
    stable_errors = stable.error_rate if stable is not None and stable.requests else 0.0
    if canary.error_rate - stable_errors > thresholds.max_error_rate_increase:
        return (
            f"canary error rate {canary.error_rate:.2%} ({canary.errors}/{canary.requests}) exceeds stable's "
            f"{stable_errors:.2%} by more than {thresholds.max_error_rate_increase:.2%}"
        )
    if stable is not None and stable.requests and stable.p99_ms is not None and canary.p99_ms is not None:
        if (
            canary.p99_ms > stable.p99_ms * thresholds.max_p99_ratio
            and canary.p99_ms - stable.p99_ms > thresholds.min_p99_increase_ms
        ):
            return (
                f"canary p99 latency {canary.p99_ms:.1f} ms exceeds stable's {stable.p99_ms:.1f} ms "
                f"by more than x{thresholds.max_p99_ratio:g}"
            )
    return None


class ProbeMetrics:
    """A MetricsSource that measures by itself: each `snapshot()` sends `requests` sample
    predictions to each label through `client` (or through each of several clients, one per
    replica of a fleet) and returns that window's TrafficStats, summed over them.

    Useful when no application traffic reports per-label statistics; the probe sees errors
    and latency as any client would.
    """

    def __init__(self, client: Any, model_name: str, inputs: Mapping[str, Any], *, requests: int = 20,
                 signature_name: str = "serving_default") -> None:
        from tfstack.client import TrafficStats

        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
            raise ValueError(f"requests must be an int >= 1. Received: requests={requests!r}")
        # A fleet passes one client per replica: every replica is probed, the counts added up.
        self.clients = tuple(client) if isinstance(client, (list, tuple)) else (client,)
        if not self.clients:
            raise ValueError("client must be a ServingClient or a non-empty sequence of them. Received: []")
        self.client = self.clients[0]
        self.model_name = model_name
        self.inputs = dict(inputs)
        self.requests = requests
        self.signature_name = signature_name
        self.stats = TrafficStats()

    def snapshot(self) -> Mapping[str, LabelStats]:
        from tfstack.client import ServingError

        for _ in range(self.requests):
            for client, label in ((c, label) for c in self.clients for label in (STABLE, CANARY)):
                started = time.perf_counter()
                try:
                    client.predict(self.model_name, self.inputs, version_label=label, signature_name=self.signature_name)
                except ServingError:
                    self.stats.record(label, time.perf_counter() - started, ok=False)
                else:
                    self.stats.record(label, time.perf_counter() - started, ok=True)
        return self.stats.snapshot(reset=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WatchResult:
    """What `watch` saw: how many windows it judged and whether (and why) it rolled back."""

    checks: int
    rolled_back: bool
    reason: str | None = None
    state: ModelState | None = None


# ================================================================================ rollout


class Rollout:
    """Publish, canary, promote, rollback, finalize and retire versions of models in one config.

    Args:
        config_file: the models.config both TF Serving and `tfstack serve` read
            (--model_config_file). Created on the first `init`.
        base_path: the model repository root; each model lives in `<base_path>/<model_name>`.
        server: how to reach the server (`LiveServer`); None for offline steps (publish, retire,
            status, and `init` before the server starts).
        policy: timeouts, grace period and gate settings.
        clock: seconds since the epoch (tests inject one).

    Example:
        >>> rollout = Rollout("models.config", "models", server=LiveServer(grpc_target="localhost:8500"))
        >>> rollout.publish("iris", "/tmp/exported_savedmodel").version
        2
        >>> rollout.canary("iris", 2)       # gates, load beside stable, label canary -> 2
        >>> rollout.promote("iris")         # stable -> 2; 1 stays loaded for the grace period
        >>> rollout.rollback("iris")        # stable -> 1 again, at once
    """

    def __init__(
        self,
        config_file: str | os.PathLike[str],
        base_path: str | os.PathLike[str],
        *,
        server: ServerControl | None = None,
        policy: RolloutPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from tfstack import export

        if policy is not None and not isinstance(policy, RolloutPolicy):
            raise TypeError(f"policy must be a RolloutPolicy. Received: policy={type(policy).__name__}")
        self.config = ConfigFile(config_file)
        self.repository = export.ModelRepository(Path(base_path).absolute())
        self.server = server
        self.policy = policy or RolloutPolicy()
        self.clock = clock
        self.state_file = StateFile(self.config.path.with_name(self.config.path.name + STATE_SUFFIX))

    def __repr__(self) -> str:
        return f"Rollout({str(self.config.path)!r}, {str(self.repository.base_path)!r})"

    # ---------------------------------------------------------------- locking

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        from filelock import FileLock, Timeout

        self.config.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.config.path.with_name(self.config.path.name + LOCK_SUFFIX)), timeout=self.policy.lock_timeout)
        try:
            lock.acquire()
        except Timeout as exc:
            raise ConfigLockError(
                f"Another rollout step holds {lock.lock_file} (waited {self.policy.lock_timeout:g}s); "
                "run one step at a time."
            ) from exc
        try:
            yield
        finally:
            lock.release()

    # ---------------------------------------------------------------- reading

    def state(self, model_name: str) -> ModelState | None:
        """The recorded rollout state of `model_name`, or None if it is not managed yet."""
        return self.state_file.get(_check_name(model_name))

    def _require_state(self, model_name: str) -> ModelState:
        state = self.state_file.get(model_name)
        if state is None:
            raise RolloutError(
                f"Model {model_name!r} is not managed by rollout in {self.config.path} yet. "
                f"Run `tfstack rollout init {model_name}` first."
            )
        return state

    def _entry(self, config: ModelServerConfig, model_name: str) -> ModelConfig | None:
        return next((e for e in config.model_config_list.config if e.name == model_name), None)

    def _manifest(self, model_name: str, version: int) -> dict[str, Any] | None:
        from tfstack import export

        try:
            return self.repository.manifest(model_name, version)
        except export.CorruptVersionError:
            return None
        except export.ExportError as exc:
            raise RolloutError(str(exc)) from exc

    def status(self, model_name: str) -> RolloutStatus:
        """Versions on disk, in the config, on the server, their labels and manifest metrics."""
        from tfstack.export import key_metric

        model_name = _check_name(model_name)
        on_disk = set(self.repository.versions(model_name))
        config = self.config.read()
        entry = self._entry(config, model_name)
        in_config: set[int] = set()
        labels: dict[str, int] = {}
        if entry is not None:
            kind, arg = _policy(entry)
            in_config = set(arg) if kind == "specific" else set()
            labels = dict(entry.version_labels)
        server_states = self.server.version_states(model_name) if self.server is not None else {}
        rows = []
        for version in sorted(on_disk | in_config | set(server_states), reverse=True):
            manifest = self._manifest(model_name, version) if version in on_disk else None
            rows.append(
                VersionRow(
                    version=version,
                    on_disk=version in on_disk,
                    in_config=version in in_config,
                    server_state=server_states.get(version),
                    labels=tuple(sorted(k for k, v in labels.items() if v == version)),
                    metric=key_metric(manifest) if manifest else None,
                    created=manifest.get("created") if manifest else None,
                )
            )
        replica_status = getattr(self.server, "replica_status", None)
        replicas: tuple[ReplicaStatus, ...] = ()
        if replica_status is not None:
            replicas = tuple(_with_differences(r, in_config, labels) for r in replica_status(model_name, sorted(labels)))
        return RolloutStatus(
            model_name=model_name,
            state=self.state_file.get(model_name),
            versions=tuple(rows),
            config_labels=labels,
            history=tuple(self.state_file.history(model_name)[-10:]),
            replicas=replicas,
        )

    # ---------------------------------------------------------------- publish

    def publish(self, model_name: str, source: Any, *, version: int | None = None):
        """Make `source` a new version of `model_name`, atomically (see `publish_saved_model`).

        `source` is an `export.ExportSpec`, a `training.TrainResult`, an exported SavedModel
        directory, or a training run directory holding one.

        Returns:
            export.PublishedVersion.
        """
        from tfstack import export

        model_name = _check_name(model_name)
        if isinstance(source, export.ExportSpec) or hasattr(source, "export_spec"):
            spec = source if isinstance(source, export.ExportSpec) else source.export_spec()
            if spec.model_name != model_name:
                spec = dataclasses.replace(spec, model_name=model_name)
            # Rollout pins versions (`specific`), so a new directory is not served until `canary`,
            # whose signature gate refuses a breaking change (unless --allow-breaking).
            published = self.repository.publish(spec, version=version, allow_schema_change=True)
        elif isinstance(source, (str, os.PathLike)):
            published = publish_saved_model(self.repository, model_name, Path(source), version=version)
        else:
            raise TypeError(
                "source must be an export.ExportSpec, a training.TrainResult or a SavedModel/run directory. "
                f"Received: source={type(source).__name__}"
            )
        logger.info("Published %s version %d at %s", model_name, published.version, published.path)
        return published

    # ---------------------------------------------------------------- steps

    def init(self, model_name: str, version: int | None = None) -> ModelState:
        """Start managing `model_name`: its config entry pins `version` (default: the latest on
        disk, or what an existing state says) with `stable` and `canary` labels on it.

        Without a server only the label-free entry is written (TF Serving refuses labels at
        startup); start the server with that config, then run `init` again to add the labels.
        """
        model_name = _check_name(model_name)
        if version is not None:
            version = _check_version(version)
        with self._locked():
            existing = self.state_file.get(model_name)
            if existing is not None and (version is None or version == existing.stable):
                state = existing
            else:
                if existing is not None:
                    raise RolloutError(
                        f"Model {model_name!r} is already managed with stable={existing.stable}. "
                        f"Received: version={version}. Use canary/promote to change it."
                    )
                chosen = version if version is not None else self.repository.latest(model_name)
                if chosen is None:
                    raise RolloutError(
                        f"Model {model_name!r} has no versions under {self.repository.base_path}; publish one first."
                    )
                self.repository.version_path(model_name, chosen)  # raises if missing
                state = ModelState(stable=chosen, pending="init")
                self.state_file.put(model_name, state, event=f"init stable={chosen}")
            self._ensure_entry(model_name)
            if self.server is None:
                config = self.config.read()
                entry = self._entry(config, model_name)
                assert entry is not None
                if not _policy(entry)[0] == "specific" or not entry.version_labels:
                    _set_versions(entry, (state.stable,))
                    if self.config.write(config):
                        logger.info("%s: %s pinned to version %d (no labels: the server adds them after it loads it)",
                                    self.config.path, model_name, state.stable)
                logger.info("No server given: start it with --model_config_file=%s, then run init again to set labels.",
                            self.config.path)
                return state
            return self._apply(model_name, state, event=None)

    def canary(self, model_name: str, version: int) -> ModelState:
        """Gate `version` against stable, load it beside stable and point `canary` at it.

        Raises:
            GateError: a gate failed (signature/quality: before any change; infra: after the
                candidate was loaded, which is then undone).
            RolloutError: the version did not load, or the server rejected a reload (undone too).
        """
        model_name = _check_name(model_name)
        version = _check_version(version)
        with self._locked():
            state = self._resume(model_name)
            if version == state.stable:
                raise RolloutError(f"Version {version} of {model_name!r} is already stable; nothing to canary.")
            if state.canary == version:
                logger.info("%s: canary is already version %d; checking the server agrees", model_name, version)
                return self._apply(model_name, state, event=None)
            self.repository.version_path(model_name, version)
            results = self._pre_gates(model_name, state.stable, version)
            for result in results:
                logger.info("%s v%d: %s", model_name, version, result.describe())
            raise_on_failure(results, candidate=f"Version {version} of model {model_name!r}")
            new = dataclasses.replace(state, canary=version, pending="canary")
            after_load = None if "infra" in self.policy.skip_gates else (lambda: self._infra_gate(model_name, version))
            return self._transition(model_name, state, new, event=f"canary {version}", after_load=after_load)

    def promote(self, model_name: str, *, grace_seconds: float | None = None) -> ModelState:
        """Move `stable` to the canary version; the old stable stays loaded for the grace period."""
        model_name = _check_name(model_name)
        grace = self.policy.grace_seconds if grace_seconds is None else grace_seconds
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
            raise ValueError(f"grace_seconds must be a number >= 0. Received: grace_seconds={grace_seconds!r}")
        with self._locked():
            state = self._resume(model_name)
            if state.canary is None:
                raise RolloutError(
                    f"Model {model_name!r} has no canary to promote (stable is {state.stable}). "
                    f"Run `tfstack rollout canary {model_name} VERSION` first."
                )
            new = ModelState(
                stable=state.canary,
                canary=None,
                previous=state.stable,
                previous_until=self.clock() + grace,
                pending="promote",
            )
            return self._transition(model_name, state, new, event=f"promote {state.canary} (previous {state.stable}, grace {grace:g}s)")

    def rollback(self, model_name: str) -> ModelState:
        """Undo the last step: drop an active canary; else move `stable` back to the previous version.

        After a promotion the demoted version stays as `canary` (so `promote` can retry it; a
        second rollback drops it). While the previous version is still loaded (grace period)
        this is one label move; after it, the previous version is loaded again first.
        """
        model_name = _check_name(model_name)
        with self._locked():
            state = self._resume(model_name)
            if state.canary is not None:
                new = dataclasses.replace(state, canary=None, pending="rollback")
                event = f"rollback: canary {state.canary} dropped, stable stays {state.stable}"
            elif state.previous is not None:
                self.repository.version_path(model_name, state.previous)
                new = ModelState(stable=state.previous, canary=state.stable, pending="rollback")
                event = f"rollback: stable {state.stable} -> {state.previous} ({state.stable} stays as canary)"
            else:
                raise RolloutError(
                    f"Model {model_name!r} has nothing to roll back: stable is {state.stable}, no canary and no previous version."
                )
            return self._transition(model_name, state, new, event=event)

    def finalize(self, model_name: str) -> ModelState:
        """Finish pending work: unload the previous stable once its grace period is over. Idempotent."""
        model_name = _check_name(model_name)
        with self._locked():
            state = self._resume(model_name)
            return self._apply(model_name, state, event=None)

    def retire(self, model_name: str, *, keep: int = 2, dry_run: bool = False) -> list[int]:
        """Delete old versions from disk: keep the `keep` newest, every version newer than stable,
        and every version the config or a loaded grace period references.

        Returns:
            The versions removed (or that would be, with `dry_run`).
        """
        model_name = _check_name(model_name)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1. Received: keep={keep!r}")
        with self._locked():
            versions = self.repository.versions(model_name)
            entry = self._entry(self.config.read(), model_name)
            referenced: set[int] = set()
            if entry is not None:
                kind, arg = _policy(entry)
                if kind != "specific":
                    raise RolloutError(
                        f"{model_name!r} uses a {kind} version policy in {self.config.path}; retire only works on "
                        "pinned (specific) versions, or the server could load or lose versions as they are deleted."
                    )
                referenced |= set(arg) | set(entry.version_labels.values())
            state = self.state_file.get(model_name)
            if state is not None:
                referenced |= {state.stable} | ({state.canary} if state.canary is not None else set())
                if state.previous_loaded(self.clock()):
                    referenced.add(state.previous)  # type: ignore[arg-type]
            floor = state.stable if state is not None else max(referenced, default=max(versions, default=0))
            newest = set(sorted(versions)[-keep:])
            doomed = [v for v in versions if v not in referenced and v not in newest and v < floor]
            for version in doomed:
                if dry_run:
                    logger.info("%s: would remove version %d", model_name, version)
                    continue
                self.repository.remove(model_name, version)
                logger.info("%s: removed version %d from %s", model_name, version, self.repository.base_path / model_name)
            if doomed and not dry_run and state is not None:
                if state.previous in doomed:
                    # Rollback to a deleted version is impossible; forget it.
                    state = dataclasses.replace(state, previous=None, previous_until=None)
                self.state_file.put(model_name, state, event=f"retire: removed versions {doomed}")
            return doomed

    def watch(
        self,
        model_name: str,
        metrics: MetricsSource,
        *,
        thresholds: WatchThresholds | None = None,
        duration: float = 300.0,
        interval: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> WatchResult:
        """Compare the canary's errors and p99 latency with stable's every `interval` seconds for
        `duration` seconds; roll the canary back at the first window that is worse beyond
        `thresholds`. Also finalizes expired grace periods. Returns early after a rollback.
        """
        model_name = _check_name(model_name)
        thresholds = thresholds or WatchThresholds()
        if not isinstance(thresholds, WatchThresholds):
            raise TypeError(f"thresholds must be a WatchThresholds. Received: thresholds={type(thresholds).__name__}")
        for name, value in (("duration", duration), ("interval", interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0. Received: {name}={value!r}")
        end = monotonic() + duration
        checks = 0
        while True:
            state = self._require_state(model_name)
            if state.previous is not None and state.previous_until is not None and not state.previous_loaded(self.clock()):
                if state.previous in self.config_versions(model_name):
                    state = self.finalize(model_name)
            if state.canary is not None:
                snapshot = metrics.snapshot()
                checks += 1
                reason = judge_canary(snapshot.get(STABLE), snapshot.get(CANARY), thresholds)
                if reason is not None:
                    logger.warning("%s: %s; rolling back canary %d", model_name, reason, state.canary)
                    state = self.rollback(model_name)
                    return WatchResult(checks=checks, rolled_back=True, reason=reason, state=state)
            if monotonic() >= end:
                return WatchResult(checks=checks, rolled_back=False, state=state)
            sleep(max(0.0, min(interval, end - monotonic())))

    def config_versions(self, model_name: str) -> set[int]:
        """The versions the config pins for `model_name` (empty if it has no specific policy)."""
        entry = self._entry(self.config.read(), model_name)
        if entry is None:
            return set()
        kind, arg = _policy(entry)
        return set(arg) if kind == "specific" else set()

    # ---------------------------------------------------------------- internals

    def _pre_gates(self, model_name: str, stable: int, candidate: int) -> list[GateResult]:
        """The gates that need no server: signatures and quality, from the manifests."""
        results = []
        stable_manifest = self._manifest(model_name, stable) or {}
        candidate_manifest = self._manifest(model_name, candidate) or {}
        if "signature" not in self.policy.skip_gates:
            old = stable_manifest.get("signatures") or _read_signatures(self.repository.version_path(model_name, stable))
            new = candidate_manifest.get("signatures") or _read_signatures(self.repository.version_path(model_name, candidate))
            results.append(check_signatures(old, new, allow_breaking=self.policy.allow_breaking))
        if "quality" not in self.policy.skip_gates:
            results.append(check_quality(stable_manifest.get("metrics"), candidate_manifest.get("metrics"), self.policy.quality))
        return results

    def _infra_gate(self, model_name: str, version: int) -> None:
        assert self.server is not None
        path = self.repository.version_path(model_name, version)
        manifest = self._manifest(model_name, version) or {}
        signatures = manifest.get("signatures") or _read_signatures(path)
        result = check_infra(
            version_dir=path,
            signatures=signatures,
            predictors=self.server.predictors(model_name, version),
            tolerance=self.policy.infra_tolerance,
        )
        logger.info("%s v%d: %s", model_name, version, result.describe())
        raise_on_failure([result], candidate=f"Version {version} of model {model_name!r}")

    def _ensure_entry(self, model_name: str) -> None:
        config = self.config.read()
        if self._entry(config, model_name) is not None:
            return
        entry = config.model_config_list.config.add()
        entry.name = model_name
        entry.base_path = str(self.repository.base_path / model_name)
        entry.model_platform = "tensorflow"
        # An empty specific policy loads nothing; the first phase below pins the versions.
        entry.model_version_policy.specific.SetInParent()
        self.config.write(config)
        logger.info("%s: added model %s (base_path %s)", self.config.path, model_name, entry.base_path)

    def _resume(self, model_name: str) -> ModelState:
        state = self._require_state(model_name)
        if state.pending is not None:
            logger.warning("%s: resuming the unfinished %r step", model_name, state.pending)
            state = self._apply(model_name, state, event=f"resumed {state.pending}")
        return state

    def _transition(
        self, model_name: str, old: ModelState, new: ModelState, *, event: str, after_load: Callable[[], None] | None = None
    ) -> ModelState:
        if self.server is None:
            raise RolloutError(f"`{new.pending}` needs a server to reload and wait on; give its gRPC and/or REST address.")
        self.state_file.put(model_name, new, event=f"{event} (started)")
        try:
            return self._apply(model_name, new, event=event, after_load=after_load)
        except RolloutError as exc:
            logger.error("%s: %s failed, restoring the previous state: %s", model_name, new.pending, exc)
            # A fleet restores the replicas that still answer; the failed ones get the old config
            # on a best-effort basis (and read the restored file when they start again).
            restoring = getattr(self.server, "restoring", None)
            try:
                with restoring() if restoring is not None else contextlib.nullcontext():
                    self.state_file.put(model_name, dataclasses.replace(old, pending="revert"), event=f"revert {event}")
                    self._apply(model_name, dataclasses.replace(old, pending="revert"), event=f"reverted {event}")
            except RolloutError as revert_exc:
                raise RolloutError(
                    f"{exc}\nRestoring the previous state failed too: {revert_exc}. "
                    "Fix the cause and run `tfstack rollout finalize` to retry."
                ) from exc
            if isinstance(exc, ReplicaError):
                others = [n for n in getattr(self.server, "names", ()) if n not in exc.replicas]
                where = (
                    f"is restored on {', '.join(others)}." if others
                    else "is back in the config file; no replica answered (each reads the file when it starts again)."
                )
                raise ReplicaError(f"{exc}\nThe rollout stopped: {_describe(old)} {where}", exc.replicas) from exc
            raise

    def _apply(self, model_name: str, state: ModelState, *, event: str | None, after_load: Callable[[], None] | None = None) -> ModelState:
        """Move config and server to `state` in the three phases (see the module docstring)."""
        if self.server is None:
            raise RolloutError("This step needs a server to reload and wait on; give its gRPC and/or REST address.")
        versions, labels = state.desired(self.clock())
        config = self.config.read()
        entry = self._entry(config, model_name)
        if entry is None:
            self._ensure_entry(model_name)
            config = self.config.read()
            entry = self._entry(config, model_name)
        assert entry is not None
        kind, arg = _policy(entry)
        current = set(arg) if kind == "specific" else set()
        union = tuple(sorted(current | set(versions)))
        current_labels = {k: v for k, v in entry.version_labels.items() if v in union}
        timeout = self.policy.load_timeout

        self._phase(config, entry, union, current_labels, "load")
        for version in versions:
            self.server.wait_available(model_name, version, timeout)
        if after_load is not None:
            after_load()
        self._phase(config, entry, union, labels, "labels")
        for label, version in sorted(labels.items()):
            self.server.wait_label(model_name, label, version, timeout)
        self._phase(config, entry, versions, labels, "unload")
        for version in sorted(set(union) - set(versions)):
            if not self.server.wait_unloaded(model_name, version, self.policy.unload_timeout):
                logger.warning("%s: version %d is still AVAILABLE %gs after it left the config",
                               model_name, version, self.policy.unload_timeout)
        done = dataclasses.replace(state, pending=None)
        if state.pending is not None or event:
            self.state_file.put(model_name, done, event=event)
        return done

    def _phase(self, config: ModelServerConfig, entry: ModelConfig, versions: Sequence[int], labels: Mapping[str, int], phase: str) -> None:
        before = (_policy(entry), dict(entry.version_labels))
        _set_versions(entry, versions)
        entry.version_labels.clear()
        for label, version in sorted(labels.items()):
            entry.version_labels[label] = version
        after = (_policy(entry), dict(entry.version_labels))
        if self.config.write(config):
            logger.info(
                "%s [%s] %s: versions %s -> %s, labels %s -> %s",
                self.config.path, phase, entry.name, _fmt_versions(before[0]), _fmt_versions(after[0]),
                _fmt_labels(before[1]), _fmt_labels(after[1]),
            )
        assert self.server is not None
        # Reload even when the file was already right: a crash may have come between the write and the reload.
        self.server.reload(config)


# ================================================================================ helpers


def _check_name(model_name: Any) -> str:
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str. Received: model_name={model_name!r}")
    from tfstack.export import check_model_name

    return check_model_name(model_name)


def _check_version(version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be an int >= 0. Received: version={version!r}")
    return version


def _policy(entry: ModelConfig) -> tuple[str, tuple[int, ...]]:
    from tfstack.serving.server._model_config import version_policy

    kind, arg = version_policy(entry)
    return kind, tuple(arg)


def _set_versions(entry: ModelConfig, versions: Sequence[int]) -> None:
    entry.model_version_policy.Clear()
    entry.model_version_policy.specific.SetInParent()
    entry.model_version_policy.specific.versions.extend(sorted(versions))


def _with_differences(replica: ReplicaStatus, versions: set[int], labels: Mapping[str, int]) -> ReplicaStatus:
    """`replica` with how it differs from the config: versions not AVAILABLE (or extra), labels elsewhere."""
    if replica.error is not None:
        return dataclasses.replace(replica, differences=("unreachable",))
    available = {v for v, state in replica.states.items() if state == "AVAILABLE"}
    differences = [f"version {v} not AVAILABLE" for v in sorted(versions - available)]
    differences += [f"version {v} still AVAILABLE" for v in sorted(available - versions)]
    differences += [
        f"{label} -> {_or_nothing(replica.labels.get(label))} (config: {version})"
        for label, version in sorted(labels.items())
        if replica.labels.get(label) != version
    ]
    return dataclasses.replace(replica, differences=tuple(differences))


def _or_nothing(version: int | None) -> str:
    return "nothing" if version is None else str(version)


def _describe(state: ModelState) -> str:
    canary = state.canary if state.canary is not None else "none"
    return f"the previous state (stable={state.stable}, canary={canary})"


def _fmt_versions(policy: tuple[str, tuple[int, ...]]) -> str:
    kind, arg = policy
    return f"{list(arg)}" if kind == "specific" else f"{kind}{list(arg) if arg else ''}"


def _fmt_labels(labels: Mapping[str, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(labels.items())) + "}"


def _read_signatures(path: Path) -> dict[str, Any]:
    from tfstack.export import read_signature_summary

    try:
        return read_signature_summary(path)
    except Exception as exc:
        raise RolloutError(f"Cannot read the signatures of {path}: {exc}") from exc


def publish_saved_model(repository: Any, model_name: str, source: Path, *, version: int | None = None):
    """Copy an exported SavedModel directory into the repository as a new version, atomically.

    The copy goes into a hidden `.staging-<id>` directory beside the versions (TF Serving
    ignores it), is fsynced, and is renamed to the version number under the repository's
    publish lock, so a server never sees a half-copied version (tensorflow/serving#1086).
    A tfstack manifest in the source is kept (its version number updated); otherwise a minimal
    one is written with the signatures, so gates and `status` work.
    A training run directory is accepted if it holds a SavedModel (searched one level down).
    """
    from tfstack import export

    source = Path(source)
    if not source.is_dir():
        raise RolloutError(f"Cannot publish {source}: not a directory (expected an exported SavedModel directory).")
    saved_model = source if (source / "saved_model.pb").is_file() else None
    if saved_model is None:
        found = sorted(p.parent for p in source.glob("*/saved_model.pb"))
        if len(found) == 1:
            saved_model = found[0]
    if saved_model is None:
        raise RolloutError(
            f"Cannot publish {source}: it holds no saved_model.pb (nor one in a direct subdirectory). "
            "A training run directory only has logs and summary.json; publish the run with "
            "`tfstack train` (which exports) or pass its TrainResult to Rollout.publish."
        )
    digest = content_digest(saved_model)
    for existing_version in repository.versions(model_name):
        try:
            existing = repository.manifest(model_name, existing_version)
        except export.ExportError:
            continue
        if existing.get("content_sha256") == digest:
            # Publishing is idempotent: a re-run after a crash or a retry gets the same version.
            logger.info("%s is already published as %s version %d", saved_model, model_name, existing_version)
            return export.PublishedVersion(
                model_name=model_name, version=existing_version,
                path=repository.version_path(model_name, existing_version), manifest=existing,
            )
    published = repository.publish_saved_model(
        saved_model,
        model_name,
        version=None if version is None else _check_version(version),
        manifest_updates={"published_from": str(saved_model.absolute()), "content_sha256": digest},
        allow_schema_change=True,  # the canary's signature gate judges it (see Rollout.publish)
    )
    return published


def content_digest(saved_model: Path) -> str:
    """sha256 over the SavedModel's files (names and bytes), without tfstack's manifest."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in Path(saved_model).rglob("*") if p.is_file()):
        relative = path.relative_to(saved_model).as_posix()
        if relative == "assets.extra/manifest.json":
            continue
        digest.update(relative.encode("utf-8") + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()
