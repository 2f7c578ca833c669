"""Server startup and shutdown, in TF Serving's order (spec §4.7).

1. parse and validate the config; 2. load every configured model and wait (no port is open
until then); 3. start gRPC; 4. start REST; 5. poll the file system (and the config file).
SIGTERM/SIGINT stop accepting, let in-flight requests finish (bounded), and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import signal
import sys
from collections.abc import Sequence

from tfstack.serving.server._core import ServerCore
from tfstack.serving._errors import Code, StatusError
from tfstack.serving.server._flags import USAGE, FlagError, ServerOptions, help_text, parse_flags
from tfstack.serving.server._manager import ManagerOptions, ModelManager
from tfstack.serving.server._model_config import read_model_config_file, single_model_config
from tfstack.serving.server._servable import BundleOptions

logger = logging.getLogger("tfstack.serving")

SHUTDOWN_GRACE_SECONDS = 10.0
DRAIN_QUIET_SECONDS = 0.2
# After SIGTERM, gRPC keeps its listener at most this long, so calls it already received get
# dispatched before stop() (which would cancel them); then new connections are refused.
ACCEPT_WINDOW_SECONDS = 0.05
EXIT_FAILURE = 255  # TF Serving returns -1 from main


# tfstack flags that set a gRPC core channel argument (unless --grpc_channel_arguments names it).
# Checked with grpcio 1.85: beyond max_allowed_incoming_connections a new connection is closed
# before the HTTP/2 handshake (the client's call fails UNAVAILABLE); a connection that has not sent
# the HTTP/2 preface and SETTINGS within server_handshake_timeout_ms is closed (a silent socket too).
_GRPC_LIMITS = {
    "grpc_max_connections": "grpc.max_allowed_incoming_connections",
    "grpc_handshake_timeout_in_ms": "grpc.server_handshake_timeout_ms",
}


def _startup_failure(error: StatusError | str) -> int:
    text = str(error)
    print(f"Failed to start server. Error: {text}", flush=True)
    logger.error("Failed to start server. Error: %s", text)
    return EXIT_FAILURE


def _check_options(options: ServerOptions) -> None:
    if options.port == 0 and not options.grpc_socket_path:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            "At least one of server_options.grpc_port or server_options.grpc_socket_path must be set.",
        )
    if options.rest_api_port and options.rest_api_port == options.port:
        raise StatusError(Code.INVALID_ARGUMENT, "server_options.http_port cannot be the same as grpc_port. Please use a different port for HTTP/REST API. Skipped exporting HTTP/REST API.")
    if options.batching_parameters_file and not options.enable_batching:
        raise StatusError(
            Code.FAILED_PRECONDITION,
            "server_options.batching_parameters_file is set without setting server_options.enable_batching to true.",
        )
    if options.request_log_max_file_mb < 1 or options.request_log_max_total_mb < options.request_log_max_file_mb:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            "--request_log_max_file_mb must be >= 1 and --request_log_max_total_mb at least as large. Received: "
            f"--request_log_max_file_mb={options.request_log_max_file_mb} "
            f"--request_log_max_total_mb={options.request_log_max_total_mb}",
        )
    if options.use_alts_credentials and options.ssl_config_file:
        raise StatusError(
            Code.INVALID_ARGUMENT, "Either use_alts_credentials must be false or ssl_config_file must be empty."
        )
    if not options.model_config_file and not options.model_base_path:
        raise StatusError(
            Code.INVALID_ARGUMENT, "Both server_options.model_base_path and server_options.model_config_file are empty!"
        )
    # Security flags are never accepted without their effect: a server asked for a protection
    # it does not give refuses to start instead of serving unprotected.
    if options.use_alts_credentials:
        raise StatusError(
            Code.UNIMPLEMENTED,
            "--use_alts_credentials is not supported by tfstack serve; use --ssl_config_file for TLS, "
            "or real TF Serving for ALTS.",
        )
    if options.rest_api_enable_ssl and not options.ssl_config_file:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            "--rest_api_enable_ssl needs --ssl_config_file (its server_key and server_cert secure the REST port).",
        )
    for name in ("rest_api_max_body_bytes", "rest_api_header_timeout_in_ms", "rest_api_idle_timeout_in_ms",
                 "rest_api_max_connections", *_GRPC_LIMITS):
        if getattr(options, name) <= 0:
            raise StatusError(Code.INVALID_ARGUMENT, f"--{name} must be positive. Received: --{name}={getattr(options, name)}")


def _bundle_options(options: ServerOptions) -> BundleOptions:
    """How versions load, from the flags, as server.cc fills SessionBundleConfig.

    The thread flags keep TF Serving's meaning and conflict rule, except that with none of them
    set each Session gets one intra-op and one inter-op thread instead of one per core (see
    `session_config_from_flags`); every version's Session gets the same ConfigProto.
    """
    from tfstack.serving.server._servable import session_config_from_flags

    return BundleOptions(
        saved_model_tags=options.tags or ("serve",),
        session_config=session_config_from_flags(
            session_parallelism=options.tensorflow_session_parallelism,
            intra_op_parallelism=options.tensorflow_intra_op_parallelism,
            inter_op_parallelism=options.tensorflow_inter_op_parallelism,
            session_config_file=options.tensorflow_session_config_file,
            per_process_gpu_memory_fraction=options.per_process_gpu_memory_fraction,
        ),
        mixed_precision=options.mixed_precision,
        prefer_tflite_model=options.prefer_tflite_model,
        num_tflite_pools=options.num_tflite_pools,
        # The server's own one-thread default (no thread flag, no config file) runs graphs on the
        # calling thread; flags given by the user keep TensorFlow's pools exactly.
        run_in_caller_thread=not (options.tensorflow_session_parallelism or options.tensorflow_intra_op_parallelism
                                  or options.tensorflow_inter_op_parallelism or options.tensorflow_session_config_file),
    )


def _initial_config(options: ServerOptions):
    if options.model_config_file:
        config = read_model_config_file(options.model_config_file)
        if config.WhichOneof("config") == "custom_model_config":
            raise StatusError(Code.INVALID_ARGUMENT, "ModelServer does not yet support custom model config.")
        return config
    return single_model_config(options.model_name, options.model_base_path)


async def _start_rest(core: ServerCore, options: ServerOptions, metrics=None, metrics_path: str = "", tls=None):
    try:
        from tfstack.serving.server.rest import _app as _rest
    except ImportError as exc:
        raise StatusError(
            Code.UNIMPLEMENTED,
            f"--rest_api_port={options.rest_api_port} was given but the REST front end (tfstack.serving.server.rest._app) "
            f"cannot be imported: {exc}",
        ) from exc
    from aiohttp import web

    from tfstack.serving.server.grpc._service import Activity

    monitoring = {}
    if metrics is not None:
        monitoring = {"metrics_page": metrics.page, "metrics_path": metrics_path, "on_request": metrics.observe_rest}
    app = _rest.build_rest_app(
        core, timeout=options.rest_timeout, cors=options.rest_api_enable_cors_support,
        max_body_bytes=options.rest_api_max_body_bytes, **monitoring
    )
    activity = Activity()

    @web.middleware
    async def track(request, handler):  # counts requests in flight so shutdown can drain them
        activity.active += 1
        activity.last_started = asyncio.get_running_loop().time()
        try:
            response = await handler(request)
            if activity.draining:  # shutting down: the client reconnects elsewhere
                response.force_close()
            return response
        finally:
            activity.active -= 1

    app.middlewares.append(track)
    if core.request_logger is not None:
        from tfstack.serving.server._request_log import rest_request_id_middleware

        app.middlewares.append(rest_request_id_middleware(core.request_logger))
    runner_kwargs = {"handle_signals": False, "access_log": None, **getattr(_rest, "RUNNER_KWARGS", {})}
    limits = _rest.RestLimits(
        header_timeout=options.rest_api_header_timeout_in_ms / 1000,
        idle_timeout=options.rest_api_idle_timeout_in_ms / 1000,
        max_connections=options.rest_api_max_connections,
    )
    runner = _rest.RestRunner(app, limits=limits, **runner_kwargs)
    await runner.setup()
    ssl_context = None
    if options.rest_api_enable_ssl and tls is not None:
        from tfstack.serving.server._tls import rest_ssl_context

        ssl_context = rest_ssl_context(tls)
    site = web.TCPSite(
        runner, options.host, options.rest_api_port, shutdown_timeout=SHUTDOWN_GRACE_SECONDS, ssl_context=ssl_context
    )
    await site.start()
    return runner, activity


async def run_server(options: ServerOptions, *, stop: asyncio.Event | None = None) -> int:
    """Run until `stop` is set (or SIGTERM/SIGINT); returns the process exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        _check_options(options)
        tls = None
        if options.ssl_config_file:  # checked before any model loads: a bad file fails fast
            from tfstack.serving.server._tls import read_ssl_config

            tls = read_ssl_config(options.ssl_config_file)
        config = _initial_config(options)
        bundle = _bundle_options(options)
        from tfstack.serving.server._batching import batching_executor_from_flags
        from tfstack.serving.server._monitoring import metrics_from_flags

        metrics, metrics_path = metrics_from_flags(options.rest_api_port, options.monitoring_config_file)
        batching = batching_executor_from_flags(
            options.enable_batching,
            options.batching_parameters_file,
            on_queued=metrics.observe_queuing if metrics is not None else None,
            on_batch=metrics.observe_batch if metrics is not None else None,
            per_model=options.enable_per_model_batching_parameters,
        )
    except StatusError as exc:
        return _startup_failure(exc)

    from tfstack.serving.server._request_log import LogLimits, ServerRequestLogger

    request_logger = ServerRequestLogger(
        limits=LogLimits(
            max_file_bytes=options.request_log_max_file_mb * 1024 * 1024,
            max_total_bytes=options.request_log_max_total_mb * 1024 * 1024,
        ),
        saved_model_tags=bundle.saved_model_tags,
        on_logged=metrics.observe_request_log if metrics is not None else None,
        on_dropped=metrics.observe_request_log_dropped if metrics is not None else None,
    )
    core = ServerCore(
        inference_threads=max(1, options.grpc_max_threads, options.rest_api_num_threads),
        batching=batching,
        on_inference=metrics.observe_inference if metrics is not None else None,
        request_logger=request_logger,
    )
    manager = ModelManager(
        core,
        ManagerOptions(
            file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_micros=options.load_retry_interval_micros,
            bundle=bundle,
            allow_version_labels_for_unavailable_models=options.allow_version_labels_for_unavailable_models,
            load_threads=max(2, options.num_load_threads),
            enable_model_warmup=options.enable_model_warmup,
            num_request_iterations_for_warmup=options.num_request_iterations_for_warmup,
        ),
        observer=metrics,
    )
    grpc_server = None
    rest_runner = rest_activity = None
    try:
        manager.start_polling()
        loading = asyncio.ensure_future(manager.apply_config(config, word="servable"))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not loading.done():
            logger.info("Stopped while loading the initial models.")
            loading.cancel()
            return 0
        stopping.cancel()
        try:
            loading.result()
        except StatusError as exc:
            return _startup_failure(exc)

        from tfstack.serving.server.grpc._service import build_grpc_server, parse_channel_arguments
        from tfstack.serving.server._request_log import request_id_interceptor

        try:
            channel_arguments = parse_channel_arguments(options.grpc_channel_arguments)
        except ValueError as exc:
            return _startup_failure(StatusError(Code.INVALID_ARGUMENT, str(exc)))
        given = {key for key, _ in channel_arguments}
        channel_arguments[:0] = [(arg, getattr(options, flag)) for flag, arg in _GRPC_LIMITS.items() if arg not in given]
        grpc_server = await build_grpc_server(
            core,
            manager,
            tensor_content=options.enable_serialization_as_tensor_content,
            channel_arguments=channel_arguments,
            interceptors=[*([metrics.grpc_interceptor()] if metrics is not None else ()), request_id_interceptor(request_logger)],
            enable_reload_config_rpc=options.enable_reload_config_rpc,
        )

        def add_port(address: str) -> None:
            # server.cc BuildServerCredentials: the same credentials on the TCP port and the socket.
            if tls is None:
                grpc_server.add_insecure_port(address)
            else:
                from tfstack.serving.server._tls import grpc_server_credentials

                grpc_server.add_secure_port(address, grpc_server_credentials(tls))

        try:
            if options.port:
                add_port(f"{options.host}:{options.port}")
            if options.grpc_socket_path:
                add_port(f"unix:{options.grpc_socket_path}")
        except RuntimeError as exc:
            return _startup_failure(StatusError(Code.UNAVAILABLE, f"Failed to bind gRPC port {options.port}: {exc}"))
        await grpc_server.start()
        if tls is not None:
            logger.info("Using SSL credentials%s", " (client certificates required)" if tls.client_verify else "")
        if options.port:
            logger.info("Running gRPC ModelServer at %s:%d ...", options.host, options.port)
        if options.grpc_socket_path:
            logger.info("Running gRPC ModelServer at UNIX socket %s ...", options.grpc_socket_path)

        if options.rest_api_port:
            try:
                rest_runner, rest_activity = await _start_rest(core, options, metrics, metrics_path, tls)
            except StatusError as exc:
                return _startup_failure(exc)
            except OSError as exc:
                return _startup_failure(StatusError(Code.UNAVAILABLE, f"Failed to bind REST port {options.rest_api_port}: {exc}"))
            logger.info(
                "Exporting HTTP/REST API at:%s:%d ...%s", options.host, options.rest_api_port,
                " (TLS)" if options.rest_api_enable_ssl else "",
            )

        manager.start(config_file=options.model_config_file, config_poll_seconds=options.model_config_file_poll_wait_seconds)
        await stop.wait()
        logger.info("Received shutdown signal; finishing in-flight requests (at most %.0f s).", SHUTDOWN_GRACE_SECONDS)
        return 0
    finally:
        await _shutdown(grpc_server, rest_runner, rest_activity, manager, core)
        if batching is not None:
            batching.close()
        request_logger.close()  # writes what is queued


