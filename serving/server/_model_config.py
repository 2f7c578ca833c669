"""Model configuration: text-format ModelServerConfig files and TF Serving's validation (spec §4.1).

The config is kept as the official `tensorflow.serving.ModelServerConfig` proto so that a file
that works here works in tensorflow_model_server and vice versa.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tfstack.serving._errors import Code, StatusError

if TYPE_CHECKING:
    from tensorflow_serving.config.model_server_config_pb2 import ModelConfig, ModelServerConfig

logger = logging.getLogger("tfstack.serving")

_PLATFORM = "tensorflow"


def parse_model_config_text(text: str, *, path: str = "<text>") -> ModelServerConfig:
    """Parse a text-format ModelServerConfig.

    Raises:
        StatusError: INVALID_ARGUMENT `Invalid protobuf file: '{path}'`, as TF Serving reports it
            (the parser's own complaint is logged, as protobuf prints it on stderr).
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        logger.error("Error parsing text-format tensorflow.serving.ModelServerConfig: %s", exc)
        raise StatusError(Code.INVALID_ARGUMENT, f"Invalid protobuf file: '{path}'") from exc
    return config


def read_text_proto_file(path: str | os.PathLike[str], *, what: str) -> str:
    """The text of a text-format config file (`what` names it in the log).

    An unreadable file is reported exactly like an unparsable one, as TF Serving's
    ParseProtoTextFile does: INVALID_ARGUMENT `Invalid protobuf file: '<path>'`.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        logger.error("Failed to read %s file %s: %s", what, path, exc)
        raise StatusError(Code.INVALID_ARGUMENT, f"Invalid protobuf file: '{path}'") from exc


def read_model_config_file(path: str | os.PathLike[str]) -> ModelServerConfig:
    """Read and parse `--model_config_file`; unreadable files are reported like unparsable ones."""
    path = os.fspath(path)
    return parse_model_config_text(read_text_proto_file(path, what="ModelServerConfig"), path=path)


def single_model_config(model_name: str, base_path: str) -> ModelServerConfig:
    """The config `--model_name`/`--model_base_path` stand for (server.cc BuildSingleModelConfig)."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add()
    entry.name = model_name
    entry.base_path = base_path
    entry.model_platform = _PLATFORM
    return config


def _is_absolute_or_uri(path: str) -> bool:
    return os.path.isabs(path) or "://" in path


def validate_model_config(
    config: ModelServerConfig, *, previous: ModelServerConfig | None = None
) -> list[ModelConfig]:
    """Check a config as ServerCore::ReloadConfig does and return its model entries.

    Raises:
        StatusError: with TF Serving's texts (duplicate names, relative paths, platform rules,
            custom_model_config, config-kind transitions); a logging_config tfstack cannot
            honour (see `tfstack.serving.server._request_log.validate_logging_config`).
    """
    kind = config.WhichOneof("config")
    if kind == "custom_model_config":
        raise StatusError(Code.INVALID_ARGUMENT, "ModelServer does not yet support custom model config.")
    if previous is not None and previous.WhichOneof("config") not in (None, kind) and kind is not None:
        raise StatusError(
            Code.FAILED_PRECONDITION,
            "Cannot transition to requested config. It is only legal to transition from one ModelConfigList to another.",
        )
    entries = list(config.model_config_list.config)
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise StatusError(Code.INVALID_ARGUMENT, f"Illegal to list model {entry.name} multiple times in config list")
        seen.add(entry.name)
        if not _is_absolute_or_uri(entry.base_path):
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"Expected model {entry.name} to have an absolute path or URI; got base_path()={entry.base_path}",
            )
    previous_platforms = {e.name: _platform(e) for e in (previous.model_config_list.config if previous else ())}
    for entry in entries:
        platform = _platform(entry)
        if platform not in (_PLATFORM,):
            raise StatusError(Code.INVALID_ARGUMENT, f"Model {entry.name} requests unsupported platform {platform}")
        old = previous_platforms.get(entry.name)
        if old is not None and old != platform:
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"Illegal to change a model's platform. For model {entry.name} platform was {old} and new "
                f"platform requested is {platform}",
            )
        if entry.HasField("logging_config"):
            # TF Serving's OSS server has no log collector and refuses this (spec §4.1 quirk);
            # tfstack provides one, and checks the config before anything is applied.
            from tfstack.serving.server._request_log import validate_logging_config

            validate_logging_config(entry.name, entry.logging_config)
    return entries


def _platform(entry: ModelConfig) -> str:
    # model_type is the deprecated enum: 0 unspecified, 1 TENSORFLOW, 2 OTHER.
    if entry.model_platform and entry.model_type:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            "Illegal setting both ModelServerConfig::model_type (deprecated) and "
            f"ModelServerConfig::model_platform, model name is {entry.name}",
        )
    if entry.model_platform:
        return entry.model_platform
    if entry.model_type == 1:
        return _PLATFORM
    if entry.model_type == 2:
        return "other"
    raise StatusError(
        Code.INVALID_ARGUMENT,
        "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
        f"ModelServerConfig::model_platform, model name is {entry.name}",
    )


def version_policy(entry: ModelConfig) -> tuple[str, Sequence[int]]:
    """The entry's version policy as (kind, arg): ("latest", [n]), ("all", []), ("specific", versions)."""
    policy = entry.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return "all", ()
    if which == "specific":
        return "specific", tuple(policy.specific.versions)
    num = policy.latest.num_versions if which == "latest" else 1
    return "latest", (max(num, 1),)
