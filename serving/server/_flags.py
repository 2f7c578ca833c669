"""tensorflow_model_server's command-line flags, parsed the way TF Serving parses them (spec §8, §4.7).

Syntax is `--name=value` only; bools also accept a bare `--name`. An unknown argument is
reported (`unknown argument: ...`) and ignored, as TF Serving does; a flag we know but do not
implement is accepted with a warning naming it; a malformed value is a `FlagError` (the CLI
exits 255 like TF Serving's -1).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from tfstack.serving._errors import ServerError


class FlagError(ServerError, ValueError):
    """A command-line flag had a value of the wrong form (e.g. `--port=abc`)."""


def _cpus() -> int:
    return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """Everything `tfstack serve` was told, with tensorflow_model_server's defaults.

    Field names are the flag names; see spec §8 for their meaning.
    """

    port: int = 8500
    grpc_socket_path: str = ""
    rest_api_port: int = 0
    rest_api_num_threads: int = dataclasses.field(default_factory=lambda: 4 * _cpus())
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    allow_version_labels_for_unavailable_models: bool = False
    enable_batching: bool = False
    batching_parameters_file: str = ""
    enable_per_model_batching_parameters: bool = False
    monitoring_config_file: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    num_load_threads: int = 0
    num_unload_threads: int = 0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    flush_filesystem_caches: bool = True
    saved_model_tags: str = "serve"
    platform_config_file: str = ""
    tensorflow_session_parallelism: int = 0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    tensorflow_session_config_file: str = ""
    per_process_gpu_memory_fraction: float = 0.0
    grpc_channel_arguments: str = ""
    grpc_max_threads: int = dataclasses.field(default_factory=lambda: 4 * _cpus())
    enable_grpc_healthcheck_service: bool = False
    use_alts_credentials: bool = False
    ssl_config_file: str = ""
    enable_signature_method_name_check: bool = False
    enable_serialization_as_tensor_content: bool = False
    remove_unused_fields_from_bundle_metagraph: bool = True
    enable_profiler: bool = True
    prefer_tflite_model: bool = False
    num_tflite_pools: int = dataclasses.field(default_factory=_cpus)
    num_tflite_interpreters_per_pool: int = 1
    xla_cpu_compilation_enabled: bool = False
    xla_gpu_compilation_enabled: bool = False
    thread_pool_factory_config_file: str = ""
    mixed_precision: str = ""
    skip_initialize_tpu: bool = False
    version: bool = False
    # tfstack's own: TF Serving listens on all interfaces; a development server should not.
    host: str = "127.0.0.1"
    # tfstack-only: serve the REST port over TLS with --ssl_config_file's key pair (mutual TLS when client_verify).
    rest_api_enable_ssl: bool = False
    # tfstack-only: largest REST request body in bytes; larger ones get 413 before the body is read.
    rest_api_max_body_bytes: int = 64 * 1024 * 1024
    # tfstack-only: a REST connection must deliver a request's complete headers within this time.
    rest_api_header_timeout_in_ms: int = 10_000
    # tfstack-only: an idle kept-alive REST connection is closed after this time.
    rest_api_idle_timeout_in_ms: int = 60_000
    # tfstack-only: open REST connections beyond this many are answered 503 and closed.
    rest_api_max_connections: int = 1024
    # tfstack-only: false makes ModelService/HandleReloadConfigRequest answer UNIMPLEMENTED.
    enable_reload_config_rpc: bool = True

    @property
    def tags(self) -> tuple[str, ...]:
        """`--saved_model_tags` split on commas, as TF Serving does."""
        return tuple(t for t in self.saved_model_tags.split(",") if t)

    @property
    def rest_timeout(self) -> float | None:
        """The REST inference timeout in seconds (`--rest_api_timeout_in_ms`; <= 0 means none)."""
        return self.rest_api_timeout_in_ms / 1000 if self.rest_api_timeout_in_ms > 0 else None


# Flags whose effect the embedded server reproduces; every other known flag is accepted and
# ignored with a warning. Some of these are only partly implemented; see docs.
IMPLEMENTED_FLAGS: frozenset[str] = frozenset(
    {
        "port", "grpc_socket_path", "rest_api_port", "rest_api_num_threads", "rest_api_timeout_in_ms",
        "rest_api_enable_cors_support", "grpc_channel_arguments",
        "model_name", "model_base_path", "model_config_file", "model_config_file_poll_wait_seconds",
        "file_system_poll_wait_seconds", "allow_version_labels_for_unavailable_models",
        "max_num_load_retries", "load_retry_interval_micros", "saved_model_tags", "grpc_max_threads",
        "enable_grpc_healthcheck_service", "enable_serialization_as_tensor_content", "version", "host",
        "num_load_threads", "num_unload_threads", "flush_filesystem_caches", "enable_profiler",
        "remove_unused_fields_from_bundle_metagraph", "enable_model_warmup", "num_request_iterations_for_warmup",
        "tensorflow_session_parallelism", "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism",
        "enable_batching", "batching_parameters_file", "enable_per_model_batching_parameters",
        "monitoring_config_file", "prefer_tflite_model", "num_tflite_pools", "tensorflow_session_config_file",
        "per_process_gpu_memory_fraction", "mixed_precision", "ssl_config_file", "rest_api_enable_ssl",
        "rest_api_max_body_bytes", "rest_api_header_timeout_in_ms", "rest_api_idle_timeout_in_ms",
        "rest_api_max_connections", "enable_reload_config_rpc",
    }
)

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_INT64_FLAGS = frozenset({"load_retry_interval_micros", "tensorflow_session_parallelism"})

USAGE = "usage: tfstack serve --model_base_path=/abs/path [--model_name=default] [--port=8500] [--rest_api_port=8501] ..."


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParsedFlags:
    """The options plus what TF Serving would have printed about the command line."""

    options: ServerOptions
    unknown: tuple[str, ...] = ()          # printed as `unknown argument: <arg>`
    unimplemented: tuple[str, ...] = ()    # known flags set to a non-default value we ignore
    explicitly_set: frozenset[str] = frozenset()


def _parse_bool(name: str, value: str) -> bool:
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise FlagError(f"Couldn't interpret value {value} for flag {name}. Expected one of: true, false, 1, 0. Received: --{name}={value}")


def _parse_int(name: str, value: str) -> int:
    low, high = _INT64 if name in _INT64_FLAGS else _INT32
    text = value.strip()
    try:
        number = int(text, 10)
    except ValueError as exc:
        raise FlagError(f"Couldn't interpret value {value} for flag {name}. Expected an integer. Received: --{name}={value}") from exc
    if not low <= number <= high:
        raise FlagError(f"Value {value} for flag {name} is out of range [{low}, {high}]. Received: --{name}={value}")
    return number


def _parse_float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError as exc:
        raise FlagError(f"Couldn't interpret value {value} for flag {name}. Expected a number. Received: --{name}={value}") from exc


def parse_flags(args: Sequence[str]) -> ParsedFlags:
    """Parse `--name=value` arguments into `ServerOptions` (later duplicates win, as in TF Serving).

    Raises:
        FlagError: a known flag has a malformed value.
    """
    fields = {f.name: f for f in dataclasses.fields(ServerOptions)}
    values: dict[str, object] = {}
    unknown: list[str] = []
    for arg in args:
        if not isinstance(arg, str):
            raise TypeError(f"Flags must be strings. Received: {arg!r}")
        body = arg[2:] if arg.startswith("--") else arg[1:] if arg.startswith("-") else None
        if not body:
            unknown.append(arg)
            continue
        name, has_value, value = body.partition("=")
        field = fields.get(name)
        if field is None:
            unknown.append(arg)
            continue
        kind = field.type
        if kind == "bool":
            values[name] = _parse_bool(name, value) if has_value else True
        elif not has_value:
            # TF's flag parser only matches `--name=value` for non-bool flags.
            unknown.append(arg)
        elif kind == "int":
            values[name] = _parse_int(name, value)
        elif kind == "float":
            values[name] = _parse_float(name, value)
        else:
            values[name] = value
    options = ServerOptions(**values)  # type: ignore[arg-type]
    defaults = ServerOptions()
    unimplemented = tuple(
        sorted(n for n in values if n not in IMPLEMENTED_FLAGS and getattr(options, n) != getattr(defaults, n))
    )
    return ParsedFlags(options=options, unknown=tuple(unknown), unimplemented=unimplemented, explicitly_set=frozenset(values))


def help_text() -> str:
    """Usage plus every flag with its default, marking the ones the embedded server ignores."""
    defaults = ServerOptions()
    lines = [USAGE, "", "Flags (tensorflow_model_server's, `--name=value`; bools also as a bare `--name`):"]
    for field in dataclasses.fields(ServerOptions):
        value = getattr(defaults, field.name)
        shown = str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, str) else value
        note = "" if field.name in IMPLEMENTED_FLAGS else "  (accepted, not implemented)"
        lines.append(f"  --{field.name}={shown}{note}")
    return "\n".join(lines)