async def _shutdown(grpc_server, rest_runner, rest_activity, manager: ModelManager, core: ServerCore) -> None:
    """Stop accepting at once, answer what already arrived (within the grace period), then stop.

    The REST listener closes first thing and answers given while draining carry
    `Connection: close`; gRPC health turns NOT_SERVING and, after at most ACCEPT_WINDOW_SECONDS
    for calls grpc already received to be dispatched (grpc.aio's stop() cancels undispatched
    ones), stop() closes the gRPC listener while running calls finish within the grace period.
    """
    steps = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SHUTDOWN_GRACE_SECONDS
    if rest_runner is not None:
        rest_activity.draining = True
        for site in list(rest_runner.sites):
            with contextlib.suppress(Exception):
                await site.stop()  # closes the listening socket; open connections stay
    if grpc_server is not None:
        health = getattr(grpc_server, "health_servicer", None)
        if health is not None:
            with contextlib.suppress(Exception):
                await health.enter_graceful_shutdown()
        window = min(deadline, loop.time() + ACCEPT_WINDOW_SECONDS)
        await grpc_server.activity.quiesce(quiet=DRAIN_QUIET_SECONDS, deadline=window)
        steps.append(grpc_server.stop(max(0.1, deadline - loop.time())))
    if rest_activity is not None:
        steps.append(rest_activity.quiesce(quiet=DRAIN_QUIET_SECONDS, deadline=deadline))
    results = await asyncio.gather(*steps, return_exceptions=True)
    if rest_runner is not None:
        results.append(*(await asyncio.gather(rest_runner.cleanup(), return_exceptions=True)))
    for result in results:
        if isinstance(result, Exception):
            logger.warning("Error while stopping a front end: %s", result)
    await manager.close()
    # In-flight TF calls have finished or been abandoned by now; do not wait on a stuck one.
    core.executor.shutdown(wait=False, cancel_futures=True)
    logger.info("Server stopped.")


