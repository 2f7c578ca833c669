"""The model lifecycle as TF Serving runs it: discovery, version policies, loads, unloads, labels.

One `ModelManager` drives one `ServerCore`'s state table (spec §4):
- version discovery (§4.2): numeric children of each base_path, polled every
  --file_system_poll_wait_seconds (0 = once, < 0 = never); a missing base path aborts the
  whole poll, as in TF Serving;
- policies latest{N} / all / specific (§4.3);
- availability-preserving transitions (§4.4): a new version loads before an old one unloads,
  and the only available version is never dropped for a version that failed;
- load retries (--max_num_load_retries every --load_retry_interval_micros), then END with
  the error; a failed version is not retried while it stays aspired;
- labels (§4.5) checked before the config's models load;
- config reload with replace semantics (§4.6).
Every state change is logged on one line.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tfstack.serving.server._core import ServerCore, State
from tfstack.serving._errors import Code, StatusError
from tfstack.serving.server._model_config import read_model_config_file, validate_model_config, version_policy
from tfstack.serving.server._servable import BundleOptions, Servable, load_servable
from tfstack.serving.server._warmup import read_version_warmup, replay_warmup

if TYPE_CHECKING:
    from tensorflow_serving.config.model_server_config_pb2 import ModelConfig, ModelServerConfig

logger = logging.getLogger("tfstack.serving")

_VERSION_NAME = re.compile(r"^\s*[+-]?\d+\s*$")  # absl::SimpleAtoi: sign and surrounding space allowed
_INT64_MAX = 2**63 - 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class ManagerOptions:
    """The lifecycle settings `tfstack serve` takes from its flags."""

    file_system_poll_wait_seconds: float = 1
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    bundle: BundleOptions = dataclasses.field(default_factory=BundleOptions)
    allow_version_labels_for_unavailable_models: bool = False
    load_threads: int = 2
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0  # 0 -> one replay, as TF Serving


def _servable_id(name: str, version: int) -> str:
    return f"{{name: {name} version: {version}}}"


def discover_versions(model_name: str, base_path: str) -> dict[int, str]:
    """The version directories under `base_path`: every child whose name parses as an int64.

    Raises:
        StatusError: NOT_FOUND when the base path does not exist (TF Serving's text).
    """
    try:
        children = sorted(os.listdir(base_path))
    except OSError as exc:
        raise StatusError(
            Code.NOT_FOUND,
            f"Could not find base path {base_path} for servable {model_name} with error "
            f"NOT_FOUND: {base_path} not found",
        ) from exc
    versions: dict[int, str] = {}
    for child in children:
        if not _VERSION_NAME.match(child):
            continue
        number = int(child.strip())
        if abs(number) > _INT64_MAX:
            continue
        if number in versions:
            logger.warning(
                "Duplicate version directories detected. Version %d will be loaded from %s, %s will be ignored.",
                number, versions[number], os.path.join(base_path, child),
            )
            continue
        versions[number] = os.path.join(base_path, child)
    return versions


def aspired_versions(entry: ModelConfig, found: dict[int, str]) -> dict[int, str]:
    """Apply the entry's version policy to the discovered versions (spec §4.3)."""
    kind, arg = version_policy(entry)
    if kind == "all":
        return dict(found)
    if kind == "specific":
        if not arg:
            logger.warning("No specific versions requested for servable %s.", entry.name)
        chosen = {}
        for version in arg:
            if version in found:
                chosen[version] = found[version]
            else:
                logger.warning(
                    "Version %d of servable %s, which was requested to be served as a 'specific' version in the "
                    "servable's version policy, was not found in the file system",
                    version, entry.name,
                )
        return chosen
    (num_versions,) = arg
    return {v: found[v] for v in sorted(found, reverse=True)[:num_versions]}


@dataclasses.dataclass
class _Managed:
    entry: ModelConfig
    aspired: dict[int, str] | None = None  # None until the first successful poll
    failed: set[int] = dataclasses.field(default_factory=set)
    loading: dict[int, asyncio.Task] = dataclasses.field(default_factory=dict)
    # Set when a version waiting to retry its load leaves the aspired set: the wait ends at once.
    retry_cancelled: dict[int, asyncio.Event] = dataclasses.field(default_factory=dict)
    warned_empty: bool = False


class LifecycleObserver(Protocol):
    """What the manager reports besides state changes (monitoring implements it)."""

    def observe_load_attempt(self, model_path: str, ok: bool, seconds: float) -> None: ...

    def observe_warmup(self, model_path: str, code: Code, seconds: float, records: int) -> None: ...


class ModelManager:
    """Keeps a ServerCore's versions in line with a ModelServerConfig and the file system."""

    def __init__(
        self, core: ServerCore, options: ManagerOptions | None = None, *, observer: LifecycleObserver | None = None
    ) -> None:
        self._core = core
        self._options = options or ManagerOptions()
        self._observer = observer
        self._config: ModelServerConfig | None = None
        self._models: dict[str, _Managed] = {}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task] = []
        self._load_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, self._options.load_threads), thread_name_prefix="tfstack-load"
        )
        # The servable of every version this manager loaded and has not unloaded yet.
        self._loaded: dict[tuple[str, int], Servable] = {}

    @property
    def config(self) -> ModelServerConfig | None:
        """The config currently in force."""
        return self._config

    # ------------------------------------------------------------------ config

    async def apply_config(self, config: ModelServerConfig, *, word: str = "model") -> None:
        """Replace the served models with `config` and wait until its new models are loaded.

        Models left out are unloaded (without waiting). `word` is "servable" at startup and
        "model" for reloads, matching TF Serving's two messages.

        Raises:
            StatusError: validation errors (§4.1), FAILED_PRECONDITION for labels (§4.5), or
                UNKNOWN `N model(s) did not become available: ...` when new versions failed.
        """
        async with self._lock:
            entries = validate_model_config(config, previous=self._config)
            self._check_labels(entries)
            self._config = config
            new_names = [e.name for e in entries if e.name not in self._models or self._models[e.name].entry is None]
            wanted = {e.name for e in entries}
            for name in list(self._models):
                if name not in wanted:
                    logger.info("Removing model %s (not in the new config); its versions will be unloaded.", name)
                    self._models[name].entry = None
                    self._models[name].aspired = {}
            for entry in entries:
                managed = self._models.get(entry.name)
                if managed is None or managed.entry is None:
                    self._models[entry.name] = managed = _Managed(entry=entry) if managed is None else managed
                    managed.entry = entry
                    managed.aspired = None
                else:
                    managed.entry = entry
                self._core.set_labels(entry.name, dict(entry.version_labels))
            for name in list(self._models):
                if name not in wanted:
                    self._core.set_labels(name, {})
                    self._reconcile(name)
                    if not self._models[name].loading:
                        del self._models[name]
            if self._options.file_system_poll_wait_seconds >= 0:
                self._poll_locked()
        await self._wait_available(new_names, word)
        # TF Serving updates the request loggers last, once the new models are available
        # (ServerCore::ReloadConfig -> MaybeUpdateServerRequestLogger).
        if self._core.request_logger is not None:
            from tfstack.serving.server._request_log import logging_configs

            self._core.request_logger.update(logging_configs(entries))

    def _check_labels(self, entries) -> None:
        for entry in entries:
            current = self._core.labels(entry.name)
            states = self._core.version_states(entry.name)
            for label, version in entry.version_labels.items():
                if states.get(version) is State.AVAILABLE:
                    continue
                if self._options.allow_version_labels_for_unavailable_models and current.get(label, version) == version:
                    continue
                raise StatusError(
                    Code.FAILED_PRECONDITION,
                    f"Request to assign label to version {version} of model {entry.name}, which is not currently "
                    "available for inference",
                )

    async def _wait_available(self, names: list[str], word: str) -> None:
        def settled(name: str) -> bool:
            managed = self._models.get(name)
            if managed is None or managed.entry is None:
                return True
            if not managed.aspired:  # no versions on disk yet: TF Serving waits
                return False
            states = self._core.version_states(name)
            return all(states.get(v) is State.AVAILABLE or v in managed.failed for v in managed.aspired)

        async with self._changed:
            await self._changed.wait_for(lambda: all(settled(n) for n in names))
        errors = []
        for name in names:
            managed = self._models.get(name)
            if managed is None or not managed.aspired:
                continue
            for version in sorted(managed.failed & set(managed.aspired)):
                status = next(s for s in self._core.model_status(name, version))
                errors.append(f"{_servable_id(name, version)} due to error: {status.error_code.name}: {status.error_message}}}, ")
        if errors:
            raise StatusError(Code.UNKNOWN, f"{len(errors)} {word}(s) did not become available: {{{''.join(errors)}}}")

    # ------------------------------------------------------------------ discovery

    async def poll(self) -> None:
        """One file-system poll over every configured model (spec §4.2)."""
        async with self._lock:
            self._poll_locked()

    def _poll_locked(self) -> None:
        found: dict[str, dict[int, str]] = {}
        for name, managed in self._models.items():
            if managed.entry is None:
                continue
            try:
                found[name] = discover_versions(name, managed.entry.base_path)
            except StatusError as exc:
                # TF Serving aborts the whole poll: no model's versions change this round.
                logger.error("FileSystemStoragePathSource encountered a filesystem access error: %s", exc.message)
                return
        for name, versions in found.items():
            managed = self._models[name]
            if not versions:
                if not managed.warned_empty:
                    logger.warning(
                        "No versions of servable %s found under base path %s. Did you forget to name your leaf "
                        "directory as a number (eg. '/1/')?",
                        name, managed.entry.base_path,
                    )
                managed.warned_empty = True
            else:
                managed.warned_empty = False
            managed.aspired = aspired_versions(managed.entry, versions)
            managed.failed &= set(managed.aspired)  # a failure is forgotten once its version leaves
            self._reconcile(name)

    def _reconcile(self, name: str) -> None:
        """Start loads of new aspired versions and unload what the availability rule allows."""
        managed = self._models.get(name)
        if managed is None:
            return
        aspired = managed.aspired or {}
        for version, cancelled in managed.retry_cancelled.items():
            if version not in aspired:
                cancelled.set()
        states = self._core.version_states(name)
        for version in sorted(aspired, reverse=True):
            if version in managed.failed or version in managed.loading:
                continue
            if states.get(version) in (State.AVAILABLE, State.LOADING):
                continue
            managed.loading[version] = asyncio.get_running_loop().create_task(
                self._load(name, version, aspired[version]), name=f"load {name}/{version}"
            )
        # AvailabilityPreservingPolicy: unload un-aspired AVAILABLE versions only while doing so
        # cannot leave the model with nothing to serve.
        while True:
            states = self._core.version_states(name)
            unaspired = sorted(v for v, s in states.items() if s is State.AVAILABLE and v not in aspired)
            if not unaspired:
                break
            any_aspired_ready = any(states.get(v) is State.AVAILABLE for v in aspired)
            if not aspired or any_aspired_ready or len(unaspired) > 1:
                self._unload(name, unaspired[0])
            else:
                break
        self._notify()

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    # ------------------------------------------------------------------ load / unload

    async def _load(self, name: str, version: int, path: str) -> None:
        sid = _servable_id(name, version)
        self._core.set_version_state(name, version, State.LOADING)
        logger.info("Loading servable version %s from %s", sid, path)
        attempts = 1 + max(0, self._options.max_num_load_retries)
        loop = asyncio.get_running_loop()
        error: StatusError | None = None
        try:
            for attempt in range(attempts):
                if attempt:
                    logger.info("Retrying load on servable version %s retry: %d", sid, attempt)
                started = time.perf_counter()
                try:
                    servable = await self._load_and_warm(name, version, path, loop)
                except StatusError as exc:
                    error = exc
                except Exception as exc:  # a loader bug must not kill the manager; report it on the version
                    error = StatusError(Code.UNKNOWN, f"{type(exc).__name__}: {exc}")
                else:
                    self._observe("load_attempt", path, True, time.perf_counter() - started)
                    self._core.set_version_state(name, version, State.AVAILABLE, servable=servable)
                    logger.info("Successfully loaded servable version %s", sid)
                    return
                self._observe("load_attempt", path, False, time.perf_counter() - started)
                managed = self._models.get(name)
                still_aspired = managed is not None and version in (managed.aspired or {})
                logger.error("Loading servable version %s failed: %s", sid, error)
                if attempt + 1 < attempts and managed is not None and still_aspired:
                    # TF Serving's retrier sleeps the whole interval and tries once more before it
                    # sees the cancellation; here a version that leaves the aspired set while it
                    # waits goes to END at once instead of being reported LOADING until then.
                    cancelled = asyncio.Event()
                    managed.retry_cancelled[version] = cancelled
                    try:
                        await asyncio.wait_for(cancelled.wait(), self._options.load_retry_interval_micros / 1e6)
                    except asyncio.TimeoutError:
                        continue
                    finally:
                        managed.retry_cancelled.pop(version, None)
                    logger.info("Retrying of load on servable version %s was cancelled: it is no longer aspired.", sid)
                    break
                else:
                    break
            assert error is not None
            self._core.set_version_state(name, version, State.END, error=error)
            logger.error("Servable version %s did not become available and is END: %s", sid, error)
            managed = self._models.get(name)
            if managed is not None:
                managed.failed.add(version)
        finally:
            managed = self._models.get(name)
            if managed is not None:
                managed.loading.pop(version, None)
                self._reconcile(name)
                if managed.entry is None and not managed.loading:
                    self._models.pop(name, None)
            else:
                self._notify()

    async def _load_and_warm(self, name: str, version: int, path: str, loop: asyncio.AbstractEventLoop) -> Servable:
        """Load one version (off the loop), then replay its warmup records through its executor."""
        servable = await loop.run_in_executor(self._load_executor, self._load_version, name, version, path)
        try:
            if self._options.enable_model_warmup:
                await self._warm(servable, path, loop)
        except BaseException:
            servable.retire()
            raise
        self._loaded[(name, version)] = servable
        return servable

    def _load_version(self, name: str, version: int, path: str) -> Servable:
        # TF Serving reads per-model batching parameters once the session is up, so a broken
        # model reports its own error first; read them early, raise their error after the load.
        try:
            parameters, parameters_error = self._core.batching_parameters_for(path), None
        except StatusError as exc:
            parameters, parameters_error = None, exc
        servable = load_servable(name, version, Path(path), options=self._options.bundle, batching_parameters=parameters)
        if parameters_error is not None:
            servable.retire()
            raise parameters_error
        return servable

    async def _warm(self, servable: Servable, path: str, loop: asyncio.AbstractEventLoop) -> None:
        started = time.perf_counter()
        try:
            logs = await loop.run_in_executor(self._load_executor, read_version_warmup, servable.path)
            records = 0
            if logs is not None:
                records = await replay_warmup(
                    servable, logs, self._core.executor_for(servable),
                    iterations=self._options.num_request_iterations_for_warmup,
                )
        except StatusError as exc:
            self._observe("warmup", path, exc.code, time.perf_counter() - started, 0)
            raise
        self._observe("warmup", path, Code.OK, time.perf_counter() - started, records)

    def _observe(self, event: str, *args) -> None:
        if self._observer is None:
            return
        try:
            getattr(self._observer, f"observe_{event}")(*args)
        except Exception:  # metrics must never break a load
            logger.exception("Lifecycle observer failed on %s", event)

    def _unload(self, name: str, version: int) -> None:
        sid = _servable_id(name, version)
        logger.info("Unloading servable version %s", sid)
        self._core.set_version_state(name, version, State.UNLOADING)
        self._core.set_version_state(name, version, State.END)
        servable = self._loaded.pop((name, version), None)
        if servable is not None:
            # Requests still running on it keep its Session until they finish; then it is freed.
            servable.retire()
        logger.info("Done unloading servable version %s", sid)

    # ------------------------------------------------------------------ background work

    def start_polling(self) -> None:
        """Poll the file system every --file_system_poll_wait_seconds (> 0), from now on.

        Start it before the initial config is applied: as in TF Serving, a model without
        versions on disk holds startup until a version directory appears.
        """
        period = self._options.file_system_poll_wait_seconds
        if period > 0 and not any(t.get_name() == "fs-poll" for t in self._tasks):
            self._tasks.append(asyncio.get_running_loop().create_task(self._poll_forever(period), name="fs-poll"))

    def start(self, *, config_file: str = "", config_poll_seconds: float = 0) -> None:
        """Start file-system polling and, if asked, config-file polling (call after startup)."""
        self.start_polling()
        if config_file and config_poll_seconds > 0:
            self._tasks.append(
                asyncio.get_running_loop().create_task(self._watch_config(config_file, config_poll_seconds))
            )

    async def _poll_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await self.poll()
            except Exception:  # keep polling; one bad round must not stop version discovery
                logger.exception("File system poll failed")

    async def _watch_config(self, path: str, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                config = read_model_config_file(path)
            except StatusError as exc:
                logger.error("Failed to read ModelServerConfig file: %s", exc)
                continue
            if self._config is not None and config == self._config:
                continue
            try:
                await self.apply_config(config)
                logger.info("Reloaded model config from %s", path)
            except Exception as exc:  # keep watching: a bad config must not end config polling
                logger.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", exc)

    async def close(self) -> None:
        """Stop background polling and pending loads."""
        tasks = self._tasks + [t for m in self._models.values() for t in m.loading.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._load_executor.shutdown(wait=False, cancel_futures=True)
        # TF Serving unloads every servable on shutdown; here that frees their Sessions.
        for servable in self._loaded.values():
            servable.retire()
        self._loaded.clear()
