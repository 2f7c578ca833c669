"""tensorflow_model_server's command-line flags, parsed the way TF Serving parses them (spec §8, §4.7).

Syntax is TF Serving's `--name=value`; bools also accept a bare `--name`. tfstack also takes
`--name value` (the style of its other commands), which TF Serving would report as unknown. An
unknown argument is reported (`unknown argument: ...`) and ignored, as TF Serving does, with the
closest known flag named (`did you mean --model_name?`); `--strict_flags` makes it fatal instead.
A flag we know but do not implement is accepted with a warning naming it; a malformed value is a
`FlagError` (the CLI exits 255 like TF Serving's -1).
"""

from __future__ import annotations

import dataclasses
import difflib
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
    # tfstack's own: the files `logging_config` writes (rotation size, disk cap per logger).
    request_log_max_file_mb: int = 64
    request_log_max_total_mb: int = 1024
    # tfstack's own: exit on an unknown argument instead of warning and carrying on.
    strict_flags: bool = False
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
    # tfstack-only: gRPC connections beyond this many are closed before the HTTP/2 handshake
    # (gRPC's grpc.max_allowed_incoming_connections; a value given in --grpc_channel_arguments wins).
    grpc_max_connections: int = 1024
    # tfstack-only: a gRPC connection must finish its handshake (TLS, then the HTTP/2 preface and
    # SETTINGS) within this time (gRPC's grpc.server_handshake_timeout_ms; without it grpcio 1.85 closed a silent socket after 60 s).
    grpc_handshake_timeout_in_ms: int = 10_000
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


# One line per flag for `tfstack serve --help` (what it does; spec §8 has TF Serving's notes).
# A flag added to ServerOptions needs a line here too (tests/unit/serving/test_flags.py checks).
FLAG_HELP: dict[str, str] = {
    "port": "gRPC port (0: no TCP port, then --grpc_socket_path is required)",
    "grpc_socket_path": "also serve gRPC on this UNIX socket",
    "rest_api_port": "REST/HTTP port (0: no REST API); must differ from --port",
    "rest_api_num_threads": "REST worker threads",
    "rest_api_timeout_in_ms": "REST inference timeout in milliseconds (<= 0: none)",
    "rest_api_enable_cors_support": "answer CORS preflight requests and add CORS headers",
    "model_name": "name of the single served model (ignored with --model_config_file)",
    "model_base_path": "absolute path of the single model's versions (<path>/<version>/)",
    "model_config_file": "text ModelServerConfig listing models, version policies and labels",
    "model_config_file_poll_wait_seconds": "re-read --model_config_file every N seconds (0: never)",
    "file_system_poll_wait_seconds": "look for new versions on disk every N seconds (0: once, < 0: never)",
    "allow_version_labels_for_unavailable_models": "let a new label point at a version not loaded yet (needed to restart with labels)",
    "enable_batching": "merge concurrent requests into batches",
    "batching_parameters_file": "text BatchingParameters for --enable_batching",
    "enable_per_model_batching_parameters": "read batching_params.pbtxt from each version directory",
    "monitoring_config_file": "text MonitoringConfig: Prometheus metrics on the REST port",
    "enable_model_warmup": "replay assets.extra/tf_serving_warmup_requests before a version serves",
    "num_request_iterations_for_warmup": "times each warmup record is replayed (0: once)",
    "num_load_threads": "threads loading versions after startup (0: one at a time)",
    "num_unload_threads": "threads unloading versions",
    "max_num_load_retries": "retries after a failed version load",
    "load_retry_interval_micros": "wait between load retries, in microseconds",
    "flush_filesystem_caches": "drop file-system caches after the initial loads",
    "saved_model_tags": "comma-separated MetaGraph tags to load",
    "platform_config_file": "text PlatformConfigMap (not supported here)",
    "tensorflow_session_parallelism": "threads per Session for both pools (0: automatic)",
    "tensorflow_intra_op_parallelism": "intra-op threads per Session",
    "tensorflow_inter_op_parallelism": "inter-op threads per Session",
    "tensorflow_session_config_file": "text ConfigProto for every Session",
    "per_process_gpu_memory_fraction": "fraction of GPU memory each process may take",
    "grpc_channel_arguments": "gRPC server arguments as key=value,key=value",
    "grpc_max_threads": "upper bound on gRPC threads",
    "enable_grpc_healthcheck_service": "register grpc.health.v1.Health",
    "use_alts_credentials": "ALTS credentials for gRPC (refused: not implemented)",
    "ssl_config_file": "text SSLConfig: TLS for gRPC (mutual TLS with client_verify)",
    "enable_signature_method_name_check": "refuse a signature whose method_name does not fit the API",
    "enable_serialization_as_tensor_content": "send Predict outputs packed in tensor_content",
    "remove_unused_fields_from_bundle_metagraph": "drop MetaGraph parts not needed for serving",
    "enable_profiler": "register the profiler service",
    "prefer_tflite_model": "serve model.tflite instead of the SavedModel when both exist",
    "num_tflite_pools": "TF Lite interpreter pools",
    "num_tflite_interpreters_per_pool": "TF Lite interpreters per pool",
    "xla_cpu_compilation_enabled": "XLA JIT on CPU",
    "xla_gpu_compilation_enabled": "XLA JIT on GPU",
    "thread_pool_factory_config_file": "text ThreadPoolFactoryConfig",
    "mixed_precision": "\"bfloat16\" to run float32 models in bfloat16",
    "skip_initialize_tpu": "do not initialise TPUs",
    "version": "print the server and TensorFlow versions and exit",
    "host": "tfstack only: address to listen on (TF Serving listens on all interfaces)",
    "strict_flags": "tfstack only: exit on an unknown argument instead of warning and carrying on",
    "rest_api_enable_ssl": "tfstack only: serve REST over TLS with --ssl_config_file's key pair (mTLS with client_verify)",
    "rest_api_max_body_bytes": "tfstack only: largest REST request body in bytes; larger ones get 413 before they are read",
    "rest_api_header_timeout_in_ms": "tfstack only: close a REST connection that has not sent complete headers in this time",
    "rest_api_idle_timeout_in_ms": "tfstack only: close an idle kept-alive REST connection after this time",
    "rest_api_max_connections": "tfstack only: REST connections beyond this many are answered 503 and closed",
    "grpc_max_connections": "tfstack only: gRPC connections beyond this many are closed before the HTTP/2 handshake",
    "grpc_handshake_timeout_in_ms": "tfstack only: close a gRPC connection that has not finished its handshake in this time",
    "enable_reload_config_rpc": "tfstack only: false makes HandleReloadConfigRequest answer UNIMPLEMENTED",
    "request_log_max_file_mb": "tfstack only: rotate each request log file (logging_config) at this size in MB",
    "request_log_max_total_mb": "tfstack only: delete a prefix's oldest request log files beyond this total in MB",
}

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
        "per_process_gpu_memory_fraction", "mixed_precision", "request_log_max_file_mb", "request_log_max_total_mb",
        "strict_flags", "ssl_config_file", "rest_api_enable_ssl",
        "rest_api_max_body_bytes", "rest_api_header_timeout_in_ms", "rest_api_idle_timeout_in_ms",
        "rest_api_max_connections", "grpc_max_connections", "grpc_handshake_timeout_in_ms",
        "enable_reload_config_rpc",
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
    hints: dict[str, str] = dataclasses.field(default_factory=dict)  # unknown arg -> what was probably meant

    def unknown_lines(self) -> list[str]:
        """`unknown argument: <arg>` for each unknown argument, with its hint when there is one."""
        return [f"unknown argument: {arg}" + (f" ({self.hints[arg]})" if arg in self.hints else "") for arg in self.unknown]