def _version_text() -> str:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    return f"TensorFlow ModelServer: tfstack-{version('tfstack')}\nTensorFlow Library: {version('tensorflow')}"


def _configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s.%(msecs)03d: %(levelname).1s tfstack/serving] %(message)s",
            datefmt="%Y-%m-%d %H:%M:%S",
        )


def main(args: Sequence[str]) -> int:
    """`tfstack serve` with tensorflow_model_server's flags; returns the exit code."""
    import os

    _configure_logging()
    if any(a in ("--help", "-h", "--helpfull") for a in args):
        print(help_text())
        return 0
    try:
        parsed = parse_flags(args)
    except FlagError as exc:
        print(f"{exc}\n{USAGE}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    if parsed.unknown and parsed.options.strict_flags:
        lines = "\n".join(parsed.unknown_lines())
        print(f"{lines}\n--strict_flags: refusing to start with unknown arguments.\n{USAGE}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    for line in parsed.unknown_lines():
        # TF Serving prints this and carries on (main.cc); the hint makes a typo hard to miss.
        logger.warning("%s", line)
    if parsed.unknown:
        logger.warning("Unknown arguments are ignored, as tensorflow_model_server does; --strict_flags makes them fatal.")
    for name in parsed.unimplemented:
        logger.warning("--%s is accepted but not implemented by the embedded server; it has no effect.", name)
    options = parsed.options
    if options.version:
        print(_version_text(), flush=True)
        return 0
    # TensorFlow's C++ INFO chatter drowns the lifecycle lines; warnings still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    return asyncio.run(run_server(options))
