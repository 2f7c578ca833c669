"""Roll out model versions on a model repository plus a models.config file, safely and under load.

`Rollout` runs the steps (init, canary, promote, rollback, finalize, retire, watch). Each step
first records the new `ModelState` in `<config>.rollout.json` (see `_state`: the config entry is
derived from it), then moves the server to it with TF Serving's rules (spec §4.5, "labels only
on AVAILABLE versions"):

1. load: the union of old and new versions, labels unchanged; reload; wait until the new
   versions are AVAILABLE (through the client);
2. labels: move the labels; reload; wait until each label resolves to its version;
3. unload: drop versions no longer wanted; reload.

Each phase writes the file atomically under a file lock, then asks the server to reload it
(`ServerControl.reload`: the reload RPC when a gRPC address is known, otherwise the server's
config polling; both work on real TF Serving). A phase whose file is already right writes
nothing, so a step re-run after a crash just finishes the work; a step that fails restores the
previous state (and config).

The server may be a fleet of replicas sharing the config file (`tfstack.serving.rollout.Fleet`):
every reload goes to each replica and every wait holds until each replica agrees, so a phase
ends only when the whole fleet is in it; a replica that fails makes the step restore the
previous state on the others.

No step imports TensorFlow (the config and the reload request are tfstack's own copies of TF
Serving's messages). Only the canary's infra gate does, to run the candidate in-process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfstack.serving.rollout._control import ReplicaStatus, ServerControl
from tfstack.serving.rollout._errors import ConfigLockError, ReplicaError, RolloutError
from tfstack.serving.rollout._gates import (
    GATES,
    GateResult,
    QualityPolicy,
    check_infra,
    check_quality,
    check_signatures,
    raise_on_failure,
)
from tfstack.serving.rollout._publish import publish_saved_model
from tfstack.serving.rollout._state import (
    CANARY,
    STABLE,
    STATE_SUFFIX,
    ConfigFile,
    ModelState,
    StateFile,
    check_version,
    entry_policy,
    find_entry,
    pin_versions,
)
from tfstack.serving.rollout._watch import DriftCheck, MetricsSource, WatchResult, WatchThresholds, judge_canary

if TYPE_CHECKING:
    from tfstack.client.wire import ModelConfig, ModelServerConfig

logger = logging.getLogger("tfstack.rollout")

LOCK_SUFFIX = ".lock"


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
        entry = find_entry(config, model_name)
        in_config: set[int] = set()
        labels: dict[str, int] = {}
        if entry is not None:
            kind, arg = entry_policy(entry)
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
            version = check_version(version)
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
                entry = find_entry(config, model_name)
                assert entry is not None
                if not entry_policy(entry)[0] == "specific" or not entry.version_labels:
                    pin_versions(entry, (state.stable,))
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
        version = check_version(version)
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
            entry = find_entry(self.config.read(), model_name)
            referenced: set[int] = set()
            if entry is not None:
                kind, arg = entry_policy(entry)
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
        drift: DriftCheck | None = None,
        duration: float = 300.0,
        interval: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> WatchResult:
        """Compare the canary's errors and p99 latency with stable's every `interval` seconds for
        `duration` seconds; roll the canary back at the first window that is worse beyond
        `thresholds`, or, with `drift`, whose logged inputs (since the step that made it the
        canary) drifted from its version's data profile. Also finalizes expired grace periods.
        Returns early after a rollback.
        """
        model_name = _check_name(model_name)
        thresholds = thresholds or WatchThresholds()
        if not isinstance(thresholds, WatchThresholds):
            raise TypeError(f"thresholds must be a WatchThresholds. Received: thresholds={type(thresholds).__name__}")
        if drift is not None and not isinstance(drift, DriftCheck):
            raise TypeError(f"drift must be a DriftCheck or None. Received: drift={type(drift).__name__}")
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
                if reason is None and drift is not None:
                    path = self.repository.version_path(model_name, state.canary)
                    reason = drift(model_name, state.canary, path, since=self.state_file.last_step_time(model_name))
                if reason is not None:
                    logger.warning("%s: %s; rolling back canary %d", model_name, reason, state.canary)
                    state = self.rollback(model_name)
                    return WatchResult(checks=checks, rolled_back=True, reason=reason, state=state)
            if monotonic() >= end:
                return WatchResult(checks=checks, rolled_back=False, state=state)
            sleep(max(0.0, min(interval, end - monotonic())))

    def config_versions(self, model_name: str) -> set[int]:
        """The versions the config pins for `model_name` (empty if it has no specific policy)."""
        entry = find_entry(self.config.read(), model_name)
        if entry is None:
            return set()
        kind, arg = entry_policy(entry)
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
        if find_entry(config, model_name) is not None:
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
        entry = find_entry(config, model_name)
        if entry is None:
            self._ensure_entry(model_name)
            config = self.config.read()
            entry = find_entry(config, model_name)
        assert entry is not None
        kind, arg = entry_policy(entry)
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
        before = (entry_policy(entry), dict(entry.version_labels))
        pin_versions(entry, versions)
        entry.version_labels.clear()
        for label, version in sorted(labels.items()):
            entry.version_labels[label] = version
        after = (entry_policy(entry), dict(entry.version_labels))
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