_BOOL_WORDS = ("true", "false", "1", "0")


def _hint(arg: str, name: str, value: str | None, has_value: bool, names: Sequence[str]) -> str | None:
    """What an unknown argument probably meant: the closest flag name, or the missing `--`."""
    if not name:
        return None
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    if close:
        return f"did you mean --{close[0]}{'=' + value if has_value and value is not None else ''}?"
    if not arg.startswith("-") and name in names:
        return f"did you mean --{name}?"
    return None


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


def _looks_like_value(token: str) -> bool:
    """Whether `token` can be the value of the flag before it (`--port 8500`), not a flag itself."""
    if not token.startswith("-"):
        return True
    try:
        float(token)  # a negative number, e.g. --file_system_poll_wait_seconds -1
    except ValueError:
        return False
    return True


def parse_flags(args: Sequence[str]) -> ParsedFlags:
    """Parse `--name=value` (or `--name value`) arguments into `ServerOptions`.

    Later duplicates win, as in TF Serving. Unknown arguments are collected, not fatal, each
    with a hint when a known flag is close (`--model_nam=x` -> `did you mean --model_name=x?`).

    Raises:
        FlagError: a known flag has a malformed value.
    """
    fields = {f.name: f for f in dataclasses.fields(ServerOptions)}
    values: dict[str, object] = {}
    unknown: list[str] = []
    hints: dict[str, str] = {}
    for arg in args:
        if not isinstance(arg, str):
            raise TypeError(f"Flags must be strings. Received: {arg!r}")
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        body = arg[2:] if arg.startswith("--") else arg[1:] if arg.startswith("-") else None
        if not body:
            unknown.append(arg)
            hint = _hint(arg, arg.partition("=")[0], arg.partition("=")[2], "=" in arg, list(fields))
            if hint:
                hints[arg] = hint
            continue
        name, has_value, value = body.partition("=")
        field = fields.get(name)
        if field is None:
            unknown.append(arg)
            hint = _hint(arg, name, value, bool(has_value), list(fields))
            if hint:
                hints[arg] = hint
            continue
        following = args[index] if index < len(args) else None
        kind = field.type
        if kind == "bool":
            if not has_value and following in _BOOL_WORDS:
                has_value, value = "=", following
                index += 1
            values[name] = _parse_bool(name, value) if has_value else True
            continue
        if not has_value:
            # TF's flag parser only matches `--name=value`; tfstack also takes `--name value`.
            if following is None or not _looks_like_value(following):
                unknown.append(arg)
                hints[arg] = f"--{name} needs a value: --{name}=VALUE"
                continue
            value = following
            index += 1
        if kind == "int":
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
    return ParsedFlags(
        options=options, unknown=tuple(unknown), unimplemented=unimplemented, explicitly_set=frozenset(values), hints=hints
    )


def help_text() -> str:
    """Usage plus one line per flag: its default and what it does; ignored flags are marked."""
    defaults = ServerOptions()
    rows = []
    for field in dataclasses.fields(ServerOptions):
        value = getattr(defaults, field.name)
        shown = str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, str) else value
        what = FLAG_HELP.get(field.name, "")
        if field.name not in IMPLEMENTED_FLAGS:
            what = f"{what} (accepted, not implemented)" if what else "(accepted, not implemented)"
        rows.append((f"--{field.name}={shown}", what))
    width = max(len(flag) for flag, _ in rows)
    lines = [
        USAGE,
        "",
        "Flags (tensorflow_model_server's; `--name=value` or `--name value`; bools also as a bare `--name`).",
        "An unknown flag is reported and ignored, as TF Serving does; add --strict_flags to exit instead.",
        "",
    ]
    lines += [f"  {flag.ljust(width)}  {what}".rstrip() for flag, what in rows]
    return "\n".join(lines)
