"""The state of a rollout and the models.config entry derived from it.

Per model, `<config>.rollout.json` (`StateFile`) records a `ModelState`: the `stable` version,
the `canary` version (or none), the `previous` stable (for rollback) and until when it stays
loaded, plus a short history of steps. `ModelState.desired()` says what the model's entry in
the models.config (`ConfigFile`) must then hold:

- `model_version_policy { specific { versions: ... } }` = stable, canary, and previous while
  its grace period lasts;
- `version_labels` = `stable` -> stable and `canary` -> canary (-> stable when there is no canary,
  so clients that split traffic by label never hit an unknown label).

Both files are written atomically (temp + fsync + rename; the config keeps its last version
as `.bak`). Nothing here imports TensorFlow: the config is tfstack's own copy of TF Serving's
messages (`tfstack.client.wire`), in the same text format.
"""

from __future__ import annotations

import calendar
import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfstack.client import CANARY_LABEL as CANARY
from tfstack.client import STABLE_LABEL as STABLE
from tfstack.export import atomic_write_text  # the one atomic-write path (temp, fsync, rename)
from tfstack.serving.rollout._errors import RolloutError

if TYPE_CHECKING:
    from tfstack.client.wire import ModelConfig, ModelServerConfig

STATE_SUFFIX = ".rollout.json"
BACKUP_SUFFIX = ".bak"
STATE_FORMAT = 1


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

    def last_step_time(self, model_name: str) -> float | None:
        """When the last step of `model_name` started (epoch seconds, whole), None without history."""
        history = self.history(model_name)
        if not history:
            return None
        last = history[-1]
        if len(history) > 1 and history[-2]["event"] == f"{last['event']} (started)":
            last = history[-2]
        return float(calendar.timegm(time.strptime(last["time"], _UTC_FORMAT)))


_UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _utc(seconds: float) -> str:
    return time.strftime(_UTC_FORMAT, time.gmtime(seconds))


# ================================================================================ config entries


def check_version(version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be an int >= 0. Received: version={version!r}")
    return version


def find_entry(config: ModelServerConfig, model_name: str) -> ModelConfig | None:
    """The config entry of `model_name`, or None if the config has none."""
    return next((e for e in config.model_config_list.config if e.name == model_name), None)


def entry_policy(entry: ModelConfig) -> tuple[str, tuple[int, ...]]:
    """The entry's version policy as (kind, versions): ("specific", (1, 2)), ("latest", (num_versions,)), ("all", ())."""
    from tfstack.serving.server._model_config import version_policy

    kind, arg = version_policy(entry)
    return kind, tuple(arg)


def request_log_prefix(entry: ModelConfig) -> str | None:
    """The filename_prefix the server logs the model's requests under (`logging_config`), if any."""
    if not entry.HasField("logging_config"):
        return None
    return entry.logging_config.log_collector_config.filename_prefix or None


def pin_versions(entry: ModelConfig, versions: Sequence[int]) -> None:
    """Make the entry's policy `specific` with exactly `versions`."""
    entry.model_version_policy.Clear()
    entry.model_version_policy.specific.SetInParent()
    entry.model_version_policy.specific.versions.extend(sorted(versions))
